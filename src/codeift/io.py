"""Atomic, deterministic file writing shared by every stage.

A crashed job must never leave a file that looks finished, and the same inputs must give the
same bytes, so every stage writes through these helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        tmp.chmod(0o755)
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o644)
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def publish(staged: Path, target: Path) -> None:
    """Move a finished file or folder into place, replacing an older one."""
    if staged.is_dir() and target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)


def write_parquet(frame: pl.DataFrame, path: str | Path) -> None:
    """Write a parquet file atomically (no statistics, so bytes depend only on the data)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=False)


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: Any, path: str | Path) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", path)


def write_report(obj: Any, markdown: str, stem: str | Path) -> None:
    """A measurement script's figures: `<stem>.json` for machines, `<stem>.md` for docs/bench/."""
    stem = Path(stem)
    write_json(obj, stem.with_name(f"{stem.name}.json"))
    write_text(markdown, stem.with_name(f"{stem.name}.md"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object that does not depend on key order."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def file_hash(path: str | Path, length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def read_frame(
    path: str | Path, columns: Iterable[str], what: str, error: type[Exception] = ValueError
) -> pl.DataFrame:
    """A Parquet file a stage reads, refused (as `error`, naming the file) when it lacks one of
    `columns` or holds no rows: a half-written upstream stage never reaches a result."""
    frame = pl.read_parquet(path)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise error(f"{what} {path}: missing required column(s): {', '.join(missing)}")
    if frame.height == 0:
        raise error(f"{what} {path}: empty (no rows)")
    return frame


# Local inputs are read, never written: only the kernel's pseudo-file systems are refused
# outright (/dev/zero as a data source never ends; /proc files read as regular ones).
PSEUDO_FOLDERS = ("/dev", "/proc", "/sys")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def local_input_problem(value: str, kind: str, must_exist: bool = True) -> tuple[Path, str | None]:
    """(resolved path, what is wrong with it or None) for a local input of `kind` "file" or
    "folder": no control characters, not `/` or a pseudo-file, and, where it exists (or must),
    a regular file or a folder, not a device, FIFO or socket. The caller names the key."""
    allowed = f"allowed: an existing regular {kind}" if kind == "file" else "allowed: a folder"
    if CONTROL_CHARACTERS.search(value):
        return Path(value), f"{value!r} holds a control character ({allowed})"
    resolved = Path(value).expanduser().resolve()
    if resolved == Path("/") or any(
        resolved == Path(folder) or Path(folder) in resolved.parents for folder in PSEUDO_FOLDERS
    ):
        return resolved, (
            f"{value!r} resolves to {str(resolved)!r} ({allowed}, not /, not under "
            f"{', '.join(PSEUDO_FOLDERS)})"
        )
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        problem = f"{value!r} ({str(resolved)!r}) does not exist ({allowed})"
        return resolved, problem if must_exist else None
    if not (stat.S_ISREG if kind == "file" else stat.S_ISDIR)(mode):
        return resolved, f"{value!r} ({str(resolved)!r}) is not a regular {kind} ({allowed})"
    return resolved, None
