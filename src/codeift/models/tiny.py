"""Tiny models built locally, no download: a byte-level BPE tokenizer trained on IFT-style text
and a seeded LlamaConfig/Qwen2Config model; also the study's chat template and role markers,
which the tiny and pretrained bases share."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from codeift.errors import BackboneError
from codeift.io import atomic_path, write_json

CHAT_TEMPLATE = (Path(__file__).parents[1] / "templates" / "chat.jinja").read_text(encoding="utf-8")
ROLE_MARKERS = ["<|system|>", "<|user|>", "<|assistant|>"]
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_layers": 2,
    "num_heads": 2,
    "num_kv_heads": 2,
    "vocab_size": 2048,
    "max_position_embeddings": 1024,
    "corpus_examples": 3000,
    "seed": 0,
}


def tokenizer_corpus(n_examples: int, seed: int) -> list[str]:
    """Texts the tiny tokenizers learn from: IFT-style prose and code plus digits and letters.

    Independent of the study's task list, so adding a task never rebuilds a backbone.
    """
    from codeift.data.small_world import generate_conversations

    rng = random.Random(seed)
    texts = [
        " ".join(m["content"] for m in record["messages"])
        for record in generate_conversations(n_examples // 2, n_examples - n_examples // 2, seed)
    ]
    words = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    texts += [" ".join(rng.choice(words) for _ in range(40)) for _ in range(n_examples // 10)]
    return texts


def train_tiny_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer with the study's special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", *ROLE_MARKERS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=ROLE_MARKERS,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.model_max_length = 1_000_000
    return wrapped


def tiny_model_config(spec: dict[str, Any], tokenizer: Any) -> Any:
    """A LlamaConfig or Qwen2Config for a tiny spec (missing knobs from TINY_DEFAULTS)."""
    from transformers import LlamaConfig, Qwen2Config

    knobs = {**TINY_DEFAULTS, **spec}
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": knobs["hidden_size"],
        "intermediate_size": knobs["intermediate_size"],
        "num_hidden_layers": knobs["num_layers"],
        "num_attention_heads": knobs["num_heads"],
        "num_key_value_heads": knobs["num_kv_heads"],
        "max_position_embeddings": knobs["max_position_embeddings"],
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    if knobs["hidden_size"] % knobs["num_heads"]:
        raise BackboneError(f"tiny spec: hidden_size {knobs['hidden_size']} not divisible by heads")
    if spec["architecture"] == "llama":
        return LlamaConfig(**common)
    return Qwen2Config(**common)


def build_tiny(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Train a tokenizer and initialise a tiny model with a fixed seed; save both atomically."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    knobs = {**TINY_DEFAULTS, **spec}
    texts = tokenizer_corpus(knobs["corpus_examples"], knobs["seed"])
    tokenizer = train_tiny_tokenizer(texts, knobs["vocab_size"])
    config = tiny_model_config(spec, tokenizer)
    torch.manual_seed(knobs["seed"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            {"source": {"tiny": knobs}, "parameters": model.num_parameters()},
            tmp / "codeift_backbone.json",
        )
    return {"parameters": model.num_parameters(), "vocab": len(tokenizer)}
