"""Generators for the symbolic tasks (letter concatenation, list reversal, coin flip).

Each generator draws one record from `rng` and returns its fields as strings; the question
wording follows the public datasets so that generated and hub items read alike.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from codeift.words import ALL_NAMES, WORDS


def _concat_question(position: str, words: list[str]) -> str:
    return f'Take the {position} letter of each word in "{" ".join(words)}" and concatenate them.'


def first_letter_concat(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    words = rng.sample(WORDS, params["n_words"])
    return {
        "question": _concat_question("first", words),
        "answer": "".join(word[0] for word in words).lower(),
        "words": " ".join(words),
    }


def _names_by_last_letter() -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for name in ALL_NAMES:
        groups.setdefault(name[-1].lower(), []).append(name)
    return {letter: tuple(names) for letter, names in sorted(groups.items())}


_BY_LAST_LETTER = _names_by_last_letter()


def last_letter_concat(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """Names, as in the Chain-of-Thought paper's version (and its hub copy).

    The last letter is drawn first and the name second: many names end in "a", and drawing
    names directly would make "aaaa" a common answer.
    """
    names: list[str] = []
    while len(names) < params["n_words"]:
        name = rng.choice(_BY_LAST_LETTER[rng.choice(sorted(_BY_LAST_LETTER))])
        if name not in names:
            names.append(name)
    return {
        "question": _concat_question("last", names),
        "answer": "".join(name[-1] for name in names).lower(),
        "words": " ".join(names),
    }


def list_reversal(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    items = rng.sample(WORDS, params["length"])
    return {
        "question": f"Reverse the order of the items in this list: {', '.join(items)}",
        "answer": ", ".join(reversed(items)),
        "items": ", ".join(items),
    }


def coin_flip(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """Each person flips with probability 1/2, so yes and no are equally likely."""
    names = rng.sample(ALL_NAMES, params["n_people"])
    flips = [rng.random() < 0.5 for _ in names]
    actions = [
        f"{name} flips the coin." if flipped else f"{name} does not flip the coin."
        for name, flipped in zip(names, flips, strict=True)
    ]
    question = " ".join(["A coin is heads up.", *actions, "Is the coin still heads up?"])
    return {"question": question, "answer": "no" if sum(flips) % 2 else "yes"}
