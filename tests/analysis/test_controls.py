"""The controls: planted effects must be recovered, replicate seeds must not differ."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from codeift import study
from codeift.analysis import aggregate, controls, load, power, stats, tables
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


def _table(
    scores: pl.DataFrame,
    planted: dict[str, str] = PLANTED,
    views: dict[str, str] | None = None,
    **settings: float,
) -> pl.DataFrame:
    found = tables.evidence_tables(
        scores, AnalysisSettings(bootstrap_samples=200, **settings), planted, views
    )
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


def test_a_small_effect_the_design_could_detect_is_missed() -> None:
    # 30 pairs over 28 tests detect 55 points (codeift.analysis.power): a study that must
    # detect 60 could have seen this one, had it been as large.
    arms = {**ARMS, "code100": {**ARMS["code100"], "sym_gain": _first(4)}}
    table = _table(_scores(arms), min_effect=0.6)
    small = table.filter((pl.col("task") == "sym_gain") & (pl.col("control") == "positive"))
    assert set(small["verdict"].to_list()) == {"missed"}
    assert small["detectable_holm"].to_list() == [0.55, 0.55]


def test_a_planted_effect_the_design_cannot_detect_is_underpowered_not_missed() -> None:
    arms = {**ARMS, "code100": {**ARMS["code100"], "sym_gain": _first(4)}}
    table = _table(_scores(arms), min_effect=0.5)
    small = table.filter((pl.col("task") == "sym_gain") & (pl.col("control") == "positive"))
    assert set(small["verdict"].to_list()) == {"underpowered"}
    line = controls.verdicts(table, 0.05)["lines"][0]
    assert line.startswith("planted effects recovered: 2/4 (2 underpowered (30 items);"), line
    # A recovered effect stays recovered whatever the design's power.
    lose = table.filter((pl.col("task") == "log_lose") & (pl.col("control") == "positive"))
    assert set(lose["verdict"].to_list()) == {"recovered"}


def _with_programs(scores: pl.DataFrame, task: str, variant: str, solved: int) -> pl.DataFrame:
    """The arm's first `solved` items of `task` printed the right answer from a program."""
    index = pl.col("id").str.split("-").list.last().cast(pl.Int64)
    return scores.with_columns(
        ((pl.col("task") == task) & (pl.col("variant") == variant) & (index < solved)).alias(
            "program_correct"
        )
    )


def test_a_planted_effect_is_judged_in_the_view_its_data_names() -> None:
    # code100 writes the program for list-like items but its text stays at code0's level: the
    # gain is there when programs run, not in what the replies say.
    arms = {**ARMS, "code100": {**ARMS["code100"], "sym_gain": _first(2)}}
    scores = _with_programs(_scores(arms), "sym_gain", "code100", 28)
    text = _table(scores, views={"sym_gain": "text"})
    any_view = _table(scores, views={"sym_gain": "text_or_program"})
    pick = (pl.col("task") == "sym_gain") & (pl.col("control") == "positive")
    assert set(text.filter(pick)["verdict"].to_list()) == {"underpowered"}
    assert set(text.filter(pick)["view"].to_list()) == {"text"}
    judged = any_view.filter(pick)
    assert set(judged["verdict"].to_list()) == {"recovered"}
    assert set(judged["view"].to_list()) == {"text_or_program"}
    assert judged["accuracy"].to_list() == [28 / N, 28 / N]
    # A view the data does not name is the text view (the study's metric).
    assert set(_table(scores).filter(pick)["view"].to_list()) == {"text"}


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


def _power_by_enumeration(n: int, difference: float, churn: float, level: float) -> float:
    """The same power from the joint counts of pairs won and lost (a multinomial sum), not from
    the discordant total and its split as codeift.analysis.power computes it."""
    forward, backward = churn + difference, churn
    total = 0.0
    for won in range(n + 1):
        for lost in range(n - won + 1):
            if won > lost and stats.mcnemar_exact(won, lost) < level:
                ways = math.factorial(n) / (
                    math.factorial(won) * math.factorial(lost) * math.factorial(n - won - lost)
                )
                total += (
                    ways
                    * forward**won
                    * backward**lost
                    * (1 - forward - backward) ** (n - won - lost)
                )
    return total


@pytest.mark.parametrize(
    ("n", "difference", "churn", "level"),
    [(12, 0.3, 0.05, 0.05), (20, 0.5, 0.1, 0.05 / 32), (9, 0.8, 0.0, 0.01), (15, 0.1, 0.2, 0.05)],
)
def test_mcnemar_power_agrees_with_enumerating_every_outcome(n, difference, churn, level):
    expected = _power_by_enumeration(n, difference, churn, level)
    assert power.mcnemar_power(n, difference, churn, level) == pytest.approx(expected, abs=1e-9)


def test_the_smallest_detectable_difference_shrinks_with_items_and_is_none_when_out_of_reach():
    level = 0.05 / 32
    # 10 pairs cannot reach p < 0.05 / 32 even all one way (2 / 2**10 = 0.002): nothing is
    # detectable, the real-model study's old design (10 items per task).
    assert power.smallest_detectable(10, level, 0.8, 0.05) is None
    sizes = [power.smallest_detectable(n, level, 0.8, 0.05) for n in (20, 40, 80)]
    assert sizes[0] > sizes[1] > sizes[2]
    found = power.smallest_detectable(40, level, 0.8, 0.05)
    assert power.mcnemar_power(40, found, 0.05, level) >= 0.8
    assert power.mcnemar_power(40, found - 0.01, 0.05, level) < 0.8


def test_the_summary_states_each_tasks_detectable_difference() -> None:
    found = tables.evidence_tables(_scores(), AnalysisSettings(bootstrap_samples=200))
    table = found["power"]
    assert table["task"].to_list() == ["log_lose", "log_noise", "sym_flat", "sym_gain"]
    assert set(table["n_items"].to_list()) == {N}
    assert set(table["tests"].to_list()) == {found["comparisons"].height}
    assert set(table["detectable_holm"].to_list()) == {0.55}
    assert (table["detectable"] < table["detectable_holm"]).all()


def test_the_planned_power_counts_the_tests_the_study_will_run() -> None:
    # The synthetic study above: 2 backbones, code0 / code50 / code100 (+ a replicate),
    # 4 tasks in 2 domains, 30 items each.
    config = {
        "proportions": [0, 50, 100],
        "backbones": {"b1": {}, "b2": {}},
        "tasks": {
            task: {"domain": "symbolic" if task.startswith("sym") else "logical", "size": N}
            for task in ARMS["code0"]
        },
    }
    found = tables.evidence_tables(_scores(), AnalysisSettings(bootstrap_samples=200))
    assert power.planned_tests(config) == found["comparisons"].height
    planned = power.design_table(config)
    assert planned.select(sorted(planned.columns)).equals(
        found["power"].select(sorted(planned.columns))
    )


def test_a_planted_view_no_table_reads_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="planted view of task 'sym_gain': 'program'"):
        _table(_scores(), views={"sym_gain": "program"})
