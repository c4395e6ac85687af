"""Pretrained tiny bases: a small causal LM that can copy and has read code, so SFT has
something to build on.

Tiny models trained from random weights by SFT alone never learn to copy from the prompt, so no
effect of the IFT data can show on them. A base is pretrained once with plain causal-LM training
on a neutral synthetic corpus, in two phases:

1. copying (corpus v2): repeated lists and quotes, echoed and counted words, arithmetic
   sentences; 60% of the words are random letter strings, so copying has to be character by
   character;
2. skills: the same copying, plus short Python programs with what they print (among them list
   reversal and first- and last-letter joins) and two-hop stories about kinds of animals with the
   conclusion drawn; words now also come from the everyday nouns and names the world's texts use.

No prose sentence reverses a list or joins letters, and nothing is phrased as a request: the
base can run a program in its head and chain two facts, but never answers an instruction. Which
of these abilities an instruction gets answered with is what the IFT mix teaches, which is what
the study measures (docs/small-world.md, "The small world").

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

from codeift.data.small_world import ITEMS, run_program, written_list
from codeift.io import atomic_path, stable_hash, write_json
from codeift.words import ALL_NAMES, ANIMALS, COLOURS, SPECIES, article
from codeift.words import WORDS as NOUNS

# The small world's everyday nouns: the corpus and the IFT data share one vocabulary.
WORDS = ITEMS
NAMES = "Ann Ben Cara Dan Eve Finn Gia Hugo Ivy Jack Kim Leo Mia Noah Olga Pia".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SHIPPED_DIR = Path(__file__).parents[1] / "assets" / "tiny_bases"


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
    # Phase two, from the end of phase one with a fresh optimiser: programs with their output and
    # two-hop stories join the copying (corpus_texts phase 2). 0 steps: no phase two.
    skills_steps: int = 0
    skills_learning_rate: float = 1e-3
    skills_warmup_steps: int = 50
    skills_batch_size: int = 16

    def fingerprint(self) -> str:
        """The recipe's hash; a one-phase recipe hashes as before phase two existed."""
        return stable_hash(dataclasses.asdict(self) if self.skills_steps else self.phase_one())

    def phase_one(self) -> dict[str, Any]:
        """The fields that make the phase-one checkpoint (what a resumed run must start from)."""
        return phase_one_fields(dataclasses.asdict(self))


def phase_one_fields(recipe_fields: dict[str, Any]) -> dict[str, Any]:
    """A recipe's fields without phase two's: of a recipe, or of a checkpoint's record."""
    return {k: v for k, v in recipe_fields.items() if not k.startswith("skills_")}


# Phase two (1,600 steps of 16 x 256 tokens) ran on the phase-one checkpoints shipped before it
# (`pretrain --start-from`; tests/models/test_pretrain.py shows on a reduced recipe that this
# gives the bytes of a run from scratch): 12 minutes for Llama instead of 41.
RECIPES = {
    "llama": PretrainRecipe(architecture="llama", seed=0, skills_steps=1600),
    "qwen2": PretrainRecipe(architecture="qwen2", seed=1, skills_steps=1600),
}


# --------------------------------------------------------------------------- corpus


class _CorpusRandom(random.Random):
    """A seeded stream that also holds the words a phase's texts are made of."""

    def __init__(self, seed: str, words: tuple[str, ...], names: tuple[str, ...]) -> None:
        super().__init__(seed)
        self.words, self.names = words, names


def _known(phase: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Phase one knows 44 words and 16 names; phase two also the everyday nouns and first names
    the world is written in (the vocabulary the evaluation tasks draw on), as any real base
    knows the words of its language."""
    if phase == 1:
        return tuple(WORDS), tuple(NAMES)
    return tuple(dict.fromkeys([*WORDS, *NOUNS])), tuple(dict.fromkeys([*NAMES, *ALL_NAMES]))


def _pseudo_word(rng: random.Random) -> str:
    """A random pronounceable-ish string: no model can copy it by recalling a known word."""
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 9)))


def _word(rng: _CorpusRandom) -> str:
    return rng.choice(rng.words) if rng.random() < 0.4 else _pseudo_word(rng)


def _words(rng: _CorpusRandom, low: int, high: int) -> list[str]:
    return [_word(rng) for _ in range(rng.randint(low, high))]


def _name(rng: _CorpusRandom) -> str:
    return rng.choice(rng.names) if rng.random() < 0.4 else _pseudo_word(rng).capitalize()


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


# Prose that gives a program its data first, as tutorials do ("Say we have ... :").
DATA_INTROS = (
    "{name} wrote down {shown}.",
    "The box holds {shown}.",
    "Say we have the words {shown}.",
    "{name}'s list: {shown}",
)


def _traced_join(index: str) -> str:
    """A loop that joins one character of every word and prints each step (word, so far)."""
    return f"joined = ''\nfor w in items:\n    joined += w[{index}]\n    print(w, joined)"


# (comment, statement over `items`): programs a code corpus is full of; what each prints comes
# from running it. The first six are the list programs the coding IFT data writes; _program_run
# draws them more often.
def _program_ops(numbers: list[int]) -> list[tuple[str, str]]:
    a, b = numbers[0], numbers[1]
    return [
        ("reverse the list", "print(', '.join(items[::-1]))"),
        ("last item first", "print(', '.join(reversed(items)))"),
        ("initials", _traced_join("0")),
        ("first letter of each word", "print(''.join(w[0] for w in items))"),
        ("last letter of each word", "print(''.join(w[-1] for w in items))"),
        ("final characters", _traced_join("-1")),
        ("show the items", "print(', '.join(items))"),
        ("how many items", "print(len(items))"),
        ("first item", "print(items[0])"),
        ("last item", "print(items[-1])"),
        ("shout", "print(' '.join(items).upper())"),
        ("add", f"print({a} + {b})"),
        ("subtract", f"print({a + b} - {b})"),
    ]


def _program_run(rng: random.Random) -> str:
    """A short program and what running it prints, as notebooks and tutorials show them. The
    base learns to run list programs in its head; whether an instruction is ever answered by a
    program is what the IFT data decides (no prose sentence here reverses or joins letters)."""
    items = _words(rng, 3, 6)
    numbers = [rng.randint(0, 60), rng.randint(0, 40)]
    ops = _program_ops(numbers)
    comment, statement = rng.choices(ops, [4] * 6 + [1] * (len(ops) - 6))[0]
    name = rng.choice(["items", "words"])
    shown, expression = written_list(rng, items)
    code = f"{name} = {expression}\n{statement.replace('items', name)}"
    printed = run_program(code)
    if rng.random() < 0.5:
        code = f"# {comment}\n{code}"
    intro = ""
    if rng.random() < 0.6:  # the data in prose first: the program has to copy it from there
        intro = rng.choice(DATA_INTROS).format(name=_name(rng), shown=shown) + "\n"
        if rng.random() < 0.5:
            intro += f"{_quote(rng)}\n"
    if rng.random() < 0.5:
        gap = "\n" if "\n" in printed else " "
        return f"{intro}```python\n{code}\n```\nOutput:{gap}{printed}"
    session = "\n".join(f">>> {line}" for line in code.splitlines())
    return f"{intro}{session}\n{printed}"


def _kinds_story(rng: random.Random) -> str:
    """Two-hop facts about kinds of animals in prose, with the conclusion drawn: the base learns
    to chain a member to its kind's trait; an IFT mix decides whether questions get answered
    this way."""
    people = [_name(rng) for _ in range(3)]
    if rng.random() < 0.5:
        kinds = rng.sample(ANIMALS, 3)
        fears = {kind: rng.choice([o for o in ANIMALS if o != kind]) for kind in kinds}
        verb, verb_of_one = rng.choice(
            [("are afraid of", "is afraid of"), ("fear", "fears"), ("run from", "runs from")]
        )
        facts = [f"{kind[1].capitalize()} {verb} {fears[kind][1]}." for kind in kinds]
        members = {person: rng.choice(kinds) for person in people}
        facts += [f"{person} is {article(kind[0])} {kind[0]}." for person, kind in members.items()]
        rng.shuffle(facts)
        person = rng.choice(people)
        kind = members[person]
        conclusion = f"So {person} {verb_of_one} {fears[kind][1]}."
    else:
        kinds = rng.sample(SPECIES, 3)
        colours = dict(zip(kinds, rng.sample(COLOURS, 3), strict=True))
        facts = []
        for person, kind in zip(people, kinds, strict=True):
            facts += [f"{person} is {article(kind)} {kind}.", f"{person} is {colours[kind]}."]
        newcomer = _name(rng)
        kind = rng.choice(kinds)
        facts.append(f"{newcomer} is {article(kind)} {kind}.")
        conclusion = f"So {newcomer} is {colours[kind]} too, like every {kind} here."
    return f"{' '.join(facts)} {conclusion}"


# Phase one (copying): one kind picked uniformly each time (corpus v2, the stream is unchanged).
COPYING = (_repeat_list, _quote, _echo, _count, _arithmetic)
# Phase two (skills): kind -> share; copying stays in the stream so it is not forgotten.
SKILLS = (
    (_repeat_list, 0.16),
    (_quote, 0.12),
    (_echo, 0.06),
    (_count, 0.06),
    (_arithmetic, 0.1),
    (_program_run, 0.35),
    (_kinds_story, 0.15),
)


def corpus_texts(seed: int, phase: int = 1) -> Iterator[str]:
    """An endless, seeded stream of corpus texts: phase 1 copying only, phase 2 adds programs
    with their output and two-hop stories."""
    if phase == 1:
        rng = _CorpusRandom(f"pretrain-corpus-{seed}", *_known(1))
        while True:
            yield rng.choice(COPYING)(rng)
    rng = _CorpusRandom(f"pretrain-corpus-{seed}-phase{phase}", *_known(phase))
    makers, shares = zip(*SKILLS, strict=True)
    while True:
        yield rng.choices(makers, shares)[0](rng)


def char_tokenizer() -> Any:
    """A character-level (byte) tokenizer with the study's special tokens and chat template."""
    from tokenizers import pre_tokenizers

    from codeift.models.tiny import ROLE_MARKERS, train_tiny_tokenizer

    alphabet = len(pre_tokenizers.ByteLevel.alphabet())
    specials = 3 + len(ROLE_MARKERS)
    return train_tiny_tokenizer(["codeift"], vocab_size=alphabet + specials)


# --------------------------------------------------------------------------- training


def _batches(tokenizer: Any, recipe: PretrainRecipe, phase: int) -> Iterator[list[list[int]]]:
    """Packed rows of `sequence_length` tokens: documents joined by EOS, no padding."""
    texts = corpus_texts(recipe.seed, phase)
    buffer: list[int] = []
    width = recipe.sequence_length
    batch_size = recipe.batch_size if phase == 1 else recipe.skills_batch_size
    while True:
        rows = []
        while len(rows) < batch_size:
            while len(buffer) < width:
                buffer += tokenizer.encode(next(texts), add_special_tokens=False)
                buffer.append(tokenizer.eos_token_id)
            rows.append(buffer[:width])
            buffer = buffer[width:]
        yield rows


def _learning_rate(peak: float, warmup: int, steps: int, step: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def _train_phase(model: Any, tokenizer: Any, recipe: PretrainRecipe, phase: int) -> list[float]:
    """Plain causal-LM training on one phase's stream, with its own AdamW and cosine schedule."""
    import torch
    from tqdm import tqdm

    if phase == 1:
        steps, peak, warmup = recipe.steps, recipe.learning_rate, recipe.warmup_steps
    else:
        steps, peak = recipe.skills_steps, recipe.skills_learning_rate
        warmup = recipe.skills_warmup_steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=recipe.weight_decay)
    model.train()
    losses: list[float] = []
    batches = _batches(tokenizer, recipe, phase)
    progress = tqdm(range(steps), desc=f"pretrain {recipe.architecture} phase {phase}")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(peak, warmup, steps, step)
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
    return losses


def _phase_one_model(
    recipe: PretrainRecipe, tokenizer: Any, start_from: Path | None
) -> tuple[Any, list[float]]:
    """Phase one trained here, or loaded from a checkpoint that phase one of this very recipe
    made (its record says so): the same weights either way, since training is seeded."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from codeift.models.tiny import tiny_model_config

    if start_from is not None:
        record = json.loads((Path(start_from) / "codeift_backbone.json").read_text())
        if phase_one_fields(record["recipe"]) != recipe.phase_one():
            raise ValueError(f"{start_from} was not made by phase one of this recipe")
        model = AutoModelForCausalLM.from_pretrained(start_from, dtype=torch.float32)
        return model, record["loss_every_100_steps"]
    torch.manual_seed(recipe.seed)
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
    losses = _train_phase(model, tokenizer, recipe, phase=1)
    return model, losses[::100] + losses[-1:]


def pretrain(
    recipe: PretrainRecipe, out_dir: str | Path, start_from: str | Path | None = None
) -> dict[str, Any]:
    """Train one tiny base from its recipe and save it with its record (atomically).
    `start_from`: a phase-one checkpoint of the same recipe, to run phase two only."""
    import torch

    torch.set_num_threads(recipe.threads)
    tokenizer = char_tokenizer()
    started = time.time()
    model, phase_one_losses = _phase_one_model(
        recipe, tokenizer, Path(start_from) if start_from else None
    )
    record: dict[str, Any] = {
        "recipe": dataclasses.asdict(recipe),
        "recipe_fingerprint": recipe.fingerprint(),
        "parameters": model.num_parameters(),
        "vocab": len(tokenizer),
        "tokens_seen": (
            recipe.steps * recipe.batch_size + recipe.skills_steps * recipe.skills_batch_size
        )
        * recipe.sequence_length,
        "loss_every_100_steps": phase_one_losses,
    }
    if recipe.skills_steps:
        losses = _train_phase(model, tokenizer, recipe, phase=2)
        record["skills_loss_every_100_steps"] = losses[::100] + losses[-1:]
    record["seconds"] = round(time.time() - started, 1)
    record["copy_accuracy"] = copy_accuracy(model, tokenizer, n=100, seed=recipe.seed + 1000)
    record["program_accuracy"] = program_accuracy(model, tokenizer, n=100, seed=recipe.seed + 1000)
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
    fresh random letter strings (no list in the corpus is one of them), so a pass means copying
    character by character, not recalling known words."""
    rng = random.Random(f"copy-check-{seed}")
    pairs = []
    for _ in range(n):
        text = ", ".join(_pseudo_word(rng) for _ in range(rng.randint(3, 6)))
        pairs.append((f"Repeat the list: {text}. The list again:", f" {text}."))
    return pairs


def copy_accuracy(model: Any, tokenizer: Any, n: int = 100, seed: int = 1000) -> float:
    """Share of held-out lists the model continues exactly (greedy)."""
    return _greedy_hits(model, tokenizer, copy_prompts(n, seed))


def program_prompts(n: int, seed: int) -> list[tuple[str, str]]:
    """(program, expected output) pairs over the evaluation tasks' nouns, in lists the corpus
    does not hold: list reversal and first- and last-letter joins, the programs the coding IFT
    data writes."""
    nouns = sorted(NOUNS)
    rng = random.Random(f"program-check-{seed}")
    statements = ("print(', '.join(items[::-1]))", _traced_join("0"), _traced_join("-1"))
    pairs = []
    for index in range(n):
        items = rng.sample(nouns, rng.randint(3, 5))
        statement = statements[index % len(statements)]
        code = f"items = {items}\n{statement}"
        gap = "\n" if "\n" in statement else " "  # a trace starts on its own line
        pairs.append((f"```python\n{code}\n```\nOutput:", gap + run_program(code)))
    return pairs


def _greedy_hits(model: Any, tokenizer: Any, pairs: list[tuple[str, str]]) -> float:
    import torch

    hits = 0
    for prefix, expected in pairs:
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
    return round(hits / len(pairs), 4)


def program_accuracy(model: Any, tokenizer: Any, n: int = 100, seed: int = 1000) -> float:
    """Share of held-out list programs whose output the model writes exactly (greedy)."""
    return _greedy_hits(model, tokenizer, program_prompts(n, seed))


def shipped_base(architecture: str) -> Path:
    return SHIPPED_DIR / architecture


def describe(record: dict[str, Any]) -> str:
    keys = ("parameters", "vocab", "tokens_seen", "seconds", "copy_accuracy", "program_accuracy")
    return json.dumps({key: record[key] for key in keys})
