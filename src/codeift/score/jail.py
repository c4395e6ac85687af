"""The operating-system boundary around each model-written program: bubblewrap plus seccomp.

A fine-tuned model's program is untrusted input, and on a cluster the scorer runs as the
researcher, with their home, tokens and results in reach. So every run happens inside
`bwrap` (Debian's bubblewrap): new user, PID, network, IPC, UTS and cgroup namespaces; a mount
view of only /usr (libc and friends, read-only), the interpreter and its standard library
(read-only, no site-packages), no /proc, a minimal read-only /dev with a size-capped /dev/shm,
and an empty size-capped tmpfs as the work folder; uid 65534 inside with every capability
dropped and no new privileges; a seccomp filter (compiled by libseccomp) refusing calls a scoring
program never needs, process creation included; and the PID namespace ends every process of the
run when it does. Under root, bwrap itself is started as the host's `nobody`, so the program is an
unprivileged host user too (root ignores RLIMIT_NPROC and would own /proc/sys). The Python audit
hook of `codeift.score.sandbox_runner` stays as a second layer inside. Where a memory cgroup can be
had, each run also gets its own (`codeift.score.cgroups`), so what the program holds in tmpfs, memfd
or kernel memory is capped with its address space (docs/jail-caps.md).

`codeift.score.sandbox.prepare(mode)` probes the boundary once per process (one scoring job).
Under `scoring.sandbox: jail` (the default) a boundary that cannot be set up stops the score job
with the reason and how to install bubblewrap (`sandbox.require`): on a compute node without
bwrap every program-view score would otherwise quietly become `not_run`. `jail_if_available`
accepts that (`not_run` rows, with the reason, counted in the job's summary), and
`python_guard` opts into the weaker Python-only guard, which is logged loudly.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import re
import shutil
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codeift.errors import JailUnavailable
from codeift.score.cgroups import CgroupParent, pid_alive
from codeift.settings import ScoringSettings

LOG = logging.getLogger("codeift.score.jail")

MODES: tuple[str, ...] = ("jail", "jail_if_available", "python_guard")
# The modes that run programs in the jail; only `jail` refuses to score without it.
JAIL_MODES: tuple[str, ...] = ("jail", "jail_if_available")
INSTALL_HINT = (
    "install bubblewrap on the nodes that run score jobs (Debian/Ubuntu: apt-get install "
    "bubblewrap; RHEL/Fedora: dnf install bubblewrap) and allow unprivileged user namespaces, or "
    "set scoring.sandbox: jail_if_available (programs not run, rows marked not_run) or "
    "python_guard (the weaker Python-only guard)"
)
DEFAULT_MODE = ScoringSettings.defaults()["sandbox"]
NOBODY = 65534
BOX = "/box"  # the work folder inside the jail
RUNNER_PATH = "/runner/sandbox_runner.py"  # where the runner is placed inside the jail
PROGRAM_NAME = "program.py"
RUNNER_SOURCE = Path(__file__).with_name("sandbox_runner.py")
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# Calls a scoring program never needs; each fails with EPERM unless noted.
DENIED_SYSCALLS: tuple[str, ...] = (
    # process creation (threads stay allowed: clone with CLONE_THREAD)
    "fork",
    "vfork",
    # namespaces, mounts, roots
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # other processes' memory and descriptors
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # the kernel's own surfaces
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "iopl",
    "ioperm",
    "quotactl",
    "lookup_dcookie",
    "vhangup",
    "personality",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "add_key",
    "request_key",
    "keyctl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
)
# Calls that hold memory outside the address space rlimit and the work folder's size cap:
# anonymous in-memory files and System V / POSIX IPC objects live until the run's IPC namespace
# ends (memfd_create alone held 960 MiB). A scoring program never needs them.
HELD_MEMORY_SYSCALLS: tuple[str, ...] = (
    "memfd_create",
    "memfd_secret",
    "shmget",
    "shmat",
    "msgget",
    "semget",
    "mq_open",
)
SHM = "/dev/shm"
_CLONE_THREAD = 0x00010000
_AF_UNIX = 1
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C


@dataclass(frozen=True)
class Boundary:
    """What a scoring job runs programs under.

    `mode` is the configured one; `ready` False means programs are not run and `reason` says why.
    For the jail, `bwrap_user` is the host uid bwrap is started as (None: this process's own),
    `python_mounts` the (host source, jail path) read-only mounts of the interpreter, and
    `cgroup` the memory cgroup each run gets a limited child of (None: rlimits, the capped
    tmpfs folders and seccomp only).
    """

    mode: str
    ready: bool
    reason: str | None = None
    bwrap: str | None = None
    bwrap_user: int | None = None
    python_mounts: tuple[tuple[str, str], ...] = ()
    masked: tuple[str, ...] = ()
    interpreter: str = sys.executable
    cgroup: CgroupParent | None = None  # where each run gets its own memory cgroup, if anywhere


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"scoring.sandbox: {mode!r} is not one of {', '.join(MODES)}")
    return mode


def python_mounts(
    interpreter: str, user: int | None
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Read-only mounts that put the interpreter and its standard library at their own paths.

    Under /usr nothing is needed. Elsewhere the base prefix is mounted with site-packages hidden;
    when bwrap runs as `nobody` and cannot reach that prefix (pyenv under a 0700 /root), a
    hard-linked (else copied) stage of just the interpreter, libpython and the standard library is
    made once per job in a world-readable temporary folder and mounted there instead.
    """
    prefix = os.path.realpath(sys.base_prefix)
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    site = os.path.join(stdlib, "site-packages")
    if is_under(interpreter, "/usr") and is_under(stdlib, "/usr"):
        return (), ()
    if not is_under(interpreter, prefix) or not is_under(stdlib, prefix):
        raise JailUnavailable(f"interpreter {interpreter} is not under its prefix {prefix}")
    masked = (site,) if os.path.isdir(site) else ()
    if user is None or _reachable_by_others(prefix):
        return ((prefix, prefix),), masked
    return ((_stage(prefix, interpreter, stdlib), prefix),), ()


def is_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _reachable_by_others(path: str) -> bool:
    """Whether every folder on the way to `path` lets other users through (o+x)."""
    current = Path(path)
    for folder in [current, *current.parents]:
        if not os.stat(folder).st_mode & 0o001:
            return False
    return True


_SKIP_STAGE = frozenset({"site-packages", "test", "idlelib", "tkinter", "ensurepip", "turtledemo"})


STAGE_PREFIX = "codeift-jail-python-"


def _stage(prefix: str, interpreter: str, stdlib: str) -> str:
    remove_stale_temp(STAGE_PREFIX)
    stage = tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-")
    atexit.register(shutil.rmtree, stage, True)
    os.chmod(stage, 0o755)
    libdir = os.path.realpath(sysconfig.get_config_var("LIBDIR") or os.path.join(prefix, "lib"))
    wanted = [interpreter]
    library = sysconfig.get_config_var("INSTSONAME")
    if library and os.path.exists(os.path.join(libdir, library)):
        wanted.append(os.path.join(libdir, library))
    for folder, subfolders, files in os.walk(stdlib):
        subfolders[:] = [name for name in subfolders if name not in _SKIP_STAGE]
        wanted.extend(os.path.join(folder, name) for name in files)
    for source in wanted:
        target = os.path.join(stage, os.path.relpath(source, prefix))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    for folder, _, _ in os.walk(stage):
        os.chmod(folder, 0o755)
    return stage


def remove_stale_temp(prefix: str) -> int:
    """Remove temporary folders `<prefix><pid>-*` of score jobs that are gone; returns how many.

    A job killed outright (SIGKILL, out of memory) never runs its atexit cleanup, and its
    interpreter stage (~126 MiB) would stay in the temporary folder. Only folders that are ours
    are touched: named by this prefix and a pid that is not alive, a real folder (not a link),
    owned by this user.
    """
    removed = 0
    folder = tempfile.gettempdir()
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-[A-Za-z0-9_]+$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        try:
            info = os.lstat(entry.path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.lexists(entry.path)
    if removed:
        LOG.info("removed %d stale %s* folder(s) of score jobs that are gone", removed, prefix)
    return removed


def seccomp_filter() -> bytes:
    """The compiled BPF program (built by libseccomp through pyseccomp) bwrap loads with --seccomp.

    Default allow, with the calls above (and those holding memory) refused, sockets other than
    AF_UNIX refused (the network namespace has only a down loopback anyway), clone only for
    threads, clone3 reported missing (so the C library falls back to clone, whose flags can be
    checked), and terminal injection ioctls refused. Calls of a foreign architecture (x32, i386)
    are killed by libseccomp's default.
    """
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS + HELD_MEMORY_SYSCALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError) as error:  # not a call of this architecture
            LOG.debug("seccomp: %s not filtered: %s", name, error)
    rules.add_rule(
        seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.NE, _AF_UNIX)
    )
    rules.add_rule(
        seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0)
    )
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.EQ, request))
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.seek(0)
        return handle.read()


def dev_args(shm_bytes: int) -> list[str]:
    """A minimal /dev (made read-only at the end) with a size-capped tmpfs at /dev/shm, no /proc.

    bwrap's --dev is a writable tmpfs with no size cap, /dev/shm included (a program wrote 1 GiB
    there). No /proc: nothing a scoring program needs is there, and /proc/self/mem would let a
    program read the runner's per-run marker out of its own memory.
    """
    return [
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(max(int(shm_bytes), 4096)),
        "--tmpfs",
        SHM,
    ]


def memfd(name: str, data: bytes) -> int:
    """A sealed-off in-memory file holding `data`, positioned at its start, to hand to bwrap."""
    fd = os.memfd_create(name, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def bwrap_command(
    boundary: Boundary,
    fds: dict[str, int],
    config_json: str,
    box_bytes: int,
    shm_bytes: int = 0,
) -> list[str]:
    """The bwrap argument list of one run; `fds` holds the runner, program and seccomp fds."""
    assert boundary.bwrap is not None
    args = [
        boundary.bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--as-pid-1",  # bwrap then reaps the program itself, so wait4 sees its CPU time
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--hostname",
        "sandbox",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        BOX,
        "--setenv",
        "TMPDIR",
        BOX,
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for source, target in boundary.python_mounts:
        args += ["--ro-bind", source, target]
    for folder in boundary.masked:
        args += ["--tmpfs", folder, "--remount-ro", folder]
    args += dev_args(shm_bytes)
    args += [
        "--perms",
        "0700",
        "--size",
        str(box_bytes),
        "--tmpfs",
        BOX,
        "--ro-bind-data",
        str(fds["runner"]),
        RUNNER_PATH,
        "--file",
        str(fds["program"]),
        f"{BOX}/{PROGRAM_NAME}",
        "--chdir",
        BOX,
        "--remount-ro",
        "/",
        "--remount-ro",
        "/dev",
        "--seccomp",
        str(fds["seccomp"]),
        "--",
        boundary.interpreter,
        "-I",
        "-S",
        "-B",
        "-X",
        "utf8",
        RUNNER_PATH,
        config_json,
    ]
    return args
