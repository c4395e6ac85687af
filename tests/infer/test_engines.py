"""Tests for what generation asks of its node and its model: the GPU as torch sees it, and the
role-marker stop of an untuned base model."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codeift.infer import engines
from codeift.infer.engines import base_model_settings, role_marker_stops, role_markers
from codeift.settings import InferenceSettings

TINY_LLAMA = Path(engines.__file__).parents[1] / "assets" / "tiny_bases" / "llama"
CHATML = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PLAIN = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_LLAMA)


def _with_template(tokenizer, template: str):
    copy = tokenizer.__class__.from_pretrained(TINY_LLAMA)
    copy.chat_template = template
    return copy


def test_the_study_template_stops_a_base_model_at_any_role_marker(tokenizer):
    """The study's template opens turns with `<|user|>` and `<|assistant|>`: the stop is `<|`,
    which also ends a reply at a role the base model invents (`<|admin|>`), as config/real.yaml
    found by reading Gemma 3's base replies."""
    assert role_markers(tokenizer) == ("<|user|>", "<|assistant|>")
    assert role_marker_stops(tokenizer) == ("<|",)


@pytest.mark.parametrize(
    ("template", "stops"),
    [(CHATML, ("<|im_start|>",)), (GEMMA, ("<start_of_turn>",)), (PLAIN, ("User:",))],
)
def test_other_templates_give_their_own_turn_opening(tokenizer, template, stops):
    """ChatML's default system prompt and Gemma's BOS are not part of a marker; a template whose
    markers share no prefix stops at the user marker."""
    assert role_marker_stops(_with_template(tokenizer, template)) == stops


def test_only_the_untuned_base_gets_the_role_stop_and_keeps_its_own(tokenizer):
    configured = InferenceSettings(engine="fake", stop=("###",))
    base = base_model_settings(configured, str(TINY_LLAMA), "base")
    assert base.stop == ("###", "<|")
    assert base_model_settings(configured, str(TINY_LLAMA), "code50") == configured
    off = InferenceSettings(engine="fake", base_role_stop=False)
    assert base_model_settings(off, str(TINY_LLAMA), "base").stop == ()
    already = InferenceSettings(engine="fake", stop=("<|",))
    assert base_model_settings(already, str(TINY_LLAMA), "base").stop == ("<|",)


def test_a_reply_running_into_an_invented_next_turn_is_cut_there(tokenizer):
    reply = "The answer is 12.\n<|admin|>\nWhat about 13?"
    assert engines.cut_at_stop(reply, list(role_marker_stops(tokenizer))) == "The answer is 12.\n"


def _fake_nvidia_smi(folder: Path) -> None:
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed'\nexit 9\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


CPU_VARIABLES = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS")


def test_a_node_with_nvidia_smi_but_no_gpu_for_torch_runs_vllm_on_cpu(monkeypatch, tmp_path):
    """A cluster node ships nvidia-smi even where the job got no GPU: torch decides."""
    import torch

    _fake_nvidia_smi(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in CPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert engines.cuda_available() is False
    engines.configure_cpu_environment(1, 3)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_a_gpu_that_torch_sees_without_nvidia_smi_gets_no_cpu_settings(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in CPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert engines.cuda_available() is True
    engines.configure_cpu_environment(1, 3)
    assert not any(name in os.environ for name in CPU_VARIABLES)
