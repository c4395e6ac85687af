"""SFT: a killed job leaves no model behind and its rerun resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from codeift.data.labels import label_pool
from codeift.data.mix import build_mix
from codeift.data.pool import build_pool
from codeift.io import write_parquet
from codeift.models.tiny import build_tiny
from codeift.settings import TrainSettings
from tests.hooks.codeift_test_hooks import hooked_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    build_tiny({"architecture": "llama", "corpus_examples": 200}, root / "base")
    pool, _ = build_pool([{"kind": "generator", "n_general": 80, "n_code": 80}], seed=0)
    write_parquet(build_mix(label_pool(pool), 50, total=40, seed=0), root / "mix.parquet")
    return root


def _train_command(root, settings):
    return [
        sys.executable,
        "-m",
        "codeift",
        "sft",
        "--model",
        str(root / "base"),
        "--mix",
        str(root / "mix.parquet"),
        "--out",
        str(root / "tuned"),
        "--checkpoints",
        str(root / "ckpt"),
        "--settings",
        json.dumps(settings),
    ]


def test_killed_training_resumes_from_its_last_checkpoint(inputs):
    settings = {
        **TrainSettings.defaults(),
        "max_steps": 40,
        "save_steps": 2,
        "per_device_train_batch_size": 4,
        "max_length": 128,
        "dtype": "float32",
        "learning_rate": 1e-3,
        "threads": 1,
    }
    # The test-only step delay keeps the first run training (40 steps x 2 s) while its
    # checkpoints appear, however fast the machine; the resumed run trains at full speed.
    process = subprocess.Popen(
        _train_command(inputs, settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=hooked_env(step_seconds=2),
    )
    deadline = time.time() + 300
    while not list((inputs / "ckpt").glob("checkpoint-10/trainer_state.json")):
        assert process.poll() is None and time.time() < deadline, "training ended early"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (inputs / "tuned").exists()  # nothing downstream can see a partial model
    subprocess.run(_train_command(inputs, settings), check=True, capture_output=True, timeout=600)
    record = json.loads((inputs / "tuned" / "codeift_training.json").read_text())
    assert record["resumed_from"] is not None
    assert int(record["resumed_from"].rsplit("-", 1)[1]) >= 10
    assert record["global_step"] == 40
    assert (inputs / "tuned" / "model.safetensors").exists()
    assert not (inputs / "ckpt").exists()


def test_two_processes_train_data_parallel_and_rank_zero_publishes(inputs, tmp_path):
    """The multi-GPU path on CPU: `--launch` with 2 GPUs relaunches under torchrun (DDP, gloo),
    every rank trains, and one complete model is published."""
    settings = {
        **TrainSettings.defaults(),
        "max_steps": 4,
        "save_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 128,
        "dtype": "float32",
        "learning_rate": 1e-3,
        "threads": 1,
    }
    command = [
        *_train_command(inputs, settings),
        "--launch",
        json.dumps({"gpus": 2, "strategy": "ddp"}),
    ]
    out = tmp_path / "tuned"
    command[command.index("--out") + 1] = str(out)
    command[command.index("--checkpoints") + 1] = str(tmp_path / "ckpt")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "torch.distributed.run" in result.stdout
    record = json.loads((out / "codeift_training.json").read_text())
    assert record["world_size"] == 2
    assert record["global_batch_size"] == 4
    assert record["global_step"] == 4
    assert (out / "model.safetensors").exists()
    assert not list(tmp_path.glob(".tuned.partial"))
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_padding_free_steps_give_the_padded_loss_on_the_same_tokens(inputs, tmp_path, architecture):
    """`padding_free` is speed only: each step sees the same conversations and the same
    tokens, attention stays within each conversation, so the losses equal the padded run's;
    only the padding positions computed are gone."""
    from codeift.train.sft import train

    base = tmp_path / "base"
    build_tiny({"architecture": architecture, "corpus_examples": 200}, base)
    records = {}
    for padding_free in (False, True):
        settings = TrainSettings(
            max_steps=3,
            per_device_train_batch_size=4,
            max_length=128,
            learning_rate=1e-3,
            dtype="float32",
            logging_steps=1,
            threads=1,
            padding_free=padding_free,
        )
        out = tmp_path / f"tuned-{padding_free}"
        records[padding_free] = train(
            base, inputs / "mix.parquet", out, tmp_path / f"ckpt-{padding_free}", settings
        )
    padded, flat = records[False], records[True]
    assert flat["train_tokens"] == padded["train_tokens"]
    assert flat["processed_tokens"] == flat["train_tokens"] < padded["processed_tokens"]
    assert flat["loss_history"] == pytest.approx(padded["loss_history"], rel=1e-4)
    assert len(flat["loss_history"]) == 3


# bf16 keeps 8 bits of mantissa; the loss itself is reduced in float32 under autocast. Measured
# here on the tiny base: 2e-6 relative over a step, 1.3e-4 for one forward on random tokens. 2%
# is far beyond rounding and far below what a wrong precision (or no training) gives.
BF16_LOSS_TOLERANCE = 0.02


def test_a_bf16_autocast_step_on_cpu_gives_the_float32_loss_and_saves_float32(inputs, tmp_path):
    """`dtype: bfloat16` on a CPU (what `auto` picks on AMX/AVX512_BF16 machines) is autocast
    over float32 weights: the first step's loss (same weights, same batch) is float32's within
    BF16_LOSS_TOLERANCE, the model is saved in float32 (its master weights), and the record says
    what precision ran. The last step writes no checkpoint."""
    from codeift.train.sft import train

    records = {}
    for dtype in ("float32", "bfloat16"):
        settings = TrainSettings(
            max_steps=2,
            per_device_train_batch_size=4,
            max_length=128,
            learning_rate=1e-3,
            dtype=dtype,
            logging_steps=1,
            save_steps=0.5,
            threads=1,
        )
        out = tmp_path / f"tuned-{dtype}"
        records[dtype] = train(
            inputs / "base", inputs / "mix.parquet", out, tmp_path / f"ckpt-{dtype}", settings
        )
        assert not (tmp_path / f"ckpt-{dtype}").exists()
        config = json.loads((out / "config.json").read_text())
        assert config["dtype"] == "float32"
    fp32, bf16 = records["float32"], records["bfloat16"]
    assert bf16["precision"]["weights"] == "float32" and bf16["precision"]["autocast"] == "bfloat16"
    assert fp32["precision"]["autocast"] is None
    assert bf16["loss_history"][0] == pytest.approx(
        fp32["loss_history"][0], rel=BF16_LOSS_TOLERANCE
    )
    assert bf16["loss_history"][0] != fp32["loss_history"][0]  # autocast did change the arithmetic
