"""The pool: every source read, cleaned and counted, in one deterministic frame (rule build_pool).

The study's independent variable is the coding share of each mix, so every step is counted and
deterministic; the pool is then labelled (codeift.data.labels) and mixed (codeift.data.mix).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

from codeift.data.cleaning import Measure, clean_record, exact_key, near_key
from codeift.data.small_world import PLANTED, PLANTED_VIEWS
from codeift.data.sources import MESSAGE_DTYPE, SkipLog, iter_source, require_records
from codeift.errors import IFTError
from codeift.settings import CleaningSettings

POOL_SCHEMA = {
    "id": pl.Utf8,
    "messages": MESSAGE_DTYPE,
    "origin": pl.Utf8,
    "skill": pl.Utf8,  # what an embedded example teaches (codeift.data.small_world); null otherwise
    "source": pl.Utf8,
    "tokens": pl.Int64,
}
FRAME_ROWS = 5000


def _pool_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Kept records move into Arrow every FRAME_ROWS: Python dicts cost several times more."""
    return pl.DataFrame(rows, schema=POOL_SCHEMA)


def build_pool(
    sources: list[dict[str, Any]], seed: int, cleaning: CleaningSettings | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """All sources, streamed, normalised to chat messages, cleaned and deduplicated (`cleaning`:
    config `ift.cleaning`, its defaults when None)."""
    cleaning = cleaning or CleaningSettings()
    near = cleaning.near_duplicates
    measure = Measure(cleaning.tokenizer, cleaning.tokenizer_revision)
    rows: list[dict[str, Any]] = []
    frames: list[pl.DataFrame] = []
    report: dict[str, Any] = {"sources": {}, "skipped_sample": []}
    # The embedded generator knows what its data plants; the mix cards carry it to the analysis.
    if any(source["kind"] == "generator" for source in sources):
        report["planted"] = dict(PLANTED)
        report["planted_views"] = dict(PLANTED_VIEWS)
    exact_seen: set[bytes] = set()
    near_seen: set[bytes] = set()
    totals: Counter = Counter()
    for source in sources:
        skips = SkipLog(source.get("name", source["kind"]))
        read = kept = 0
        for record in iter_source(source, seed, skips):
            read += 1
            cleaned, reason, stripped = clean_record(record, cleaning, measure)
            totals["html_stripped"] += stripped
            if cleaned is None:
                skips.add(reason, record["id"])
                continue
            key = exact_key(cleaned["messages"])
            if key in exact_seen:
                skips.add("exact_duplicate", record["id"])
                continue
            exact_seen.add(key)
            if near["enabled"]:
                key = near_key(cleaned["messages"], near["method"])
                if key in near_seen:
                    skips.add("near_duplicate", record["id"])
                    continue
                near_seen.add(key)
            rows.append(cleaned)
            kept += 1
            if len(rows) == FRAME_ROWS:
                frames.append(_pool_frame(rows))
                rows = []
        if read == 0:
            require_records(source, 0, skips)
        totals.update(skips.counts)
        report["sources"][skips.name] = {
            "read": read,
            "kept": kept,
            "skipped": dict(sorted(skips.counts.items())),
        }
        report["skipped_sample"].extend(skips.sample)
    if not rows and not frames:
        raise IFTError("IFT pool is empty: every record was cleaned away (see the report counts)")
    report["cleaning"] = {
        "settings": cleaning.recorded(),
        "length_measure": measure.method
        + ("" if cleaning.tokenizer else " (no tokenizer configured: max_chars applies)"),
        "counts": dict(sorted(totals.items())),
    }
    report["duplicates_removed"] = totals["exact_duplicate"] + totals["near_duplicate"]
    frame = pl.concat([*frames, _pool_frame(rows)])
    report["size"] = frame.height
    return frame, report
