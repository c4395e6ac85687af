"""Registry of offline generators and the loop that turns one into a test set.

A generator draws single records; this module owns what every generator needs: knob checking
(so a typo in a config fails loudly), and de-duplication (so a test set never repeats an item).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from codeift.tasks import arithmetic, logical, symbolic
from codeift.tasks.errors import reject_unknown, task_error

Record = dict[str, str]


@dataclass(frozen=True)
class Generator:
    """A record sampler and its difficulty knobs, each with its inclusive (low, high) range."""

    draw: Callable[[random.Random, Mapping[str, int]], Record]
    knobs: Mapping[str, tuple[int, int]]


GENERATORS: dict[str, Generator] = {
    "first_letter_concat": Generator(symbolic.first_letter_concat, {"n_words": (1, 12)}),
    "last_letter_concat": Generator(symbolic.last_letter_concat, {"n_words": (1, 12)}),
    "list_reversal": Generator(symbolic.list_reversal, {"length": (2, 20)}),
    "coin_flip": Generator(symbolic.coin_flip, {"n_people": (1, 12)}),
    "babi_deduction": Generator(
        logical.babi_deduction, {"n_species": (2, 10), "n_people": (1, 10)}
    ),
    "babi_induction": Generator(
        logical.babi_induction, {"n_species": (1, 8), "n_examples": (1, 4)}
    ),
    "clutrr": Generator(logical.clutrr, {"chain_length": (2, 3)}),
    "proofwriter": Generator(logical.proofwriter, {"depth": (0, 6), "n_distractors": (0, 10)}),
    "gsm8k_style": Generator(arithmetic.gsm8k_style, {"n_steps": (1, 10)}),
    "svamp_style": Generator(
        arithmetic.svamp_style, {"distractors": (0, 3), "max_value": (10, 10_000)}
    ),
    "multiarith_style": Generator(arithmetic.multiarith_style, {"max_value": (10, 10_000)}),
    "addsub_style": Generator(arithmetic.addsub_style, {"max_value": (10, 10_000)}),
}


def get_generator(task: str, name: str) -> Generator:
    if name not in GENERATORS:
        known = ", ".join(sorted(GENERATORS))
        raise task_error(task, f"unknown generator {name!r}; known: {known}", field="generator")
    return GENERATORS[name]


def check_params(task: str, name: str, params: Mapping[str, object]) -> dict[str, int]:
    """Validate a generator's knobs: all present, none unknown, integers in range."""
    knobs = get_generator(task, name).knobs
    reject_unknown(
        task,
        params,
        sorted(knobs),
        what="knob",
        field="difficulty",
        where=f" for generator {name!r}",
    )
    missing = sorted(set(knobs) - set(params))
    if missing:
        raise task_error(
            task, f"generator {name!r} needs knob(s) {', '.join(missing)}", field="params"
        )
    checked: dict[str, int] = {}
    for knob, (low, high) in knobs.items():
        value = params[knob]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise task_error(
                task,
                f"knob {knob!r} must be an integer in [{low}, {high}], got {value!r}",
                field="difficulty",
            )
        checked[knob] = value
    return checked


def generate_records(
    task: str, name: str, params: Mapping[str, object], size: int, rng: random.Random
) -> list[Record]:
    """`size` records with distinct questions, or a TaskError if the knobs allow too few."""
    generator = get_generator(task, name)
    knobs = check_params(task, name, params)
    records: list[Record] = []
    seen: set[str] = set()
    attempts = 0
    budget = 50 * size + 1000
    while len(records) < size:
        if attempts == budget:
            raise task_error(
                task,
                f"generator {name!r} produced only {len(records)} distinct items in {budget} "
                f"draws with {knobs}; ask for a smaller size or a harder setting",
                field="size",
            )
        attempts += 1
        record = generator.draw(rng, knobs)
        if record["question"] not in seen:
            seen.add(record["question"])
            records.append(record)
    return records
