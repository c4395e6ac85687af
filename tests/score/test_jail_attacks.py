"""Attacks a hostile model could write, pushed through the scorer's own path (`score_frame`).

Each test gives a response holding a fenced Python program and then checks FROM OUTSIDE that the
side effect did not happen: a canary file outside the work folder, a secret's bytes in the
output, a connection to a loopback server, a signal to a process the test started, a process
left behind. Most attacks run twice: with the audit hook (what scoring does) and with a runner
that has no guard at all ("jail only"), so a bypass of the Python layer is assumed, not hoped
against. CI runs this as root, where a careless jail leaks most; CODEIFT_REQUIRE_JAIL=1 turns a
jail that cannot be set up into failures, not skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import polars as pl
import psutil
import pytest

from codeift.score import jail, sandbox
from codeift.score.answers import score_frame
from codeift.score.sandbox import SandboxLimits
from tests.conftest import REPO

LIMITS = SandboxLimits(wall_seconds=6.0, cpu_seconds=3)

# The runner without the audit hook: limits, work folder, then the program, nothing else.
BARE_RUNNER = textwrap.dedent(
    """
    import json, os, re, resource, sys
    config = json.loads(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"], config["cpu_seconds"] + 1))
    os.chdir(config["root"])
    text = open(config["program"]).read()
    first, _, rest = text.partition(chr(10))  # the runner's nonce line, where there is one
    source = rest if re.fullmatch("[0-9a-f]{32}", first) else text
    exec(compile(source, "<program>", "exec"), {"__name__": "__main__"})
    """
)
LAYERS = ("guard+jail", "jail only")


@pytest.fixture(scope="module")
def boundary() -> jail.Boundary:
    """The real jail; where it cannot be set up, a failure under CODEIFT_REQUIRE_JAIL=1."""
    sandbox.prepare.cache_clear()
    ready = sandbox.prepare(jail.DEFAULT_MODE)
    if not ready.ready:
        if os.environ.get("CODEIFT_REQUIRE_JAIL") == "1":
            pytest.fail(f"CODEIFT_REQUIRE_JAIL=1 but {ready.reason}")
        pytest.skip(ready.reason)
    return ready


@pytest.fixture(params=LAYERS)
def layers(request, boundary, monkeypatch, tmp_path) -> str:
    if request.param == "jail only":
        bare = tmp_path / "bare_runner.py"
        bare.write_text(BARE_RUNNER)
        monkeypatch.setattr(jail, "RUNNER_SOURCE", bare)
    return request.param


@pytest.fixture
def outside(tmp_path) -> dict[str, Path | str]:
    """A canary that must not appear, a kept file that must not change, a 0600 secret."""
    token = uuid.uuid4().hex
    secret = tmp_path / "secret.txt"
    secret.write_text(f"SECRET-{token}")
    secret.chmod(0o600)
    kept = tmp_path / "kept.txt"
    kept.write_text("unchanged")
    return {"canary": tmp_path / "canary", "secret": secret, "token": token, "kept": kept}


def score(program: str, limits: SandboxLimits = LIMITS) -> dict:
    """One response through score_frame, exactly as a scoring job sees it; never raises."""
    response = f"Let me compute it.\n```python\n{textwrap.dedent(program).strip()}\n```\n"
    frame = pl.DataFrame(
        {"id": ["attack"], "answer_type": ["number"], "answer": ["42"], "response": [response]}
    )
    started = time.monotonic()
    row = score_frame(frame, limits=limits).row(0, named=True)
    assert time.monotonic() - started < limits.wall_seconds + 10, "the run must end on time"
    assert row["program_status"] in sandbox.STATUSES and row["program_status"] != "not_run"
    return row


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before_the_test():
    """Processes earlier tests left to this one (a multiprocessing resource tracker, an engine
    server waiting out its idle time) are not the program's: note them, then count only new ones."""
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))
    yield


def _descendants() -> list[psutil.Process]:
    """This test process's descendants started during the test."""
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in _BEFORE]


def _process_tree() -> list[tuple[list[str], object, str]]:
    """(command, uids, /proc status) of each descendant still alive while it is read."""
    tree = []
    for process in _descendants():
        try:
            tree.append(
                (
                    process.cmdline()[:1],
                    process.uids(),
                    Path(f"/proc/{process.pid}/status").read_text(),
                )
            )
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue
    return tree


def _with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        text = " ".join(process.info["cmdline"] or []) + str(process.info.get("environ") or "")
        if marker in text:
            found.append(process)
    return found


def _untouched(paths: dict) -> None:
    assert not paths["canary"].exists(), "a file appeared outside the work folder"
    assert paths["kept"].read_text() == "unchanged"


# --- writes outside the work folder, by every route --------------------------------------------

WRITES: dict[str, str] = {
    "open": "open({canary!r}, 'w').write('x')",
    "os_open": "import os\nos.write(os.open({canary!r}, os.O_CREAT | os.O_WRONLY), b'x')",
    "pathlib": "import pathlib\npathlib.Path({canary!r}).write_text('x')",
    "shutil_copy": "open('a', 'w').write('x')\nimport shutil\nshutil.copy('a', {canary!r})",
    "sqlite3": "import sqlite3\nsqlite3.connect({canary!r}).execute('create table t(x)')",
    "logging": "import logging\nlogging.FileHandler({canary!r}).emit(logging.makeLogRecord({{}}))",
    "tarfile": (
        "import io, tarfile\nbuf = io.BytesIO()\nt = tarfile.open(fileobj=buf, mode='w')\n"
        "info = tarfile.TarInfo({canary!r}); info.size = 1\n"
        "t.addfile(info, io.BytesIO(b'x')); t.close(); buf.seek(0)\n"
        "tarfile.open(fileobj=buf).extractall('.')"
    ),
    "zipfile": (
        "import zipfile\nwith zipfile.ZipFile('z.zip', 'w') as z:\n"
        "    z.writestr('../../../../../../..' + {canary!r}, 'x')\n"
        "zipfile.ZipFile('z.zip').extractall('.')"
    ),
    "symlink": "import os\nos.symlink({canary!r}, 'link')\nopen('link', 'w').write('x')",
    "truncate_kept": "import os\nos.truncate({kept!r}, 0)",
    "rename_kept": "import os\nos.rename({kept!r}, {canary!r})",
    "ctypes_libc": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.open({canary!r}.encode(), 0o101, 0o644)"
    ),
}


@pytest.mark.parametrize("route", sorted(WRITES))
def test_no_write_outside_the_work_folder(route, layers, outside):
    row = score(WRITES[route].format(canary=str(outside["canary"]), kept=str(outside["kept"])))
    _untouched(outside)
    assert row["program_correct"] is not True


def test_tempfile_in_tmp_leaves_nothing_on_the_host(layers):
    prefix = f"codeift-attack-{uuid.uuid4().hex}"
    score(f"import tempfile\nprint(tempfile.mkstemp(prefix={prefix!r}, dir='/tmp'))")
    assert not list(Path("/tmp").glob(f"{prefix}*"))


# --- reads of secrets --------------------------------------------------------------------------

READS: dict[str, str] = {
    "secret_file": "print(open({secret!r}).read())",
    "hard_link": "import os\nos.link({secret!r}, 'h')\nprint(open('h').read())",
    "all_environ": (
        "import os\nfor pid in os.listdir('/proc'):\n    try:\n"
        "        print(open(f'/proc/{{pid}}/environ', 'rb').read())\n    except Exception:\n"
        "        pass\nprint(dict(os.environ))"
    ),
    "parent_environ": "import os\nprint(open(f'/proc/{{os.getppid()}}/environ', 'rb').read())",
    "repository_config": "print(open({config!r}).read())",
    "shadow": "print(open('/etc/shadow').read())",
    "home": "import os\nprint(os.listdir({home!r}))",
}


@pytest.mark.parametrize("route", sorted(READS))
def test_no_secret_is_read(route, layers, outside, monkeypatch):
    monkeypatch.setenv("CODEIFT_ATTACK_SECRET", f"ENV-{outside['token']}")
    program = READS[route].format(
        secret=str(outside["secret"]),
        config=str(REPO / "config" / "config.yaml"),
        home=str(Path.home()),
    )
    row = score(program)
    seen = (row["program_output"] or "") + (row["program_detail"] or "")
    assert outside["token"] not in seen
    assert "proportions:" not in seen and "root:" not in seen
    home = Path.home()
    on_the_way = (
        set(Path(sys.base_prefix).resolve().relative_to(home).parts[:1])
        if Path(sys.base_prefix).resolve().is_relative_to(home)
        else set()
    )
    for name in set(os.listdir(home)) - on_the_way:  # the interpreter's mount point may show
        assert f"'{name}'" not in seen, f"the program saw {home / name}"


# --- network -----------------------------------------------------------------------------------


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    yield server, udp
    server.close()
    udp.close()


NETWORK: dict[str, str] = {
    "tcp": "import socket\nsocket.create_connection(('127.0.0.1', {tcp}), timeout=2).send(b'x')",
    "udp": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
    "('127.0.0.1', {udp}))",
    "urllib": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{tcp}/', timeout=2)",
    "ipv6": "import socket\nsocket.create_connection(('::1', {tcp}), timeout=2)",
}


@pytest.mark.parametrize("route", sorted(NETWORK))
def test_no_connection_reaches_a_loopback_server(route, layers, listener):
    server, udp = listener
    tcp_port, udp_port = server.getsockname()[1], udp.getsockname()[1]
    score(NETWORK[route].format(tcp=tcp_port, udp=udp_port))
    with pytest.raises(TimeoutError):
        server.accept()
    with pytest.raises(TimeoutError):
        udp.recvfrom(16)


# --- signals, children, identity ---------------------------------------------------------------


@pytest.fixture
def victim(tmp_path):
    """A sleeping process of the test's own whose SIGTERM/SIGUSR1 handler writes a file."""
    touched = tmp_path / "signalled"
    code = (
        "import signal, sys, time\n"
        f"h = lambda *a: open({str(touched)!r}, 'w').write('hit')\n"
        "signal.signal(signal.SIGTERM, h); signal.signal(signal.SIGUSR1, h)\n"
        "time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)
    yield process, touched
    process.kill()
    process.wait()


SIGNALS: dict[str, str] = {
    "kill_pid": "import os, signal\nos.kill({pid}, signal.SIGTERM)",
    "kill_all": "import os, signal\nos.kill(-1, signal.SIGUSR1)\nos.kill(-1, signal.SIGKILL)",
    "pidfd": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open({pid}), signal.SIGTERM)",
}


@pytest.mark.parametrize("route", sorted(SIGNALS))
def test_no_signal_reaches_another_process(route, layers, victim):
    process, touched = victim
    score(SIGNALS[route].format(pid=process.pid))
    time.sleep(0.2)
    assert process.poll() is None and not touched.exists()


CHILDREN: dict[str, str] = {
    "reimported_posixsubprocess": (
        # the first attack: a fresh copy of the C module the guard patched
        "import sys, importlib.util\nsys.modules.pop('_posixsubprocess', None)\n"
        "spec = importlib.util.find_spec('_posixsubprocess')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "sys.modules['_posixsubprocess'] = m\nimport subprocess\n"
        "subprocess.Popen(['/bin/sh', '-c', 'sleep 30 # {marker}; touch {canary}'],"
        " start_new_session=True)\nprint('started')"
    ),
    "fork_daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    os.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 30 # {marker}; touch {canary}'])\n"
        "print('parent done')"
    ),
    "os_system": "import os\nos.system('sleep 30 # {marker} &')",
    "pty_spawn": "import pty\npty.spawn(['/bin/sh', '-c', 'sleep 30 # {marker}'])",
    "multiprocessing": (
        "import multiprocessing, time\n"
        "p = multiprocessing.Process(target=time.sleep, args=(30,), name='{marker}')\n"
        "p.daemon = False; p.start()"
    ),
    "posix_spawn": "import os\nos.posix_spawn('/bin/sh', ['/bin/sh', '-c', 'sleep 30 # {marker}'],"
    " {{}})",
}


@pytest.mark.parametrize("route", sorted(CHILDREN))
def test_no_process_is_created_or_outlives_the_run(route, layers, outside):
    marker = f"codeift-marker-{uuid.uuid4().hex}"
    score(CHILDREN[route].format(marker=marker, canary=outside["canary"]))
    time.sleep(0.2)
    assert not _with_marker(marker), "a process of the program is still alive"
    assert not _descendants()
    _untouched(outside)


def test_the_program_is_an_unprivileged_host_user_without_capabilities(boundary):
    """The issue's `_sandbox_user() is None` case: seen from the host while the program runs."""
    import threading

    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(row=score("import time\ntime.sleep(1.5)\nprint(42)"))
    )
    thread.start()
    tree: list = []
    # Looked at until the program is seen: a loaded machine may start the jail late.
    while thread.is_alive() and not [entry for entry in tree if entry[0] == [boundary.interpreter]]:
        time.sleep(0.05)
        tree = _process_tree()
    thread.join()
    programs = [entry for entry in tree if entry[0] == [boundary.interpreter]]
    assert programs and len(tree) > len(programs), "the jailed program was not seen running"
    for command, uids, status in tree:  # bwrap and the program: all unprivileged
        fields = dict(line.split(":", 1) for line in status.splitlines())
        if os.geteuid() == 0:
            assert uids.real == jail.NOBODY and uids.effective == jail.NOBODY
        assert int(fields["CapEff"].strip(), 16) == 0 and fields["NoNewPrivs"].strip() == "1"
        if command == [boundary.interpreter]:
            assert fields["Seccomp"].strip() == "2"
    assert result["row"]["program_status"] == "ok"


# --- tampering with the guard ------------------------------------------------------------------

TAMPERING: dict[str, str] = {
    "gc_closure": (
        # reach the guard's state through the interpreter's objects, then write
        "import gc\nfor o in gc.get_objects():\n"
        "    if isinstance(o, dict) and 'os.fork' in o:\n        o.clear()\n"
        "open({canary!r}, 'w').write('x')"
    ),
    "patched_os": (
        "import os, posixpath\nos.getcwd = lambda: '/'\nposixpath.abspath = lambda p: '/box/x'\n"
        "os.fspath = lambda p: '/box/x'\nopen({canary!r}, 'w').write('x')"
    ),
    "lying_pathlike": (
        "import os\nclass P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n"
        "        return '/box/ok' if P.n == 1 else {canary!r}\n"
        "open(P(), 'w').write('x')"
    ),
    "str_subclass": (
        "class S(str):\n    def startswith(self, *a):\n        return True\n"
        "open(S({canary!r}), 'w').write('x')"
    ),
    "reimported_posix": (
        "import sys, importlib\nsys.modules.pop('posix', None)\nposix = importlib.import_module("
        "'posix')\nfd = posix.open({canary!r}, posix.O_CREAT | posix.O_WRONLY)\n"
        "posix.write(fd, b'x')"
    ),
    "sys_audit_hooks": (
        "import sys\nsys.addaudithook(lambda *a: None)\nsys.audit = lambda *a: None\n"
        "import os\nos.fork() or open({canary!r}, 'w')"
    ),
}


@pytest.mark.parametrize("route", sorted(TAMPERING))
def test_tampering_with_the_guard_changes_nothing_outside(route, layers, outside):
    score(TAMPERING[route].format(canary=str(outside["canary"])))
    _untouched(outside)
    assert not _descendants()


# --- resource exhaustion -----------------------------------------------------------------------


def test_fork_storm_is_contained_and_scoring_goes_on(layers):
    row = score(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    assert row["program_status"] in ("blocked", "timeout")
    assert not _descendants()
    assert score("print(42)")["program_correct"] is True


def test_memory_bomb_hits_the_limit(layers):
    # The scorer's own memory must not grow with the program's (other tests of the session may
    # hold models in this process: compare before and after, not against an absolute size).
    before = psutil.Process().memory_info().rss
    row = score("x = []\nwhile True:\n    x.append(bytearray(10**7))")
    assert row["program_status"] in ("memory", "crashed")
    assert psutil.Process().memory_info().rss - before < 256 * 1024**2


def test_disk_fill_stays_inside_the_capped_work_folder(layers):
    limits = SandboxLimits(wall_seconds=6.0, cpu_seconds=3, disk_bytes=8 * 1024**2)
    free_before = psutil.disk_usage("/tmp").free
    row = score(
        "total = 0\ntry:\n    for i in range(10**6):\n        with open(f'f{i}', 'wb') as f:\n"
        "            f.write(b'x' * 2**20)\n        total += 2**20\nexcept OSError as e:\n"
        "    print(type(e).__name__, total)",
        limits,
    )
    if row["program_status"] == "ok":
        name, total = row["program_output"].split()
        assert name == "OSError" and int(total) <= limits.disk_bytes
    assert free_before - psutil.disk_usage("/tmp").free < 64 * 1024**2


def test_output_flood_is_capped(layers):
    row = score("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    assert row["program_status"] in ("timeout", "crashed", "memory")
    assert len(row["program_output"]) <= LIMITS.output_chars + 64


# --- attacks on the scorer itself --------------------------------------------------------------


def test_immutable_and_unreadable_work_files_do_not_stop_scoring(layers):
    leftovers = sandbox.leftover_count()
    row = score(
        "import fcntl, os, struct\nopen('locked', 'w').write('x')\n"
        "fd = os.open('locked', os.O_RDONLY)\n"
        "try:\n    fcntl.ioctl(fd, 0x40086602, struct.pack('l', 0x10))\nexcept OSError:\n    pass\n"
        "os.mkdir('d'); open('d/f', 'w').write('x'); os.chmod('d', 0); os.chmod('.', 0o500)\n"
        "print(42)"
    )
    assert row["program_status"] in ("ok", "blocked")
    assert sandbox.leftover_count() == leftovers


def test_huge_single_line_and_long_number_are_scored_without_raising(layers):
    row = score("print('7' * 5000)\nprint(6 * 7)")
    assert row["program_status"] == "ok" and row["program_output"].endswith("42")
    row = score("print('9' * 10**7)")
    assert len(row["program_output"]) <= LIMITS.output_chars + 64


def test_odd_bytes_in_output_are_stored_as_text(layers):
    row = score("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00garbage\\x00\\n\\xc3(42\\n')")
    assert row["program_status"] == "ok"
    assert "\x00" not in row["program_output"] and row["program_output"].endswith("42")


# --- the suite itself ----------------------------------------------------------------------------


def test_ci_runs_the_suite_as_root():
    """Root is where a careless jail leaks most, so CI must exercise it there."""
    if os.environ.get("CI") == "true":
        assert os.geteuid() == 0, "CI must run tests/score/test_jail_attacks.py as root"


# --- memory held outside the address space limit (issue 25, item 5) ----------------------------
# Each program tries to hold 384 MiB where the address-space rlimit does not look: tmpfs files
# (/dev/shm), memfd and System V segments, the kernel memory of inodes. Judged from the
# host's own counters (/proc/meminfo), sampled while the run is alive: the run may hold no more
# than its cgroup budget (`held_bytes`), or, without a cgroup, the capped /dev/shm.

CAPS = SandboxLimits(
    wall_seconds=6.0,
    cpu_seconds=3,
    memory_bytes=64 * 1024**2,
    disk_bytes=8 * 1024**2,
    shm_bytes=1024**2,
)
ALLOWED_GROWTH = CAPS.held_bytes + 64 * 1024**2  # the budget plus other processes' noise


def _meminfo(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    raise KeyError(field)


def held_while_running(program: str, field: str, limits: SandboxLimits = CAPS) -> tuple[int, dict]:
    """(peak growth of /proc/meminfo `field` during the run, the scored row)."""
    import threading

    base, peak, stop = _meminfo(field), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _meminfo(field) - base)
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        row = score(program, limits)
    finally:
        stop.set()
        sampler.join()
    return peak[0], row


# Files of 8 MiB each, under the file size rlimit (16 MiB), 48 of them: 384 MiB held at once.
_FILL = (
    "import os, time\nkept, held = [], 0\ntry:\n    for i in range(48):\n"
    "        fd = {open}\n        kept.append(fd)\n        for _ in range(8):\n"
    "            os.write(fd, b'x' * 2**20)\n        held += 8 * 2**20\n"
    "except OSError as e:\n    print('stopped', e)\nprint('held', held)\ntime.sleep(1)"
)
SHARED_MEMORY: dict[str, str] = {
    # POSIX shared memory is a file in /dev/shm; shm_open raises no audit event
    "posix_shm": "import _posixshmem\n"
    + _FILL.format(open="_posixshmem.shm_open(f'/codeift-{i}', os.O_CREAT | os.O_RDWR, 0o600)"),
    # anonymous in-memory files: no path, no audit event
    "memfd": _FILL.format(open="os.memfd_create('hold')"),
}


@pytest.mark.parametrize("route", sorted(SHARED_MEMORY))
def test_shared_memory_is_capped(route, layers):
    grown, row = held_while_running(SHARED_MEMORY[route], "Shmem")
    assert grown < ALLOWED_GROWTH, f"the run held {grown >> 20} MiB of shared memory"
    assert row["program_status"] != "timeout"


@pytest.fixture
def without_cgroup(boundary, monkeypatch) -> jail.Boundary:
    """The jail as it is where no memory cgroup can be had: the fallback caps alone."""
    import dataclasses

    bare = dataclasses.replace(boundary, cgroup=None)
    monkeypatch.setattr(sandbox, "prepare", lambda mode=jail.DEFAULT_MODE: bare)
    return bare


@pytest.mark.parametrize("route", sorted(SHARED_MEMORY))
def test_shared_memory_is_capped_without_a_cgroup(route, without_cgroup, tmp_path, monkeypatch):
    bare = tmp_path / "bare_runner.py"
    bare.write_text(BARE_RUNNER)
    monkeypatch.setattr(jail, "RUNNER_SOURCE", bare)  # no Python layer either
    grown, _ = held_while_running(SHARED_MEMORY[route], "Shmem")
    assert grown < ALLOWED_GROWTH, f"the run held {grown >> 20} MiB of shared memory"


def test_without_a_cgroup_the_guard_caps_how_many_files_are_made(without_cgroup):
    grown, row = held_while_running(INODES["empty_folders"], "Slab", SMALL_CAPS)
    assert row["program_status"] == "blocked" and "files and folders" in row["program_detail"]
    assert grown < SMALL_CAPS.held_bytes + 64 * 1024**2, f"the run held {grown >> 20} MiB"


def test_system_v_shared_memory_is_refused(boundary, monkeypatch, tmp_path):
    """shmget segments outlive shmdt until the IPC namespace ends; ctypes reaches them when the
    Python layer is gone, so the jail itself must refuse them."""
    bare = tmp_path / "bare_runner.py"
    bare.write_text(BARE_RUNNER)
    monkeypatch.setattr(jail, "RUNNER_SOURCE", bare)
    program = (
        "import ctypes, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\nheld = 0\n"
        "for _ in range(24):\n"
        "    sid = libc.shmget(0, 16 * 2**20, 0o1600)\n"
        "    if sid < 0:\n        print('refused', ctypes.get_errno())\n        break\n"
        "    at = libc.shmat(sid, None, 0)\n    ctypes.memset(at, 1, 16 * 2**20)\n"
        "    libc.shmdt(ctypes.c_void_p(at))\n    held += 16 * 2**20\n"
        "print('held', held)\ntime.sleep(1)"
    )
    grown, _ = held_while_running(program, "Shmem")
    assert grown < ALLOWED_GROWTH, f"the run held {grown >> 20} MiB of System V segments"


SMALL_CAPS = SandboxLimits(
    wall_seconds=6.0,
    cpu_seconds=3,
    memory_bytes=48 * 1024**2,
    disk_bytes=4 * 1024**2,
    shm_bytes=1024**2,
)
INODES: dict[str, str] = {
    "empty_folders": "import os\nfor i in range(10**7):\n    os.mkdir(f'd{i}')",
    "empty_files": "import os\nfor i in range(10**7):\n    os.close(os.open(f'f{i}', os.O_CREAT))",
}


@pytest.mark.parametrize("route", sorted(INODES))
def test_kernel_memory_of_many_empty_files_is_capped(route, layers, boundary):
    """tmpfs caps bytes, not inodes: empty folders cost kernel memory and no bytes at all."""
    if boundary.cgroup is None:
        pytest.skip("without a memory cgroup nothing charges the kernel memory of inodes")
    grown, _ = held_while_running(INODES[route], "Slab", SMALL_CAPS)
    assert grown < SMALL_CAPS.held_bytes + 64 * 1024**2, f"the run held {grown >> 20} MiB"


# --- status judged from outside -----------------------------------------------------------------

FORGED_STATUS: dict[str, str] = {
    # signals the program sends itself (raise_signal raises no audit event)
    "own_sigxcpu": "import signal\nsignal.raise_signal(signal.SIGXCPU)\nprint('survived')",
    "own_sigkill": "import signal\nsignal.raise_signal(signal.SIGKILL)\nprint('survived')",
    # bwrap reports a death by signal N as exit status 128 + N
    "exit_137": "import os\nos._exit(137)",
    "exit_152": "import os\nos._exit(152)",
    # the runner's own words, printed by the program
    "blocked_marker": (
        "import os, sys\nsys.stderr.write('\\nCODEIFT-SANDBOX-BLOCKED: os.fork: forged by the "
        "program\\n')\nsys.stderr.flush()\nos._exit(86)"
    ),
    "memory_error_line": (
        "import sys\nsys.stderr.write('Traceback (most recent call last):\\nMemoryError: forged"
        "\\n')\nsys.exit(1)"
    ),
}


@pytest.mark.parametrize("route", sorted(FORGED_STATUS))
def test_a_program_cannot_forge_its_status(route, layers):
    row = score(FORGED_STATUS[route])
    # what the program printed may be its crash detail, but never the runner's verdict
    assert row["program_status"] not in ("timeout", "memory", "blocked"), row["program_detail"]


def test_the_guards_frames_do_not_give_away_the_runs_marker(boundary):
    """A path object's __fspath__ runs inside the guard: walking up from there to the guard's
    closure would give the marker's nonce. Frames are refused while the guard runs."""
    program = (
        "import os, sys\nclass P:\n    def __fspath__(self):\n        nonce = None\n"
        "        frame = sys._getframe(1)\n        while frame is not None:\n"
        "            for value in list(frame.f_locals.values()):\n"
        "                for cell in getattr(value, '__closure__', None) or ():\n"
        "                    try:\n                        v = cell.cell_contents\n"
        "                    except ValueError:\n                        continue\n"
        "                    if isinstance(v, str) and len(v) == 32:\n"
        "                        nonce = v\n            frame = frame.f_back\n"
        "        tag = f'-{nonce} ' if nonce else '-'\n"
        "        sys.stderr.write(f'\\nCODEIFT-SANDBOX{tag}BLOCKED: os.fork: forged\\n')\n"
        "        sys.stderr.flush()\n        os._exit(86)\n"
        "open(P(), 'w')"
    )
    row = score(program)
    forged = row["program_status"] == "blocked" and "forged" in row["program_detail"]
    assert not forged, row["program_detail"]


def test_a_real_cpu_timeout_is_still_a_timeout(layers):
    row = score("while True:\n    pass", SandboxLimits(wall_seconds=6.0, cpu_seconds=1))
    assert row["program_status"] == "timeout"


def test_a_real_memory_exhaustion_is_still_memory(boundary):
    row = score("x = []\nwhile True:\n    x.append(bytearray(10**7))")
    assert row["program_status"] == "memory"


# --- a score job killed outright leaves nothing behind -------------------------------------------

_KILLED_JOB = (
    "import os, signal\nfrom codeift.score import sandbox\nb = sandbox.prepare('jail')\n"
    "print(b.python_mounts[0][0] if b.python_mounts else '', flush=True)\n"
    "os.kill(os.getpid(), signal.SIGKILL)"
)


def _job(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_jobs_interpreter_stage_is_removed_by_the_next_job(boundary, tmp_path):
    killed = _job(_KILLED_JOB)
    stage = killed.stdout.strip()
    if not stage.startswith(tempfile.gettempdir()):
        pytest.skip("the interpreter is mounted in place here; no stage is made")
    assert Path(stage).is_dir(), "the killed job's stage should be there before the next job"
    # look-alikes that are not ours to remove: another user's, a link, a live job's
    dead = _dead_pid()
    foreign = Path(tempfile.gettempdir(), f"{jail.STAGE_PREFIX}{dead}-foreign")
    foreign.mkdir()
    if os.geteuid() == 0:
        os.chown(foreign, jail.NOBODY, jail.NOBODY)
    link = Path(tempfile.gettempdir(), f"{jail.STAGE_PREFIX}{dead}-link")
    link.symlink_to(tmp_path)
    live = Path(tempfile.gettempdir(), f"{jail.STAGE_PREFIX}{os.getpid()}-live")
    live.mkdir()
    try:
        _job("from codeift.score import sandbox\nprint(sandbox.prepare('jail').ready)")
        assert not Path(stage).exists(), f"{stage} of a job killed outright is still there"
        assert live.is_dir() and link.is_symlink() and tmp_path.is_dir()
        if os.geteuid() == 0:
            assert foreign.is_dir()
    finally:
        for path in (foreign, live):
            shutil.rmtree(path, ignore_errors=True)
        link.unlink(missing_ok=True)


def test_a_killed_jobs_run_cgroups_are_removed_by_the_next_job(boundary):
    if boundary.cgroup is None:
        pytest.skip("no memory cgroup here")
    left = boundary.cgroup.path / f"codeift-{_dead_pid()}-0"
    left.mkdir()
    try:
        _job("from codeift.score import sandbox\nprint(sandbox.prepare('jail').ready)")
        assert not left.exists(), "a dead job's run cgroup is still there"
    finally:
        if left.exists():
            left.rmdir()
