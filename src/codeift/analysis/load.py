"""Read score files into one frame, checking the columns and variants the analysis relies on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from codeift.study import variant_proportion

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


def load_scores(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Concatenate score files, failing loudly so a half-written stage never reaches a table."""
    if not paths:
        raise ValueError("load_scores: no score files given")
    frames = [_read_score_file(Path(path)) for path in paths]
    scores = split_replicates(pl.concat(frames, how="diagonal_relaxed"))
    keys = ["backbone", "variant", "task", "id", *(["seed"] if "seed" in scores.columns else [])]
    duplicated = scores.select(keys).is_duplicated()
    if duplicated.any():
        first = scores.filter(duplicated).row(0, named=True)
        raise ValueError(
            "load_scores: example scored twice (same file given twice?): "
            f"{first['backbone']}/{first['variant']}/{first['task']} id={first['id']}"
        )
    return scores


def split_replicates(scores: pl.DataFrame) -> pl.DataFrame:
    """Replicate arms (code{p}r{r}) become seed r of arm code{p}; first seeds get seed 0.

    Every table then reads one outcome per example and arm (evidence.first_seed), the seeds
    table reports the spread, and the null control pairs the seeds.
    """
    replicate = pl.col("variant").str.extract(r"^code\d+r(\d+)$", 1)
    if "seed" in scores.columns or scores.select(replicate.is_not_null().any()).item() is False:
        return scores
    return scores.with_columns(
        replicate.cast(pl.Int64).fill_null(0).alias("seed"),
        pl.col("variant").str.replace(r"^(code\d+)r\d+$", "${1}"),
    )


def _read_score_file(path: Path) -> pl.DataFrame:
    """Read one file and coerce the columns the analysis relies on to their contract dtypes."""
    frame = pl.read_parquet(path)
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing required column(s): {', '.join(missing)}")
    if frame.height == 0:
        raise ValueError(f"{path}: score file is empty")
    try:
        frame = frame.with_columns(
            pl.col(name).cast(dtype, strict=True) for name, dtype in REQUIRED_COLUMNS.items()
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as error:
        raise ValueError(f"{path}: column has the wrong type: {error}") from error
    try:
        check_variants(frame)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return frame


def check_variants(scores: pl.DataFrame) -> None:
    """Every variant must be base or code{p}, and proportion must agree with the name."""
    pairs = scores.select("variant", "proportion").unique()
    for variant, proportion in pairs.iter_rows():
        expected = variant_proportion(variant)
        if proportion != expected:
            raise ValueError(
                f"variant {variant!r} has proportion {proportion!r}, expected {expected!r}"
            )
