"""The embedded IFT generator: a small world in which we know what coding data does.

The embedded default has to show that the workflow measures what it claims, so its IFT data is
built with a known answer (docs/small-world.md, "The small world"):

- the coding data (real Python programs, run to get their output) teaches list reversal and
  first- and last-letter joins, skills three symbolic tasks need and no general example shows;
- the general data (prose) teaches two-hop lookups in short stories (what a kind of animal
  fears, what colour a kind has), the skills of the two bAbI tasks, which no program shows;
- both halves teach one-step arithmetic at the same rate and with the same worked expression
  before the answer, the program in one, the sentence in the other: a fair arithmetic control;
- nothing teaches the remaining tasks, which should not move.

`PLANTED` writes this down as data (task -> expected direction of the most-code arm against
code0), and every conversation records the skill it teaches. Prompts are phrased unlike the
evaluation prompts (tests/data/test_small_world.py checks that no four-word run is shared), so a
recovered effect is transfer of a skill, not string matching.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable
from typing import Any

from codeift.words import ANIMALS, COLOURS, SPECIES, article

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
# Task -> the view its planted effect is judged in, beside its direction: "text" (what the reply
# says, the study's metric) or "text_or_program" (that, or what its program prints when run;
# codeift.analysis.controls.VIEW_METRICS).
# The coding data teaches its skills as programs that print the answer (a traced letter join
# ends `pepper occp`), so a gain taught by code shows where the program runs: the text a small
# model writes under its program is its own hand simulation of it, often wrong. The general
# data teaches its skills in prose, and the tasks planted not to move are judged in the metric.
PLANTED_VIEWS: dict[str, str] = {
    task: "text_or_program" if direction == "gain" else "text"
    for task, direction in PLANTED.items()
}

# Words of the generated data: everyday nouns, partly outside the evaluation vocabulary.
ITEMS = (
    "apple river stone cloud tiger lemon piano candle forest window garden rocket silver mango "
    "pencil honey castle dragon meadow anchor violet marble pepper harbor falcon jungle basket "
    "copper orchid saddle tunnel walnut zebra ember glacier lantern nectar oyster quartz raven "
    "spruce tulip velvet willow yarrow"
).split()
# First names none of the evaluation tasks uses (tests/data/test_small_world.py: no shared wording).
PEOPLE = (
    "Ann Cara Dan Eve Finn Gia Ivy Kim Pia Rosa Sam Tara Umar Vic Wes Yuki Bram Dara Elio Hana "
    "Ines Joss Kofi Lale"
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


def _traced_reply(code: str) -> str:
    """A program that prints its work one step per line, then the last step as the answer: the
    trace is a scratchpad, every line one small copy away from the one before."""
    printed = run_program(code)
    return f"```python\n{code}\n```\n{printed}\nThe answer is {printed.split()[-1]}."


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


def written_list(rng: random.Random, items: list[str]) -> tuple[str, str]:
    """The items as a prompt writes them (a Python list, a comma list or a quoted phrase) and
    the Python expression that reads them back from exactly that text (the pretraining corpus
    writes its programs' data the same three ways)."""
    kind = rng.randrange(3)
    if kind == 0:
        return str(items), str(items)
    if kind == 1:
        text = ", ".join(items)
        return text, f"'{text}'.split(', ')"
    text = " ".join(items)
    return f'"{text}"', f"'{text}'.split()"


def _code_reverse(rng: random.Random) -> list[Turn]:
    shown, expression = written_list(rng, _items(rng))
    user = rng.choice(
        [
            f"Write a Python program that prints these backwards, joined with commas: {shown}",
            f"In Python, output the elements from last to first. Elements: {shown}",
            f"Python task: flip the sequence {shown} end to end and print it.",
            f"With Python, print {shown} in reverse order.",
            f"Use a program to reverse {shown} and show the result.",
        ]
    )
    return _chat(user, _program_reply(f"items = {expression}\nprint(', '.join(items[::-1]))"), rng)


def _code_letters(rng: random.Random, which: str) -> list[Turn]:
    """Join the first (index 0) or last (index -1) character of every word."""
    shown, expression = written_list(rng, _items(rng, 3, 5))
    index = "0" if which == "initial" else "-1"
    place = {"initial": "opening", "final": "closing"}[which]
    end = {"initial": "first", "final": "last"}[which]
    user = rng.choice(
        [
            f"Write Python that glues together the {which} character of every word in {shown}.",
            f"Using Python, build a string from the {place} letter of each entry: {shown}",
            f"Python: join up the {end} letters of the words {shown}.",
            f"Run a program that collects the {end} letter from every word in {shown}.",
        ]
    )
    code = (
        f"words = {expression}\njoined = ''\nfor w in words:\n    joined += w[{index}]\n"
        "    print(w, joined)"
    )
    return _chat(user, _traced_reply(code), rng)


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


# Wordings of the stories' facts, one per story (none is the evaluation tasks' wording).
MEMBERSHIPS = (
    "{person} is {article} {singular}.",
    "{person} belongs to the {plural}.",
    "{person} is one of the {plural}.",
    "{person} counts as {article} {singular}.",
)
FEAR_RULES = ("{kind} fear {other}.", "{kind} dread {other}.", "{kind} run from {other}.")
FEAR_QUESTIONS = ("Which animal scares {person}?", "Whom does {person} fear?")
COLOUR_FACTS = ("{person} is {colour}.", "{person} has {colour} skin.", "{person} looks {colour}.")
COLOUR_QUESTIONS = ("Guess the shade of {person}.", "Which colour has {person} got?")


def _membership(template: str, person: str, singular: str, plural: str) -> str:
    return template.format(
        person=person, singular=singular, plural=plural, article=article(singular)
    )


def _lookup_chat(
    facts: list[str], question: str, quoted: str, answer: str, rng: random.Random
) -> list[Turn]:
    """The layout both two-hop lookups share: the shuffled facts, then the question; the reply
    quotes the facts it chains, word for word, then answers (what a base learns to copy)."""
    return _chat(f"{' '.join(facts)}\n{question}", f"{quoted}\nThe answer is {answer}.", rng)


def _general_fears(rng: random.Random) -> list[Turn]:
    """What a kind fears, asked of one member: the two-hop lookup of bAbI deduction. The reply
    quotes the two facts it chains, word for word, then answers."""
    kinds = rng.sample(ANIMALS, 3)
    fears = {kind: rng.choice([o for o in ANIMALS if o != kind]) for kind in kinds}
    member, rule = rng.choice(MEMBERSHIPS), rng.choice(FEAR_RULES)
    rules = {kind: rule.format(kind=kind[1].capitalize(), other=fears[kind][1]) for kind in kinds}
    people = _people(rng, 3)
    kind_of = {person: rng.choice(kinds) for person in people}
    memberships = {p: _membership(member, p, *kind_of[p]) for p in people}
    facts = [*rules.values(), *memberships.values()]
    rng.shuffle(facts)
    person = rng.choice(people)
    kind = kind_of[person]
    question = rng.choice(FEAR_QUESTIONS).format(person=person)
    return _lookup_chat(
        facts, question, f"{memberships[person]} {rules[kind]}", fears[kind][0], rng
    )


def _general_colours(rng: random.Random) -> list[Turn]:
    """A kind's colour, seen on one member and asked of another: bAbI induction's lookup. The
    reply quotes the facts it uses, word for word, then answers."""
    kinds = rng.sample(SPECIES, 3)
    colours = dict(zip(kinds, rng.sample(COLOURS, 3), strict=True))
    member, colour_fact = rng.choice(MEMBERSHIPS), rng.choice(COLOUR_FACTS)
    people = _people(rng, 4)
    target, kind = people[3], rng.choice(kinds)
    pairs = [
        f"{_membership(member, person, k, k + 's')} "
        + colour_fact.format(person=person, colour=colours[k])
        for person, k in zip(people[:3], kinds, strict=True)
    ]
    asked = _membership(member, target, kind, kind + "s")
    facts = [*pairs, asked]
    rng.shuffle(facts)
    question = rng.choice(COLOUR_QUESTIONS).format(person=target)
    return _lookup_chat(facts, question, f"{asked} {pairs[kinds.index(kind)]}", colours[kind], rng)


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
# Which evaluation task each taught skill serves (docs/small-world.md, "The small world").
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
