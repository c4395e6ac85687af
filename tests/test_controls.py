"""The controls: planted effects must be recovered, replicate seeds must not differ."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from codeift import study
from codeift.analysis import aggregate, controls, load, tables
from codeift.io import write_parquet
from codeift.settings import AnalysisSettings

N = 30  # examples per task


def _rows(backbone: str, variant: str, task: str, correct: list[bool]) -> list[dict]:
    proportion = study.variant_proportion(variant)
    return [
        {
            "id": f"{task}-{index}",
            "task": task,
            "domain": "symbolic" if task.startswith("sym") else "logical",
            "missing_reason": None,
            "correct": value,
            "backbone": backbone,
            "family": "llama",
            "size_label": "1M",
            "variant": variant,
            "proportion": proportion,
            "engine": "vllm",
            "response": "The answer is x.",
        }
        for index, value in enumerate(correct)
    ]


def _first(k: int) -> list[bool]:
    return [index < k for index in range(N)]


def _last(k: int) -> list[bool]:
    return [index >= N - k for index in range(N)]


# sym_gain: code gains strongly; log_lose: code loses strongly; sym_flat: nothing moves;
# log_noise: the replicate differs from its first seed on a handful of items only.
ARMS = {
    "code0": {
        "sym_gain": _first(2),
        "log_lose": _first(27),
        "sym_flat": _first(15),
        "log_noise": _first(10),
    },
    "code50": {
        "sym_gain": _first(15),
        "log_lose": _first(14),
        "sym_flat": _first(15),
        "log_noise": _first(12),
    },
    "code50r1": {
        "sym_gain": _first(16),
        "log_lose": _first(13),
        "sym_flat": _first(15),
        "log_noise": _last(12),
    },
    "code100": {
        "sym_gain": _first(28),
        "log_lose": _first(1),
        "sym_flat": _first(15),
        "log_noise": _first(11),
    },
}
PLANTED = {"sym_gain": "gain", "log_lose": "lose", "sym_flat": "none", "log_noise": "none"}


def _scores(arms: dict = ARMS) -> pl.DataFrame:
    rows = []
    for backbone in ("b1", "b2"):
        for variant, tasks in arms.items():
            for task, correct in tasks.items():
                rows += _rows(backbone, variant, task, correct)
    return load.split_replicates(pl.DataFrame(rows))


def _table(scores: pl.DataFrame, planted: dict[str, str] = PLANTED) -> pl.DataFrame:
    settings = AnalysisSettings(bootstrap_samples=200)
    found = tables.evidence_tables(scores, settings, planted)
    return found["controls"]


def test_replicate_arms_become_seeds_of_their_arm() -> None:
    scores = _scores()
    assert sorted(scores["variant"].unique().to_list()) == ["code0", "code100", "code50"]
    seeds = scores.group_by("variant").agg(pl.col("seed").unique().sort()).sort("variant")
    assert seeds.filter(pl.col("variant") == "code50")["seed"].to_list() == [[0, 1]]


def test_planted_effects_are_recovered_in_their_direction() -> None:
    table = _table(_scores())
    positive = table.filter(pl.col("control") == "positive")
    assert positive.height == 4  # 2 backbones x 2 planted tasks
    assert set(positive["variant"].to_list()) == {"code100"}
    assert set(positive["verdict"].to_list()) == {"recovered"}
    unplanted = table.filter(pl.col("control") == "unplanted")
    assert set(unplanted["verdict"].to_list()) == {"still"}
    outcome = controls.verdicts(table, 0.05)
    assert outcome["positive_passed"]
    assert "planted effects recovered: 4/4" in outcome["lines"]


def test_a_planted_effect_in_the_wrong_direction_is_not_recovered() -> None:
    flipped = {**PLANTED, "sym_gain": "lose"}
    table = _table(_scores(), flipped)
    wrong = table.filter((pl.col("task") == "sym_gain") & (pl.col("control") == "positive"))
    assert set(wrong["verdict"].to_list()) == {"opposite"}
    outcome = controls.verdicts(table, 0.05)
    assert not outcome["positive_passed"]
    assert outcome["lines"][0].startswith("planted effects recovered: 2/4 (2 opposite;")


def test_an_effect_too_small_to_test_is_missed() -> None:
    arms = {**ARMS, "code100": {**ARMS["code100"], "sym_gain": _first(4)}}
    table = _table(_scores(arms))
    small = table.filter((pl.col("task") == "sym_gain") & (pl.col("control") == "positive"))
    assert set(small["verdict"].to_list()) == {"missed"}


def test_null_control_pairs_replicates_with_their_first_seed() -> None:
    table = _table(_scores())
    null = table.filter(pl.col("control") == "null").sort("backbone", "task")
    assert null.height == 8  # 2 backbones x 4 tasks, code50r1 against code50
    assert set(null["variant"].to_list()) == {"code50r1"}
    assert set(null["reference"].to_list()) == {"code50"}
    noise = null.filter(pl.col("task") == "log_noise").row(0, named=True)
    # first 12 vs last 12 of 30: no overlap, 12 items each way, far from significant
    assert (noise["only_variant"], noise["only_reference"]) == (12, 12)
    assert not noise["significant"]
    outcome = controls.verdicts(table, 0.05)
    assert outcome["null_passed"] and outcome["false_positives"] == 0
    assert outcome["lines"][-1].startswith("null control passed: 0 of 8")


def test_null_control_fails_when_replicates_differ_beyond_the_false_positive_rate() -> None:
    broken = {task: _first(29) for task in ARMS["code50"]}
    arms = {**ARMS, "code50r1": broken, "code50": {task: _first(1) for task in broken}}
    outcome = controls.verdicts(_table(_scores(arms)), 0.05)
    assert outcome["false_positives"] == 8
    assert not outcome["null_passed"]
    assert "null control FAILED" in outcome["lines"][-1]


def test_binomial_allowance() -> None:
    assert controls.binomial_upper(24, 0.05, 0.95) == 3
    assert controls.binomial_upper(0, 0.05, 0.95) == 0
    assert controls.binomial_upper(1, 0.05, 0.95) == 0


def test_tables_and_comparisons_use_first_seeds_only() -> None:
    scores = _scores()
    first = tables.task_table(scores.filter(pl.col("seed") == 0))
    found = tables.evidence_tables(scores, AnalysisSettings(bootstrap_samples=200), PLANTED)
    comparisons = found["comparisons"].filter(
        (pl.col("level") == "task") & (pl.col("variant") == "code50")
    )
    expected = first.filter(pl.col("variant") == "code50").select("backbone", "task", "accuracy")
    joined = comparisons.join(expected, on=["backbone", "task"], suffix="_first")
    assert joined.height == 8
    assert (joined["accuracy"] - joined["accuracy_first"]).abs().max() < 1e-12
    seeds = found["seeds"].filter((pl.col("variant") == "code50") & (pl.col("task") == "overall"))
    assert seeds["n_seeds"].to_list() == [2, 2]


@pytest.mark.parametrize("with_controls", [True, False])
def test_run_analysis_reports_the_verdicts(tmp_path: Path, with_controls: bool) -> None:
    scores = pl.DataFrame(
        [r for v, tasks in ARMS.items() for t, c in tasks.items() for r in _rows("b1", v, t, c)]
    )
    paths = []
    for (variant, task), part in scores.partition_by(["variant", "task"], as_dict=True).items():
        path = tmp_path / "scores" / variant / f"{task}.parquet"
        write_parquet(part, path)
        paths.append(path)
    planted = PLANTED if with_controls else None
    settings = AnalysisSettings(bootstrap_samples=200)
    aggregate.run_analysis(
        paths, tmp_path / "summary", tmp_path / "figures", settings, planted=planted
    )
    summary = (tmp_path / "summary" / "summary.md").read_text()
    table = pl.read_csv(tmp_path / "summary" / "controls.csv")
    assert (tmp_path / "figures" / "controls.png").stat().st_size > 1000
    if with_controls:
        assert "- planted effects recovered: 2/2" in summary
        assert set(table["control"].to_list()) == {"positive", "unplanted", "null"}
    else:
        assert "planted effects" not in summary
        assert set(table["control"].to_list()) == {"null"}
    assert "null control passed: 0 of 4" in summary
    assert "| code50 |" in (tmp_path / "summary" / "task.md").read_text()
    assert "code50r1" not in (tmp_path / "summary" / "task.md").read_text()
