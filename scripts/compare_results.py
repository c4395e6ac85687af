"""Compare two codeift results folders file by file (issue 27: "the embedded default's outputs
stay byte for byte what they were; show it with cmp or diff -r").

`diff -r` on two runs of the same study reports every parquet, run record and TrainingArguments
pickle as different, because the run writes its own results folder's name into its outputs
(`model_path`, `base_model`, `output_dir`) and the seconds its jobs took. This tool says which
files are byte-identical, which are equal once those (and only those) are masked, and which
differ in substance, so a refactor can be shown to leave the outputs unchanged.

Every mask is a named rule in MASKS with its reason, applied to a value only where the two
runs' values differ, and counted and listed per file and per key in the output: nothing is
ignored silently. A difference no mask explains is reported with its file, column or key and
both values. Exit status 0 when nothing differs beyond the masks, 1 otherwise.

  python scripts/compare_results.py /work/main/results-size-b /tmp/fresh-run/results \
      --expected-only curve --expected-only checkpoints

`training_args.bin` is unpickled (torch.load(weights_only=False)): compare only folders you
trust, such as your own runs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

# ------------------------------------------------------------------------------ the masks


@dataclass(frozen=True)
class Mask:
    """A rule under which two differing values count as the same output, and why."""

    name: str
    reason: str


FOLDER_PREFIX = Mask(
    "folder prefix",
    "a path the run wrote names its own results folder (`results-size-b/models/...` against "
    "`results/models/...`); the values are equal once each side's folder name is replaced",
)
WALL_CLOCK = Mask(
    "wall clock",
    "seconds a job took on the machine (JSON keys in WALL_CLOCK_KEYS): they vary with the "
    "machine's load from run to run, not with the code",
)
DECODED_EQUAL = Mask(
    "decoded equal",
    "the decoded contents (parquet frame, JSON value, TrainingArguments.to_dict(), text) are "
    "equal with no value masked; only the encoding differs (writer metadata, key order)",
)
MASKS = (FOLDER_PREFIX, WALL_CLOCK, DECODED_EQUAL)

# Keys found to differ between two runs of the default study (2026-12-05): `seconds` in
# codeift_training.json and in codeift_backbone.json's `conversion`. Nothing else is timed.
WALL_CLOCK_KEYS = frozenset({"seconds"})

# Compared as decoded values; which masks each kind may use.
KIND_MASKS: dict[str, tuple[Mask, ...]] = {
    "parquet": (FOLDER_PREFIX,),
    "json": (FOLDER_PREFIX, WALL_CLOCK),
    # output_dir differs by the folder prefix alone; no key of its own is masked, so a changed
    # checkpoint layout would show (logging_dir is not in transformers 5's to_dict()).
    "training_args": (FOLDER_PREFIX,),
    "text": (FOLDER_PREFIX,),
}

# Not compared, and why; listed with their file counts on each side.
SKIPPED = {
    "logs": "job logs: timestamps, PIDs, durations and TensorBoard event files named by the "
    "run's start time and process id; no study result is read from them",
    "report.html": "Snakemake's --report output, written only when a run asks for it; it "
    "embeds the run's dates and runtimes",
}

# ------------------------------------------------------------------------------ comparison

MISSING = object()


@dataclass
class FileResult:
    """One file's class and why: the masks it needed (mask, key, values) or its differences."""

    path: str
    status: str  # identical | masked | different
    masked: Counter[tuple[str, str]] = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prefixes:
    """Each side's results folder name, as the run wrote it at the start of its paths."""

    a: str
    b: str

    @staticmethod
    def _replace(text: str, prefix: str) -> str:
        return re.sub(rf"(?<![\w.-]){re.escape(prefix)}(?=/|$)", "<results>", text)

    def same(self, value_a: Any, value_b: Any) -> bool:
        """Two strings equal once each side's folder name reads `<results>`."""
        return (
            isinstance(value_a, str)
            and isinstance(value_b, str)
            and self._replace(value_a, self.a) == self._replace(value_b, self.b)
        )


def equal(a: Any, b: Any) -> bool:
    """Equal values of the same type (1 and 1.0 and True differ); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(a: Any, b: Any, where: tuple = ()) -> Iterator[tuple[tuple, Any, Any]]:
    """Every leaf where two decoded values differ, by its key path (dict keys, list indices)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                yield (*where, key), a.get(key, MISSING), b.get(key, MISSING)
            else:
                yield from differences(a[key], b[key], (*where, key))
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        for index, (item_a, item_b) in enumerate(zip(a, b, strict=True)):
            yield from differences(item_a, item_b, (*where, index))
    elif not equal(a, b):
        yield where, a, b


def key_of(where: tuple) -> str:
    """A key path without its list indices: `model_path`, `conversion.seconds`, `[line]`."""
    return ".".join(str(part) for part in where if not isinstance(part, int)) or "[line]"


def explained(where: tuple, a: Any, b: Any, kind: str, prefixes: Prefixes) -> Mask | None:
    """The first mask of this kind of file that explains one difference, or None."""
    key = key_of(where).rsplit(".", 1)[-1]
    for mask in KIND_MASKS[kind]:
        if mask is FOLDER_PREFIX and prefixes.same(a, b):
            return mask
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if mask is WALL_CLOCK and key in WALL_CLOCK_KEYS and numbers:
            return mask
    return None


def shown(value: Any) -> str:
    text = "(absent)" if value is MISSING else repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def judged(
    path: str, pairs: Iterator[tuple[tuple, Any, Any]], kind: str, prefixes: Prefixes
) -> FileResult:
    """A file whose bytes differ: masked if every difference has a mask, else different."""
    result = FileResult(path, "masked")
    unexplained: dict[str, list[tuple[tuple, Any, Any]]] = defaultdict(list)
    for where, a, b in pairs:
        mask = explained(where, a, b, kind, prefixes)
        if mask is None:
            unexplained[key_of(where)].append((where, a, b))
        else:
            result.masked[(mask.name, key_of(where))] += 1
    for key, items in unexplained.items():
        where, a, b = items[0]
        result.differences.append(
            f"{key}: {len(items)} value(s) differ, first at {list(where)}: "
            f"A={shown(a)} B={shown(b)}"
        )
    if result.differences:
        result.status = "different"
    elif not result.masked:
        result.masked[(DECODED_EQUAL.name, "(whole file)")] += 1
    return result


def frame_pairs(a: Path, b: Path) -> Iterator[tuple[tuple, Any, Any]]:
    """Parquet files as frames, column by column; schema or row count differences first."""
    frame_a, frame_b = pl.read_parquet(a), pl.read_parquet(b)
    if frame_a.schema != frame_b.schema:
        yield ("(schema)",), str(frame_a.schema), str(frame_b.schema)
        return
    if frame_a.height != frame_b.height:
        yield ("(rows)",), frame_a.height, frame_b.height
        return
    for column in frame_a.columns:
        if not frame_a[column].equals(frame_b[column]):
            yield from differences(frame_a[column].to_list(), frame_b[column].to_list(), (column,))


def json_pairs(a: Path, b: Path) -> Iterator[tuple[tuple, Any, Any]]:
    yield from differences(json.loads(a.read_text()), json.loads(b.read_text()))


def training_args_pairs(a: Path, b: Path) -> Iterator[tuple[tuple, Any, Any]]:
    """A pickled TrainingArguments (torch.save) by its to_dict(): the settings the run used."""
    import torch  # only when a training_args.bin is met: it takes seconds to import

    loaded = [torch.load(p, weights_only=False).to_dict() for p in (a, b)]
    yield from differences(*loaded)


def text_pairs(a: Path, b: Path) -> Iterator[tuple[tuple, Any, Any]]:
    """Text files line by line; a file that is not UTF-8 is compared by its bytes alone."""
    try:
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
    except UnicodeDecodeError:
        yield ("(bytes)",), f"{a.stat().st_size} bytes", f"{b.stat().st_size} bytes"
        return
    if len(lines_a) != len(lines_b):
        yield ("(lines)",), len(lines_a), len(lines_b)
        return
    yield from differences(lines_a, lines_b)


def kind_of(path: str) -> tuple[str, Callable[[Path, Path], Iterator[tuple[tuple, Any, Any]]]]:
    if path.endswith(".parquet"):
        return "parquet", frame_pairs
    if path.endswith(".json"):
        return "json", json_pairs
    if Path(path).name == "training_args.bin":
        return "training_args", training_args_pairs
    return "text", text_pairs


def compare_file(path: str, a: Path, b: Path, prefixes: Prefixes) -> FileResult:
    """Byte-identical, equal after masks, or different (a file that fails to decode included)."""
    if filecmp.cmp(a / path, b / path, shallow=False):
        return FileResult(path, "identical")
    kind, pairs = kind_of(path)
    try:
        return judged(path, pairs(a / path, b / path), kind, prefixes)
    except Exception as error:  # a file that does not decode is a difference, named
        return FileResult(path, "different", differences=[f"not decoded as {kind}: {error!r}"])


# ------------------------------------------------------------------------------ the folders


def skipped_by(path: str) -> str | None:
    """The SKIPPED entry (a top folder or a file) that covers a relative path, if any."""
    for skipped in SKIPPED:
        if path == skipped or path.startswith(skipped + "/"):
            return skipped
    return None


def files(folder: Path) -> set[str]:
    if not folder.is_dir():
        sys.exit(f"not a folder: {folder}")
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@dataclass
class Comparison:
    """Two folders compared: every file of either side in exactly one class."""

    only_a: list[str]
    only_b: list[str]
    skipped: dict[str, Counter[str]]  # SKIPPED entry -> files on side A / B
    results: list[FileResult]
    expected_only: tuple[str, ...]

    def unexpected_only(self) -> list[str]:
        return [
            p
            for p in self.only_a + self.only_b
            if not any(p == e or p.startswith(e + "/") for e in self.expected_only)
        ]

    def by_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def clean(self) -> bool:
        return not self.by_status("different") and not self.unexpected_only()


def compare(
    a: Path, b: Path, prefixes: Prefixes, expected_only: tuple[str, ...] = ()
) -> Comparison:
    files_a, files_b = files(a), files(b)
    skipped: dict[str, Counter[str]] = defaultdict(Counter)
    for side, names in (("A", files_a), ("B", files_b)):
        for name in names:
            if entry := skipped_by(name):
                skipped[entry][side] += 1
    kept_a = {p for p in files_a if not skipped_by(p)}
    kept_b = {p for p in files_b if not skipped_by(p)}
    return Comparison(
        only_a=sorted(kept_a - kept_b),
        only_b=sorted(kept_b - kept_a),
        skipped=dict(skipped),
        results=[compare_file(p, a, b, prefixes) for p in sorted(kept_a & kept_b)],
        expected_only=expected_only,
    )


# ------------------------------------------------------------------------------ the report


def by_folder(paths: list[str]) -> list[str]:
    """Paths counted by their parent folder: 119 files under curve/ read as a few lines."""
    counts = Counter(str(Path(p).parent) + "/" if "/" in p else p for p in paths)
    return [f"| `{folder}` | {count} |" for folder, count in sorted(counts.items())]


def by_type(results: list[FileResult]) -> dict[str, Counter[str]]:
    """Compared files counted by top folder and suffix (`models/*.safetensors`): where the
    identical and the masked files are, at a glance."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        top = result.path.split("/", 1)[0] + "/" if "/" in result.path else ""
        groups[f"{top}*{Path(result.path).suffix or Path(result.path).name}"][result.status] += 1
    return groups


def report(c: Comparison, a: Path, b: Path, prefixes: Prefixes) -> str:
    expected = len(c.only_a) + len(c.only_b) - len(c.unexpected_only())
    lines = [
        f"- A: `{a}` (folder prefix `{prefixes.a}`)",
        f"- B: `{b}` (folder prefix `{prefixes.b}`)",
        "",
        "| class | files |",
        "| --- | ---: |",
        f"| only in A | {len(c.only_a)} |",
        f"| only in B | {len(c.only_b)} |",
        f"| byte-identical | {len(c.by_status('identical'))} |",
        f"| equal after masking | {len(c.by_status('masked'))} |",
        f"| different | {len(c.by_status('different'))} |",
        f"| skipped (A / B) | {sum(n['A'] for n in c.skipped.values())} / "
        f"{sum(n['B'] for n in c.skipped.values())} |",
        "",
    ]
    lines += [
        "### By folder and file type",
        "",
        "| files | byte-identical | equal after masking | different |",
    ]
    lines += ["| --- | ---: | ---: | ---: |"]
    for group, counts in sorted(by_type(c.results).items()):
        lines += [
            f"| `{group}` | {counts['identical']} | {counts['masked']} | {counts['different']} |"
        ]
    lines += [""]
    if expected:
        lines += [f"Only-in files under {', '.join(c.expected_only)} are expected: {expected}.", ""]
    masked: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for result in c.by_status("masked") + c.by_status("different"):
        for (mask, key), count in result.masked.items():
            masked[(mask, key)][0] += 1
            masked[(mask, key)][1] += count
    if masked:
        lines += ["### Masked values", "", "| mask | key or column | files | values |"]
        lines += ["| --- | --- | ---: | ---: |"]
        lines += [f"| {m} | `{k}` | {f} | {v} |" for (m, k), (f, v) in sorted(masked.items())]
        lines += ["", "| mask | why |", "| --- | --- |"]
        used = {m for m, _ in masked}
        lines += [f"| {m.name} | {m.reason} |" for m in MASKS if m.name in used]
        lines += [""]
    if c.skipped:
        lines += ["### Skipped", "", "| path | files in A | files in B | why |"]
        lines += ["| --- | ---: | ---: | --- |"]
        for entry, counts in sorted(c.skipped.items()):
            lines += [f"| `{entry}` | {counts['A']} | {counts['B']} | {SKIPPED[entry]} |"]
        lines += [""]
    for title, paths in (("Only in A", c.only_a), ("Only in B", c.only_b)):
        if paths:
            lines += [
                f"### {title}",
                "",
                "| folder | files |",
                "| --- | ---: |",
                *by_folder(paths),
                "",
            ]
    if c.by_status("different"):
        lines += ["### Different", ""]
        for result in c.by_status("different"):
            lines += [f"- `{result.path}`"] + [f"  - {d}" for d in result.differences]
        lines += [""]
    if c.by_status("masked"):
        lines += ["### Equal after masking", ""]
        for result in c.by_status("masked"):
            masks = ", ".join(f"{k} ({m}, {n})" for (m, k), n in sorted(result.masked.items()))
            lines += [f"- `{result.path}`: {masks}"]
        lines += [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="the first results folder (read only)")
    parser.add_argument("b", type=Path, help="the second results folder (read only)")
    parser.add_argument("--prefix-a", help="A's folder name as its paths start (default: A's name)")
    parser.add_argument("--prefix-b", help="B's folder name as its paths start (default: B's name)")
    parser.add_argument(
        "--expected-only",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a top folder whose files may be on one side only (still listed); repeatable",
    )
    args = parser.parse_args(argv)
    prefixes = Prefixes(args.prefix_a or args.a.name, args.prefix_b or args.b.name)
    result = compare(args.a, args.b, prefixes, tuple(args.expected_only))
    print(report(result, args.a, args.b, prefixes))
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
