from __future__ import annotations

import pytest
from transformers import AutoConfig, AutoTokenizer

from codeift.errors import BackboneError
from codeift.io import file_hash
from codeift.models.backbones import prepare_backbone
from codeift.models.tiny import build_tiny


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_tiny_backbone_builds_with_template_and_assistant_mask(tmp_path, architecture):
    out = tmp_path / architecture
    build_tiny({"architecture": architecture, "corpus_examples": 300}, out)
    assert AutoConfig.from_pretrained(out).model_type == architecture
    tokenizer = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": "Reverse 1 2"}, {"role": "assistant", "content": "2 1"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<s><|user|>\nReverse 1 2\n<|assistant|>\n2 1</s>\n"
    encoded = tokenizer.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=True
    )
    pairs = zip(encoded["input_ids"], encoded["assistant_masks"], strict=True)
    answer = [token for token, mask in pairs if mask]
    assert tokenizer.decode(answer) == "2 1</s>"


def test_tiny_backbone_is_byte_identical_for_the_same_seed(tmp_path):
    spec = {"architecture": "llama", "corpus_examples": 200, "seed": 3}
    build_tiny(spec, tmp_path / "a")
    build_tiny(spec, tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert file_hash(tmp_path / "a" / name) == file_hash(tmp_path / "b" / name)
    build_tiny({**spec, "seed": 4}, tmp_path / "c")
    assert file_hash(tmp_path / "a" / "model.safetensors") != file_hash(
        tmp_path / "c" / "model.safetensors"
    )


def test_local_path_backbone_links_weights_and_assigns_template(tmp_path):
    build_tiny({"architecture": "qwen2", "corpus_examples": 200}, tmp_path / "src")
    prepare_backbone("local", {"source": {"path": str(tmp_path / "src")}}, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_symlink()
    assert "<|assistant|>" in AutoTokenizer.from_pretrained(tmp_path / "out").chat_template


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="backbone 'gone': source.path .* is not a folder"):
        prepare_backbone("gone", {"source": {"path": str(tmp_path / "nope")}}, tmp_path / "out")
