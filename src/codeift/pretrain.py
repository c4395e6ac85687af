"""Pretrained tiny bases: a small causal LM that can copy, so SFT has something to build on.

Tiny models trained from random weights by SFT alone never learn to copy from the prompt, so no
effect of the IFT data can show on them. A base pretrained once with plain causal-LM training on
a neutral synthetic corpus rich in copying does learn it (measured: perfect copying after ~1,000
steps). The corpus holds repeated lists and quotes, echoed and counted words and arithmetic
sentences, and deliberately no reversal and no first-letter operations: those are skills the IFT
data may or may not teach, which is what the study measures.

The recipe (architecture, sizes, corpus, optimiser, seed) is one dataclass; its hash is stored in
the checkpoint, so a shipped checkpoint can be checked against the recipe that claims to make it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codeift.io import atomic_path, stable_hash, write_json

WORDS = (
    "apple river stone cloud tiger lemon piano candle forest window garden rocket "
    "silver mango pencil honey castle dragon meadow anchor violet marble pepper "
    "harbor falcon jungle basket copper orchid saddle tunnel walnut zebra ember "
    "glacier lantern nectar oyster quartz raven spruce tulip velvet willow yarrow"
).split()
NAMES = "Ann Ben Cara Dan Eve Finn Gia Hugo Ivy Jack Kim Leo Mia Noah Olga Pia".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SHIPPED_DIR = Path(__file__).parent / "assets" / "tiny_bases"


@dataclasses.dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines a pretrained tiny base, byte for byte."""

    architecture: str = "llama"
    hidden_size: int = 192
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    max_position_embeddings: int = 1024
    sequence_length: int = 256
    batch_size: int = 32
    steps: int = 2000
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    # 2: words are 60% random letter strings, so copying must be character by character (v1
    # copied only the 44 words it knew: 0% on a list of unseen words).
    corpus_version: int = 2

    def fingerprint(self) -> str:
        return stable_hash(dataclasses.asdict(self))


RECIPES = {
    "llama": PretrainRecipe(architecture="llama", seed=0),
    "qwen2": PretrainRecipe(architecture="qwen2", seed=1),
}


# --------------------------------------------------------------------------- corpus


def _pseudo_word(rng: random.Random) -> str:
    """A random pronounceable-ish string: no model can copy it by recalling a known word."""
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 9)))


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS) if rng.random() < 0.4 else _pseudo_word(rng)


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return [_word(rng) for _ in range(rng.randint(low, high))]


def _name(rng: random.Random) -> str:
    return rng.choice(NAMES) if rng.random() < 0.4 else _pseudo_word(rng).capitalize()


def _repeat_list(rng: random.Random) -> str:
    if rng.random() < 0.6:
        items = _words(rng, 2, 7)
    else:
        items = [str(rng.randint(0, 99)) for _ in range(rng.randint(2, 7))]
    separator = rng.choice([", ", " ", " | "])
    text = separator.join(items)
    return rng.choice(
        [
            f"Repeat the list: {text}. The list again: {text}.",
            f"List: [{text}]. Copy: [{text}].",
            f"Here are the items {text}; once more, the items are {text}.",
        ]
    )


def _quote(rng: random.Random) -> str:
    name = _name(rng)
    said = " ".join(_words(rng, 2, 6))
    return rng.choice(
        [
            f'{name} said "{said}". In {name}\'s words: "{said}".',
            f'The note reads "{said}", so the note says "{said}".',
        ]
    )


def _echo(rng: random.Random) -> str:
    word = _word(rng)
    times = rng.randint(2, 4)
    return f"Say {word} {times} times: {' '.join([word] * times)}."


def _count(rng: random.Random) -> str:
    words = _words(rng, 1, 8)
    return f"The phrase '{' '.join(words)}' has {len(words)} words."


def _arithmetic(rng: random.Random) -> str:
    a, b = rng.randint(0, 60), rng.randint(0, 40)
    name, thing = _name(rng), rng.choice(WORDS)
    return rng.choice(
        [
            f"{a} plus {b} equals {a + b}.",
            f"{name} has {a} {thing}s and gets {b} more, so {name} has {a + b} {thing}s.",
            f"{a + b} minus {b} is {a}.",
        ]
    )


GENERATORS = (_repeat_list, _quote, _echo, _count, _arithmetic)


def corpus_texts(seed: int) -> Iterator[str]:
    """An endless, seeded stream of corpus sentences, one kind picked at random each time."""
    rng = random.Random(f"pretrain-corpus-{seed}")
    while True:
        yield rng.choice(GENERATORS)(rng)


def char_tokenizer() -> Any:
    """A character-level (byte) tokenizer with the study's special tokens and chat template."""
    from tokenizers import pre_tokenizers

    from codeift.backbones import ROLE_MARKERS, train_tiny_tokenizer

    alphabet = len(pre_tokenizers.ByteLevel.alphabet())
    specials = 3 + len(ROLE_MARKERS)
    return train_tiny_tokenizer(["codeift"], vocab_size=alphabet + specials)


# --------------------------------------------------------------------------- training


def _batches(tokenizer: Any, recipe: PretrainRecipe) -> Iterator[list[list[int]]]:
    """Packed rows of `sequence_length` tokens: documents joined by EOS, no padding."""
    texts = corpus_texts(recipe.seed)
    buffer: list[int] = []
    width = recipe.sequence_length
    while True:
        rows = []
        while len(rows) < recipe.batch_size:
            while len(buffer) < width:
                buffer += tokenizer.encode(next(texts), add_special_tokens=False)
                buffer.append(tokenizer.eos_token_id)
            rows.append(buffer[:width])
            buffer = buffer[width:]
        yield rows


def _learning_rate(recipe: PretrainRecipe, step: int) -> float:
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(recipe.steps - recipe.warmup_steps, 1)
    return recipe.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(recipe: PretrainRecipe, out_dir: str | Path) -> dict[str, Any]:
    """Train one tiny base from its recipe and save it with its record (atomically)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, GenerationConfig

    from codeift.backbones import tiny_model_config

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    tokenizer = char_tokenizer()
    spec = {
        "architecture": recipe.architecture,
        "hidden_size": recipe.hidden_size,
        "intermediate_size": recipe.intermediate_size,
        "num_layers": recipe.num_layers,
        "num_heads": recipe.num_heads,
        "num_kv_heads": recipe.num_kv_heads,
        "max_position_embeddings": recipe.max_position_embeddings,
    }
    model = AutoModelForCausalLM.from_config(
        tiny_model_config(spec, tokenizer), dtype=torch.float32
    )
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    model.train()
    losses: list[float] = []
    started = time.time()
    batches = _batches(tokenizer, recipe)
    progress = tqdm(range(recipe.steps), desc=f"pretrain {recipe.architecture}")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(recipe, step)
        input_ids = torch.tensor(next(batches))
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        if step % 50 == 0:
            progress.set_postfix(loss=losses[-1])
    model.eval()
    record = {
        "recipe": dataclasses.asdict(recipe),
        "recipe_fingerprint": recipe.fingerprint(),
        "parameters": model.num_parameters(),
        "vocab": len(tokenizer),
        "tokens_seen": recipe.steps * recipe.batch_size * recipe.sequence_length,
        "seconds": round(time.time() - started, 1),
        "loss_every_100_steps": losses[::100] + losses[-1:],
        "copy_accuracy": copy_accuracy(model, tokenizer, n=100, seed=recipe.seed + 1000),
    }
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            {"source": {"pretrained": record["recipe"]}, **record}, tmp / "codeift_backbone.json"
        )
    return record


# --------------------------------------------------------------------------- copy check


def copy_prompts(n: int, seed: int) -> list[tuple[str, str]]:
    """(prefix, expected continuation) pairs shaped like the corpus's repeated lists, made of
    real words the corpus never uses (the evaluation tasks' nouns), so a pass means copying
    character by character, not recalling known words."""
    from codeift.tasks.vocab import WORDS as TASK_WORDS

    unseen = sorted(set(TASK_WORDS) - set(WORDS))
    rng = random.Random(f"copy-check-{seed}")
    pairs = []
    for _ in range(n):
        text = ", ".join(rng.sample(unseen, rng.randint(3, 6)))
        pairs.append((f"Repeat the list: {text}. The list again:", f" {text}."))
    return pairs


def copy_accuracy(model: Any, tokenizer: Any, n: int = 100, seed: int = 1000) -> float:
    """Share of held-out lists the model continues exactly (greedy)."""
    import torch

    hits = 0
    for prefix, expected in copy_prompts(n, seed):
        ids = tokenizer.encode(prefix, add_special_tokens=False, return_tensors="pt")
        target = tokenizer.encode(expected, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=len(target),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        hits += out[0, ids.shape[1] :].tolist() == target
    return round(hits / n, 4)


def shipped_base(architecture: str) -> Path:
    return SHIPPED_DIR / architecture


def describe(record: dict[str, Any]) -> str:
    keys = ("parameters", "vocab", "tokens_seen", "seconds", "copy_accuracy")
    return json.dumps({key: record[key] for key in keys})
