"""Files only this user can have made: the engine folder, its sockets, logs, locks and caches.

The engine folder holds what decides a study's results (the socket generation talks to, the
replies cached for later jobs). On a shared machine another user could create a predictable
folder first, or plant symlinks and files in a permissive one. So every entry is checked before
use, from its own inode (lstat, O_NOFOLLOW, fstat): owned by our effective uid, no access for
group or others, the expected type, never a symlink. Anything else is refused with an error that
names it, never read and never written through.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from codeift.errors import UnsafeEntryError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _describe(info: os.stat_result) -> str:
    return f"owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}"


def check_entry(path: Path, info: os.stat_result, kind: str) -> None:
    """Refuse an entry (its lstat/fstat `info`) that another user could have made or can use."""
    want = {"folder": stat.S_ISDIR, "file": stat.S_ISREG, "socket": stat.S_ISSOCK}[kind]
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeEntryError(f"refusing {path}: a symlink where a private {kind} belongs")
    if not want(info.st_mode):
        raise UnsafeEntryError(f"refusing {path}: not a {kind} ({_describe(info)})")
    if info.st_uid != os.geteuid():
        raise UnsafeEntryError(
            f"refusing {path}: owned by another user ({_describe(info)}; allowed: uid "
            f"{os.geteuid()}, mode {FOLDER_MODE if kind == 'folder' else FILE_MODE:04o})"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeEntryError(
            f"refusing {path}: group or others have access ({_describe(info)}; allowed: "
            f"{FOLDER_MODE if kind == 'folder' else FILE_MODE:04o})"
        )


def private_folder(path: Path) -> Path:
    """`path` as a folder only we can enter: created 0700 if absent (its parents too, as
    needed), else checked as it is. An existing folder is never loosened or taken over."""
    try:
        os.mkdir(path, FOLDER_MODE)
        # The umask may have taken owner bits; set exactly what we mean on what we just made.
        os.chmod(path, FOLDER_MODE, follow_symlinks=False)
    except FileNotFoundError:
        if path.parent == path:
            raise
        private_folder(path.parent)
        return private_folder(path)
    except FileExistsError:
        info = os.lstat(path)
        loose = stat.S_IMODE(info.st_mode) & 0o077
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.geteuid()
            and loose
            and not loose & 0o022
        ):
            # Ours, readable but never writable by others (an engine folder made before this
            # check, 0755): no one else can have put anything in it, so it is closed, not
            # refused. Its entries are still checked one by one when used.
            os.chmod(path, FOLDER_MODE, follow_symlinks=False)
            print(f"[codeift] {path}: closed to other users (mode 0700)", flush=True)
    check_entry(path, os.lstat(path), "folder")
    return path


def check_socket(path: Path) -> None:
    """A socket in the engine folder is ours before we connect to it (and its peer after)."""
    check_entry(path, os.lstat(path), "socket")


@contextlib.contextmanager
def open_private(path: Path, flags: int) -> Iterator[int]:
    """A file descriptor on `path` (created 0600 with O_CREAT), never through a symlink, and
    only if the file it names is a regular file of ours that no one else can read or write."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, FILE_MODE)
    try:
        check_entry(path, os.fstat(fd), "file")
        # O_NONBLOCK only guards the open against a planted FIFO; reads and writes block.
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes:
    with open_private(path, os.O_RDONLY) as fd, os.fdopen(os.dup(fd), "rb") as handle:
        return handle.read()


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically: a fresh file (create-exclusive, 0600) renamed over `path`."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as fd:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


@contextlib.contextmanager
def private_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a private lock file (created 0600, never followed)."""
    with open_private(path, os.O_RDWR | os.O_CREAT) as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED, from the kernel:
    the peer cannot choose it)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(raw)[1]


def check_peer(conn: socket.socket, what: str) -> None:
    uid = peer_uid(conn)
    if uid != os.geteuid():
        raise UnsafeEntryError(
            f"refusing {what}: its peer runs as uid {uid} (allowed: uid {os.geteuid()})"
        )
