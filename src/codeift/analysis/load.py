"""Read score files into one frame, checking the columns and variants the analysis relies on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from codeift.errors import AnalysisError
from codeift.io import read_frame
from codeift.study import arm_and_seed, variant_proportion

REQUIRED_COLUMNS: dict[str, type[pl.DataType]] = {
    "id": pl.Utf8,
    "task": pl.Utf8,
    "domain": pl.Utf8,
    "missing_reason": pl.Utf8,
    "correct": pl.Boolean,
    "backbone": pl.Utf8,
    "family": pl.Utf8,
    "size_label": pl.Utf8,
    "variant": pl.Utf8,
    "proportion": pl.Int64,
    "engine": pl.Utf8,
}
# The program view (codeift.score.answers.score_frame): both present, or (a score file written
# before programs were scored apart) both absent, when the rows count as having no program.
PROGRAM_VIEW_COLUMNS: dict[str, type[pl.DataType]] = {
    "program_correct": pl.Boolean,
    "correct_any": pl.Boolean,
}
# Read where present (how the program ran); absent means no program ran.
PROGRAM_STATUS: dict[str, type[pl.DataType]] = {"program_status": pl.Utf8}
# Marker column: False on rows whose score file had no program view (said in summary.md).
PROGRAM_VIEW_MARKER = "has_program_view"
LOG = logging.getLogger("codeift.analysis.load")


def load_scores(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Concatenate score files, failing loudly so a half-written stage never reaches a table."""
    if not paths:
        raise AnalysisError("load_scores: no score files given")
    frames = [_read_score_file(Path(path)) for path in paths]
    scores = split_replicates(pl.concat(frames, how="diagonal_relaxed"))
    keys = ["backbone", "variant", "task", "id", *(["seed"] if "seed" in scores.columns else [])]
    duplicated = scores.select(keys).is_duplicated()
    if duplicated.any():
        first = scores.filter(duplicated).row(0, named=True)
        raise AnalysisError(
            "load_scores: example scored twice (same file given twice?): "
            f"{first['backbone']}/{first['variant']}/{first['task']} id={first['id']}"
        )
    return scores


def split_replicates(scores: pl.DataFrame) -> pl.DataFrame:
    """Replicate arms (code{p}r{r}) become seed r of arm code{p}; first seeds get seed 0.

    Every table then reads one outcome per example and arm (evidence.first_seed), the seeds
    table reports the spread, and the null control pairs the seeds.
    """
    if "seed" in scores.columns:
        return scores
    split = {name: arm_and_seed(name) for name in scores["variant"].unique().to_list()}
    if all(arm == name for name, (arm, _) in split.items()):
        return scores
    return scores.with_columns(
        pl.col("variant")
        .replace_strict({name: seed for name, (_, seed) in split.items()}, return_dtype=pl.Int64)
        .alias("seed"),
        pl.col("variant").replace_strict({name: arm for name, (arm, _) in split.items()}),
    )


def _read_score_file(path: Path) -> pl.DataFrame:
    """Read one file and coerce the columns the analysis relies on to their contract dtypes."""
    frame = read_frame(path, REQUIRED_COLUMNS, "score file")
    try:
        frame = frame.with_columns(
            pl.col(name).cast(dtype, strict=True) for name, dtype in REQUIRED_COLUMNS.items()
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as error:
        raise AnalysisError(f"{path}: column has the wrong type: {error}") from error
    try:
        check_variants(frame)
    except ValueError as error:
        raise AnalysisError(f"{path}: {error}") from error
    return _checked_program_view(frame, path)


def _checked_program_view(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """A file carries the whole program view (typed, `correct_any` = `correct` or
    `program_correct`) or none of it; one without it has no program answers (correct_any =
    correct), whatever its `program_status` says."""
    present = [name for name in PROGRAM_VIEW_COLUMNS if name in frame.columns]
    if not present:
        LOG.warning(
            "%s: no program view (%s): scored before programs were scored apart; read as "
            "responses without programs, so correct_any = correct",
            path,
            ", ".join(PROGRAM_VIEW_COLUMNS),
        )
        return with_program_view(_typed(frame, path, PROGRAM_STATUS))
    if len(present) < len(PROGRAM_VIEW_COLUMNS):
        absent = [name for name in PROGRAM_VIEW_COLUMNS if name not in present]
        raise AnalysisError(
            f"{path}: has {', '.join(present)} but not {', '.join(absent)}: the program view "
            "is all or none of these columns (rescore the file)"
        )
    frame = _typed(frame, path, {**PROGRAM_VIEW_COLUMNS, **PROGRAM_STATUS})
    expected = pl.col("correct").fill_null(False) | pl.col("program_correct").fill_null(False)
    wrong = frame.filter(pl.col("correct_any").fill_null(False) != expected)
    if wrong.height:
        row = wrong.row(0, named=True)
        raise AnalysisError(
            f"{path}: id={row['id']} task={row['task']}: correct_any={row['correct_any']} but "
            f"correct={row['correct']}, program_correct={row['program_correct']} (expected "
            "correct or program_correct)"
        )
    return with_program_view(frame)


def _typed(frame: pl.DataFrame, path: Path, columns: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    """Cast those of `columns` the file has to their contract dtypes, naming the file if not."""
    try:
        return frame.with_columns(
            pl.col(name).cast(dtype, strict=True)
            for name, dtype in columns.items()
            if name in frame.columns
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as error:
        raise AnalysisError(f"{path}: program column has the wrong type: {error}") from error


def with_program_view(scores: pl.DataFrame) -> pl.DataFrame:
    """The program-view columns on any score frame: where absent, no program ran (status and
    program_correct null, correct_any = correct), and the marker says the view was absent."""
    had_view = "correct_any" in scores.columns
    added = []
    if "program_status" not in scores.columns:
        added.append(pl.lit(None, dtype=pl.Utf8).alias("program_status"))
    if "program_correct" not in scores.columns:
        added.append(pl.lit(None, dtype=pl.Boolean).alias("program_correct"))
    if PROGRAM_VIEW_MARKER not in scores.columns:
        added.append(pl.lit(had_view).alias(PROGRAM_VIEW_MARKER))
    scores = scores.with_columns(added)
    if not had_view:
        scores = scores.with_columns(
            (pl.col("correct").fill_null(False) | pl.col("program_correct").fill_null(False)).alias(
                "correct_any"
            )
        )
    return scores


def check_variants(scores: pl.DataFrame) -> None:
    """Every variant must be base or code{p}, and proportion must agree with the name."""
    pairs = scores.select("variant", "proportion").unique()
    for variant, proportion in pairs.iter_rows():
        expected = variant_proportion(variant)
        if proportion != expected:
            raise AnalysisError(
                f"variant {variant!r} has proportion {proportion!r}, expected {expected!r}"
            )
