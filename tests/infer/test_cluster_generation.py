"""A model's generation inside one SLURM allocation: one in-process engine load for all tasks.

Under SLURM no daemon is started (it would outlive its job step); the model's jobs run one after
another in its group's allocation, the first loads the engine and generates the others ahead.
"""

from __future__ import annotations

import polars as pl
import pytest

from codeift.infer import generate as generation
from codeift.infer.server import live_engines, stop_engines
from tests.infer.test_engine_server import NO_SHARING, _generate, _study_folders


@pytest.fixture
def slurm_job(tmp_path, monkeypatch):
    from tests.conftest import short_engine_dir

    monkeypatch.setenv("CODEIFT_ENGINE_DIR", short_engine_dir(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    yield tmp_path
    stop_engines(keep=0)


def test_a_models_jobs_in_one_allocation_load_the_engine_once(slurm_job, monkeypatch, capsys):
    loads: list[str] = []
    real_load = generation.load_engine

    def counting_load(model_dir, settings):
        loads.append(model_dir)
        return real_load(model_dir, settings)

    monkeypatch.setattr(generation, "load_engine", counting_load)
    # The fake engine (test_engine_server.SETTINGS) reads no weights: a config is a model. A
    # tuned variant, as a base one would read the folder's tokenizer for its role-marker stop.
    model = slurm_job / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    tasks, generations = _study_folders(slurm_job / "grouped")
    order = ["gsm8k", "list_reversal", "coin_flip"]
    summaries = [_generate(model, tasks, generations, task, "code100") for task in order]

    assert len(loads) == 1, loads
    assert [s["generated_ahead"] for s in summaries] == [2, 0, 0]
    log = capsys.readouterr().out
    assert log.count(generation.LOCAL_LOAD_MARK) == 1, log
    assert "started engine pid" not in log  # no daemon under SLURM
    assert not live_engines()

    # Byte for byte what jobs that each loaded their own engine wrote (no sharing at all).
    alone_tasks, alone = _study_folders(slurm_job / "alone")
    for task in order:
        assert "generated_ahead" not in _generate(
            model, alone_tasks, alone, task, "code100", NO_SHARING
        )
        grouped = pl.read_parquet(generations / f"{task}.parquet").drop("model_path")
        assert grouped.equals(pl.read_parquet(alone / f"{task}.parquet").drop("model_path"))
    assert len(loads) == 1 + len(order)
