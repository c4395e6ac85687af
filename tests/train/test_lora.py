"""LoRA and QLoRA through PEFT on a shipped tiny base: only the adapter trains, its loss falls, the
published folder is base + adapter merged, generation loads it, a killed run resumes, and an unset
`peft` changes nothing. QLoRA's 4-bit base runs on the CPU through bitsandbytes' CPU backend (the
`qlora` extra, installed by `make setup`)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from codeift.config import arm_train, with_defaults
from codeift.data.labels import label_pool
from codeift.data.mix import build_mix
from codeift.data.pool import build_pool
from codeift.io import write_parquet
from codeift.models.backbones import prepare_backbone
from codeift.settings import PeftSettings, TrainSettings
from codeift.train.lora import ADAPTER_DIR, PeftError, quantization_kwargs
from codeift.train.reporting import TENSORBOARD_ENV

LORA = {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
QLORA = {**LORA, "method": "qlora"}

needs_bitsandbytes = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="QLoRA needs bitsandbytes (pip install -e '.[qlora]'; make setup installs it)",
)


def test_unset_peft_keeps_the_sft_params_string(config: dict) -> None:
    """Written out from the settings as they were before PEFT and report_to existed: the params
    string of an sft job must not move, or every finished model would retrain."""
    settings = arm_train(with_defaults(config), "tiny-llama", "code50")
    before = {
        "dtype": "float32",
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 0.002,
        "logging_steps": 10,
        "lr_scheduler_type": "cosine",
        "max_length": 448,
        "max_steps": 60,
        "num_train_epochs": 1,
        "packing": False,
        "padding_free": False,
        "per_device_train_batch_size": 8,
        "save_steps": 30,
        "seed": 0,
        "threads": 1,
        "train_sampling_strategy": "random",
        "warmup_ratio": 0.05,
        "weight_decay": 0.0,
    }
    assert settings.to_json() == json.dumps(before, sort_keys=True)


def test_report_to_is_not_a_param_and_peft_is(config: dict) -> None:
    plain = arm_train(with_defaults(config), "tiny-llama", "code50").to_json()
    config["train"]["report_to"] = "none"
    assert arm_train(with_defaults(config), "tiny-llama", "code50").to_json() == plain
    config["backbones"]["tiny-llama"]["train"] = {"peft": {"method": "lora", "r": 4}}
    tuned = arm_train(with_defaults(config), "tiny-llama", "code50")
    assert tuned.to_json() != plain
    # The adapter's defaults are filled in: the params name every value that shapes the model.
    assert json.loads(tuned.to_json())["peft"] == {**PeftSettings.defaults(), "r": 4}
    assert TrainSettings.from_json(tuned.to_json()).to_json() == tuned.to_json()


def test_a_backbone_cannot_set_report_to(config: dict) -> None:
    from codeift.errors import ConfigError
    from codeift.train.reporting import reporting_environment

    config["backbones"]["tiny-llama"]["train"] = {"report_to": "none"}
    with pytest.raises(ConfigError, match="backbones.tiny-llama.train.report_to"):
        reporting_environment(config, "results")
    del config["backbones"]["tiny-llama"]["train"]
    env = reporting_environment(config, "results")
    assert env["CODEIFT_TRAIN_REPORT_TO"] == "tensorboard"


def test_qlora_without_bitsandbytes_or_with_an_old_one_fails_by_name(monkeypatch) -> None:
    from importlib import metadata

    from codeift.train import lora

    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PeftError, match="train.peft.method.*bitsandbytes.*not installed"):
        quantization_kwargs(PeftSettings(method="qlora"), None, use_cpu=True)
    monkeypatch.undo()
    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(metadata, "version", lambda name: "0.46.1")  # refuses float storage
    with pytest.raises(PeftError, match=r"train.peft.method.*bitsandbytes>=0.47.0.*0.46.1"):
        quantization_kwargs(PeftSettings(method="qlora"), None, use_cpu=False)
    assert quantization_kwargs(PeftSettings(method="lora"), None, use_cpu=True) == {}


def tiny_settings(**changes) -> TrainSettings:
    """The SFT settings every run here shares on the tiny base (micro-batch 4, 256 tokens,
    learning rate 3e-3, float32, one thread, a loss each step), with each run's own changes."""
    shared = dict(
        per_device_train_batch_size=4,
        max_length=256,
        learning_rate=3e-3,
        dtype="float32",
        logging_steps=1,
        threads=1,
    )
    return TrainSettings(**{**shared, **changes})


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """One LoRA SFT run on the shipped tiny Llama base, its record and folders."""
    from codeift.train.sft import train

    root = tmp_path_factory.mktemp("lora")
    prepare_backbone("tiny-llama", {"source": {"pretrained": "llama"}}, root / "base")
    pool, _ = build_pool([{"kind": "generator", "n_general": 60, "n_code": 60}], seed=0)
    write_parquet(build_mix(label_pool(pool), 50, total=48, seed=0), root / "mix.parquet")
    settings = tiny_settings(
        max_steps=12,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        save_steps=6,
        peft=LORA,
        report_to="tensorboard",
    )
    before = os.environ.get(TENSORBOARD_ENV)
    record = train(root / "base", root / "mix.parquet", root / "tuned", root / "ckpt", settings)
    # The job process points transformers at its TensorBoard folder; the test process goes on.
    if before is None:
        os.environ.pop(TENSORBOARD_ENV, None)
    else:
        os.environ[TENSORBOARD_ENV] = before
    return root, record


def _adapted_linears(model) -> list:
    """Every linear layer but the output head: what `all-linear` adapts."""
    import torch

    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    ]


def _linear_adapter_size(model, r: int) -> int:
    """r x (in + out) summed over the adapted linear layers: the adapter's size."""
    return sum(r * (module.in_features + module.out_features) for module in _adapted_linears(model))


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_its_loss_falls(lora_run) -> None:
    from transformers import AutoModelForCausalLM

    root, record = lora_run
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    assert record["trainable_parameters"] == _linear_adapter_size(base, LORA["r"])
    base_count = sum(p.numel() for p in base.parameters())
    assert record["total_parameters"] == base_count + record["trainable_parameters"]
    losses = record["loss_history"]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    # Merged: the adapted linear weights moved, everything else (embeddings, norms) did not.
    merged = AutoModelForCausalLM.from_pretrained(root / "tuned")
    tuned = dict(merged.named_parameters())
    moved = {name for name, p in base.named_parameters() if not p.equal(tuned[name])}
    assert moved and all(name.endswith("proj.weight") for name in moved)
    assert not any("embed" in name or "norm" in name for name in moved)
    # Curves for TensorBoard beside the model folder (outside the workflow; see reporting).
    assert list((root / "tuned.tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_the_merged_model_computes_base_plus_adapter(lora_run) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _ = lora_run
    tuned = root / "tuned"
    assert not (tuned / "adapter_config.json").exists()  # a plain model folder at the top
    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(root / "base"), str(tuned / ADAPTER_DIR)
    ).eval()
    merged = AutoModelForCausalLM.from_pretrained(tuned).eval()
    tokenizer = AutoTokenizer.from_pretrained(tuned)
    ids = tokenizer(["def add(a, b): return a + b", "Mary went to the garden."], padding=True)
    inputs = {k: torch.tensor(v) for k, v in ids.items()}
    with torch.no_grad():
        expected = unmerged(**inputs).logits
        got = merged(**inputs).logits
        plain = AutoModelForCausalLM.from_pretrained(root / "base")(**inputs).logits
    assert not torch.allclose(plain, expected, atol=1e-3)  # the adapter does something
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_generation_loads_the_merged_model(lora_run, tmp_path) -> None:
    from codeift.infer.engines import load_engine
    from codeift.settings import InferenceSettings

    root, _ = lora_run
    settings = InferenceSettings(engine="hf", max_new_tokens=8, dtype="float32", threads=1)
    engine = load_engine(str(root / "tuned"), settings)
    replies = engine.chat([[{"role": "user", "content": "Reverse the list [1, 2, 3]."}]], 8)
    assert len(replies) == 1 and replies[0].n_response_tokens > 0


@pytest.fixture(scope="module")
def qlora_run(lora_run):
    """One QLoRA SFT run (4-bit NF4 base, bitsandbytes' CPU backend) on the same base and mix."""
    from codeift.train.sft import train

    root, _ = lora_run
    settings = tiny_settings(
        max_steps=10,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        save_steps=100,
        peft=QLORA,
        report_to="none",
    )
    record = train(root / "base", root / "mix.parquet", root / "qtuned", root / "qckpt", settings)
    return root, record


@needs_bitsandbytes
@pytest.mark.slow
def test_qlora_trains_only_the_adapter_on_a_4bit_base(qlora_run) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    root, record = qlora_run
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    # Every adapted linear layer of the base trained as bitsandbytes' 4-bit layer.
    assert record["linear4bit_layers"] == len(_adapted_linears(base)) > 0
    assert record["trainable_parameters"] == _linear_adapter_size(base, QLORA["r"])
    # 4-bit packed: the frozen base counts fewer (packed) elements than its float weights.
    base_count = sum(p.numel() for p in base.parameters())
    assert record["total_parameters"] < base_count
    losses = record["loss_history"]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    # Published merged into the unquantised base: the adapted weights moved, nothing else did.
    merged = dict(AutoModelForCausalLM.from_pretrained(root / "qtuned").named_parameters())
    moved = {name for name, p in base.named_parameters() if not p.equal(merged[name])}
    assert moved and all(name.endswith("proj.weight") for name in moved)
    assert merged["model.embed_tokens.weight"].dtype == torch.float32


@needs_bitsandbytes
@pytest.mark.slow
def test_generation_loads_the_merged_qlora_model(qlora_run) -> None:
    from codeift.infer.engines import load_engine
    from codeift.settings import InferenceSettings

    root, _ = qlora_run
    settings = InferenceSettings(engine="hf", max_new_tokens=8, dtype="float32", threads=1)
    engine = load_engine(str(root / "qtuned"), settings)
    replies = engine.chat([[{"role": "user", "content": "Reverse the list [1, 2, 3]."}]], 8)
    assert len(replies) == 1 and replies[0].n_response_tokens > 0


class _Stop(Exception):
    """Raised by the test's callback: the job dies after its checkpoint."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "peft", [LORA, pytest.param(QLORA, marks=needs_bitsandbytes)], ids=["lora", "qlora"]
)
def test_a_killed_lora_run_resumes_from_its_adapter_checkpoint(
    peft, lora_run, tmp_path, monkeypatch
):
    """The checkpoint of a LoRA or QLoRA run is the adapter (and optimizer) state; the rerun
    resumes from it and still publishes the merged model."""
    from transformers import TrainerCallback

    from codeift.train import sft

    root, _ = lora_run

    class DieAfterStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            if state.global_step == 4:
                raise _Stop

    settings = tiny_settings(
        max_steps=6,
        save_steps=3,
        peft=peft,
        report_to="none",
    )
    args = (root / "base", root / "mix.parquet", tmp_path / "tuned", tmp_path / "ckpt", settings)
    checkpoints = sft.checkpoint_callbacks
    monkeypatch.setattr(sft, "checkpoint_callbacks", lambda: [DieAfterStep(), *checkpoints()])
    with pytest.raises(_Stop):
        sft.train(*args)
    assert (tmp_path / "ckpt" / "checkpoint-3" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "tuned").exists()
    monkeypatch.undo()
    record = sft.train(*args)
    assert record["resumed_from"].endswith("checkpoint-3")
    assert record["global_step"] == 6
    assert (tmp_path / "tuned" / "model.safetensors").exists()
    assert (tmp_path / "tuned" / ADAPTER_DIR / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "peft", [LORA, pytest.param(QLORA, marks=needs_bitsandbytes)], ids=["lora", "qlora"]
)
def test_lora_trains_data_parallel_and_rank_zero_merges(peft, lora_run, tmp_path) -> None:
    """Two processes (torchrun, DDP on CPU: the multi-GPU path FSDP shares): every rank trains
    the adapter (on its own 4-bit copy of the base for QLoRA), rank 0 merges it and publishes
    one model."""
    import subprocess
    import sys

    root, _ = lora_run
    settings = {
        **TrainSettings.defaults(),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 128,
        "dtype": "float32",
        "learning_rate": 1e-3,
        "save_steps": 100,
        "threads": 1,
        "peft": peft,
        "report_to": "none",
    }
    command = [
        sys.executable, "-m", "codeift", "sft", "--model", str(root / "base"),
        "--mix", str(root / "mix.parquet"), "--out", str(tmp_path / "tuned"),
        "--checkpoints", str(tmp_path / "ckpt"), "--settings", json.dumps(settings),
        "--launch", json.dumps({"gpus": 2, "strategy": "ddp"}),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "tuned" / "codeift_training.json").read_text())
    assert record["world_size"] == 2 and record["global_step"] == 2
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(root / "base")
    assert record["trainable_parameters"] == _linear_adapter_size(base, LORA["r"])
    four_bit = len(_adapted_linears(base)) if peft["method"] == "qlora" else 0
    assert record.get("linear4bit_layers", 0) == four_bit
    assert (tmp_path / "tuned" / "model.safetensors").exists()


@pytest.mark.slow
def test_vllm_serves_the_merged_model(lora_run) -> None:
    """The engine the study generates with loads the published folder as it is (own process:
    vLLM's CPU environment is set once per process)."""
    import subprocess
    import sys

    root, _ = lora_run
    script = (
        "import json, sys\n"
        "from codeift.infer.engines import load_engine\n"
        "from codeift.settings import InferenceSettings\n"
        "s = InferenceSettings(engine='vllm', dtype='float32', max_new_tokens=8, max_model_len=256,"
        " enforce_eager=True, threads=1, max_num_seqs=4)\n"
        "e = load_engine(sys.argv[1], s)\n"
        "r = e.chat([[{'role': 'user', 'content': 'Reverse the list [1, 2, 3].'}]], 8)\n"
        "print(json.dumps(r[0].to_dict()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root / "tuned")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["n_response_tokens"] > 0


def test_tensorboard_events_go_beside_the_job_log(monkeypatch, tmp_path) -> None:
    from codeift.train import reporting

    out = tmp_path / "results" / "models" / "tiny-llama" / "code50"
    monkeypatch.setenv(reporting.TENSORBOARD_ENV, "unset")  # restored after the test
    monkeypatch.setenv(reporting.LOG_ROOT_ENV, str(tmp_path / "results" / "logs" / "sft"))
    monkeypatch.delenv(reporting.REPORT_TO_ENV, raising=False)
    settings = reporting.reporting_settings(TrainSettings(), out)
    assert settings.report_to == "tensorboard"
    expected = tmp_path / "results" / "logs" / "sft" / "tiny-llama" / "code50.tensorboard"
    assert reporting.os.environ[reporting.TENSORBOARD_ENV] == str(expected)
    # The workflow's choice wins over the job's settings (it is not in the params).
    monkeypatch.setenv(reporting.REPORT_TO_ENV, "none")
    assert reporting.reporting_settings(TrainSettings(), out).report_to == "none"


def test_a_report_to_whose_package_is_missing_fails_by_name(monkeypatch, tmp_path) -> None:
    from codeift.train import reporting

    monkeypatch.setenv(reporting.REPORT_TO_ENV, "mlflow")
    monkeypatch.setattr(reporting.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(reporting.ReportingError, match="train.report_to.*mlflow"):
        reporting.reporting_settings(TrainSettings(), tmp_path / "m" / "a")
