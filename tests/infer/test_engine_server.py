"""The shared engine: reused across jobs of one model, identical to an in-process engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from codeift.cluster import INPUT_PRIORITY, model_priority
from codeift.config import variants, with_defaults
from codeift.infer.engines import load_engine
from codeift.infer.server import (
    EngineError,
    engine_dir,
    live_engines,
    stop_engines,
)
from codeift.models.backbones import model_fingerprint
from codeift.models.tiny import build_tiny
from codeift.settings import EngineSettings, InferenceSettings
from tests.conftest import shared_chat, short_engine_dir
from tests.hooks.codeift_test_hooks import use_hooks

# The fake engine loads no model: these tests are about sharing, not generation.
SETTINGS = InferenceSettings(engine="fake", dtype="float32", threads=1)
HF_SETTINGS = InferenceSettings(engine="hf", dtype="float32", threads=1)
# Shared engines on, one alive at a time (config `engines`, passed to each call).
ENGINES = EngineSettings(idle_seconds=30, max_alive=1)
# Each job loads its own engine and generates only its own task.
NO_SHARING = EngineSettings(idle_seconds=0)
PROMPTS = [[{"role": "user", "content": f"Reverse the list {i}, {i + 1}"}] for i in range(5)]


@pytest.fixture
def engine_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEIFT_ENGINE_DIR", short_engine_dir(tmp_path))
    yield tmp_path
    stop_engines(keep=0)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("a", 0), ("b", 1)):
        build_tiny({"architecture": "llama", "corpus_examples": 200, "seed": seed}, root / name)
    return root


def test_jobs_of_one_model_share_one_engine_with_in_process_answers(engine_env, tiny_models):
    model = str(tiny_models / "a")
    first, info_first = shared_chat(model, model_fingerprint(model), SETTINGS, PROMPTS, 8, ENGINES)
    second, info_second = shared_chat(
        model, model_fingerprint(model), SETTINGS, PROMPTS[:2], 8, ENGINES
    )
    assert info_first["pid"] == info_second["pid"]
    assert [r.response for r in second] == [r.response for r in first[:2]]
    local = load_engine(model, SETTINGS).chat(PROMPTS, 8)
    assert [r.response for r in first] == [r.response for r in local]
    assert len(live_engines()) == 1


def test_the_engines_own_generation_time_leaves_its_start_out(engine_env, tiny_models, monkeypatch):
    """The first request of a model starts its engine: the time the benchmark reads is the
    engine's generation alone (here the fake engine's 1 s per batch), not the call's wall."""
    from codeift.infer.generate import ModelEngine

    use_hooks(monkeypatch, fake_engine_seconds=1)  # in the engine daemon
    engine = ModelEngine(str(tiny_models / "a"), SETTINGS, ENGINES)
    started = time.perf_counter()
    engine.generate([PROMPTS])
    wall = time.perf_counter() - started
    assert engine.generate_seconds is not None and 1.0 <= engine.generate_seconds < 1.5
    assert wall > engine.generate_seconds + 0.2  # the daemon's start-up


def test_starting_a_second_model_evicts_the_idle_one_beyond_max_alive(engine_env, tiny_models):
    model_a, model_b = str(tiny_models / "a"), str(tiny_models / "b")
    _, info_a = shared_chat(model_a, model_fingerprint(model_a), SETTINGS, PROMPTS, 4, ENGINES)
    _, info_b = shared_chat(model_b, model_fingerprint(model_b), SETTINGS, PROMPTS, 4, ENGINES)
    assert info_a["pid"] != info_b["pid"]
    assert [e["model"] for e in live_engines()] == [model_b]


def test_an_engine_that_cannot_start_reports_its_log(engine_env, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(EngineError, match="exited with code .* while starting; log"):
        shared_chat(str(broken), model_fingerprint(broken), HF_SETTINGS, PROMPTS, 4, ENGINES)


def test_each_model_of_the_default_gets_its_own_priority_below_its_inputs(default_config):
    config = with_defaults(default_config)
    models = [(b, v) for b in config["backbones"] for v in variants(config)]
    priorities = [model_priority(backbone, variant) for backbone, variant in models]
    assert len(set(priorities)) == len(models)
    assert all(1 <= priority < INPUT_PRIORITY for priority in priorities)


def test_a_models_priority_is_the_same_in_every_process():
    """Snakemake evaluates priorities in the main process and again in each cluster job: a
    value from Python's salted hash() would differ between them."""
    code = (
        "from codeift.cluster import model_priority; print(model_priority('tiny-llama', 'code0'))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {str(model_priority("tiny-llama", "code0"))}


def test_an_engine_evicted_while_starting_is_started_again(
    engine_env, tiny_models, monkeypatch, capsys
):
    """Another job's start may stop ours (max_alive) before we used it: a clean stop (code 0,
    here made by the test hook in the first daemon) is retried, not reported as a failure."""
    marker = engine_env / "stopped-once"
    use_hooks(monkeypatch, exit_once_marker=marker)
    model = str(tiny_models / "a")
    replies, info = shared_chat(model, model_fingerprint(model), SETTINGS, PROMPTS, 8, ENGINES)
    log = capsys.readouterr().out
    assert marker.exists(), "the first daemon did not stop while starting"
    assert "engine was evicted while starting (attempt 1)" in log, log
    assert log.count("started engine pid") == 2, log
    assert len(replies) == len(PROMPTS) and info["pid"] == live_engines()[0]["pid"]


def test_a_reply_ends_before_its_first_stop_string_as_vllm_returns_it():
    from codeift.infer.engines import cut_at_stop

    assert cut_at_stop("Paris.\n<|user|>\nAnd Rome?", ["<|"]) == "Paris.\n"
    assert cut_at_stop("a END b STOP c", ["STOP", "END"]) == "a "
    assert cut_at_stop("no marker here", ["<|"]) == "no marker here"
    assert cut_at_stop("<|admin|> at once", ["<|"]) == ""
    assert cut_at_stop("anything", []) == "anything"


def test_the_stop_setting_reaches_the_engine_and_validates(tmp_path, default_config):
    from codeift.config import validate_config

    plain = InferenceSettings(engine="fake")
    stopped = InferenceSettings.from_json('{"engine": "fake", "stop": ["answer is"]}')
    assert stopped.stop == ("answer is",)
    conversation = [[{"role": "user", "content": "What is 2 + 2?"}]]
    full = load_engine(str(tmp_path), plain).chat(conversation, 50)[0]
    cut = load_engine(str(tmp_path), stopped).chat(conversation, 50)[0]
    assert full.response.startswith("The answer is ")
    assert cut.response == "The " and cut.finish_reason == "stop"
    bad = {**default_config, "inference": {**default_config["inference"], "stop": [""]}}
    with pytest.raises(Exception, match="stop"):
        validate_config(bad)


def test_a_busy_engine_is_shared_not_duplicated_nor_evicted(engine_env, tiny_models, monkeypatch):
    """Real models generate for a minute per task: a second job asking meanwhile must queue on
    the same engine (seen before: its 5 s probe timed out, it started a duplicate, and the first
    engine died replying to the closed probe), and eviction must leave the busy engine alone."""
    import threading

    use_hooks(monkeypatch, fake_engine_seconds=4)
    model = str(tiny_models / "a")
    fingerprint = model_fingerprint(model)
    replies: dict[str, tuple] = {}

    def job(name: str) -> None:
        replies[name] = shared_chat(model, fingerprint, SETTINGS, PROMPTS, 8, ENGINES)

    first = threading.Thread(target=job, args=("first",))
    first.start()
    deadline = time.time() + 60
    while not [e for e in live_engines() if e.get("in_flight")] and time.time() < deadline:
        time.sleep(0.1)
    busy = live_engines()
    assert len(busy) == 1 and busy[0]["in_flight"] == 1
    assert stop_engines(keep=0) == 0
    second = threading.Thread(target=job, args=("second",))
    second.start()
    first.join(60)
    second.join(60)
    assert replies["first"][1]["pid"] == replies["second"][1]["pid"] == busy[0]["pid"]
    assert [r.response for r in replies["first"][0]] == [r.response for r in replies["second"][0]]
    log = next(Path(short_engine_dir(engine_env)).glob("*.log")).read_text()
    assert "Traceback" not in log
    assert stop_engines(keep=0) == 1


TASKS = {"list_reversal": "symbolic", "coin_flip": "symbolic", "gsm8k": "arithmetic"}


def _study_folders(root) -> tuple:
    """tasks/<task>.parquet and generations/<model>/ as the workflow lays them out."""
    from codeift.io import write_parquet
    from codeift.tasks import build_task_frame

    tasks, generations = root / "tasks", root / "generations" / "a" / "base"
    for name, domain in TASKS.items():
        write_parquet(
            build_task_frame(name, {"domain": domain, "size": 4}, 0), tasks / f"{name}.parquet"
        )
    return tasks, generations


def _generate(model, tasks, generations, task: str, variant: str = "base", engines=ENGINES) -> dict:
    """One generation job of the study's TASKS (planned ahead, as the workflow passes them)."""
    from codeift.infer.generate import generate_task

    identity = {"name": "a", "family": "llama", "size": "0.6M"}
    return generate_task(
        model,
        tasks / f"{task}.parquet",
        generations / f"{task}.parquet",
        identity,
        variant,
        SETTINGS,
        engines,
        sorted(TASKS),
    )


def test_a_models_first_job_generates_its_other_tasks_ahead_with_unchanged_outputs(
    engine_env, tiny_models, monkeypatch, capsys
):
    """One engine start for a model's three jobs, even when its engine is gone between them;
    every output is byte for byte what a job that generated alone wrote."""
    model = tiny_models / "a"
    tasks, generations = _study_folders(engine_env / "shared")
    first = _generate(model, tasks, generations, "list_reversal")
    assert first["generated_ahead"] == 2
    for task in ("coin_flip", "gsm8k"):
        stop_engines(keep=0)  # gone (idle or evicted) before the task's own job
        assert _generate(model, tasks, generations, task)["generated_ahead"] == 0
    log = capsys.readouterr().out
    assert log.count("started engine pid") == 1, log
    assert log.count("replies generated ahead by an earlier job") == 2, log

    # The same jobs, each loading its own engine and generating only its own task.
    alone_tasks, alone = _study_folders(engine_env / "alone")
    for task in TASKS:
        assert "generated_ahead" not in _generate(
            model, alone_tasks, alone, task, engines=NO_SHARING
        )
        shared = pl.read_parquet(generations / f"{task}.parquet").drop("model_path")
        assert shared.equals(pl.read_parquet(alone / f"{task}.parquet").drop("model_path"))


def test_a_models_tasks_go_to_its_engine_in_task_order_whichever_job_starts(
    engine_env, tiny_models, monkeypatch
):
    """With `batching: model` a fresh run's batch must not depend on which of a model's jobs
    Snakemake starts first: the request lists the tasks in task order."""
    from codeift.infer.generate import ModelEngine

    seen: list[list] = []
    original = ModelEngine.generate

    def recording(self, batches):
        seen.append([len(batch) for batch in batches] + [batches[0][0][0]["content"]])
        return original(self, batches)

    monkeypatch.setattr(ModelEngine, "generate", recording)
    for first in ("list_reversal", "coin_flip"):
        shutil.rmtree(engine_dir() / "replies", ignore_errors=True)  # the first run's, ahead
        tasks, generations = _study_folders(engine_env / first)
        _generate(tiny_models / "a", tasks, generations, first)
    assert seen[0] == seen[1]
    assert seen[0][-1] == pl.read_parquet(tasks / "coin_flip.parquet")["prompt"][0]


class _RecordingEngine:
    """Stands in for a loaded engine: records each call's batch, replies with its prompt."""

    name, version = "recording", "0"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def chat(self, conversations, max_new_tokens):
        from codeift.infer.engines import Generation

        self.calls.append(len(conversations))
        return [Generation(c[0]["content"], 1, 1, "stop") for c in conversations]


@pytest.mark.parametrize(("batching", "calls"), [("task", [2, 1, 3]), ("model", [6])])
def test_model_batching_sends_one_batch_and_splits_its_replies_back_per_task(
    monkeypatch, batching, calls
):
    from codeift.infer.generate import ModelEngine

    monkeypatch.setattr("codeift.infer.generate.model_fingerprint", lambda _: "f")
    engine = ModelEngine("m", InferenceSettings(engine="fake", batching=batching), NO_SHARING)
    engine._local = _RecordingEngine()
    sizes = {"a": 2, "b": 1, "c": 3}
    batches = [
        [[{"role": "user", "content": f"{t}{i}"}] for i in range(n)] for t, n in sizes.items()
    ]
    replies, name, _ = engine.generate(batches)
    assert engine._local.calls == calls
    assert [[r.response for r in task] for task in replies] == [
        ["a0", "a1"],
        ["b0"],
        ["c0", "c1", "c2"],
    ]


def test_replies_generated_ahead_are_used_only_when_complete_and_current(
    engine_env, tiny_models, monkeypatch
):
    """A task the model already generated is not generated ahead again, and a cache entry that
    does not hold one reply per prompt, or was made under other package versions (a leftover of
    an earlier run), is regenerated, not used."""
    from codeift.infer.engines import base_model_settings
    from codeift.infer.generate import ModelEngine, package_versions, planned_siblings, reply_cache

    model = tiny_models / "a"
    tasks, generations = _study_folders(engine_env / "shared")
    generations.mkdir(parents=True)
    (generations / "gsm8k.parquet").write_bytes(b"done before")
    own = tasks / "list_reversal.parquet"
    assert planned_siblings(own, generations / "list_reversal.parquet", sorted(TASKS)) == [
        tasks / "coin_flip.parquet"
    ]

    # The base variant generates with its template's role-marker stop: the key of its settings.
    base = base_model_settings(SETTINGS, str(model), "base")
    cache = reply_cache(ModelEngine(str(model.resolve()), base), tasks / "coin_flip.parquet")
    cache.parent.mkdir(parents=True, mode=0o700)
    cache.parent.parent.chmod(0o700)
    cache.touch(mode=0o600)
    cache.write_text(
        json.dumps(
            {"engine": "fake", "version": "0", "versions": package_versions(), "results": []}
        )
    )
    reply = {"response": "x", "n_prompt_tokens": 1, "n_response_tokens": 1, "finish_reason": "stop"}
    other = reply_cache(ModelEngine(str(model.resolve()), base), tasks / "gsm8k.parquet")
    other.touch(mode=0o600)
    other.write_text(
        json.dumps({"engine": "fake", "version": "0", "versions": "{}", "results": [reply] * 4})
    )
    (generations / "gsm8k.parquet").unlink()
    _generate(model, tasks, generations, "coin_flip")
    assert not cache.exists()
    assert pl.read_parquet(generations / "coin_flip.parquet").height == 4
    _generate(model, tasks, generations, "gsm8k")  # the entry of other package versions
    assert "x" not in pl.read_parquet(generations / "gsm8k.parquet")["response"].to_list()


def test_an_engine_folder_too_long_for_a_socket_is_refused_by_name(monkeypatch):
    from codeift.infer.server import engine_dir

    monkeypatch.setenv("CODEIFT_ENGINE_DIR", "/tmp/" + "x" * 90)
    with pytest.raises(EngineError, match="CODEIFT_ENGINE_DIR=.*too long"):
        engine_dir()


@pytest.mark.slow
def test_a_vllm_engine_set_to_one_thread_computes_on_one(tiny_models, tmp_path):
    """OMP_NUM_THREADS is read when torch is first imported: with torch imported before the
    engine is built (as the engine daemon does), an engine set to 1 thread used to run on all
    cores, beside the SFT job it was meant to leave a core to."""
    import subprocess
    import sys

    script = (
        "import torch, json, sys\n"
        "from codeift.infer.engines import load_engine\n"
        "from codeift.settings import InferenceSettings\n"
        "settings = InferenceSettings(engine='vllm', dtype='float32', threads=1,\n"
        "    max_model_len=256, max_num_seqs=4, enforce_eager=True, cpu_kvcache_gib=1)\n"
        "load_engine(sys.argv[1], settings)\n"
        "print('threads', torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tiny_models / "a")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "threads 1" in done.stdout, done.stdout


def test_a_models_identity_is_hashed_once_and_follows_its_contents(tmp_path, monkeypatch):
    """The content hash is cached per file by stat key: a second job reads no weights; a file
    rewritten with its mtime restored is hashed again (its ctime moved), and the identity
    changes with it."""
    from codeift.infer import identity

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"a" * 1000)
    cache = tmp_path / "cache"
    time.sleep(identity.RACY_SECONDS + 0.1)  # files changed just now are hashed every time
    hashed: list[str] = []
    digest = identity._digest
    monkeypatch.setattr(identity, "_digest", lambda p: hashed.append(p.name) or digest(p))
    first = identity.model_identity(model, cache)
    assert sorted(hashed) == ["config.json", "model.safetensors"]
    hashed.clear()
    assert identity.model_identity(model, cache) == first and hashed == []
    stamp = os.stat(model / "model.safetensors")
    (model / "model.safetensors").write_bytes(b"b" * 1000)
    os.utime(model / "model.safetensors", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert identity.model_identity(model, cache) != first and hashed == ["model.safetensors"]
    time.sleep(identity.RACY_SECONDS + 0.1)
    hashed.clear()
    second = identity.model_identity(model, cache)  # the racy entry gets its stat key now
    hashed.clear()
    assert identity.model_identity(model, cache) == second and hashed == []


def test_the_engine_folder_is_in_the_runtime_folder_only_where_that_is_private(
    tmp_path, monkeypatch
):
    """$XDG_RUNTIME_DIR (0700, ours) holds the engine folder, made 0700 whatever the umask;
    a runtime folder others can enter is not used."""
    from codeift.infer.server import _default_root, engine_dir

    monkeypatch.delenv("CODEIFT_ENGINE_DIR", raising=False)
    runtime = Path(short_engine_dir(tmp_path) + "-run")
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    old = os.umask(0)
    try:
        folder = engine_dir()
    finally:
        os.umask(old)
    assert folder == runtime / "codeift-engines"
    assert os.stat(folder).st_mode & 0o777 == 0o700
    runtime.chmod(0o777)
    assert _default_root() == Path(f"/tmp/codeift-engines-{os.geteuid()}")
    shutil.rmtree(runtime)
