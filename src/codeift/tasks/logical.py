"""Generators for the logical tasks: bAbI deduction and induction, CLUTRR, ProofWriter.

Gold answers are computed from the same structures the text is rendered from (a kinship walk,
a forward-chaining closure), never read back from the text, so wording changes cannot silently
break correctness.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Mapping
from functools import cache

from codeift.words import (
    ALL_NAMES,
    ANIMALS,
    ATTRIBUTES,
    COLOURS,
    FEMALE_NAMES,
    MALE_NAMES,
    SPECIES,
    article,
)

# --- bAbI task 15: basic deduction -------------------------------------------------------------


def babi_deduction(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """'Sheep are afraid of wolves. Gertrude is a sheep. What is Gertrude afraid of?' -> wolf.

    The gold is singular as in bAbI; scoring accepts the plural for these animal names.
    """
    species = rng.sample(ANIMALS, params["n_species"])
    fears = {
        singular: rng.choice([other for other in species if other[0] != singular])
        for singular, _ in species
    }
    rules = [
        f"{plural.capitalize()} are afraid of {fears[singular][1]}." for singular, plural in species
    ]
    people = rng.sample(ALL_NAMES, params["n_people"])
    kinds = {person: rng.choice(species)[0] for person in people}
    memberships = [f"{person} is {article(kind)} {kind}." for person, kind in kinds.items()]
    sentences = rules + memberships
    rng.shuffle(sentences)
    target = rng.choice(people)
    query = f"What is {target} afraid of?"
    passage = " ".join(sentences)
    return {
        "question": f"{passage}\n{query}",
        "answer": fears[kinds[target]][0],
        "passage": passage,
        "query": query,
    }


# --- bAbI task 16: basic induction -------------------------------------------------------------


def babi_induction(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """'Lily is a swan. Lily is white. Bernhard is a swan. What color is Bernhard?' -> white.

    Species get distinct colours so that the induction has exactly one consistent answer.
    """
    chosen = rng.sample(SPECIES, params["n_species"])
    colours = dict(zip(chosen, rng.sample(COLOURS, len(chosen)), strict=True))
    n_examples = params["n_examples"]
    people = rng.sample(ALL_NAMES, len(chosen) * n_examples + 1)
    target, examples = people[0], people[1:]
    blocks = [
        f"{person} is {article(kind)} {kind}. {person} is {colours[kind]}."
        for person, kind in zip(
            examples, [k for k in chosen for _ in range(n_examples)], strict=True
        )
    ]
    target_kind = rng.choice(chosen)
    blocks.append(f"{target} is {article(target_kind)} {target_kind}.")
    rng.shuffle(blocks)
    query = f"What color is {target}?"
    passage = " ".join(blocks)
    return {
        "question": f"{passage}\n{query}",
        "answer": colours[target_kind],
        "passage": passage,
        "query": query,
    }


# --- CLUTRR: kinship composition ---------------------------------------------------------------

# A step of a kinship walk: from the current person to their parent, child, sibling or spouse.
STEP_WORDS: dict[str, tuple[str, str]] = {
    "P": ("father", "mother"),
    "C": ("son", "daughter"),
    "S": ("brother", "sister"),
    "W": ("husband", "wife"),
}

# Blood relations by (generations up to the common ancestor, generations down from it).
BLOOD_RELATIONS: dict[tuple[int, int], tuple[str, str]] = {
    (1, 0): ("father", "mother"),
    (2, 0): ("grandfather", "grandmother"),
    (3, 0): ("great-grandfather", "great-grandmother"),
    (0, 1): ("son", "daughter"),
    (0, 2): ("grandson", "granddaughter"),
    (0, 3): ("great-grandson", "great-granddaughter"),
    (1, 1): ("brother", "sister"),
    (2, 1): ("uncle", "aunt"),
    (1, 2): ("nephew", "niece"),
    (2, 2): ("cousin", "cousin"),
}
# In-laws reached by a final spouse step (son's wife) or a first one (wife's father).
SPOUSE_LAST: dict[tuple[int, int], tuple[str, str]] = {
    (0, 1): ("son-in-law", "daughter-in-law"),
    (1, 1): ("brother-in-law", "sister-in-law"),
}
SPOUSE_FIRST: dict[tuple[int, int], tuple[str, str]] = {
    (1, 0): ("father-in-law", "mother-in-law"),
    (1, 1): ("brother-in-law", "sister-in-law"),
}
_CANONICAL_WALK = re.compile(r"^(W?)(P*)(S?)(C*)(W?)$")


def kinship_relation(steps: str) -> tuple[str, str] | None:
    """The (male, female) names of the relation a walk of steps reaches, or None if ambiguous.

    Only canonical walks are named: up (parents), at most one sibling, down (children), with a
    spouse only at either end. Other walks are ambiguous or degenerate (a parent's child may be
    oneself; a child's parent may be one's spouse), so the generator never asks about them.
    """
    match = _CANONICAL_WALK.match(steps)
    if match is None:
        return None
    spouse_first, ups, sibling, downs, spouse_last = match.groups()
    if spouse_first and spouse_last:
        return None
    if ups and downs and not sibling:
        return None
    offset = (len(ups) + len(sibling), len(downs) + len(sibling))
    if spouse_first:
        return SPOUSE_FIRST.get(offset)
    if spouse_last:
        return SPOUSE_LAST.get(offset)
    return BLOOD_RELATIONS.get(offset)


@cache
def kinship_walks(length: int) -> dict[str, tuple[str, str]]:
    """Every nameable walk of `length` steps with its relation names, in a fixed order."""
    walks = ("".join(steps) for steps in itertools.product("PCSW", repeat=length))
    named = ((walk, kinship_relation(walk)) for walk in walks)
    return {walk: relation for walk, relation in named if relation is not None}


_FACT_TEMPLATES = (
    "{b} is {a}'s {relation}.",
    "{a}'s {relation} is {b}.",
    "{a} has a {relation} called {b}.",
)


def clutrr(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """A chain of kinship facts A->B->...->Z; the question asks how Z is related to A."""
    walks = kinship_walks(params["chain_length"])
    steps = rng.choice(sorted(walks))
    genders = [rng.random() < 0.5 for _ in range(len(steps) + 1)]  # True = female
    for index, step in enumerate(steps):
        if step == "W":  # spouses of opposite sex, so "husband"/"wife" read naturally
            genders[index + 1] = not genders[index]
    people = _distinct_names(rng, genders)
    facts = []
    for index, step in enumerate(steps):
        relation = STEP_WORDS[step][genders[index + 1]]
        template = rng.choice(_FACT_TEMPLATES)
        facts.append(template.format(a=people[index], b=people[index + 1], relation=relation))
    story = " ".join(facts)
    query = f"How is {people[-1]} related to {people[0]}?"
    return {
        "question": f"{story}\n{query}",
        "answer": walks[steps][genders[-1]],
        "story": story,
        "query": query,
    }


def _distinct_names(rng: random.Random, genders: list[bool]) -> list[str]:
    female = iter(rng.sample(FEMALE_NAMES, sum(genders)))
    male = iter(rng.sample(MALE_NAMES, len(genders) - sum(genders)))
    return [next(female) if is_female else next(male) for is_female in genders]


# --- ProofWriter: forward chaining over facts and rules ----------------------------------------

Atom = tuple[str, str]  # (entity, attribute)
Rule = tuple[tuple[str, ...], str]  # (premise attributes, conclusion attribute), for "someone"


def forward_chain(facts: Iterable[Atom], rules: Iterable[Rule]) -> dict[Atom, int]:
    """Every derivable atom with the depth of its shallowest proof (facts have depth 0).

    Relaxation until nothing changes gives minimal depths even when a deep proof is found
    before a shallow one; anything absent is false under the closed-world assumption.
    """
    depth: dict[Atom, int] = {atom: 0 for atom in facts}
    rules = list(rules)
    entities = {entity for entity, _ in depth}
    changed = True
    while changed:
        changed = False
        for (premises, conclusion), entity in itertools.product(rules, sorted(entities)):
            if not all((entity, premise) in depth for premise in premises):
                continue
            candidate = 1 + max(depth[(entity, premise)] for premise in premises)
            if candidate < depth.get((entity, conclusion), candidate + 1):
                depth[(entity, conclusion)] = candidate
                changed = True
    return depth


def _rule_text(rule: Rule, rng: random.Random) -> str:
    premises, conclusion = rule
    if len(premises) == 1 and rng.random() < 0.3:
        return f"All {premises[0]} people are {conclusion}."
    return f"If someone is {' and '.join(premises)} then they are {conclusion}."


def _theory(
    rng: random.Random, depth: int, n_distractors: int
) -> tuple[list[Atom], list[Rule], Atom, Atom]:
    """A chain proving (main, c_depth) and a broken chain that cannot prove (main, b_depth).

    Without distractors the construction always has the wanted depths; distractors only
    sometimes spoil it, so the caller's redraw loop ends quickly.
    """
    attributes = rng.sample(ATTRIBUTES, 2 * (depth + 1) + 1)
    chain, broken, extra = attributes[: depth + 1], attributes[depth + 1 : -1], attributes[-1]
    main, *others = rng.sample(ALL_NAMES, 3)
    facts: list[Atom] = [(main, chain[0])]
    rules: list[Rule] = []
    for before, after in itertools.pairwise(chain):
        if rng.random() < 0.3:  # a second premise the main entity also has
            facts.append((main, extra))
            rules.append(((before, extra), after))
        else:
            rules.append(((before,), after))
    rules += [((before,), after) for before, after in itertools.pairwise(broken)]
    facts.append((rng.choice(others), broken[0]))  # the broken chain's start, on someone else
    for _ in range(n_distractors):
        if rng.random() < 0.5:
            facts.append((rng.choice([main, *others]), rng.choice(ATTRIBUTES)))
        else:
            premise, conclusion = rng.sample(ATTRIBUTES, 2)
            rules.append(((premise,), conclusion))
    provable, unprovable = (main, chain[-1]), (main, broken[-1])
    return list(dict.fromkeys(facts)), list(dict.fromkeys(rules)), provable, unprovable


def proofwriter(rng: random.Random, params: Mapping[str, int]) -> dict[str, str]:
    """'True or False' about an entity, needing `depth` rule applications (closed world).

    Half the questions target an atom proved at exactly `depth`, half one whose proof chain is
    broken; half are negated. The answer comes from forward chaining, so distractors that
    happen to shorten or complete a chain are caught and the theory is redrawn.
    """
    depth = params["depth"]
    while True:
        facts, rules, provable, unprovable = _theory(rng, depth, params["n_distractors"])
        closure = forward_chain(facts, rules)
        if closure.get(provable) == depth and unprovable not in closure:
            break
    entity, attribute = rng.choice([provable, unprovable])
    negated = rng.random() < 0.5
    holds = ((entity, attribute) in closure) != negated
    sentences = [f"{who} is {what}." for who, what in facts]
    sentences += [_rule_text(rule, rng) for rule in rules]
    rng.shuffle(sentences)
    statement = f"{entity} is {'not ' if negated else ''}{attribute}."
    theory = " ".join(sentences)
    return {
        "question": f"{theory}\nTrue or False: {statement}",
        "answer": "True" if holds else "False",
        "theory": theory,
        "statement": statement,
    }
