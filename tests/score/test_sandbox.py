"""Tests for codeift.score.sandbox: hostile and careless programs end classified, none leaks."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from codeift.score import jail, sandbox
from codeift.score.answers import score_frame
from codeift.score.sandbox import (
    STATUSES,
    Ending,
    ProgramRun,
    SandboxLimits,
    classify,
    extract_program,
    run_program,
    run_programs,
)
from codeift.score.sandbox_runner import BLOCKED_EXIT, MARKER, MEMORY_EXIT

FAST = SandboxLimits(wall_seconds=4.0, cpu_seconds=2)

HOSTILE: dict[str, tuple[str, str]] = {
    "infinite_loop": ("while True:\n    pass", "timeout"),
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", "blocked"),
    "fork_swallowed": ("import os\ntry:\n    os.fork()\nexcept Exception:\n    pass", "blocked"),
    "multiprocessing": ("import multiprocessing as m\nm.Pool(2).map(abs, [1])", "blocked"),
    "raw_fork_exec": ("import _posixsubprocess\n_posixsubprocess.fork_exec()", "blocked"),
    "subprocess": ('import subprocess\nsubprocess.run(["ls"])', "blocked"),
    "os_system": ('import os\nos.system("ls")', "blocked"),
    "socket": ('import socket\nsocket.socket().connect(("127.0.0.1", 9))', "blocked"),
    "urlopen": ('import urllib.request\nurllib.request.urlopen("http://example.com")', "blocked"),
    "ctypes": ("import ctypes", "blocked"),
    "kill": ("import os\nos.kill(1, 0)", "blocked"),
    "raise_limits": (
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))",
        "blocked",
    ),
}


def _run(source: str) -> ProgramRun:
    started = time.monotonic()
    run = run_program(source, FAST)
    assert time.monotonic() - started < 8.0, "a sandbox run must end within seconds"
    assert run.status in STATUSES
    return run


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_are_stopped(name):
    source, status = HOSTILE[name]
    run = _run(source)
    assert run.status == status, run
    assert run.detail


def test_fork_bomb_leaves_the_machine_usable():
    run = _run("import os\nwhile True:\n    os.fork()")
    assert run.status == "blocked" and "os.fork" in run.detail
    assert _run("print(6 * 7)") == ProgramRun("ok", "42", None)


@pytest.mark.parametrize(
    "source", ["x = bytearray(10**10)", "x = []\nwhile True:\n    x.append(' ' * 10**6)"]
)
def test_memory_hogs_hit_the_memory_limit(source):
    run = _run(source)
    assert run.status == "memory" or (run.status == "crashed" and "MemoryError" in run.detail)


@pytest.mark.parametrize("target", ["/tmp/codeift_escape.txt", "/root/x", "../../codeift_up.txt"])
def test_writing_outside_the_temp_folder_is_blocked(target):
    escape = Path(target) if target.startswith("/") else None
    if escape is not None and escape.exists():
        escape.unlink()
    run = _run(f"open({target!r}, 'w').write('escaped')\nprint('wrote')")
    assert run.status == "blocked" and "outside the sandbox folder" in run.detail
    assert run.stdout == ""
    if escape is not None:
        assert not escape.exists()


def test_changing_files_outside_is_blocked():
    run = _run("import os\nos.remove('/etc/hostname')")
    assert run.status == "blocked" and "os.remove" in run.detail
    assert Path("/etc/hostname").exists()
    assert _run("import shutil\nshutil.rmtree('/tmp')").status == "blocked"
    assert _run("import os\nos.symlink('/etc', 'etc')").status == "blocked"


def test_a_normal_program_prints_its_answer():
    assert _run("print(42)") == ProgramRun("ok", "42", None)
    main = "def main():\n    print(sum(range(10)))\n\nif __name__ == '__main__':\n    main()"
    assert _run(main).stdout == "45"


def test_writing_inside_its_own_folder_is_allowed_and_removed_afterwards():
    source = (
        "import os, tempfile\n"
        "open('notes.txt', 'w').write('kept')\n"
        "tempfile.NamedTemporaryFile().write(b'x')\n"
        "print(open('notes.txt').read(), os.getcwd())"
    )
    run = _run(source)
    assert run.status == "ok", run
    text, folder = run.stdout.split()
    assert text == "kept" and not Path(folder).exists()


def test_environment_is_empty_and_stdin_closed():
    run = _run("import os\nprint(sorted(os.environ))")
    assert run.stdout == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']"  # bwrap sets PWD
    assert _run("input()").detail.startswith("EOFError")


def test_failures_are_classified_with_a_detail():
    assert _run("1/0") == ProgramRun("crashed", "", "ZeroDivisionError: division by zero")
    assert _run("print(").status == "crashed"
    assert _run("x = 1").status == "no_output"
    assert _run("print('partial')\nraise SystemExit(3)") == ProgramRun(
        "crashed", "partial", "exit status 3"
    )


def test_huge_output_is_capped_keeping_the_end():
    run = run_program("for i in range(10**6):\n    print(i)", SandboxLimits(output_chars=200))
    assert run.status == "ok" and len(run.stdout) <= 240
    assert run.stdout.startswith("0\n1\n") and run.stdout.endswith("999999")


def test_classify_judges_signals_by_what_was_seen_from_outside():
    limits = SandboxLimits(cpu_seconds=2)
    assert classify(Ending(-9, False, 0.1, oom_kills=1), "", "", limits).status == "memory"
    assert classify(Ending(-24, False, 2.0), "", "", limits).status == "timeout"
    assert classify(Ending(-9, False, 3.0), "", "", limits).status == "timeout"
    assert classify(Ending(-9, False, 1.9), "", "", limits).status == "timeout"  # wait4's count
    assert classify(Ending(-9, False, 1.5), "", "", limits).status == "crashed"
    assert classify(Ending(0, True), "1", "", limits).status == "timeout"
    # a signal nobody outside sent (the program's own) is a crash, whatever it is
    assert classify(Ending(-9, False, 0.1), "", "", limits) == ProgramRun(
        "crashed", "", "killed by SIGKILL"
    )
    assert classify(Ending(-24, False, 0.1), "", "", limits).status == "crashed"
    assert classify(Ending(-11, False, 0.1), "", "", limits).detail == "killed by SIGSEGV"


def test_only_reports_marked_with_the_runs_nonce_count():
    report = f"\n{MARKER}abc BLOCKED: os.fork: no\n"
    assert classify(Ending(BLOCKED_EXIT, False), "", report, nonce="abc").status == "blocked"
    assert classify(Ending(BLOCKED_EXIT, False), "", report, nonce="abd").status == "crashed"
    assert classify(Ending(BLOCKED_EXIT, False), "", report, nonce=None).status == "crashed"
    memory = f"{MARKER}abc MEMORY: MemoryError\n"
    assert classify(Ending(MEMORY_EXIT, False), "", memory, nonce="abc").status == "memory"
    forged = "Traceback (most recent call last):\nMemoryError"
    assert classify(Ending(1, False), "", forged, nonce="abc").status == "crashed"


def test_run_programs_keeps_order_and_skips_missing():
    runs = run_programs(["print(1)", None, "print(2)", "print(3)"], FAST, workers=2)
    assert [run and run.stdout for run in runs] == ["1", None, "2", "3"]


def _leftover_processes(before: set[int]) -> int:
    """This test process's descendants that were not there before (none should outlive a run;
    other users' runs, and helpers earlier tests left running, do not count)."""
    return len([p for p in psutil.Process().children(recursive=True) if p.pid not in before])


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_scorer_goes_on_after_every_hostile_program():
    before = _children()
    names = sorted(HOSTILE)
    responses = [f"Here is my program:\n```python\n{HOSTILE[name][0]}\n```" for name in names]
    responses += ["```python\nx = bytearray(10**10)\n```", "```py\nprint(42)\n```", "No code."]
    frame = pl.DataFrame(
        {
            "id": [f"r-{index}" for index in range(len(responses))],
            "answer_type": ["number"] * len(responses),
            "answer": ["42"] * len(responses),
            "response": responses,
        }
    )
    scored = score_frame(frame, limits=FAST)
    assert scored["id"].to_list() == frame["id"].to_list()
    statuses = scored["program_status"].to_list()
    assert statuses[:-1] == [HOSTILE[name][1] for name in names] + ["memory", "ok"]
    assert statuses[-1] is None and scored["program_correct"][-1] is None
    assert scored["program_correct"].to_list()[-2] is True
    assert _leftover_processes(before) == 0
    assert os.getpid() > 0 and _run("print(1)").status == "ok"


@pytest.mark.parametrize(
    ("response", "program"),
    [
        ("```python\nprint(1)\n```", "print(1)"),
        ("```py\nx = 2\nprint(x)\n```\nOutput:\n```\n2\n```", "x = 2\nprint(x)"),
        ("```python\nprint(1)\n```\nbetter:\n```python3\nprint(2)\n```", "print(2)"),
        ("Code:\n```\nfor i in range(3):\n    print(i)\n```", "for i in range(3):\n    print(i)"),
        ("```\n42\n```", None),
        ("```\n[c, b, a]\n```", None),
        ("```bash\nls -la\n```", None),
        ('```json\n{"a": 1}\n```', None),
        ("```python\n\n```", None),
        ("```python\nprint(3)\n```\n```python\n   \n```", "print(3)"),
        ("Cut off:\n```python\nprint(5)\n", "print(5)"),
        ("The answer is 42.", None),
        ("", None),
        (None, None),
        ("1. run:\n   ```python\n   if True:\n       print(1)\n   ```", "if True:\n    print(1)"),
    ],
)
def test_extract_program(response, program):
    assert extract_program(response) == program


def test_score_frame_credits_a_program_whose_prose_is_wrong():
    response = "The answer is 41.\n```python\nprint(6 * 7)\n```"
    frame = pl.DataFrame(
        {"id": ["a"], "answer_type": ["number"], "answer": ["42"], "response": [response]}
    )
    scored = score_frame(frame, limits=FAST).row(0, named=True)
    assert scored["correct"] is False and scored["program_correct"] is True
    assert scored["correct_any"] is True and scored["program_extracted"] == "42"
    assert scored["program_status"] == "ok" and scored["program_output"] == "42"
    skipped = score_frame(frame, run_programs=False).row(0, named=True)
    assert skipped["program_status"] is None and skipped["correct_any"] is False


def test_a_failing_program_is_not_correct_even_if_it_printed_the_answer():
    response = "```python\nprint(42)\n1/0\n```"
    frame = pl.DataFrame(
        {"id": ["a"], "answer_type": ["number"], "answer": ["42"], "response": [response]}
    )
    scored = score_frame(frame, limits=FAST).row(0, named=True)
    assert scored["program_status"] == "crashed" and scored["program_output"] == "42"
    assert scored["program_correct"] is False and scored["program_detail"].startswith("ZeroDiv")


@pytest.fixture
def fresh_boundary():
    """Each use probes the boundary anew, and later tests get the real one back."""
    sandbox.prepare.cache_clear()
    yield
    sandbox.prepare.cache_clear()


def _program_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["a", "b"],
            "answer_type": ["number", "number"],
            "answer": ["42", "42"],
            "response": ["```python\nprint(6 * 7)\n```", "The answer is 42."],
        }
    )


def _without_bwrap(monkeypatch, tmp_path: Path) -> None:
    """A node without bubblewrap: PATH holds only a folder with python3 in it (no bwrap)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(os.path.realpath(shutil.which("python3") or sys.executable))
    monkeypatch.setenv("PATH", str(bare))
    assert shutil.which("bwrap") is None


def test_without_bwrap_the_default_jail_fails_the_score_with_the_install_hint(
    fresh_boundary, monkeypatch, tmp_path
):
    _without_bwrap(monkeypatch, tmp_path)
    with pytest.raises(jail.JailUnavailable, match="bwrap") as raised:
        score_frame(_program_frame(), limits=FAST)
    message = str(raised.value)
    assert "apt-get install bubblewrap" in message and "jail_if_available" in message


def test_the_score_command_fails_on_a_node_without_bwrap(fresh_boundary, monkeypatch, tmp_path):
    """The CLI checks before reading replies: even a job with no program fails, naming the fix."""
    from codeift.cli import main

    replies = tmp_path / "generations.parquet"
    _program_frame().filter(pl.col("id") == "b").write_parquet(replies)
    _without_bwrap(monkeypatch, tmp_path)
    argv = ["score", "--generations", str(replies), "--out", str(tmp_path / "s.parquet")]
    assert main([*argv, "--sandbox", "jail"]) == 2
    assert not (tmp_path / "s.parquet").exists()
    assert main([*argv, "--sandbox", "jail_if_available"]) == 0


def test_without_bwrap_jail_if_available_does_not_run_programs_and_says_why(
    fresh_boundary, monkeypatch, caplog, tmp_path
):
    _without_bwrap(monkeypatch, tmp_path)
    scored = score_frame(_program_frame(), limits=FAST, sandbox_mode="jail_if_available").row(
        0, named=True
    )
    assert scored["program_status"] == "not_run" and "bwrap" in scored["program_detail"]
    assert scored["program_output"] == "" and scored["program_correct"] is False
    assert scored["correct_any"] is False and scored["program_sandbox"] == "jail_if_available"
    assert any("NOT run" in record.getMessage() for record in caplog.records)


def test_python_guard_is_an_explicit_opt_in_with_a_warning(fresh_boundary, caplog, monkeypatch):
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)  # as a user: root is refused below
    scored = score_frame(_program_frame(), limits=FAST, sandbox_mode="python_guard")
    row = scored.row(0, named=True)
    assert row["program_status"] == "ok" and row["program_sandbox"] == "python_guard"
    assert scored["program_sandbox"][1] is None
    assert any("NOT in the operating-system jail" in r.getMessage() for r in caplog.records)


def test_python_guard_refuses_to_run_programs_as_root(fresh_boundary, monkeypatch, caplog):
    """Where `nobody` cannot start the interpreter, root would run the program: refused."""
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "_sandbox_user", lambda: None)
    row = score_frame(_program_frame(), limits=FAST, sandbox_mode="python_guard").row(0, named=True)
    assert row["program_status"] == "not_run" and row["program_output"] == ""
    assert "refuses to run programs as root" in row["program_detail"]
    assert any("NOT run" in record.getMessage() for record in caplog.records)


def test_an_unknown_sandbox_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="scoring.sandbox"):
        run_programs(["print(1)"], FAST, mode="none")


def test_the_config_default_and_schema_match_the_jail_modes():
    import yaml

    from codeift.config import SCHEMA_PATH, load_yaml, with_defaults

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert tuple(schema["properties"]["scoring"]["properties"]["sandbox"]["enum"]) == jail.MODES
    config = with_defaults(load_yaml("config/config.yaml"))
    assert config["scoring"]["sandbox"] == jail.DEFAULT_MODE
    del config["scoring"]
    assert with_defaults(config)["scoring"] == {"sandbox": jail.DEFAULT_MODE}


def test_cleanup_of_a_folder_the_program_locked_never_raises(tmp_path):
    locked = tmp_path / "work" / "sub"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    locked.chmod(0)
    sandbox.remove_work_folder(tmp_path / "work")
    assert not (tmp_path / "work").exists()


def _set_immutable(path: Path, on: bool) -> None:
    import fcntl
    import struct

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0x10 if on else 0))  # FS_IOC_SETFLAGS
    finally:
        os.close(fd)


def test_an_immutable_leftover_is_counted_and_the_folder_above_is_left_alone(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    locked = work / "locked"
    locked.write_text("x")
    try:
        _set_immutable(locked, True)
    except OSError:
        pytest.skip("needs root and a file system with the immutable flag")
    tmp_path.chmod(0o755)
    before = sandbox.leftover_count()
    try:
        sandbox.remove_work_folder(work)
        assert sandbox.leftover_count() == before + 1 and locked.exists()
        assert tmp_path.stat().st_mode & 0o777 == 0o755
    finally:
        _set_immutable(locked, False)


def _fake_cgroups(tmp_path: Path, mounts: str, own: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mounts)
    (proc / "cgroup").write_text(own)
    return proc


def _fake_cgroup(folder: Path, subtree: str = "") -> Path:
    folder.mkdir(parents=True)
    (folder / "cgroup.procs").write_text("")
    (folder / "cgroup.subtree_control").write_text(subtree)
    return folder


def test_run_cgroups_go_where_the_kernel_allows_them(tmp_path):
    """v1: the own memory cgroup; v2: next to the own cgroup, only where the parent already
    enables memory for its children (nothing is enabled in a cgroup that is not ours)."""
    from codeift.score import cgroups

    v1 = _fake_cgroup(tmp_path / "v1" / "job")
    proc = _fake_cgroups(
        tmp_path,
        f"35 31 0:32 / {tmp_path}/v1 rw - cgroup cgroup rw,memory\n",
        "4:memory:/job\n0::/\n",
    )
    assert cgroups.find_parent(proc) == cgroups.CgroupParent(v1, 1)

    for name, subtree, expected in (("on", "cpu memory", True), ("off", "cpu", False)):
        root = tmp_path / f"v2-{name}"
        parent = _fake_cgroup(root / "user.slice", subtree)
        _fake_cgroup(parent / "session.scope")
        (tmp_path / "proc").rename(tmp_path / f"proc-{name}-old")
        proc = _fake_cgroups(
            tmp_path,
            f"41 31 0:38 / {root} rw - cgroup2 cgroup2 rw\n",
            "0::/user.slice/session.scope\n",
        )
        found = cgroups.find_parent(proc)
        assert found == (cgroups.CgroupParent(parent, 2) if expected else found)
        assert isinstance(found, str) != expected
        assert (parent / "cgroup.subtree_control").read_text() == subtree
