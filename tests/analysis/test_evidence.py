"""Evidence tables on synthetic paired scores with known answers."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from codeift import cli, study
from codeift.analysis import aggregate, evidence
from codeift.config import ConfigError, validate_config
from codeift.io import write_parquet
from codeift.settings import AnalysisSettings
from tests.conftest import REPO

SETTINGS = AnalysisSettings(bootstrap_samples=1000, alpha=0.05, seed=0)
TASKS = {"sym_a": "symbolic", "sym_b": "symbolic", "ari_a": "arithmetic"}


def frame(outcomes: dict[tuple[str, str, str], list[bool]], **extra: list) -> pl.DataFrame:
    """Score rows from (backbone, variant, task) -> per-example outcomes (ids by position)."""
    rows = []
    for (backbone, variant, task), correct in outcomes.items():
        for index, ok in enumerate(correct):
            rows.append(
                {
                    "id": f"{task}-{index}",
                    "task": task,
                    "domain": TASKS[task],
                    "correct": ok,
                    "backbone": backbone,
                    "variant": variant,
                    "proportion": study.variant_proportion(variant),
                    "response": "The answer is 3.",
                    "program_status": None,
                }
            )
    table = pl.DataFrame(rows, schema_overrides={"proportion": pl.Int64, "program_status": pl.Utf8})
    return table.with_columns(pl.Series(k, v) for k, v in extra.items())


def score_file(arms: dict[tuple[str, str, str], list[bool]], path) -> object:
    """A score file of `arms` with the provenance columns the analysis requires."""
    scores = frame(arms).with_columns(
        pl.lit("f").alias("family"),
        pl.lit("1B").alias("size_label"),
        pl.lit("hf").alias("engine"),
        pl.lit(None, dtype=pl.Utf8).alias("missing_reason"),
    )
    write_parquet(scores, path)
    return path


def outcomes(seed: int, n: int, rate: float) -> list[bool]:
    return (np.random.default_rng(seed).random(n) < rate).tolist()


def test_identical_arms_give_no_significant_difference() -> None:
    arms = {}
    for index, task in enumerate(TASKS):
        same = outcomes(index, 60, 0.5)
        for variant in ("code0", "code50", "code100"):
            arms[("b1", variant, task)] = same
    table = evidence.comparison_table(frame(arms), SETTINGS)
    assert table.height == 2 * (3 + 2 + 1)  # 2 variants x (3 tasks + 2 domains + overall)
    assert table["difference"].to_list() == [0.0] * table.height
    assert table["p_value"].to_list() == [1.0] * table.height
    assert not table["significant"].any()


def test_planted_difference_is_significant_with_positive_interval() -> None:
    arms = {}
    for index, task in enumerate(TASKS):
        reference = outcomes(index, 80, 0.3)
        helped = outcomes(10 + index, 80, 0.5)
        arms[("b1", "code0", task)] = reference
        arms[("b1", "code100", task)] = [a or b for a, b in zip(reference, helped, strict=True)]
    table = evidence.comparison_table(frame(arms), SETTINGS)
    overall = table.filter(pl.col("level") == "overall").row(0, named=True)
    assert overall["test"] == "paired_bootstrap"
    assert overall["only_reference"] == 0 and overall["difference"] > 0.2
    assert 0 < overall["ci_low"] < overall["difference"] < overall["ci_high"]
    assert overall["significant"] and overall["p_holm"] <= 0.01
    tasks = table.filter(pl.col("level") == "task")
    assert tasks["test"].unique().to_list() == ["mcnemar_exact"]
    assert tasks["significant"].all()
    # Holm never lowers a p-value
    assert (table["p_holm"] >= table["p_value"]).all()


def test_comparisons_are_paired_on_id() -> None:
    # code50 solves exactly the examples code0 misses: same accuracy, every pair discordant
    reference = [True, False] * 20
    swapped = [not ok for ok in reference]
    arms = {("b1", "code0", "sym_a"): reference, ("b1", "code50", "sym_a"): swapped}
    row = evidence.comparison_table(frame(arms), SETTINGS).row(0, named=True)
    assert row["difference"] == 0.0
    assert (row["only_variant"], row["only_reference"]) == (20, 20)
    assert row["odds_ratio"] == 1.0 and row["p_value"] == 1.0


def test_consistency_counts_directions_and_rank_agreement() -> None:
    arms = {}
    # b1 and b2 both gain on every symbolic task, with the same task ranking; b3 loses
    gains = {"b1": {"sym_a": 10, "sym_b": 20}, "b2": {"sym_a": 5, "sym_b": 15}}
    gains["b3"] = {"sym_a": -10, "sym_b": -5}
    for backbone, per_task in gains.items():
        for task, gain in per_task.items():
            arms[(backbone, "code0", task)] = [i < 20 for i in range(40)]
            arms[(backbone, "code100", task)] = [i < 20 + gain for i in range(40)]
    comparisons = evidence.comparison_table(frame(arms), SETTINGS)
    table = evidence.consistency_table(comparisons)
    row = table.filter(pl.col("domain") == "symbolic").row(0, named=True)
    assert (row["n_backbones"], row["n_up"], row["n_down"], row["n_flat"]) == (3, 2, 1, 0)
    assert row["majority"] == "up" and row["agreement"] == pytest.approx(2 / 3)
    # all three pairs rank sym_b above sym_a: rho = tau = 1 for each pair
    assert row["spearman"] == pytest.approx(1.0) and row["kendall"] == pytest.approx(1.0)


def test_best_proportion_with_ties_and_fitted_optimum() -> None:
    arms = {
        ("b1", "code0", "sym_a"): [i < 10 for i in range(100)],
        ("b1", "code50", "sym_a"): [i < 60 for i in range(100)],
        ("b1", "code100", "sym_a"): [i < 58 for i in range(100)],
        ("b1", "base", "sym_a"): [True] * 100,  # untuned base never competes for best share
    }
    row = evidence.best_proportion_table(frame(arms), SETTINGS).row(0, named=True)
    assert row["best_proportion"] == 50 and row["best_accuracy"] == pytest.approx(0.6)
    assert row["indistinguishable"] == "50, 100"
    assert row["n_proportions"] == 3
    assert 50 < row["fit_optimum"] < 100 and row["fit_curvature"] < 0


def test_best_proportion_without_fit_for_two_shares() -> None:
    arms = {("b1", "code0", "sym_a"): [True] * 5, ("b1", "code100", "sym_a"): [False] * 5}
    row = evidence.best_proportion_table(frame(arms), SETTINGS).row(0, named=True)
    assert row["best_proportion"] == 0 and row["fit_optimum"] is None


def test_reasoning_mode_per_response() -> None:
    responses = [
        "Reverse it: c, b, a.",
        "```python\nprint(1 + 2)\n```",
        "Let me compute.\n```python\nprint(3)\n```\nSo the answer is 3.",
        "```python\nprint(1",  # cut off inside its program
        "",
        "```\n42\n```",  # a fenced answer the scorer did not run: no program, no text
    ]
    status = [None, "ok", "ok", "crashed", None, None]
    scores = pl.DataFrame(
        {"response": responses, "program_status": status},
        schema_overrides={"program_status": pl.Utf8},
    )
    modes = evidence.reasoning_mode(scores).to_list()
    assert modes == ["text", "code", "both", "code", "none", "none"]
    without_programs = pl.DataFrame({"response": ["x", None]})
    assert evidence.reasoning_mode(without_programs).to_list() == ["text", "none"]


def test_reasoning_mode_table_shares_and_accuracy() -> None:
    scores = frame({("b1", "code0", "sym_a"): [True, False, True, False]})
    scores = scores.with_columns(
        pl.Series("program_status", ["ok", "ok", None, None], dtype=pl.Utf8),
        pl.Series("response", ["```python\nprint(1)\n```", "```py\nx\n```", "a", "b"]),
    )
    table = evidence.reasoning_mode_table(scores)
    assert table.select("mode", "n", "share", "accuracy").rows() == [
        ("text", 2, 0.5, 0.5),
        ("code", 2, 0.5, 0.5),
    ]


def test_seed_spread_needs_a_seed_column() -> None:
    single = frame({("b1", "code0", "sym_a"): [True, False]})
    assert evidence.seed_spread_table(single) is None
    arms = {("b1", "code0", "sym_a"): [True, True, False, False]}
    seeded = pl.concat(
        [
            frame(arms).with_columns(pl.lit(0).alias("seed")),
            frame({("b1", "code0", "sym_a"): [True, False, False, False]}).with_columns(
                pl.lit(1).alias("seed")
            ),
        ]
    )
    table = evidence.seed_spread_table(seeded)
    assert table is not None
    row = table.filter(pl.col("task") == "sym_a").row(0, named=True)
    assert row["n_seeds"] == 2
    assert (row["mean"], row["min"], row["max"]) == pytest.approx((0.375, 0.25, 0.5))
    assert row["std"] == pytest.approx(np.std([0.5, 0.25], ddof=1))
    # paired analyses use one seed per arm: no duplicate pairs
    assert evidence.first_seed(seeded).height == 4


def test_interval_table_macro_levels() -> None:
    arms = {
        ("b1", "code0", "sym_a"): [True] * 10,
        ("b1", "code0", "sym_b"): [False] * 30,
        ("b1", "code0", "ari_a"): [True, False] * 10,
    }
    table = evidence.interval_table(frame(arms), SETTINGS)
    sym_a = table.filter(pl.col("task") == "sym_a").row(0, named=True)
    assert (sym_a["ci_low"], sym_a["ci_high"]) == (1.0, 1.0)
    symbolic = table.filter(pl.col("level") == "domain", pl.col("domain") == "symbolic")
    assert symbolic["accuracy"][0] == pytest.approx(0.5)  # macro, not 10 / 40
    overall = table.filter(pl.col("level") == "overall").row(0, named=True)
    assert overall["accuracy"] == pytest.approx(0.5)
    assert overall["ci_low"] < 0.5 < overall["ci_high"]
    again = evidence.interval_table(frame(arms), SETTINGS)
    assert again.equals(table)


def test_the_aggregate_stage_writes_exactly_the_registered_outputs(tmp_path) -> None:
    """The registry in codeift.study is what the workflow declares: the files a real run writes
    must be those, each figure with a caption file for the report."""
    arms = {
        ("b1", v, t): outcomes(i, 10, 0.5)
        for i, t in enumerate(TASKS)
        for v in ("base", "code0", "code50")
    }
    path = score_file(arms, tmp_path / "scores.parquet")
    card = {
        "proportion": 0,
        "examples": 4,
        "labels": {"general": 4},
        "tokens": {"measure": "chars", "total": 40},
        "code_token_share": 0.0,
        "content_hash": "h",
    }
    (tmp_path / "code0.card.json").write_text(json.dumps(card))
    aggregate.run_analysis(
        [path],
        tmp_path / "summary",
        tmp_path / "figures",
        card_paths=[tmp_path / "code0.card.json"],
    )
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    written -= {"scores.parquet", "code0.card.json"}
    declared = {f for o in study.OUTPUTS for f in o.files("summary", "figures")}
    assert written == declared | {f"summary/{study.SUMMARY_FILE}"}
    for output in study.OUTPUTS:
        if output.kind == "figure":
            assert (REPO / "workflow" / "report" / output.caption).is_file(), output.name


@pytest.mark.parametrize("key, bad", [("alpha", 1.5), ("bootstrap_samples", 10), ("seeds", 1)])
def test_config_analysis_section_is_checked(config: dict, key: str, bad: object) -> None:
    config["analysis"][key] = bad
    with pytest.raises(ConfigError, match="analysis"):
        validate_config(config)


def test_cli_aggregate_takes_analysis_settings(tmp_path) -> None:
    arms = {("b1", v, t): outcomes(i, 20, 0.5) for i, t in enumerate(TASKS) for v in ("code0",)}
    arms.update({("b1", "code50", t): outcomes(9 + i, 20, 0.5) for i, t in enumerate(TASKS)})
    path = score_file(arms, tmp_path / "scores.parquet")
    settings = json.dumps({"bootstrap_samples": 200, "alpha": 0.1, "seed": 3})
    argv = ["aggregate", "--scores", str(path), "--outdir", str(tmp_path / "t")]
    cli.main([*argv, "--figdir", str(tmp_path / "f"), "--analysis", settings])
    summary = (tmp_path / "t" / "summary.md").read_text()
    assert "200 resamples, seed 3" in summary and "α = 0.1" in summary
    assert (tmp_path / "f" / "reasoning_mode.png").stat().st_size > 5000


@pytest.mark.parametrize("variants", [("base", "code100"), ("base",), ("code0", "code50")])
def test_run_analysis_without_a_comparable_pair(tmp_path, variants: tuple[str, ...]) -> None:
    arms = {("b1", v, t): outcomes(i, 10, 0.5) for i, t in enumerate(TASKS) for v in variants}
    path = score_file(arms, tmp_path / "scores.parquet")
    aggregate.run_analysis([path], tmp_path / "t", tmp_path / "f")
    for name in study.FIGURES:
        assert (tmp_path / "f" / f"{name}.png").is_file()
    comparisons = pl.read_csv(tmp_path / "t" / "comparisons.csv")
    summary = (tmp_path / "t" / "summary.md").read_text()
    if "code0" in variants:
        assert comparisons.height == 3 + 2 + 1
    else:
        assert comparisons.height == 0 and "No paired comparison" in summary
