"""A model folder's identity by content: what the shared engine and the reply cache are keyed by.

Generation depends on every file an engine reads from the model folder: weights, config,
generation config, tokenizer files and the chat template (a `chat_template.jinja` beside the
tokenizer counts as much as the weights). A fingerprint of names and mtimes misses an edited
template and weights copied in with their times kept (`cp -p`, `rsync -a`), and then stale
replies are served as the new model's. So the identity hashes the bytes of every regular file
at the top of the folder, where an engine reads them (SHA-256); subfolders (an SFT run's
checkpoints, logs) are not read by generation and would only cost hashing time.

Hashing a 14 GB checkpoint for every job would cost more than the jobs, so each file's digest is
cached (in the private engine folder) under its stat key: device, inode, size, mtime_ns and
ctime_ns. The ctime is what makes this safe: the kernel sets it to the current time on every
change of a file's content or metadata, and no system call sets it back (utime/`touch -d`/
`cp -p` restore mtime, and doing so moves ctime). A file rewritten in place, or a new file
copied or renamed in (a new inode, or a new ctime), therefore never matches an old entry,
however its mtime was kept; only changing the system clock could forge one, which needs root.
The kernel's file times are coarse (a clock tick), so, as git does for its index, a file
changed less than RACY_SECONDS before it was hashed keeps no stat key: it is hashed again next
time, since a second change within the same tick would leave its ctime as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from codeift.infer.private import UnsafeEntryError, private_folder, read_private, write_private
from codeift.io import stable_hash

RACY_SECONDS = 1.0
_CHUNK = 1 << 20


def _stat_key(info: os.stat_result) -> list[int]:
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    """Every regular file at the top of the folder, symlinks followed as an engine follows
    them (a hub snapshot is a folder of links into the blob store); dot files left out."""
    return sorted(
        path
        for path in root.iterdir()
        if not path.name.startswith(".") and stat.S_ISREG(os.stat(path).st_mode)
    )


def _cache_path(cache_root: Path, root: Path) -> Path:
    return private_folder(cache_root / "identity") / f"{stable_hash(str(root), length=24)}.json"


def _load_cache(path: Path) -> dict[str, Any]:
    """Cached digests, or none when the file is absent, unreadable, not ours or tampered with
    (its own checksum)."""
    try:
        payload = json.loads(read_private(path))
        entries = payload["entries"]
        if payload["checksum"] != stable_hash(entries, length=64):
            print(f"[codeift] identity cache {path}: checksum mismatch, rehashing", flush=True)
            return {}
        return entries
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, UnsafeEntryError) as error:
        print(f"[codeift] identity cache {path} not used ({error}), rehashing", flush=True)
        return {}


def model_identity(model_dir: str | Path, cache_root: Path | None) -> str:
    """Content hash of a model folder (with its resolved path, so two copies keep their own
    engines). Digests are reused from `cache_root` only for files whose stat key is unchanged."""
    root = Path(model_dir).resolve()
    cache = _cache_path(cache_root, root) if cache_root is not None else None
    old = _load_cache(cache) if cache is not None else {}
    entries: dict[str, Any] = {}
    for path in _files(root):
        name = path.relative_to(root).as_posix()
        key = _stat_key(os.stat(path))
        kept = old.get(name)
        digest = kept["sha256"] if kept and kept.get("stat") == key else _digest(path)
        # The stat after hashing: a file that changed while being read, or so recently that
        # another change could keep its ctime, is hashed again next time.
        after = os.stat(path)
        racy = time.time_ns() - after.st_ctime_ns < RACY_SECONDS * 1e9
        entries[name] = {
            "stat": None if racy or _stat_key(after) != key else key,
            "sha256": digest,
        }
    if cache is not None and entries != old:
        payload = {"entries": entries, "checksum": stable_hash(entries, length=64)}
        write_private(cache, json.dumps(payload, sort_keys=True).encode())
    contents = {name: entry["sha256"] for name, entry in entries.items()}
    return stable_hash({"path": str(root), "contents": contents}, length=32)
