"""A memory cgroup per jailed program, so one cap covers everything the program can hold.

rlimits bound a process's address space, but not what it leaves in the kernel's hands: files in
tmpfs (/dev/shm, the work folder), memfd and SysV segments, and the kernel memory of inodes and
dentries (576k empty folders held 574 MiB). A memory cgroup charges all of them to the run, and
the kernel's own OOM counter then says from outside whether the run was killed for memory.

Where one can be had (as root, or in a delegated cgroup v2 subtree with the memory controller
enabled), each run gets a child `codeift-<pid>-<n>` of this process's own memory cgroup, limited
to the run's total budget, and removed when the run ends; children of dead jobs (a score job
killed outright) are removed when the next job starts. Where none can be had, `find_parent`
says why, and the jail's fallbacks (read-only /dev, size-capped /dev/shm, seccomp) still apply.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("codeift.score.cgroups")
PREFIX = "codeift-"
_NAME = re.compile(rf"^{PREFIX}(\d+)-(\d+)$")
_COUNTER = itertools.count()
_COUNTER_LOCK = threading.Lock()


@dataclass(frozen=True)
class CgroupParent:
    """A memory cgroup folder this process may create limited children in (v1 or v2)."""

    path: Path
    version: int

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"


def _mounts(proc: Path) -> list[tuple[str, str, str]]:
    """(mount point, file system type, super options) of every cgroup mount of this process."""
    found = []
    try:
        lines = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4].replace("\\040", " "), tail[0], tail[2]))
    return found


def _own_paths(proc: Path) -> dict[str, str]:
    """This process's cgroup path per hierarchy: 'memory' (v1) and '' (v2)."""
    paths: dict[str, str] = {}
    try:
        lines = (proc / "cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def find_parent(proc: Path = Path("/proc/self")) -> CgroupParent | str:
    """Where per-run memory cgroups can be made, or a one-line reason why none can.

    v1: this process's own memory cgroup, if writable (it may have children and processes).
    v2: a cgroup may not hold processes and enable controllers for children at once (except the
    root), so runs go next to this process's own cgroup, in its parent, where the memory
    controller is already enabled for children and the parent is writable (root, or a delegated
    subtree such as systemd's user@.service); in the root cgroup they go under it. Nothing is
    enabled or changed in a cgroup that is not ours.
    """
    own = _own_paths(proc)
    for mount, fstype, options in _mounts(proc):
        if fstype == "cgroup" and "memory" in options.split(",") and "memory" in own:
            folder = Path(mount + own["memory"])
            if _writable(folder):
                return CgroupParent(folder, 1)
        if fstype == "cgroup2" and "" in own:
            folder = Path(mount + own[""].rstrip("/"))
            parent = folder if own[""].rstrip("/") == "" else folder.parent
            if _memory_for_children(parent):
                return CgroupParent(parent, 2)
    return "no writable memory cgroup (neither a v1 memory hierarchy nor a delegated v2 one)"


def _writable(folder: Path) -> bool:
    return (
        folder.is_dir()
        and os.access(folder, os.W_OK)
        and os.access(folder / "cgroup.procs", os.W_OK)
    )


def _memory_for_children(folder: Path) -> bool:
    try:
        enabled = (folder / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    return "memory" in enabled and _writable(folder)


class RunCgroup:
    """One run's cgroup: made with its limit before the run, counted and removed after it."""

    def __init__(self, parent: CgroupParent, path: Path) -> None:
        self.parent = parent
        self.path = path

    @classmethod
    def create(cls, parent: CgroupParent, limit_bytes: int) -> RunCgroup:
        retry_pending()
        with _COUNTER_LOCK:
            number = next(_COUNTER)
        path = parent.path / f"{PREFIX}{os.getpid()}-{number}"
        path.mkdir(mode=0o755)
        run = cls(parent, path)
        try:
            (path / parent.limit_file).write_text(str(int(limit_bytes)))
            run._no_swap(limit_bytes)
        except OSError:
            run.remove()
            raise
        return run

    def _no_swap(self, limit_bytes: int) -> None:
        """Swap must not stretch the cap; where swap is not accounted the file is missing."""
        name, value = (
            ("memory.swap.max", "0")
            if self.parent.version == 2
            else ("memory.memsw.limit_in_bytes", str(int(limit_bytes)))
        )
        target = self.path / name
        if target.exists():
            target.write_text(value)

    def add(self, pid: int) -> None:
        """Move `pid` in; it must not have started the program yet (the caller holds it)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for reaching the limit (read from outside)."""
        name = "memory.events" if self.parent.version == 2 else "memory.oom_control"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill_all(self) -> None:
        """SIGKILL whatever is still inside (bwrap's own teardown normally leaves nothing)."""
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    def remove(self) -> None:
        """rmdir once; a cgroup still busy (the kernel tears a run down a moment after its
        last process) is retried before the next run and at exit, not waited for here."""
        if not _rmdir(self.path, attempts=1):
            with _PENDING_LOCK:
                _PENDING.append(self.path)


_PENDING: list[Path] = []
_PENDING_LOCK = threading.Lock()


def _rmdir(path: Path, attempts: int) -> bool:
    """Whether `path` is gone after up to `attempts` tries 10 ms apart."""
    for attempt in range(attempts):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno != errno.EBUSY:
                LOG.warning("could not remove the run's cgroup %s: %s", path, error)
                return False
            if attempt + 1 < attempts:
                time.sleep(0.01)
    return False


def retry_pending(attempts: int = 1) -> None:
    """Remove the run cgroups that were still busy when their run ended."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    still = [path for path in pending if not _rmdir(path, attempts)]
    with _PENDING_LOCK:
        _PENDING.extend(still)
    if still and attempts > 1:
        LOG.warning("%d run cgroup(s) still busy, left for the next job: %s", len(still), still)


atexit.register(retry_pending, 500)


def remove_stale(parent: CgroupParent) -> int:
    """Remove run cgroups left by score jobs that are gone (killed outright); returns how many.

    Only children named `codeift-<pid>-<n>` whose pid is not alive are touched, so a
    concurrent job's runs are never disturbed.
    """
    removed = 0
    try:
        entries = list(os.scandir(parent.path))
    except OSError:
        return 0
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or pid_alive(int(match.group(1))):
            continue
        try:
            os.rmdir(entry.path)
            removed += 1
        except OSError as error:
            LOG.warning("stale run cgroup %s left in place: %s", entry.path, error)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user counts): a stale entry's owner."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
