"""The aggregate stage: every score file -> all tables, the summary and the figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from codeift.analysis import evidence
from codeift.analysis.figures import (
    plot_controls,
    plot_domain,
    plot_overall,
    plot_reasoning_mode,
    plot_task,
    plot_views,
)
from codeift.analysis.load import load_scores
from codeift.analysis.markdown import (
    EVIDENCE_NOTES,
    evidence_markdown,
    markdown_table,
    mix_markdown,
    summary_report,
)
from codeift.analysis.tables import LEVEL_TABLES, evidence_tables, mix_table
from codeift.io import write_text
from codeift.settings import AnalysisSettings
from codeift.study import LEVELS, MIX_TABLE, OUTPUTS, RESULT_TABLES, SUMMARY_FILE, Output


def write_tables(
    scores: pl.DataFrame,
    outdir: Path,
    settings: AnalysisSettings | None = None,
    found: dict[str, pl.DataFrame] | None = None,
    mixes: pl.DataFrame | None = None,
) -> dict[str, Path]:
    """Write CSV (machine use), Markdown (reading) and the summary report; returns name -> path.

    `found` passes evidence tables already computed (by run_analysis, which also plots them);
    `mixes` the mix table (from the mix data cards), written beside them and summarised.
    """
    settings = settings or AnalysisSettings()
    found = found if found is not None else evidence_tables(scores, settings)
    first = evidence.first_seed(scores)
    tables = {name: LEVEL_TABLES[name](first) for name in RESULT_TABLES}
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    for name in RESULT_TABLES:
        written.update(_write_pair(tables[name], markdown_table(tables[name]), outdir, name))
    for name, table in found.items():
        text = EVIDENCE_NOTES[name] + "\n\n" + evidence_markdown(name, table)
        written.update(_write_pair(table, text, outdir, name))
    if mixes is not None:
        written.update(_write_pair(mixes, mix_markdown(mixes), outdir, MIX_TABLE))
    summary_path = outdir / SUMMARY_FILE
    report = summary_report(scores, tables["overall"], tables["domain"], found, settings, mixes)
    write_text(report, summary_path)
    written[SUMMARY_FILE] = summary_path
    return written


def _write_pair(table: pl.DataFrame, markdown: str, outdir: Path, name: str) -> dict[str, Path]:
    """One table as CSV and as Markdown; returns their names and paths."""
    csv_path, md_path = (Path(path) for path in Output(name, "table").files(str(outdir), ""))
    write_text(table.write_csv(float_precision=6, null_value=""), csv_path)
    write_text(markdown + "\n", md_path)
    return {f"{name}.csv": csv_path, f"{name}.md": md_path}


def run_analysis(
    score_paths: Sequence[str | Path],
    outdir: Path,
    figdir: Path,
    settings: AnalysisSettings | None = None,
    card_paths: Sequence[str | Path] = (),
    planted: dict[str, str] | None = None,
    views: dict[str, str] | None = None,
) -> None:
    """Load every score file, write all tables, the summary and the figures. `planted`: task ->
    gain|lose|none; `views`: task -> the view its planted effect is judged in."""
    settings = settings or AnalysisSettings()
    scores = load_scores(score_paths)
    found = evidence_tables(scores, settings, planted, views)
    mixes = mix_table(card_paths) if card_paths else None
    write_tables(scores, Path(outdir), settings, found, mixes)
    scores = evidence.first_seed(scores)
    intervals = found["intervals"].select(
        "level", "backbone", "variant", "domain", "task", "ci_low", "ci_high"
    )
    plots = _figure_plots(scores, found, intervals, settings)
    for output in OUTPUTS:
        if output.kind == "figure":
            [path] = output.files(str(outdir), str(figdir))
            plots[output.name](Path(path))


def _figure_plots(
    scores: pl.DataFrame,
    found: dict[str, pl.DataFrame],
    intervals: pl.DataFrame,
    settings: AnalysisSettings,
) -> dict[str, Callable[[Path], None]]:
    """How each figure of codeift.study.FIGURES is drawn, from the first-seed scores and the
    evidence tables; the registry names the figures and their files."""
    return {
        "overall": lambda path: plot_overall(
            _with_intervals(LEVEL_TABLES["overall"](scores), intervals, "overall"), path
        ),
        "domain": lambda path: plot_domain(
            LEVEL_TABLES["domain"](scores), path, found["comparisons"]
        ),
        "task": lambda path: plot_task(
            _with_intervals(LEVEL_TABLES["task"](scores), intervals, "task"), path
        ),
        "reasoning_mode": lambda path: plot_reasoning_mode(found["reasoning_mode"], path),
        "controls": lambda path: plot_controls(found["controls"], settings.alpha, path),
        "views": lambda path: plot_views(found["views"], path),
    }


def _with_intervals(table: pl.DataFrame, intervals: pl.DataFrame, level: str) -> pl.DataFrame:
    """Attach the bootstrap interval of each row (joined on the keys of that level)."""
    keys = ["backbone", "variant", *LEVELS[level]]
    rows = intervals.filter(pl.col("level") == level).select(*keys, "ci_low", "ci_high")
    return table.join(rows, on=keys, how="left", nulls_equal=True)
