"""Backbones: tiny models built locally (no download), the shipped pretrained tiny bases,
hub models, local folders and GGUF checkpoints (converted once, see codeift.gguf).

Base models mostly ship no chat template, so every backbone gets the same study template
(`templates/chat.jinja`, text markers plus the tokenizer's own EOS) unless its config says `keep`:
then a model's own template is kept, with generation markers added for the assistant-only loss
(codeift.chat_templates). Training and evaluation (base variant included) render prompts alike.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from codeift.chat_templates import TemplateError, assign_chat_template
from codeift.io import atomic_path, write_json

CHAT_TEMPLATE = (Path(__file__).parent / "templates" / "chat.jinja").read_text(encoding="utf-8")
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
TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
}


class BackboneError(RuntimeError):
    """A backbone that cannot be prepared; the message names the backbone and the source."""


def tokenizer_corpus(n_examples: int, seed: int) -> list[str]:
    """Texts the tiny tokenizers learn from: IFT-style prose and code plus digits and letters.

    Independent of the study's task list, so adding a task never rebuilds a backbone.
    """
    from codeift.ift import generate_conversations

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


def _link_files(source_dir: Path, out_dir: Path) -> None:
    """Symlink a model's weights and configs (a 7B copy would double the disk it takes)."""
    for item in sorted(source_dir.iterdir()):
        if item.name not in TOKENIZER_FILES and not item.name.startswith("."):
            os.symlink(item.resolve(), out_dir / item.name)


def prepare_existing(
    source_dir: str | Path, out_dir: str | Path, chat_template: str, record: dict
) -> None:
    """Make a backbone folder from a downloaded or local model: linked weights, our template."""
    from transformers import AutoTokenizer

    source = Path(source_dir)
    if not (source / "config.json").exists():
        raise BackboneError(f"{source}: no config.json; expected a transformers model folder")
    tokenizer = AutoTokenizer.from_pretrained(source)
    try:
        record = {
            **record,
            "chat_template": assign_chat_template(tokenizer, chat_template, CHAT_TEMPLATE),
        }
    except TemplateError as error:
        raise BackboneError(f"{source}: {error}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_path(out_dir, directory=True) as tmp:
        _link_files(source, tmp)
        tokenizer.save_pretrained(tmp)
        write_json(record, tmp / "codeift_backbone.json")


def download_hub(repo_id: str, revision: str | None) -> Path:
    """Fetch a hub model (weights as safetensors when present) into the local HF cache."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"],
        )
    except Exception as error:  # network, auth (gated models) and missing-repo errors alike
        raise BackboneError(
            f"could not download {repo_id!r} (revision {revision or 'main'}): {error}. "
            "Gated models need `huggingface-cli login`; offline machines need a `path` source."
        ) from error
    return Path(path)


def prepare_backbone(name: str, spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Entry point of the prepare job: one backbone's base model in `out_dir`."""
    source = spec["source"]
    template = spec.get("chat_template", "codeift")
    if "tiny" in source:
        return build_tiny(source["tiny"], out_dir)
    if "gguf" in source:
        from codeift.gguf import prepare_gguf

        return prepare_gguf(name, source["gguf"], template, out_dir)
    if "pretrained" in source:
        from codeift.pretrain import shipped_base

        folder = shipped_base(source["pretrained"])
        if not (folder / "config.json").exists():
            raise BackboneError(
                f"backbone {name!r}: the shipped base {str(folder)!r} is missing; rebuild it "
                "with the pretrain_tiny_base rule (README, 'Pretrained tiny bases')"
            )
        prepare_existing(folder, out_dir, template, {"source": source})
        return {"pretrained": str(folder)}
    if "path" in source:
        path = Path(source["path"]).expanduser()
        if not path.is_dir():
            raise BackboneError(f"backbone {name!r}: source.path {str(path)!r} is not a folder")
        prepare_existing(path, out_dir, template, {"source": source})
        return {"path": str(path)}
    hub = source["hub"]
    local = download_hub(hub["id"], hub.get("revision"))
    prepare_existing(local, out_dir, template, {"source": source, "snapshot": str(local)})
    return {"snapshot": str(local)}


def model_fingerprint(model_dir: str | Path) -> str:
    """Identity of a model folder's contents as seen by an engine (config and weight mtimes)."""
    from codeift.io import stable_hash

    root = Path(model_dir)
    if not (root / "config.json").exists():
        raise BackboneError(f"model folder {str(root)!r} has no config.json (was it prepared?)")
    stamps = {
        item.name: os.stat(item).st_mtime_ns
        for item in sorted(root.iterdir())
        if item.is_file() and item.suffix in {".json", ".safetensors", ".bin"}
    }
    return stable_hash({"path": str(root.resolve()), "stamps": stamps})
