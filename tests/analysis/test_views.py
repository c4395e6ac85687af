"""The two views of an answer in the analysis: text (`correct`) and text or program
(`correct_any`), on hand-built scores whose accuracies can be read off by eye."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from codeift import study
from codeift.analysis import aggregate, evidence, figures, load, markdown, tables
from codeift.io import write_parquet
from codeift.settings import AnalysisSettings

SETTINGS = AnalysisSettings(bootstrap_samples=200, alpha=0.05, seed=0)
DOMAINS = {"sym_task": "symbolic", "ari_task": "arithmetic"}
N = 10
NO_BWRAP = "jail unavailable: bwrap (Debian package bubblewrap) is not installed"


def item(text_ok: bool, program: str | None = None, program_ok: bool | None = None) -> dict:
    """One response: its text verdict, and the program's status and verdict (None: no program)."""
    return {"correct": text_ok, "program_status": program, "program_correct": program_ok}


def arm(text: int, programs: int = 0, failed: int = 0, status: str = "ok") -> list[dict]:
    """N items: the first `text` correct in text, the next `programs` wrong in text but with a
    program that ran (`status`) and printed the right answer, then `failed` whose program ran
    and ended with an error, the rest neither."""
    ran_ok = status == "ok"
    return (
        [item(True) for _ in range(text)]
        + [item(False, status, ran_ok) for _ in range(programs)]
        + [item(False, "error", False) for _ in range(failed)]
        + [item(False) for _ in range(N - text - programs - failed)]
    )


# code50 on sym_task: text right on 3, programs right on 4 others, 3 programs fail:
# text 30%, text or program 70%. Everything else has no program.
ARMS = {
    ("b1", "code0", "sym_task"): arm(5),
    ("b1", "code50", "sym_task"): arm(3, programs=4, failed=3),
    ("b1", "code0", "ari_task"): arm(4),
    ("b1", "code50", "ari_task"): arm(6),
}


def make_scores(
    arms: dict = ARMS, sandbox: str = "jail", detail: str | None = None
) -> pl.DataFrame:
    """Score rows in the score files' schema, program columns as score_frame writes them."""
    rows = []
    for (backbone, variant, task), items in arms.items():
        for index, outcome in enumerate(items):
            ran = outcome["program_status"] is not None
            rows.append(
                {
                    "id": f"{task}-{index}",
                    "task": task,
                    "domain": DOMAINS[task],
                    "response": "```python\nprint(1)\n```" if ran else "The answer is 1.",
                    "missing_reason": None,
                    "backbone": backbone,
                    "family": "fam",
                    "size_label": "1B",
                    "variant": variant,
                    "proportion": study.variant_proportion(variant),
                    "engine": "hf",
                    **outcome,
                    "correct_any": outcome["correct"] or bool(outcome["program_correct"]),
                    "program_detail": detail if outcome["program_status"] == "not_run" else None,
                    "program_sandbox": sandbox if ran else None,
                }
            )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "proportion": pl.Int64,
            "missing_reason": pl.Utf8,
            "program_status": pl.Utf8,
            "program_correct": pl.Boolean,
            "program_detail": pl.Utf8,
            "program_sandbox": pl.Utf8,
        },
    )


def views(scores: pl.DataFrame) -> pl.DataFrame:
    return tables.evidence_tables(scores, SETTINGS)["views"]


def row(table: pl.DataFrame, level: str, variant: str, task: str | None = None) -> dict:
    keep = (pl.col("level") == level) & (pl.col("variant") == variant)
    if task is not None:
        keep &= pl.col("task") == task
    (found,) = table.filter(keep).iter_rows(named=True)
    return found


def test_views_table_separates_text_from_programs() -> None:
    table = views(make_scores())
    # 2 variants x (2 tasks + 2 domains + overall)
    assert table.height == 10
    task = row(table, "task", "code50", "sym_task")
    assert (task["n"], task["n_programs"], task["n_program_ok"]) == (10, 7, 4)
    assert task["accuracy"] == pytest.approx(0.3)
    assert task["accuracy_any"] == pytest.approx(0.7)
    assert task["program_gain"] == pytest.approx(0.4)
    assert task["program_ok_share"] == pytest.approx(0.4)
    assert task["delta_vs_code0"] == pytest.approx(-0.2)  # code0 text 50%
    assert task["delta_any_vs_code0"] == pytest.approx(0.2)  # code0 has no programs
    assert task["delta_from_programs"] == pytest.approx(0.4)
    # macro over the two tasks: text (30 + 60) / 2, any (70 + 60) / 2; code0 (50 + 40) / 2
    overall = row(table, "overall", "code50")
    assert (overall["domain"], overall["task"], overall["n_tasks"]) == (None, None, 2)
    assert overall["accuracy"] == pytest.approx(0.45)
    assert overall["accuracy_any"] == pytest.approx(0.65)
    assert overall["program_ok_share"] == pytest.approx(0.2)
    assert overall["delta_vs_code0"] == pytest.approx(0.0)
    assert overall["delta_any_vs_code0"] == pytest.approx(0.2)
    assert overall["delta_from_programs"] == pytest.approx(0.2)
    reference = row(table, "overall", "code0")
    assert reference["program_gain"] == 0.0 and reference["n_programs"] == 0
    assert reference["p_holm"] is None  # code0 is the reference, not tested
    # the domain without programs: both views agree
    ari = table.filter((pl.col("level") == "domain") & (pl.col("domain") == "arithmetic"))
    assert ari["program_gain"].to_list() == [0.0, 0.0]
    assert ari["accuracy_any"].to_list() == [pytest.approx(0.4), pytest.approx(0.6)]


def test_views_take_p_values_from_each_views_comparisons() -> None:
    scores = make_scores()
    text = evidence.comparison_table(scores, SETTINGS)
    any_view = evidence.comparison_table(scores, SETTINGS, metric="correct_any")
    sym = (pl.col("level") == "task") & (pl.col("task") == "sym_task")
    assert text.filter(sym)["difference"].to_list() == [pytest.approx(-0.2)]
    assert any_view.filter(sym)["difference"].to_list() == [pytest.approx(0.2)]
    table = tables.views_table(scores, text, any_view)
    task = row(table, "task", "code50", "sym_task")
    assert task["p_holm"] == text.filter(sym)["p_holm"].item()
    assert task["p_holm_any"] == any_view.filter(sym)["p_holm"].item()
    with pytest.raises(ValueError, match="metric 'program_correct'"):
        evidence.comparison_table(scores, SETTINGS, metric="program_correct")


def test_views_markdown_rows_and_summary_section(tmp_path: Path) -> None:
    written = aggregate.write_tables(make_scores(), tmp_path, SETTINGS)
    assert {"views.csv", "views.md"} <= set(written)
    md = (tmp_path / "views.md").read_text()
    expected = "| task | b1 | code50 | symbolic | sym_task | 10 | 7 | 40.0 | 30.0 | 70.0 | +40.0 |"
    expected += " -20.0 | +20.0 | +40.0 |"
    assert expected in md
    csv = pl.read_csv(tmp_path / "views.csv")
    assert csv.height == 10 and "accuracy_any" in csv.columns
    summary = (tmp_path / study.SUMMARY_FILE).read_text()
    section = summary.split("## Text answers and program-aided answers\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| b1 |")]
    assert len(rows) == 2  # overall rows only: code0, code50
    assert rows[0].startswith("| b1 | code0 | 20 | 0 | 0.0 | 45.0 | 45.0 | +0.0 |")
    assert rows[1].startswith(
        "| b1 | code50 | 20 | 7 | 20.0 | 45.0 | 65.0 | +20.0 | +0.0 | +20.0 |"
    )
    assert "Programs not run" not in summary and "Warning" not in summary


def _evaluated(summary: str) -> str:
    return summary.split("## What was evaluated\n")[1].split("\n## ")[0]


def test_summary_counts_programs_not_run_and_their_reasons() -> None:
    arms = dict(ARMS)
    arms[("b1", "code50", "ari_task")] = arm(6, programs=3, status="not_run")
    scores = pl.concat(
        [
            make_scores(arms, detail=NO_BWRAP),
            make_scores(
                {("b1", "code100", "sym_task"): arm(0, programs=1, status="not_run")},
                detail="jail unavailable: a trivial program did not run in it",
            ),
        ]
    )
    summary = markdown.summary_report(
        scores, tables.overall_table(scores), tables.domain_table(scores)
    )
    line = (
        f"- Programs not run: 4 of 11 programs in the responses were not run ({NO_BWRAP} (3); "
        "jail unavailable: a trivial program did not run in it (1)); they count as wrong in "
        "the program view, so those rows' text-or-program answer is their text answer."
    )
    assert line in _evaluated(summary).splitlines()
    assert "Warning" not in summary
    table = views(scores)
    assert row(table, "task", "code50", "ari_task")["n_not_run"] == 3
    assert row(table, "task", "code50", "ari_task")["program_gain"] == 0.0
    found = tables.evidence_tables(scores, SETTINGS)
    full = markdown.summary_report(
        scores, tables.overall_table(scores), tables.domain_table(scores), found, SETTINGS
    )
    section = full.split("## Text answers and program-aided answers\n")[1].split("\n## ")[0]
    assert '4 programs were not run (see "What was evaluated")' in section


def test_summary_warns_when_programs_ran_under_the_python_guard() -> None:
    scores = make_scores(sandbox="python_guard")
    summary = markdown.summary_report(
        scores, tables.overall_table(scores), tables.domain_table(scores)
    )
    (line,) = [text for text in _evaluated(summary).splitlines() if "Warning" in text]
    assert line.startswith("- **Warning:** 7 programs ran under the weaker Python-only guard")
    assert "`scoring.sandbox: python_guard`" in line


def test_old_score_file_without_program_columns_loads_as_text_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = make_scores()
    old = make_scores({("b1", "code100", "sym_task"): arm(2)}).drop(
        "program_status", "program_correct", "correct_any", "program_detail", "program_sandbox"
    )
    write_parquet(new, tmp_path / "new.parquet")
    write_parquet(old, tmp_path / "old.parquet")
    with caplog.at_level(logging.WARNING, logger="codeift.analysis.load"):
        scores = load.load_scores([tmp_path / "new.parquet", tmp_path / "old.parquet"])
    assert "old.parquet: no program view" in caplog.text and "new.parquet" not in caplog.text
    code100 = scores.filter(pl.col("variant") == "code100")
    assert code100["correct_any"].to_list() == code100["correct"].to_list()
    assert code100["program_status"].null_count() == N
    assert not code100[load.PROGRAM_VIEW_MARKER].any()
    summary_dir = tmp_path / "summary"
    aggregate.write_tables(scores, summary_dir, SETTINGS)
    summary = (summary_dir / study.SUMMARY_FILE).read_text()
    assert (
        "- Program view absent: 10 of 50 responses come from score files without program "
        "columns" in _evaluated(summary)
    )
    overall = row(views(scores), "task", "code100", "sym_task")
    assert (overall["accuracy"], overall["accuracy_any"]) == (0.2, 0.2)


def test_load_stays_strict_on_the_views(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    write_parquet(make_scores().drop("correct"), path)
    with pytest.raises(ValueError, match="missing required column.*correct"):
        load.load_scores([path])
    write_parquet(make_scores().drop("program_correct"), path)
    with pytest.raises(ValueError, match="has correct_any but not program_correct"):
        load.load_scores([path])
    wrong = make_scores().with_columns(pl.lit(False).alias("correct_any"))
    write_parquet(wrong, path)
    with pytest.raises(ValueError, match=r"id=sym_task-0 task=sym_task: correct_any=False"):
        load.load_scores([path])
    typed = make_scores().with_columns(pl.col("program_correct").cast(pl.Utf8).fill_null("x"))
    write_parquet(typed, path)
    with pytest.raises(ValueError, match="program column has the wrong type"):
        load.load_scores([path])


def test_views_figure_is_written_and_deterministic(tmp_path: Path) -> None:
    table = views(make_scores())
    figures.plot_views(table, tmp_path / "a.png")
    figures.plot_views(table, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").stat().st_size > 1000
