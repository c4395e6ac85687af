"""Generators for the arithmetic word problems (GSM8K-, SVAMP-, MultiArith-, AddSub-style).

Every quantity is drawn so that each intermediate and final value is a non-negative integer;
divisions are set up from their quotient, so the gold answer is exact by construction. Counts
written before a plural noun are at least 2, so no item reads "1 apples".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from codeift.words import ALL_NAMES, COUNTABLES

# --- GSM8K-style: a multi-step story ------------------------------------------------------------

Step = Callable[[random.Random, str, str, int], tuple[str, int] | None]


def _add(rng: random.Random, name: str, thing: str, value: int) -> tuple[str, int] | None:
    amount = rng.randint(2, 40)
    wording = rng.choice(
        (
            "{n} buys {k} more {t}.",
            "{n} finds {k} more {t}.",
            "A friend gives {n} {k} more {t}.",
        )
    )
    return wording.format(n=name, k=amount, t=thing), value + amount


def _subtract(rng: random.Random, name: str, thing: str, value: int) -> tuple[str, int] | None:
    if value < 4:
        return None
    amount = rng.randint(2, value - 2)
    wording = rng.choice(("{n} gives away {k} {t}.", "{n} sells {k} {t}.", "{n} loses {k} {t}."))
    return wording.format(n=name, k=amount, t=thing), value - amount


def _multiply(rng: random.Random, name: str, thing: str, value: int) -> tuple[str, int] | None:
    if value > 300:
        return None
    factor, verb = rng.choice(((2, "doubles"), (3, "triples")))
    return f"{name} {verb} the number of {thing}.", value * factor


def _divide(rng: random.Random, name: str, thing: str, value: int) -> tuple[str, int] | None:
    divisors = [d for d in range(2, 7) if value % d == 0]
    if not divisors:
        return None
    parts = rng.choice(divisors)
    return (
        f"{name} splits the {thing} into {parts} equal groups and keeps one group.",
        value // parts,
    )


_STEPS: tuple[Step, ...] = (_add, _subtract, _multiply, _divide)


def gsm8k_style(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """A start amount changed by `n_steps` operations; each step must be applied in order."""
    name, thing = rng.choice(ALL_NAMES), rng.choice(COUNTABLES)
    value = rng.randint(10, 60)
    sentences = [f"{name} has {value} {thing}."]
    while len(sentences) <= params["n_steps"]:
        outcome = rng.choice(_STEPS)(rng, name, thing, value)
        if outcome is not None:
            sentences.append(outcome[0])
            value = outcome[1]
    sentences.append(f"How many {thing} does {name} have now?")
    return {"question": " ".join(sentences), "answer": str(value)}


# --- SVAMP-style: one step with distracting quantities -----------------------------------------


def _distractors(rng: random.Random, thing: str, count: int, high: int) -> str:
    """Irrelevant quantities of other things, the SVAMP perturbation that breaks keyword tricks."""
    others = rng.sample([other for other in COUNTABLES if other != thing], count)
    return "".join(f" and {rng.randint(2, high)} {other}" for other in others)


def svamp_style(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    high = params["max_value"]
    name, thing = rng.choice(ALL_NAMES), rng.choice(COUNTABLES)
    extra = _distractors(rng, thing, params["distractors"], high)
    kind = rng.choice(("take", "give", "before", "per_box", "share"))
    if kind == "take":
        start = rng.randint(4, high)
        taken = rng.randint(2, start - 2)
        question = (
            f"{name} had {start} {thing}{extra}. {name} gave {taken} {thing} to a friend. "
            f"How many {thing} does {name} have left?"
        )
        answer = start - taken
    elif kind == "give":
        start, gained = rng.randint(2, high), rng.randint(2, high)
        question = (
            f"{name} has {start} {thing}{extra}. A friend gives {name} {gained} more {thing}. "
            f"How many {thing} does {name} have now?"
        )
        answer = start + gained
    elif kind == "before":
        answer, bought = rng.randint(1, high), rng.randint(2, high)
        question = (
            f"{name} had some {thing}{extra}. After buying {bought} more {thing}, {name} has "
            f"{answer + bought} {thing}. How many {thing} did {name} have at first?"
        )
    elif kind == "per_box":
        per_box, boxes = rng.randint(2, max(2, high // 4)), rng.randint(2, 12)
        question = (
            f"Each box holds {per_box} {thing}{extra}. How many {thing} are there in {boxes} boxes?"
        )
        answer = per_box * boxes
    else:
        bags, answer = rng.randint(2, 12), rng.randint(1, max(1, high // 4))
        question = (
            f"{name} has {bags * answer} {thing}{extra}. {name} puts the {thing} equally into "
            f"{bags} bags. How many {thing} are in each bag?"
        )
    return {"question": question, "answer": str(answer)}


# --- MultiArith-style: two steps ---------------------------------------------------------------


def multiarith_style(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    high = params["max_value"]
    name, thing = rng.choice(ALL_NAMES), rng.choice(COUNTABLES)
    kind = rng.choice(("give_buy", "pack_rest", "earn", "groups", "packs_left"))
    if kind == "give_buy":
        start = rng.randint(2, high)
        given, bought = rng.randint(1, start - 1), rng.randint(1, high)
        question = (
            f"{name} had {start} {thing}. {name} gave away {given} of them and then bought "
            f"{bought} more. How many {thing} does {name} have now?"
        )
        answer = start - given + bought
    elif kind == "pack_rest":
        size, boxes, sold = (
            rng.randint(2, 9),
            rng.randint(1, max(1, high // 5)),
            rng.randint(1, high),
        )
        question = (
            f"A shop had {sold + size * boxes} {thing}. It sold {sold} of them and packed the rest "
            f"into boxes of {size}. How many boxes did it fill?"
        )
        answer = boxes
    elif kind == "earn":
        rate, monday, tuesday = rng.randint(2, 20), rng.randint(1, high // 5 + 1), rng.randint(1, 9)
        question = (
            f"{name} earns {rate} dollars for each lawn mowed. {name} mowed {monday} lawns on "
            f"Monday and {tuesday} lawns on Tuesday. How many dollars did {name} earn?"
        )
        answer = rate * (monday + tuesday)
    elif kind == "groups":
        group, groups = rng.randint(2, 8), rng.randint(2, max(2, high // 4))
        joined = rng.randint(1, group * groups - 1)
        question = (
            f"There were {group * groups - joined} students in a hall and {joined} more came in. "
            f"The teacher split them into groups of {group}. How many groups were there?"
        )
        answer = groups
    else:
        packs, per_pack = rng.randint(2, 12), rng.randint(2, max(2, high // 5))
        given = rng.randint(2, packs * per_pack - 2)
        question = (
            f"{name} bought {packs} packs of {thing} with {per_pack} {thing} in each pack and "
            f"gave away {given} {thing}. How many {thing} does {name} have left?"
        )
        answer = packs * per_pack - given
    return {"question": question, "answer": str(answer)}


# --- AddSub-style: one addition or subtraction -------------------------------------------------


def addsub_style(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    high = params["max_value"]
    first, second = rng.sample(ALL_NAMES, 2)
    thing = rng.choice(COUNTABLES)
    kind = rng.choice(("together", "picked", "took_out", "gave", "fewer"))
    a = rng.randint(4, high)
    b = rng.randint(2, high) if kind in ("together", "picked") else rng.randint(2, a - 2)
    if kind == "together":
        question = (
            f"{first} has {a} {thing}. {second} has {b} {thing}. How many {thing} do they have "
            f"in total?"
        )
        answer = a + b
    elif kind == "picked":
        question = (
            f"{first} collected {a} {thing} on Monday and {b} {thing} on Tuesday. How many "
            f"{thing} did {first} collect altogether?"
        )
        answer = a + b
    elif kind == "took_out":
        question = (
            f"There were {a} {thing} in a box. {first} took {b} {thing} out of the box. How many "
            f"{thing} are left in the box?"
        )
        answer = a - b
    elif kind == "gave":
        question = (
            f"{first} had {a} {thing}. {first} gave {b} {thing} to {second}. How many {thing} "
            f"does {first} have now?"
        )
        answer = a - b
    else:
        question = (
            f"{first} has {a} {thing}. {second} has {b} fewer {thing} than {first}. How many "
            f"{thing} does {second} have?"
        )
        answer = a - b
    return {"question": question, "answer": str(answer)}
