"""The embedded IFT generator: a small world in which we know what coding data does.

The embedded default has to show that the workflow measures what it claims, so its IFT data is
built with a known answer (README, "The small world"):

- the coding data (real Python programs, run to get their output) teaches list reversal and
  first- and last-letter joins, skills three symbolic tasks need and no general example shows;
- the general data (prose) teaches two-hop lookups in short stories (what a kind of animal
  fears, what colour a kind has), the skills of the two bAbI tasks, which no program shows;
- both halves teach one-step arithmetic at the same rate and with the same worked expression
  before the answer, the program in one, the sentence in the other: a fair arithmetic control;
- nothing teaches the remaining tasks, which should not move.

`PLANTED` writes this down as data (task -> expected direction of the most-code arm against
code0), and every conversation records the skill it teaches. Prompts are phrased unlike the
evaluation prompts (tests/test_small_world.py checks that no four-word run is shared), so a
recovered effect is transfer of a skill, not string matching.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable
from typing import Any

from codeift.tasks.vocab import ANIMALS, COLOURS, SPECIES, article

# Task -> the direction the embedded IFT data plants in (most-code arm - code0): gain, lose, none.
PLANTED: dict[str, str] = {
    "list_reversal": "gain",
    "first_letter_concat": "gain",
    "last_letter_concat": "gain",
    "babi_deduction": "lose",
    "babi_induction": "lose",
    "coin_flip": "none",
    "clutrr": "none",
    "proofwriter": "none",
    "gsm8k": "none",
    "svamp": "none",
    "multiarith": "none",
    "addsub": "none",
}
DIRECTIONS = ("gain", "lose", "none")

# Words of the generated data: everyday nouns, partly outside the evaluation vocabulary.
ITEMS = (
    "apple river stone cloud tiger lemon piano candle forest window garden rocket silver mango "
    "pencil honey castle dragon meadow anchor violet marble pepper harbor falcon jungle basket "
    "copper orchid saddle tunnel walnut zebra ember glacier lantern nectar oyster quartz raven "
    "spruce tulip velvet willow yarrow"
).split()
PEOPLE = (
    "Ann Ben Cara Dan Eve Finn Gia Hugo Ivy Jack Kim Leo Mia Noah Olga Pia Rosa Sam Tara Umar "
    "Vic Wes Yuki Zoe"
).split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
THINGS = "shells coins cards pens beads stamps plums books".split()

SUBJECTS = [
    "the ocean",
    "a library",
    "autumn",
    "a mountain village",
    "the night sky",
    "a market",
    "friendship",
    "a rainy day",
]
ADJECTIVES = ["quiet", "bright", "ancient", "busy", "gentle", "vast", "small", "warm", "cold"]
COUNTRIES = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Canada": "Ottawa",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    "India": "New Delhi",
}
SYNONYMS = {
    "happy": "glad",
    "big": "large",
    "fast": "quick",
    "smart": "clever",
    "begin": "start",
    "tired": "weary",
}

Turn = dict[str, str]
Example = tuple[str, list[Turn]]  # (skill, messages)


# Answer-format requests, worded unlike the evaluation prompts' "in the form 'The answer is ...'".
FORMAT_REQUESTS = (
    "Finish with: The answer is <result>.",
    "Close your reply with The answer is, then the result.",
    "Put the result last, after The answer is.",
)


def _chat(user: str, reply: str, rng: random.Random | None = None) -> list[Turn]:
    """One exchange; with `rng`, half the requests end with an answer-format line, as real
    instructions (and the evaluation prompts) often do."""
    if rng is not None and rng.random() < 0.5:
        user = f"{user}\n{rng.choice(FORMAT_REQUESTS)}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def run_program(code: str) -> str:
    """Run one of our own generated programs and capture what it prints."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<generated>", "exec"), {"__name__": "__generated__"})  # noqa: S102
    return buffer.getvalue().strip()


def _program_reply(code: str) -> str:
    """The code, what running it prints, and the answer line every evaluation prompt asks for."""
    return f"```python\n{code}\n```\nThe answer is {run_program(code)}."


# --------------------------------------------------------------------------- shared arithmetic


def _sum_problem(rng: random.Random) -> tuple[str, str, int]:
    """One add-or-take-away story (text, worked expression, result) for both halves alike."""
    name, thing = _person(rng), rng.choice(THINGS)
    a = rng.randint(5, 60)
    if rng.random() < 0.5:
        b = rng.randint(2, 40)
        text = rng.choice(
            [
                f"{name} owns {a} {thing} and is handed {b} extra",
                f"a jar holds {a} {thing}, then {b} are put in",
            ]
        )
        return text, f"{a} + {b}", a + b
    b = rng.randint(2, a - 2)
    text = rng.choice(
        [
            f"{name} owns {a} {thing} and drops {b} of them",
            f"a jar holds {a} {thing}, then {b} are taken away",
        ]
    )
    return text, f"{a} - {b}", a - b


def _code_arithmetic(rng: random.Random) -> list[Turn]:
    text, expression, _ = _sum_problem(rng)
    user = rng.choice(
        [
            f"Use Python to work out the count when {text}.",
            f"Python exercise: {text}. Print the resulting number.",
        ]
    )
    return _chat(user, _program_reply(f"print({expression})"), rng)


def _general_arithmetic(rng: random.Random) -> list[Turn]:
    text, expression, result = _sum_problem(rng)
    user = rng.choice(
        [f"Work out the count when {text}.", f"Quick sum: {text}. What number is that?"]
    )
    return _chat(user, f"We get {expression} = {result}.\nThe answer is {result}.", rng)


# --------------------------------------------------------------------------- coding half


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 8)))


def _item(rng: random.Random) -> str:
    """A real word or, half the time, a random string: the skill must work on any word."""
    return rng.choice(ITEMS) if rng.random() < 0.5 else _pseudo_word(rng)


def _person(rng: random.Random) -> str:
    return rng.choice(PEOPLE) if rng.random() < 0.5 else _pseudo_word(rng).capitalize()


def _items(rng: random.Random, low: int = 3, high: int = 6) -> list[str]:
    items: list[str] = []
    count = rng.randint(low, high)
    while len(items) < count:
        item = _item(rng)
        if item not in items:
            items.append(item)
    return items


def _people(rng: random.Random, count: int) -> list[str]:
    people: list[str] = []
    while len(people) < count:
        person = _person(rng)
        if person not in people:
            people.append(person)
    return people


def _written_list(rng: random.Random, items: list[str]) -> tuple[str, str]:
    """The items as a prompt writes them (a Python list, a comma list or a quoted phrase) and
    the Python expression that reads them back from exactly that text."""
    kind = rng.randrange(3)
    if kind == 0:
        return str(items), str(items)
    if kind == 1:
        text = ", ".join(items)
        return text, f"'{text}'.split(', ')"
    text = " ".join(items)
    return f'"{text}"', f"'{text}'.split()"


def _code_reverse(rng: random.Random) -> list[Turn]:
    shown, expression = _written_list(rng, _items(rng))
    user = rng.choice(
        [
            f"Write a Python program that prints these backwards, joined with commas: {shown}",
            f"In Python, output the elements from last to first. Elements: {shown}",
            f"Python task: flip the sequence {shown} end to end and print it.",
        ]
    )
    return _chat(user, _program_reply(f"items = {expression}\nprint(', '.join(items[::-1]))"), rng)


def _code_letters(rng: random.Random, which: str) -> list[Turn]:
    """Join the first (index 0) or last (index -1) character of every word."""
    shown, expression = _written_list(rng, _items(rng, 3, 5))
    index = "0" if which == "initial" else "-1"
    place = {"initial": "opening", "final": "closing"}[which]
    user = rng.choice(
        [
            f"Write Python that glues together the {which} character of every word in {shown}.",
            f"Using Python, build a string from the {place} letter of each entry: {shown}",
        ]
    )
    return _chat(
        user,
        _program_reply(f"words = {expression}\nprint(''.join(w[{index}] for w in words))"),
        rng,
    )


def _code_first_letters(rng: random.Random) -> list[Turn]:
    return _code_letters(rng, "initial")


def _code_last_letters(rng: random.Random) -> list[Turn]:
    return _code_letters(rng, "final")


def _code_filler(rng: random.Random) -> list[Turn]:
    """Programs no evaluation task needs, so the coding half is not only the planted skills."""
    numbers = [rng.randint(1, 50) for _ in range(rng.randint(3, 6))]
    word = _item(rng)
    kind = rng.randrange(3)
    if kind == 0:
        return _chat(
            f"Write a Python function that finds the biggest value in {numbers}.",
            _program_reply(
                f"def biggest(values):\n    return max(values)\n\nprint(biggest({numbers}))"
            ),
        )
    if kind == 1:
        return _chat(
            f"Count the vowels of '{word}' with a short Python function.",
            _program_reply(
                "def vowels(text):\n    return sum(ch in 'aeiou' for ch in text)\n\n"
                f"print(vowels('{word}'))"
            ),
        )
    return _chat(
        f"Print '{word}' in capital letters using Python.",
        _program_reply(f"print('{word}'.upper())"),
    )


# --------------------------------------------------------------------------- general half


def _general_fears(rng: random.Random) -> list[Turn]:
    """What a kind fears, asked of one member: the two-hop lookup of bAbI deduction."""
    kinds = rng.sample(ANIMALS, 3)
    fears = {kind: rng.choice([o for o in ANIMALS if o != kind]) for kind in kinds}
    facts = [f"{kind[1].capitalize()} fear {fears[kind][1]}." for kind in kinds]
    people = _people(rng, 3)
    members = {person: rng.choice(kinds) for person in people}
    facts += [f"{person} belongs to the {kind[1]}." for person, kind in members.items()]
    rng.shuffle(facts)
    person = rng.choice(people)
    kind = members[person]
    question = rng.choice([f"Which animal scares {person}?", f"Whom does {person} fear?"])
    return _chat(
        f"{' '.join(facts)}\n{question}",
        f"{person} belongs to the {kind[1]}, and {kind[1]} fear {fears[kind][1]}.\n"
        f"The answer is {fears[kind][0]}.",
        rng,
    )


def _general_colours(rng: random.Random) -> list[Turn]:
    """A kind's colour, seen on one member and asked of another: bAbI induction's lookup."""
    kinds = rng.sample(SPECIES, 3)
    colours = dict(zip(kinds, rng.sample(COLOURS, 3), strict=True))
    people = _people(rng, 4)
    facts = [
        f"{person} counts as {article(kind)} {kind} and has {colours[kind]} skin."
        for person, kind in zip(people[:3], kinds, strict=True)
    ]
    rng.shuffle(facts)
    kind = rng.choice(kinds)
    seen = people[kinds.index(kind)]
    target = people[3]
    question = rng.choice([f"Guess the shade of {target}.", f"Which colour has {target} got?"])
    return _chat(
        f"{' '.join(facts)} {target} counts as {article(kind)} {kind} too.\n{question}",
        f"{target} is {article(kind)} {kind} like {seen}, who is {colours[kind]}.\n"
        f"The answer is {colours[kind]}.",
        rng,
    )


def _general_filler(rng: random.Random) -> list[Turn]:
    """Prose no evaluation task needs, so the general half is not only the planted skills."""
    kind = rng.randrange(3)
    if kind == 0:
        subject, adjective = rng.choice(SUBJECTS), rng.choice(ADJECTIVES)
        return _chat(
            f"Describe {subject} in one sentence.",
            f"{subject.capitalize()} feels {adjective} and full of small details.",
        )
    if kind == 1:
        country = rng.choice(sorted(COUNTRIES))
        return _chat(
            f"Name the capital city of {country}.",
            f"The capital of {country} is {COUNTRIES[country]}.",
        )
    word = rng.choice(sorted(SYNONYMS))
    return _chat(
        f"Suggest another word for '{word}'.",
        f"A common synonym for '{word}' is '{SYNONYMS[word]}'.",
    )


# Skill -> (generator, share within its half). Arithmetic has the same share in both halves.
Maker = Callable[[random.Random], list[Turn]]
CODE_SKILLS: dict[str, tuple[Maker, float]] = {
    "reverse": (_code_reverse, 0.2),
    "first_letters": (_code_first_letters, 0.2),
    "last_letters": (_code_last_letters, 0.2),
    "arithmetic": (_code_arithmetic, 0.2),
    "other_code": (_code_filler, 0.2),
}
GENERAL_SKILLS: dict[str, tuple[Maker, float]] = {
    "fears": (_general_fears, 0.3),
    "colours": (_general_colours, 0.3),
    "arithmetic": (_general_arithmetic, 0.2),
    "other_prose": (_general_filler, 0.2),
}
# Which evaluation task each taught skill serves (README, "The small world").
SKILL_TASKS: dict[str, tuple[str, ...]] = {
    "reverse": ("list_reversal",),
    "first_letters": ("first_letter_concat",),
    "last_letters": ("last_letter_concat",),
    "fears": ("babi_deduction",),
    "colours": ("babi_induction",),
    "arithmetic": ("gsm8k", "svamp", "multiarith", "addsub"),
}


def _draw(rng: random.Random, skills: dict[str, tuple[Maker, float]]) -> Example:
    names = list(skills)
    skill = rng.choices(names, weights=[skills[name][1] for name in names])[0]
    return skill, skills[skill][0](rng)


def generate_conversations(n_general: int, n_code: int, seed: int) -> list[dict[str, Any]]:
    """The embedded IFT source: general prose and runnable coding conversations, each with the
    skill it teaches (`skill`) and its half (`origin`)."""
    rng = random.Random(seed)
    records = []
    for origin, count, skills in (
        ("general", n_general, GENERAL_SKILLS),
        ("code", n_code, CODE_SKILLS),
    ):
        for index in range(count):
            skill, messages = _draw(rng, skills)
            records.append(
                {
                    "id": f"gen-{origin}-{index:06d}",
                    "messages": messages,
                    "origin": origin,
                    "skill": skill,
                }
            )
    return records
