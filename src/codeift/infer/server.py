"""A shared engine per model, so a sweep pays vLLM's start-up once per model, not once per job.

Each generation job (one backbone x variant x task: the unit of caching) asks for the engine of
its model. The first job of a model starts a daemon that loads the engine and listens on a Unix
socket; later jobs of that model on the same machine reuse it; it exits after
`engines.idle_seconds` without a request. At most `engines.max_alive` daemons live at once: starting
another first asks the least recently used idle one to exit (a busy one refuses). Generation
requests run one at a time, so a job's batch is exactly its task's prompts, as if it had run alone
(same greedy outputs); `info` and `stop` are answered at once, also while a batch generates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codeift.errors import EngineError, EngineStopped
from codeift.infer.engines import Generation, load_engine
from codeift.infer.private import (
    UnsafeEntryError,
    check_peer,
    check_socket,
    open_private,
    private_folder,
    private_lock,
    write_private,
)
from codeift.io import stable_hash
from codeift.settings import EngineSettings, InferenceSettings

START_TIMEOUT_SECONDS = 1800
# A live daemon answers `info` from its own thread within milliseconds, even mid-generation; the
# margin is for a machine loaded by other jobs (on 2 cores, SFT beside generation).
INFO_TIMEOUT_SECONDS = 30.0


# A Unix socket's path is limited to 107 bytes; ours are <engine dir>/<engine key>.sock.
SOCKET_PATH_MAX = 107
KEY_LENGTH = 20
SOCKET_NAME_LENGTH = len("/") + KEY_LENGTH + len(".sock")


# Daemon limits. A frame is one JSON request or reply; the largest study task (10^6 prompts)
# fits, a declared terabyte does not get read at all.
MAX_FRAME_BYTES = 256 << 20
# Replies come from a daemon whose uid was checked; they are bigger than their prompts' frame
# (a reply per prompt, with its counts), so they get a larger bound of their own.
MAX_REPLY_BYTES = 4 << 30
# Connections served at once (each a thread); more are closed at once, given no thread.
MAX_CONNECTIONS = 32
# Seconds a connection may take to send its request or read its reply before it is dropped.
CONNECTION_TIMEOUT_SECONDS = 30.0
# How long a client's `info` with `reserve` (its prompts follow) holds an idle engine, once.
RESERVE_SECONDS = 10.0
# Tests shorten the timeout to see it act; it is not a study setting.
CONNECTION_TIMEOUT_ENV = "CODEIFT_ENGINE_CONNECTION_TIMEOUT"


def _default_root() -> Path:
    """The per-user runtime folder (systemd makes it 0700 and ours) where there is a usable
    one, else a per-uid folder in /tmp that must turn out to be ours and private."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        try:
            private_folder(Path(runtime))
        except (UnsafeEntryError, OSError):
            pass
        else:
            return Path(runtime) / "codeift-engines"
    return Path(f"/tmp/codeift-engines-{os.geteuid()}")


def engine_dir() -> Path:
    """Where sockets, pid files, engine logs and cached replies live: a folder only this user
    can enter (created 0700, or refused if it exists and is not ours and private). The path is
    short: socket names are limited."""
    explicit = os.environ.get("CODEIFT_ENGINE_DIR")
    root = Path(explicit) if explicit else _default_root()
    if len(os.fsencode(root.absolute())) + SOCKET_NAME_LENGTH > SOCKET_PATH_MAX:
        raise EngineError(
            f"CODEIFT_ENGINE_DIR={str(root)!r} is too long for the engines' Unix sockets (at "
            f"most {SOCKET_PATH_MAX - SOCKET_NAME_LENGTH} bytes): choose a shorter folder"
        )
    try:
        return private_folder(root.absolute())
    except UnsafeEntryError as error:
        raise EngineError(
            f"engine folder unusable: {error}. Another user may have made it; set "
            "CODEIFT_ENGINE_DIR to a folder of your own (or engines.idle_seconds: 0)"
        ) from error


def engine_key(model_fingerprint: str, settings: InferenceSettings) -> str:
    return stable_hash(
        {"model": model_fingerprint, "settings": settings.to_dict()}, length=KEY_LENGTH
    )


# --------------------------------------------------------------------------- wire format


class FrameTooLarge(ValueError):
    """A frame over MAX_FRAME_BYTES: refused from its header, its body never read."""


def send_message(
    conn: socket.socket, payload: dict[str, Any], limit: int = MAX_FRAME_BYTES
) -> None:
    data = json.dumps(payload).encode("utf-8")
    if len(data) > limit:
        raise FrameTooLarge(
            f"engine message of {len(data)} bytes is over the limit of {limit} bytes "
            "(codeift.infer.server.MAX_FRAME_BYTES / MAX_REPLY_BYTES): split the task"
        )
    conn.sendall(struct.pack("!Q", len(data)) + data)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = conn.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("engine closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive_message(conn: socket.socket, limit: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """One frame, its declared size checked against `limit` before any of its body is read."""
    (size,) = struct.unpack("!Q", _recv_exact(conn, 8))
    if size > limit:
        raise FrameTooLarge(f"engine frame declares {size} bytes (allowed: at most {limit})")
    message = json.loads(_recv_exact(conn, size).decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError(f"engine frame is a JSON {type(message).__name__}, not an object")
    return message


def request(socket_path: Path, payload: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One request to the daemon at `socket_path`: the socket must be ours (lstat) and so must
    the process that answers on it (SO_PEERCRED), or nothing is sent."""
    check_socket(socket_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(socket_path))
        check_peer(conn, f"engine socket {socket_path}")
        send_message(conn, payload)
        return receive_message(conn, MAX_REPLY_BYTES)


# --------------------------------------------------------------------------- daemon side


class _EngineState:
    """What the daemon's connection threads share: one generation at a time (`generating`),
    the requests in flight and the last use (for the idle limit and least-recently-used
    eviction), the stop flag and the connection slots. Only generation counts as use: `info`
    pings (`engines list`, eviction checks) must not keep an idle engine and its memory alive.
    A client about to send its prompts holds the engine for at most RESERVE_SECONDS, once
    (`info` with `reserve`; a new engine is held so for its starter): the gap between its
    check and its request is no idle time to exit in, and the hold ends when generation starts."""

    def __init__(self) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.generating = threading.Lock()
        self.guard = threading.Lock()
        self.in_flight = 0
        self.last_used = time.time()
        self.reserved_until = time.time() + RESERVE_SECONDS
        self.stopping = threading.Event()

    def reserve(self) -> None:
        with self.guard:
            self.reserved_until = time.time() + RESERVE_SECONDS

    def begin(self) -> None:
        with self.guard:
            self.in_flight += 1
            self.reserved_until = 0.0

    def end(self) -> None:
        with self.guard:
            self.in_flight -= 1
            self.last_used = time.time()

    def busy(self) -> bool:
        with self.guard:
            return self.in_flight > 0

    def idle_for(self) -> float:
        with self.guard:
            if self.in_flight or time.time() < self.reserved_until:
                return 0.0
            return time.time() - self.last_used


def _connection_timeout() -> float:
    return float(os.environ.get(CONNECTION_TIMEOUT_ENV, CONNECTION_TIMEOUT_SECONDS))


def _batches(message: dict[str, Any]) -> list[list[list[dict[str, str]]]]:
    """The request's batches, or a ValueError that the client gets back (not a dead thread)."""
    batches = message.get("batches")
    if not isinstance(batches, list) or not all(
        isinstance(batch, list)
        and all(
            isinstance(turns, list)
            and all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in turns)
            for turns in batch
        )
        for batch in batches
    ):
        raise ValueError("'batches' must be a list of batches of conversations")
    return batches


def _reply(conn: socket.socket, payload: dict[str, Any]) -> None:
    """A client that went away (its own timeout, a killed job) costs its reply, not the engine."""
    try:
        conn.settimeout(_connection_timeout())
        send_message(conn, payload, MAX_REPLY_BYTES)
    except (OSError, ValueError):
        pass


def _serve_connection(
    conn: socket.socket, engine: Any, state: _EngineState, info: dict[str, Any]
) -> None:
    try:
        _handle(conn, engine, state, info)
    except Exception as error:  # a malformed request costs its connection, never the daemon
        print(f"[engine] request failed: {type(error).__name__}: {error}", flush=True)
    finally:
        state.slots.release()


def _handle(conn: socket.socket, engine: Any, state: _EngineState, info: dict[str, Any]) -> None:
    """One connection. `info` and `stop` are answered at once, also while another job's batch
    is generating: a busy engine is never taken for a missing one (which would start a
    duplicate) nor evicted under a waiting job."""
    with conn:
        try:
            check_peer(conn, "engine client")
            conn.settimeout(_connection_timeout())
            message = receive_message(conn)
        except ValueError as error:  # too large, not JSON, not an object: say so, keep serving
            _reply(conn, {"ok": False, "error": f"malformed request: {error}"})
            return
        except (OSError, UnsafeEntryError) as error:
            print(f"[engine] dropped a connection: {type(error).__name__}: {error}", flush=True)
            return
        op = message.get("op")
        if state.stopping.is_set() and op != "stop":
            # Accepted just before the loop ended: this engine is going, ask for a new one.
            _reply(conn, {"ok": False, "stopping": True})
            return
        if op == "chat":
            state.begin()
            try:
                # A request's batches (one per task) run back to back, each alone.
                with state.generating:
                    started = time.perf_counter()
                    batches = [
                        engine.chat(conversations, int(message["max_new_tokens"]))
                        for conversations in _batches(message)
                    ]
                    seconds = time.perf_counter() - started
                replies = [[result.to_dict() for result in batch] for batch in batches]
                # Generation alone (no queue, no engine start): the study benchmark's rate.
                payload: dict[str, Any] = {"ok": True, "batches": replies, "seconds": seconds}
            except Exception as error:  # report to the client, keep serving
                payload = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            finally:
                # Idle before the reply: the client may ask for eviction as soon as it has it.
                state.end()
            _reply(conn, payload)
        elif op == "info":
            if message.get("reserve") is True:
                state.reserve()
            with state.guard:
                last_used, in_flight = state.last_used, state.in_flight
            _reply(conn, {**info, "ok": True, "last_used": last_used, "in_flight": in_flight})
        elif op == "stop":
            if state.busy():
                _reply(conn, {"ok": False, "busy": True})
            else:
                state.stopping.set()
                _reply(conn, {"ok": True})
        else:
            _reply(conn, {"ok": False, "error": f"unknown op {op!r}"})


def serve(model_dir: str, settings: InferenceSettings, key: str, idle_limit: float) -> None:
    """Load the engine, then answer requests until idle for `idle_limit` seconds (the
    config's engines.idle_seconds, given by the job that starts it)."""
    root = engine_dir()
    socket_path = root / f"{key}.sock"
    started = time.time()
    engine = load_engine(model_dir, settings)
    load_seconds = round(time.time() - started, 2)
    print(
        f"[engine] {engine.name} {engine.version} loaded {model_dir} in {load_seconds}s", flush=True
    )
    info = {
        "engine": engine.name,
        "version": engine.version,
        "model": model_dir,
        "load_seconds": load_seconds,
        "pid": os.getpid(),
    }
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)  # a stale socket of ours (the folder is private)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound 0600 from the start (the umask applies to the socket file bind creates).
    umask = os.umask(0o177)
    try:
        server.bind(str(socket_path))
    finally:
        os.umask(umask)
    check_socket(socket_path)
    ours = os.lstat(socket_path).st_ino
    server.listen(64)
    server.settimeout(1.0)
    state = _EngineState()
    pid_file = json.dumps({"pid": os.getpid(), "model": model_dir}).encode()
    write_private(root / f"{key}.json", pid_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while not state.stopping.is_set() and state.idle_for() < idle_limit:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if not state.slots.acquire(blocking=False):
                # No thread for it: a flood of idle connections costs sockets, not threads.
                conn.close()
                continue
            threading.Thread(
                target=_serve_connection, args=(conn, engine, state, info), daemon=True
            ).start()
    finally:
        server.close()
        # A successor of the same model may already listen at this path: leave its socket.
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(socket_path).st_ino == ours:
                socket_path.unlink()
                (root / f"{key}.json").unlink(missing_ok=True)
        print("[engine] exiting", flush=True)


# --------------------------------------------------------------------------- client side


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file of the private engine folder (never through a symlink)."""
    with private_lock(path):
        yield


def live_engines() -> list[dict[str, Any]]:
    """Every daemon of ours on this machine that answers, with its last use time."""
    engines = []
    for socket_path in sorted(engine_dir().glob("*.sock")):
        try:
            info = request(socket_path, {"op": "info"}, timeout=INFO_TIMEOUT_SECONDS)
        except UnsafeEntryError as error:
            print(f"[codeift] {error}", flush=True)
            continue
        except (OSError, ValueError):
            continue
        if info.get("ok"):
            engines.append({**info, "socket": str(socket_path)})
    return engines


def stop_engines(keep: int = 0) -> int:
    """Ask idle daemons to exit, least recently used first, until at most `keep` remain."""
    engines = sorted(live_engines(), key=lambda e: e["last_used"])
    stopped = 0
    for info in engines[: max(len(engines) - keep, 0)]:
        if info.get("in_flight"):
            continue
        try:
            reply = request(Path(info["socket"]), {"op": "stop"}, timeout=10.0)
        except (OSError, ValueError, UnsafeEntryError):
            continue
        stopped += bool(reply.get("ok"))
    return stopped


def _tail(path: Path, lines: int = 30) -> str:
    """The end of an engine log, read only if it is a private file of ours."""
    try:
        with open_private(path, os.O_RDONLY) as fd, os.fdopen(os.dup(fd), "rb") as handle:
            handle.seek(max(os.fstat(fd).st_size - (1 << 20), 0))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    except (OSError, UnsafeEntryError) as error:
        return f"(log not read: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _start_daemon(
    model_dir: str, settings: InferenceSettings, key: str, engines: EngineSettings
) -> None:
    root = engine_dir()
    socket_path = root / f"{key}.sock"
    log_path = root / f"{key}.log"
    stop_engines(keep=engines.max_alive - 1)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(log_path)  # a fresh log, created exclusively below (never through a link)
    with (
        open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as log_fd,
        os.fdopen(os.dup(log_fd), "wb") as log,
    ):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codeift.infer.server",
                "--model",
                model_dir,
                "--settings",
                settings.to_json(),
                "--key",
                key,
                "--idle",
                str(engines.idle_seconds),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    print(
        f"[codeift] started engine pid {process.pid} for {model_dir} (log {log_path})", flush=True
    )
    deadline = time.time() + START_TIMEOUT_SECONDS
    while time.time() < deadline:
        if process.poll() is not None:
            # Exit code 0 is a clean stop: another job evicted it (max_alive) before we used it.
            kind = EngineStopped if process.returncode == 0 else EngineError
            raise kind(
                f"engine for {model_dir} exited with code {process.returncode} while "
                f"starting; log {log_path}:\n{_tail(log_path)}"
            )
        if os.path.lexists(socket_path):
            try:
                request(socket_path, {"op": "info"}, timeout=INFO_TIMEOUT_SECONDS)
                return
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
    process.kill()
    raise EngineError(
        f"engine for {model_dir} did not start in {START_TIMEOUT_SECONDS}s; log {log_path}"
    )


def _serving(socket_path: Path, model_dir: str, log_path: Path) -> dict[str, Any] | None:
    """The engine's `info` if one serves at `socket_path`; None if none does or the one there
    is stopping (then after it has gone, so that a new one can take the path)."""
    try:
        info = request(socket_path, {"op": "info", "reserve": True}, timeout=INFO_TIMEOUT_SECONDS)
    except TimeoutError as error:
        raise EngineError(
            f"engine for {model_dir} accepts connections but did not answer in "
            f"{INFO_TIMEOUT_SECONDS}s; log {log_path}:\n{_tail(log_path)}"
        ) from error
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except UnsafeEntryError as error:
        raise EngineError(f"engine for {model_dir} not used: {error}") from error
    if info.get("ok"):
        return info
    deadline = time.time() + INFO_TIMEOUT_SECONDS
    while socket_path.exists() and time.time() < deadline:
        time.sleep(0.2)
    return None


def shared_batches(
    model_dir: str,
    fingerprint: str,
    settings: InferenceSettings,
    batches: list[list[list[dict[str, str]]]],
    max_new_tokens: int,
    engines: EngineSettings | None = None,
) -> tuple[list[list[Generation]], dict]:
    """Generate batches through the model's shared engine in one request, each batch alone,
    starting the engine if no live one answers. `engines` (config `engines`, the defaults when
    None) says how long a started engine waits idle and how many may live at once.

    A daemon can exit between our check and our request (idle timeout, or evicted by another
    job starting its own engine): a refused connection is retried with a fresh start.
    """
    engines = engines or EngineSettings()
    key = engine_key(fingerprint, settings)
    root = engine_dir()
    socket_path = root / f"{key}.sock"
    log_path = root / f"{key}.log"
    for attempt in range(3):
        with file_lock(root / f"{key}.lock"):
            info = _serving(socket_path, model_dir, log_path)
            if info is None:
                try:
                    _start_daemon(model_dir, settings, key, engines)
                except EngineStopped:
                    info = None
                else:
                    info = _serving(socket_path, model_dir, log_path)
                if info is None:
                    print(
                        f"[codeift] engine was evicted while starting (attempt {attempt + 1})",
                        flush=True,
                    )
                    continue
        print(
            f"[codeift] using engine pid {info['pid']} ({info['engine']} {info['version']}, "
            f"loaded in {info['load_seconds']}s)",
            flush=True,
        )
        payload = {"op": "chat", "batches": batches, "max_new_tokens": max_new_tokens}
        try:
            reply = request(socket_path, payload, timeout=None)
        except (ConnectionRefusedError, FileNotFoundError):
            print(
                f"[codeift] engine went away before the request (attempt {attempt + 1})", flush=True
            )
            continue
        except UnsafeEntryError as error:
            raise EngineError(f"engine for {model_dir} not used: {error}") from error
        except (OSError, ValueError) as error:
            raise EngineError(
                f"engine for {model_dir} failed mid-request ({error}); "
                f"log {log_path}:\n{_tail(log_path)}"
            ) from error
        if reply.get("stopping"):
            print(f"[codeift] engine was stopping (attempt {attempt + 1})", flush=True)
            continue
        if not reply.get("ok"):
            raise EngineError(f"engine for {model_dir}: {reply.get('error')}")
        replies = [[Generation(**result) for result in batch] for batch in reply["batches"]]
        return replies, {**info, "generate_seconds": reply.get("seconds")}
    raise EngineError(f"engine for {model_dir} kept going away; log {log_path}:\n{_tail(log_path)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="codeift shared engine daemon")
    parser.add_argument("--model", required=True)
    parser.add_argument("--settings", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--idle", type=float, required=True)
    args = parser.parse_args(argv)
    serve(args.model, InferenceSettings.from_json(args.settings), args.key, args.idle)


if __name__ == "__main__":
    main()
