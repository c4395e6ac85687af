"""Attacks on the shared engine: its folder, its daemon and its reply cache (issue 25).

Every case is judged from outside the code under test: a canary file that must not change or
appear, the prompts a planted daemon recorded, a process that must still (or no longer) be
alive, its resident memory and thread count, what comes back on a socket, what a generation
output holds. The other user is `nobody` (uid 65534), run through `setpriv` with the system
Python (stdlib only), so these tests need root; elsewhere they are skipped.

Each attack failed on the code before the change (commit b55139e): see docs/security.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import polars as pl
import psutil
import pytest

from codeift.infer.server import engine_key, live_engines, stop_engines
from codeift.settings import EngineSettings, InferenceSettings
from tests.conftest import shared_chat

SETTINGS = InferenceSettings(engine="fake", dtype="float32", threads=1)
# Shared engines on, one alive at a time (config `engines`, passed to each call).
ENGINES = EngineSettings(idle_seconds=30, max_alive=1)
PROMPTS = [[{"role": "user", "content": f"SECRET-PROMPT {i}"}] for i in range(3)]
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not Path(SYSTEM_PYTHON).exists(),
    reason="the cross-user attacks need root, setpriv and a system Python for `nobody`",
)

# A daemon run by `nobody` that speaks the engine's wire format: it answers `info`, records
# every `chat` request it gets (the prompts) and answers it with PWNED.
FAKE_DAEMON = textwrap.dedent(
    """
    import json, os, socket, struct, sys, time
    path, record = sys.argv[1], sys.argv[2]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(8)
    def exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data
    def send(conn, payload):
        data = json.dumps(payload).encode()
        conn.sendall(struct.pack("!Q", len(data)) + data)
    while True:
        conn, _ = server.accept()
        try:
            (size,) = struct.unpack("!Q", exact(conn, 8))
            message = json.loads(exact(conn, size))
        except Exception:
            conn.close()
            continue
        if message.get("op") == "chat":
            with open(record, "a") as handle:
                handle.write(json.dumps(message) + "\\n")
            reply = {"response": "PWNED", "n_prompt_tokens": 1, "n_response_tokens": 1,
                     "finish_reason": "stop"}
            send(conn, {"ok": True, "seconds": 0.0,
                        "batches": [[reply] * len(b) for b in message["batches"]]})
        else:
            send(conn, {"ok": True, "engine": "fake", "version": "1", "load_seconds": 0,
                        "pid": os.getpid(), "model": "x", "last_used": time.time(),
                        "in_flight": 0})
        conn.close()
    """
)

# `nobody` connects to a socket and sends one request; prints what came back (or the error).
CLIENT = textwrap.dedent(
    """
    import json, socket, struct, sys
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(sys.argv[1])
        data = sys.argv[2].encode()
        conn.sendall(struct.pack("!Q", len(data)) + data)
        size = struct.unpack("!Q", conn.recv(8))[0]
        print("REPLY", conn.recv(size).decode())
    except Exception as error:
        print("ERROR", type(error).__name__, error)
    """
)


def as_nobody(*argv: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.fixture
def scratch():
    """Short /tmp paths (Unix socket names are limited), removed afterwards; processes this
    test started are stopped by their pid."""
    made: list[Path] = []
    processes: list[subprocess.Popen] = []

    def folder(prefix: str = "ca") -> Path:
        path = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:10]}")
        made.append(path)
        return path

    yield folder, processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engines(monkeypatch, scratch):
    """Shared engines on; afterwards ours are stopped (before `scratch` removes folders)."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield
    try:
        stop_engines(keep=0)
    except Exception:  # a refused folder has no engines of ours to stop
        pass


def start_fake_daemon(processes: list, socket_path: Path, record: Path) -> None:
    """`nobody`'s daemon listening at `socket_path` (its folder must let nobody in)."""
    process = subprocess.Popen(
        as_nobody(SYSTEM_PYTHON, "-c", FAKE_DAEMON, str(socket_path), str(record))
    )
    processes.append(process)
    deadline = time.time() + 10
    while not socket_path.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert socket_path.exists(), "the attacker's daemon did not start"


def attacker_folder(folder) -> tuple[Path, Path]:
    """A world-writable folder of nobody's: its own record of what it was sent."""
    own = folder("cn")
    own.mkdir()
    own.chmod(0o777)
    os.chown(own, NOBODY, NOBODY)
    return own, own / "record.jsonl"


def chat_outcome(model: Path) -> list[str] | None:
    """The replies a root job got (None if it refused to use the engine folder)."""
    try:
        replies, _ = shared_chat(str(model), "fingerprint", SETTINGS, PROMPTS, 8, ENGINES)
    except Exception as error:  # refusing is the right outcome; what leaked is judged outside
        print(f"refused: {type(error).__name__}: {error}")
        return None
    return [reply.response for reply in replies]


def socket_name() -> str:
    return f"{engine_key('fingerprint', SETTINGS)}.sock"


# --------------------------------------------------------------------------- engine folder


@pytest.mark.parametrize(
    "owner, mode",
    [(NOBODY, 0o777), (NOBODY, 0o700), (0, 0o777)],
    ids=["nobody-0777", "nobody-0700", "root-0777"],
)
def test_an_engine_folder_not_private_and_ours_gets_no_prompts(
    engines, scratch, monkeypatch, tmp_path, owner, mode
):
    """Another user's daemon waits in the engine folder (made first by that user, or ours but
    left open by a permissive umask): it must see no prompt and answer none."""
    folder, processes = scratch
    own, record = attacker_folder(folder)
    victim_dir = folder("ce")
    victim_dir.mkdir()
    os.chown(victim_dir, NOBODY, NOBODY)
    victim_dir.chmod(0o777)
    start_fake_daemon(processes, victim_dir / socket_name(), record)
    os.chown(victim_dir, owner, owner)
    victim_dir.chmod(mode)
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(victim_dir))
    replies = chat_outcome(tmp_path)
    assert not record.exists(), f"the other user's daemon read: {record.read_text()[:200]}"
    assert replies is None or "PWNED" not in replies


def test_a_socket_planted_by_another_user_in_our_folder_is_not_used(
    engines, scratch, monkeypatch, tmp_path
):
    """Our folder (0700) holds a socket file owned by nobody (moved in): not connected to."""
    folder, processes = scratch
    own, record = attacker_folder(folder)
    start_fake_daemon(processes, own / "s.sock", record)
    ours = folder("ce")
    ours.mkdir(mode=0o700)
    os.rename(own / "s.sock", ours / socket_name())
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(ours))
    replies = chat_outcome(tmp_path)
    assert not record.exists()
    assert replies is None or "PWNED" not in replies


def test_a_socket_file_of_ours_with_another_users_process_behind_it_is_not_used(
    engines, scratch, monkeypatch, tmp_path
):
    """The socket file passes every file check (ours, 0600) but the process listening on it
    is nobody's: the peer's uid (SO_PEERCRED) refuses it before any prompt is sent."""
    folder, processes = scratch
    own, record = attacker_folder(folder)
    start_fake_daemon(processes, own / "s.sock", record)
    ours = folder("ce")
    ours.mkdir(mode=0o700)
    planted = ours / socket_name()
    os.rename(own / "s.sock", planted)
    os.chown(planted, 0, 0, follow_symlinks=False)
    planted.chmod(0o600)
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(ours))
    replies = chat_outcome(tmp_path)
    assert not record.exists()
    assert replies is None or "PWNED" not in replies


@pytest.mark.parametrize("mode", [0o700, 0o777], ids=["private-folder", "open-folder"])
def test_a_symlinked_engine_log_does_not_overwrite_its_target(
    engines, scratch, monkeypatch, tmp_path, mode
):
    """`<key>.log` planted as a symlink to a 0600 file: the file keeps its bytes."""
    folder, _ = scratch
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o600)
    engine_folder = folder("ce")
    engine_folder.mkdir()
    engine_folder.chmod(mode)
    (engine_folder / socket_name().replace(".sock", ".log")).symlink_to(victim)
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(engine_folder))
    chat_outcome(tmp_path)
    assert victim.read_text() == "precious"


def test_a_symlinked_lock_file_creates_nothing_outside_the_folder(
    engines, scratch, monkeypatch, tmp_path
):
    folder, _ = scratch
    engine_folder = folder("ce")
    engine_folder.mkdir(mode=0o700)
    target = tmp_path / "created-through-link"
    (engine_folder / socket_name().replace(".sock", ".lock")).symlink_to(target)
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(engine_folder))
    chat_outcome(tmp_path)
    assert not target.exists()


def test_a_symlinked_pid_file_does_not_overwrite_its_target(
    engines, scratch, monkeypatch, tmp_path
):
    """The daemon writes `<key>.json`: planted as a symlink, it must replace the link, not
    write through it."""
    folder, _ = scratch
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o600)
    engine_folder = folder("ce")
    engine_folder.mkdir(mode=0o700)
    (engine_folder / socket_name().replace(".sock", ".json")).symlink_to(victim)
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(engine_folder))
    chat_outcome(tmp_path)
    assert victim.read_text() == "precious"


# --------------------------------------------------------------------------- the daemon


@pytest.fixture
def daemon(engines, scratch, monkeypatch, tmp_path):
    """A real engine daemon (fake engine) of ours: (pid, socket path, folder)."""
    folder, _ = scratch
    engine_folder = folder("ce")
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(engine_folder))
    monkeypatch.setenv("CODEIFT_ENGINE_CONNECTION_TIMEOUT", "1")
    _, info = shared_chat(str(tmp_path), "fingerprint", SETTINGS, PROMPTS, 8, ENGINES)
    (live,) = live_engines()
    yield info["pid"], Path(live["socket"]), engine_folder
    if psutil.pid_exists(info["pid"]):  # the daemon this fixture started
        os.kill(info["pid"], signal.SIGTERM)


@pytest.fixture(scope="module")
def shared_daemon():
    """One daemon for the wire-level attacks that leave it running (each starts in seconds):
    (pid, socket path, folder). The environment stays set while the module's tests run."""
    folder = Path(f"/tmp/cd-{uuid.uuid4().hex[:10]}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODEIFT_ENGINE_DIR", str(folder))
        patch.setenv("CODEIFT_ENGINE_CONNECTION_TIMEOUT", "1")
        patch.delenv("SLURM_JOB_ID", raising=False)
        model = folder.with_name(folder.name + "-model")
        model.mkdir()
        long_idle = EngineSettings(idle_seconds=600)
        _, info = shared_chat(str(model), "fingerprint", SETTINGS, PROMPTS, 8, long_idle)
        (live,) = live_engines()
        yield info["pid"], Path(live["socket"]), folder
        if psutil.pid_exists(info["pid"]):  # the daemon this fixture started
            os.kill(info["pid"], signal.SIGTERM)
            psutil.Process(info["pid"]).wait(10)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)


@pytest.fixture
def wire(shared_daemon, monkeypatch):
    """The shared daemon, with its folder as this test's engine folder."""
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(shared_daemon[2]))
    return shared_daemon


def _send_raw(socket_path: Path, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(socket_path))
        conn.sendall(data)
        try:
            return conn.recv(1 << 16)
        except TimeoutError:
            return b"<no reply>"


def test_a_declared_terabyte_frame_gets_a_clear_error_at_once(wire):
    pid, socket_path, _ = wire
    reply = _send_raw(socket_path, struct.pack("!Q", 1 << 40))
    assert b"bytes" in reply and b"allowed" in reply, reply[:200]
    assert psutil.pid_exists(pid)


def test_streaming_a_huge_frame_does_not_grow_the_daemon(wire):
    pid, socket_path, _ = wire
    process = psutil.Process(pid)
    before = process.memory_info().rss
    chunk = b"x" * (1 << 20)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(socket_path))
        try:
            conn.sendall(struct.pack("!Q", 1 << 40))
            for _ in range(160):
                conn.sendall(chunk)
        except OSError:
            pass  # the daemon hung up: the right answer
        grown = process.memory_info().rss - before
    assert grown < 64 << 20, f"the daemon grew by {grown >> 20} MiB"


def test_a_flood_of_idle_connections_does_not_start_a_thread_each(wire):
    pid, socket_path, _ = wire
    conns = []
    try:
        for _ in range(120):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(socket_path))
            conns.append(conn)
        time.sleep(1.5)
        threads = psutil.Process(pid).num_threads()
    finally:
        for conn in conns:
            conn.close()
    assert threads < 60, f"{threads} threads for 120 idle connections"


@pytest.mark.parametrize("sent", [b"", b"\x00\x00\x00", struct.pack("!Q", 100) + b"{"])
def test_a_connection_that_stalls_is_dropped(wire, sent):
    """Nothing, half a header, or half a frame, then silence: dropped after the connection
    timeout (1 s here), not held open forever."""
    _, socket_path, _ = wire
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(8)
        conn.connect(str(socket_path))
        conn.sendall(sent)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
    assert closed


def _alive(pid: int) -> bool:
    """Running (a daemon this process started stays a zombie until reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_info_pings_do_not_keep_an_idle_engine_alive(engines, scratch, monkeypatch, tmp_path):
    folder, _ = scratch
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(folder("ce")))
    short_idle = EngineSettings(idle_seconds=2, max_alive=1)
    _, info = shared_chat(str(tmp_path), "fingerprint", SETTINGS, PROMPTS, 8, short_idle)
    deadline = time.time() + 8
    while time.time() < deadline and _alive(info["pid"]):
        live_engines()  # an `info` ping to every engine
        time.sleep(0.3)
    alive = _alive(info["pid"])
    if alive:
        os.kill(info["pid"], signal.SIGTERM)
    assert not alive, "info pings kept the engine alive past its idle limit"


@pytest.mark.parametrize(
    "message",
    [b"[1, 2]", b'"chat"', b"\xff\xfe not utf-8"],
    ids=["list", "string", "not-utf8"],
)
def test_a_malformed_request_gets_an_answer_and_the_daemon_lives(wire, message):
    pid, socket_path, _ = wire
    reply = _send_raw(socket_path, struct.pack("!Q", len(message)) + message)
    assert b'"ok": false' in reply, reply[:200]
    assert psutil.pid_exists(pid)
    assert live_engines(), "the daemon stopped answering"


def _nobody_request(socket_path: Path, payload: dict) -> str:
    result = subprocess.run(
        as_nobody(SYSTEM_PYTHON, "-c", CLIENT, str(socket_path), json.dumps(payload)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout


def test_under_a_permissive_umask_another_user_cannot_stop_the_engine(
    engines, scratch, monkeypatch, tmp_path
):
    folder, _ = scratch
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(folder("ce")))
    old = os.umask(0)
    try:
        _, info = shared_chat(str(tmp_path), "fingerprint", SETTINGS, PROMPTS, 8, ENGINES)
        (live,) = live_engines()
    finally:
        os.umask(old)
    print(_nobody_request(Path(live["socket"]), {"op": "stop"}))
    time.sleep(2.0)
    assert _alive(info["pid"])


def test_under_a_permissive_umask_another_user_cannot_chat(engines, scratch, monkeypatch, tmp_path):
    folder, _ = scratch
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(folder("ce")))
    old = os.umask(0)
    try:
        shared_chat(str(tmp_path), "fingerprint", SETTINGS, PROMPTS, 8, ENGINES)
        (live,) = live_engines()
    finally:
        os.umask(old)
    payload = {"op": "chat", "batches": [PROMPTS], "max_new_tokens": 4}
    out = _nobody_request(Path(live["socket"]), payload)
    assert "The answer is" not in out, out


def test_a_reachable_socket_still_refuses_another_users_requests(daemon):
    """Even with the folder and socket opened up after the start, the daemon checks its
    peer's uid: nobody's `stop` is not obeyed."""
    pid, socket_path, engine_folder = daemon
    engine_folder.chmod(0o755)
    socket_path.chmod(0o666)
    print(_nobody_request(socket_path, {"op": "stop"}))
    time.sleep(2.0)
    assert _alive(pid)


# --------------------------------------------------------------------------- reply cache


def _model(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "tokenizer.json").write_text('{"version": "1.0"}')
    (model / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    return model


@pytest.fixture
def study(engines, scratch, monkeypatch, tmp_path):
    """A model folder, one task file, and a reply cache entry planted for it (STALE)."""
    from codeift.infer.engines import Generation
    from codeift.infer.generate import ModelEngine, reply_cache, store_replies
    from codeift.io import write_parquet
    from codeift.tasks import build_task_frame

    folder, _ = scratch
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", str(folder("ce")))
    model = _model(tmp_path)
    tasks = tmp_path / "tasks"
    for name, domain in (("coin_flip", "symbolic"), ("list_reversal", "symbolic")):
        frame = build_task_frame(name, {"domain": domain, "size": 4}, 0)
        write_parquet(frame, tasks / f"{name}.parquet")
    stale = [Generation("STALE", 1, 1, "stop")] * 4
    cache = reply_cache(ModelEngine(str(model.resolve()), SETTINGS), tasks / "coin_flip.parquet")
    store_replies(cache, stale, "fake", "1")
    return model, tasks, cache


def _responses(model: Path, tasks: Path, task: str = "coin_flip") -> list[str]:
    from codeift.infer.generate import generate_task

    out = tasks.parent / "generations" / f"{task}.parquet"
    identity = {"name": "m", "family": "llama", "size": "1M"}
    try:
        # A tuned variant: the base variant would add its template's role-marker stop, and this
        # model folder's tokenizer is a stub.
        generate_task(model, tasks / f"{task}.parquet", out, identity, "code100", SETTINGS, ENGINES)
    except Exception as error:  # refusing is a right outcome; the output is what is judged
        print(f"refused: {type(error).__name__}: {error}")
    if not out.exists():
        return []
    return pl.read_parquet(out)["response"].to_list()


def test_an_unchanged_model_is_served_its_cached_replies(study):
    """The control: nothing changed, so the cached replies are the ones used."""
    model, tasks, _ = study
    assert _responses(model, tasks) == ["STALE"] * 4


def _keep_mtime(path: Path, change) -> None:
    stamp = os.stat(path)
    change(path)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


@pytest.mark.parametrize(
    "edit",
    ["chat_template", "tokenizer_in_place", "weights_cp_p", "new_tokenizer_model"],
)
def test_a_changed_model_is_not_served_the_old_replies(study, tmp_path, edit):
    model, tasks, _ = study
    if edit == "chat_template":
        _keep_mtime(model / "chat_template.jinja", lambda p: p.write_text("{{ 'other' }}"))
    elif edit == "tokenizer_in_place":
        _keep_mtime(model / "tokenizer.json", lambda p: p.write_text('{"version": "2.0"}'))
    elif edit == "weights_cp_p":
        other = tmp_path / "other.safetensors"
        other.write_bytes(os.urandom(4096))
        os.utime(other, ns=(0, os.stat(model / "model.safetensors").st_mtime_ns))
        subprocess.run(["cp", "-p", str(other), str(model / "model.safetensors")], check=True)
    else:
        (model / "tokenizer.model").write_bytes(b"sentencepiece")
    assert "STALE" not in _responses(model, tasks)


def test_a_tampered_cache_entry_is_not_served(study):
    model, tasks, cache = study
    payload = json.loads(cache.read_text())
    for result in payload["results"]:
        result["response"] = "TAMPERED"
    cache.write_text(json.dumps(payload))
    assert "TAMPERED" not in _responses(model, tasks)


def test_a_cache_entry_moved_to_another_tasks_name_is_not_served(study):
    from codeift.infer.generate import ModelEngine, reply_cache

    model, tasks, cache = study
    other = reply_cache(
        ModelEngine(str(model.resolve()), SETTINGS), tasks / "list_reversal.parquet"
    )
    os.replace(cache, other)
    assert "STALE" not in _responses(model, tasks, "list_reversal")


@pytest.mark.parametrize("how", ["owned-by-nobody", "mode-0644", "symlink"])
def test_a_cache_entry_not_private_and_ours_is_not_served(study, tmp_path, how):
    model, tasks, cache = study
    if how == "owned-by-nobody":
        os.chown(cache, NOBODY, NOBODY)
    elif how == "mode-0644":
        cache.chmod(0o644)
    else:
        elsewhere = tmp_path / "elsewhere.json"
        shutil.copy(cache, elsewhere)
        cache.unlink()
        cache.symlink_to(elsewhere)
    assert "STALE" not in _responses(model, tasks)


def test_a_cache_planted_in_a_folder_another_user_owns_is_not_served(study):
    """The whole engine folder handed to nobody (made by nobody first, entries planted)."""
    model, tasks, cache = study
    root = Path(os.environ["CODEIFT_ENGINE_DIR"])
    for path in [root, *root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        path.chmod(0o777 if path.is_dir() else 0o666)
    assert "STALE" not in _responses(model, tasks)
