"""Pretrained tiny bases: the corpus, the seeded recipe, and the shipped checkpoints."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
from collections import Counter

import pytest

from codeift.models.pretrain import (
    RECIPES,
    char_tokenizer,
    copy_accuracy,
    copy_prompts,
    corpus_texts,
    pretrain,
    program_prompts,
    shipped_base,
)


def test_corpus_is_seeded_and_rich_in_copying_but_never_reverses():
    first = list(itertools.islice(corpus_texts(0), 3000))
    assert first == list(itertools.islice(corpus_texts(0), 3000))
    assert first != list(itertools.islice(corpus_texts(1), 3000))
    text = "\n".join(first).lower()
    assert "revers" not in text and "first letter" not in text and "backward" not in text
    copies = [re.match(r"Repeat the list: (.*)\. The list again: (.*)\.$", t) for t in first]
    copies = [m for m in copies if m]
    assert len(copies) > 100
    assert all(m.group(1) == m.group(2) for m in copies)


def _program_and_output(text: str) -> tuple[str, str] | None:
    """A phase-two program document split into its code and the output it claims (after any
    prose that gives the data first)."""
    block = re.search(r"```python\n(.*)\n```\nOutput:[ \n](.*)", text, re.S)
    if block:
        return block.group(1), block.group(2)
    lines = text.split("\n")
    code = [line.removeprefix(">>> ") for line in lines if line.startswith(">>> ")]
    if not code:
        return None
    return "\n".join(code), "\n".join(lines[lines.index(f">>> {code[-1]}") + 1 :])


# An oracle that does not run the program: the list is read from its literal and what each
# statement must print is written here by hand, so a program whose output claim is wrong, or a
# statement the table does not know, fails. Keys are statements over `items`.
def _trace(items: list[str], index: int) -> str:
    lines, joined = [], ""
    for word in items:
        joined += word[index]
        lines.append(f"{word} {joined}")
    return "\n".join(lines)


TRACE = "joined = ''\nfor w in items:\n    joined += w[{}]\n    print(w, joined)"
ORACLE = {
    "print(', '.join(items[::-1]))": lambda items: ", ".join(items[len(items) - 1 :: -1]),
    "print(', '.join(reversed(items)))": lambda items: ", ".join(items[len(items) - 1 :: -1]),
    TRACE.format(0): lambda items: _trace(items, 0),
    TRACE.format(-1): lambda items: _trace(items, -1),
    "print(''.join(w[0] for w in items))": lambda items: "".join(w[:1] for w in items),
    "print(''.join(w[-1] for w in items))": lambda items: "".join(w[len(w) - 1] for w in items),
    "print(', '.join(items))": lambda items: ", ".join(items),
    "print(len(items))": lambda items: str(len(items)),
    "print(items[0])": lambda items: items[0],
    "print(items[-1])": lambda items: items[len(items) - 1],
    "print(' '.join(items).upper())": lambda items: " ".join(items).upper(),
}
# The comment a program may carry, for the statement it must sit on (the corpus's own words).
COMMENT = {
    "reverse the list": "print(', '.join(items[::-1]))",
    "last item first": "print(', '.join(reversed(items)))",
    "show the items": "print(', '.join(items))",
    "how many items": "print(len(items))",
}
DATA = re.compile(r"^(\w+) = (?:(\[.*\])|'(.*)'\.split\(', '\)|'(.*)'\.split\(\))$")


def _expected_output(code: str) -> str:
    """What `code` prints, from its text: the data line's items and the statement's oracle."""
    lines = code.split("\n")
    comment = lines.pop(0).removeprefix("# ") if lines[0].startswith("# ") else None
    name, literal, commas, spaces = DATA.match(lines[0]).groups()
    items = (
        ast.literal_eval(literal) if literal else commas.split(", ") if commas else spaces.split()
    )
    statement = "\n".join(lines[1:]).replace(name, "items")
    if comment in COMMENT:
        assert COMMENT[comment] == statement, (comment, code)
    if arithmetic := re.fullmatch(r"print\((\d+) ([+-]) (\d+)\)", statement):
        a, sign, b = arithmetic.groups()
        return str(int(a) + int(b) if sign == "+" else int(a) - int(b))
    assert statement in ORACLE, f"a program the oracle does not know:\n{code}"
    return ORACLE[statement](items)


def test_output_oracle_on_hand_checked_programs():
    """The oracle itself, on programs whose outputs were worked out by hand."""
    assert _expected_output("items = ['fig', 'kiwi', 'plum']\nprint(', '.join(items[::-1]))") == (
        "plum, kiwi, fig"
    )
    assert (
        _expected_output(
            "# initials\nwords = 'cat dog'.split()\njoined = ''\nfor w in words:\n"
            "    joined += w[0]\n    print(w, joined)"
        )
        == "cat c\ndog cd"
    )
    assert (
        _expected_output("items = 'ab, cd, ef'.split(', ')\nprint(''.join(w[-1] for w in items))")
        == "bdf"
    )
    assert _expected_output("items = ['a']\nprint(47 - 12)") == "35"


def test_phase_two_programs_print_what_they_claim_and_prose_never_reverses():
    texts = list(itertools.islice(corpus_texts(0, phase=2), 4000))
    assert texts == list(itertools.islice(corpus_texts(0, phase=2), 4000))
    programs = [pair for pair in map(_program_and_output, texts) if pair]
    prose = [text for text in texts if not _program_and_output(text)]
    assert 0.2 < len(programs) / len(texts) < 0.4
    for code, printed in programs:
        assert _expected_output(code) == printed, code
    assert any("[::-1]" in code for code, _ in programs)
    assert any("w[0]" in code for code, _ in programs)
    text = "\n".join(prose).lower()
    assert "revers" not in text and "first letter" not in text and "backward" not in text
    stories = [t for t in prose if t[0].isupper() and " So " in t]
    assert len(stories) > 400  # two-hop stories with their conclusion drawn


def test_copy_check_lists_are_held_out_from_the_training_stream():
    held_out = {expected.strip(" .") for _, expected in copy_prompts(100, seed=1000)}
    seen = set()
    for text in itertools.islice(corpus_texts(RECIPES["llama"].seed), 20000):
        match = re.match(r"Repeat the list: (.*)\. The list again", text)
        if match:
            seen.add(match.group(1))
    assert len(held_out & seen) <= 2  # random word lists rarely collide


def test_copy_check_uses_words_the_corpus_never_holds():
    """The corpus's vocabulary (its known words and names: each recurs across its texts, unlike
    the random strings it also holds) is not what the copy check asks the model to copy."""
    words = {
        w for _, expected in copy_prompts(100, seed=7) for w in expected.strip(" .").split(", ")
    }
    counts: Counter[str] = Counter()
    for phase in (1, 2):
        for text in itertools.islice(corpus_texts(RECIPES["llama"].seed, phase), 10000):
            counts.update(word.lower() for word in re.findall(r"[A-Za-z]+", text))
    known = {word for word, count in counts.items() if count >= 5}
    assert len(known) > 500
    assert len(words) > 300 and len(words & known) <= 3  # random strings: a rare collision


def test_program_check_asks_for_the_outputs_the_coding_data_teaches():
    pairs = program_prompts(30, seed=3)
    for prefix, expected in pairs:
        code = prefix.removeprefix("```python\n").removesuffix("\n```\nOutput:")
        assert expected == ("\n" if "\n" in _expected_output(code) else " ") + _expected_output(
            code
        )
    programs = {prefix.split("\n", 2)[2] for prefix, _ in pairs}
    assert any("items[::-1]" in p for p in programs)
    assert any("w[0]" in p for p in programs) and any("w[-1]" in p for p in programs)


def test_tokenizer_is_character_level_with_the_study_template():
    tokenizer = char_tokenizer()
    assert len(tokenizer) == 256 + 6
    text = "Repeat the list: 12, apple."
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    assert "<|assistant|>" in tokenizer.chat_template


TINY_RECIPE = dataclasses.replace(
    RECIPES["qwen2"], hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
    num_kv_heads=2, sequence_length=64, batch_size=4, steps=3, warmup_steps=1, threads=1,
    skills_steps=2, skills_warmup_steps=1,
)  # fmt: skip
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json")


@pytest.mark.slow  # trains two or three tiny models (37-55 s here)
def test_pretraining_is_seeded_to_the_byte(tmp_path):
    first = pretrain(TINY_RECIPE, tmp_path / "a")
    second = pretrain(TINY_RECIPE, tmp_path / "b")
    assert first["loss_every_100_steps"] == second["loss_every_100_steps"]
    assert first["skills_loss_every_100_steps"] == second["skills_loss_every_100_steps"]
    for name in MODEL_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    record = json.loads((tmp_path / "a" / "codeift_backbone.json").read_text())
    assert record["recipe_fingerprint"] == TINY_RECIPE.fingerprint()


@pytest.mark.slow  # trains two or three tiny models (37-55 s here)
def test_phase_two_from_a_phase_one_checkpoint_is_the_whole_recipe(tmp_path):
    """How the shipped bases were rebuilt: phase two on the previous (phase-one) checkpoint
    gives the bytes a run from scratch gives."""
    pretrain(TINY_RECIPE, tmp_path / "whole")
    pretrain(dataclasses.replace(TINY_RECIPE, skills_steps=0), tmp_path / "phase1")
    pretrain(TINY_RECIPE, tmp_path / "resumed", start_from=tmp_path / "phase1")
    for name in MODEL_FILES:
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()
    other = dataclasses.replace(TINY_RECIPE, seed=5)
    with pytest.raises(ValueError, match="not made by phase one of this recipe"):
        pretrain(other, tmp_path / "other", start_from=tmp_path / "phase1")


@pytest.mark.slow  # loads each shipped base and generates 50 held-out lists (8-16 s each)
@pytest.mark.parametrize("architecture", sorted(RECIPES))
def test_shipped_base_is_what_its_recipe_makes(architecture):
    """The checkpoint in the repository was built by the recipe the code holds (its
    fingerprint), has the recipe's shape and tokenizer, and copies held-out lists."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = shipped_base(architecture)
    recipe = RECIPES[architecture]
    record = json.loads((folder / "codeift_backbone.json").read_text())
    assert record["recipe_fingerprint"] == recipe.fingerprint(), (
        "the recipe changed after the checkpoint was built: rebuild it (docs/small-world.md, "
        "'Pretrained tiny bases')"
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == architecture
    assert config["hidden_size"] == recipe.hidden_size
    assert config["num_hidden_layers"] == recipe.num_layers
    assert config["vocab_size"] == len(char_tokenizer())
    from tokenizers import Tokenizer

    reference = char_tokenizer()
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab() == (
        reference.backend_tokenizer.get_vocab()
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)  # as the engines load it
    sample = 'Ann said "12 apples". Repeat the list: fig, kiwi.'
    assert tokenizer.encode(sample, add_special_tokens=False) == reference.encode(
        sample, add_special_tokens=False
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.num_parameters() == record["parameters"]
    accuracy = copy_accuracy(model, tokenizer, n=50, seed=4242)
    # lists of words the corpus never holds: only character-by-character copying passes
    assert accuracy >= 0.25, f"{architecture} copies {accuracy:.0%} of held-out lists"


def test_a_backbone_can_start_from_a_shipped_base(tmp_path, config):
    from transformers import AutoTokenizer

    from codeift.config import validate_config
    from codeift.models.backbones import prepare_backbone

    config["backbones"]["tiny-llama"] = {
        "source": {"pretrained": "llama"},
        "family": "llama",
        "size": "1.8M",
    }
    validate_config(config)
    prepare_backbone("tiny-llama", config["backbones"]["tiny-llama"], tmp_path / "base")
    assert (tmp_path / "base" / "model.safetensors").resolve() == (
        shipped_base("llama") / "model.safetensors"
    )
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|assistant|>\n")


def test_a_missing_shipped_base_is_a_clear_error(tmp_path, monkeypatch):
    import codeift.models.pretrain
    from codeift.errors import BackboneError
    from codeift.models.backbones import prepare_backbone

    monkeypatch.setattr(codeift.models.pretrain, "SHIPPED_DIR", tmp_path / "nowhere")
    spec = {"source": {"pretrained": "qwen2"}, "family": "qwen2", "size": "1.8M"}
    with pytest.raises(BackboneError, match="shipped base .* is missing; rebuild it"):
        prepare_backbone("b", spec, tmp_path / "base")
