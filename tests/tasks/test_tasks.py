"""Tests for codeift.tasks: catalogue, generators, hub mapping, frames and error messages."""

from __future__ import annotations

import json
import re
from collections import Counter

import polars as pl
import pytest

from codeift.numbers import canonical_number
from codeift.score.answers import PLURAL_FORMS
from codeift.tasks import (
    TASK_COLUMNS,
    TaskError,
    build_task_frame,
    load_catalog,
    map_hub_records,
    resolve_task,
)
from codeift.tasks import hub as hub_module
from codeift.tasks.logical import forward_chain
from codeift.words import ANIMALS, FEMALE_NAMES, MALE_NAMES, WORDS
from tests.conftest import SHARED_DATA

DOMAINS = {
    "first_letter_concat": "symbolic",
    "last_letter_concat": "symbolic",
    "list_reversal": "symbolic",
    "coin_flip": "symbolic",
    "babi_deduction": "logical",
    "babi_induction": "logical",
    "clutrr": "logical",
    "proofwriter": "logical",
    "gsm8k": "arithmetic",
    "svamp": "arithmetic",
    "multiarith": "arithmetic",
    "addsub": "arithmetic",
}

GSM8K_FILE = SHARED_DATA / "gsm8k_test.jsonl"


def entry(task: str, **extra: object) -> dict:
    return {"domain": DOMAINS[task], "size": 20, **extra}


def build(task: str, seed: int = 0, **extra: object) -> pl.DataFrame:
    return build_task_frame(task, entry(task, **extra), seed)


def rows(task: str, size: int = 60, seed: int = 0, **extra: object) -> list[dict]:
    return build(task, seed, size=size, **extra).to_dicts()


# --- catalogue and frame contract -------------------------------------------------------------


def test_catalogue_lists_exactly_the_twelve_tasks_with_their_domains():
    catalog = load_catalog()
    assert {name: spec["domain"] for name, spec in catalog.items()} == DOMAINS


def test_catalogue_answer_types():
    types = {name: spec["answer_type"] for name, spec in load_catalog().items()}
    assert types["list_reversal"] == "list"
    assert types["coin_flip"] == "yesno"
    assert types["proofwriter"] == "truefalse"
    assert {types[t] for t in ("gsm8k", "svamp", "multiarith", "addsub")} == {"number"}
    assert {types[t] for t in ("first_letter_concat", "clutrr", "babi_deduction")} == {"text"}


def test_every_task_with_a_hub_source_resolves_it_and_the_others_say_generator_only():
    for task, domain in DOMAINS.items():
        if task in ("first_letter_concat", "list_reversal"):
            with pytest.raises(TaskError, match=rf"'{task}'.*generator only"):
                resolve_task(task, {"domain": domain, "source": "hub"})
        else:
            assert resolve_task(task, {"domain": domain, "source": "hub"})["hub"]["id"]


@pytest.mark.parametrize("task", sorted(DOMAINS))
def test_default_entry_builds_twenty_well_formed_rows(task):
    frame = build(task)
    assert frame.height == 20
    assert tuple(frame.columns) == TASK_COLUMNS
    assert all(dtype == pl.Utf8 for dtype in frame.dtypes)
    assert frame["id"].n_unique() == 20
    assert frame["id"][7] == f"{task}-0007"
    assert frame["question"].n_unique() == 20
    assert set(frame["task"]) == {task}
    assert set(frame["domain"]) == {DOMAINS[task]}
    assert set(frame["source"]) == {f"generator:{load_catalog()[task]['generator']['name']}"}
    for record in frame.to_dicts():
        assert record["prompt"].strip() and record["answer"].strip()
        assert record["prompt"].startswith(record["question"])
        assert record["prompt"] != record["question"]  # the answer-format instruction follows


@pytest.mark.parametrize("task", sorted(DOMAINS))
def test_build_is_deterministic_and_seed_dependent(task):
    first = build(task, seed=0)
    assert first.equals(build(task, seed=0))
    assert not first["question"].equals(build(task, seed=1)["question"])


def test_entry_seed_overrides_the_run_seed():
    with_entry_seed = build_task_frame("coin_flip", entry("coin_flip", seed=5), 0)
    assert with_entry_seed.equals(build("coin_flip", seed=5))


def test_step_by_step_appends_the_trigger_on_its_own_line():
    plain = build("gsm8k")
    stepped = build("gsm8k", step_by_step=True)
    assert stepped["question"].equals(plain["question"])
    for before, after in zip(plain["prompt"], stepped["prompt"], strict=True):
        assert after == before + "\nLet's think step by step."


@pytest.mark.parametrize("task", ["gsm8k", "svamp", "multiarith", "addsub"])
def test_arithmetic_golds_are_canonical_non_negative_integers(task):
    for record in rows(task, size=100):
        assert re.fullmatch(r"\d+", record["answer"]), record


def test_generators_are_varied_enough_for_a_few_hundred_items():
    for task in DOMAINS:
        frame = build(task, size=300)
        assert frame["question"].n_unique() == 300


def test_default_size_comes_from_the_catalogue():
    frame = build_task_frame("coin_flip", {"domain": "symbolic"}, 0)
    assert frame.height == load_catalog()["coin_flip"]["generator"]["size"]


# --- generator correctness ---------------------------------------------------------------------


def _quoted_words(question: str) -> list[str]:
    return re.search(r'"([^"]+)"', question).group(1).split()


def test_first_letter_concat_recomputed():
    for record in rows("first_letter_concat"):
        words = _quoted_words(record["question"])
        assert len(words) == 4
        assert record["answer"] == "".join(word[0] for word in words).lower()


def test_last_letter_concat_recomputed_and_answers_not_degenerate():
    records = rows("last_letter_concat", size=200)
    for record in records:
        assert record["answer"] == "".join(w[-1] for w in _quoted_words(record["question"])).lower()
    assert Counter(record["answer"] for record in records).most_common(1)[0][1] <= 3


def _reversal_items(question: str) -> list[str]:
    return question.split(": ", 1)[1].split(", ")


def test_list_reversal_answer_is_the_reversed_question_list():
    for record in rows("list_reversal"):
        items = _reversal_items(record["question"])
        assert len(items) == 5 and len(set(items)) == 5
        assert record["answer"].split(", ") == items[::-1]


def test_coin_flip_answer_follows_flip_parity():
    answers = Counter()
    for record in rows("coin_flip", size=200):
        flips = len(re.findall(r"\w+ flips the coin\.", record["question"]))
        stays = len(re.findall(r"\w+ does not flip the coin\.", record["question"]))
        assert flips + stays == 4
        assert record["answer"] == ("yes" if flips % 2 == 0 else "no")
        answers[record["answer"]] += 1
    assert min(answers.values()) > 60  # both answers common: no constant-answer shortcut


def test_babi_deduction_answer_follows_from_the_facts():
    singular = {plural: single for single, plural in ANIMALS}
    for record in rows("babi_deduction"):
        passage, query = record["question"].split("\n")
        fears = dict(re.findall(r"(\w+) are afraid of (\w+)\.", passage))
        kinds = dict(re.findall(r"([A-Z]\w+) is an? (\w+)\.", passage))
        person = re.fullmatch(r"What is (\w+) afraid of\?", query).group(1)
        plural_kind = PLURAL_FORMS[kinds[person]].capitalize()
        assert record["answer"] == singular[fears[plural_kind]]
        assert all(fearful.lower() != feared for fearful, feared in fears.items())


def test_babi_induction_answer_is_the_colour_seen_for_the_same_species():
    for record in rows("babi_induction"):
        passage, query = record["question"].split("\n")
        kinds = dict(re.findall(r"(\w+) is an? (\w+)\.", passage))
        colours = dict(re.findall(r"(\w+) is (\w+)\.", passage))  # "X is a swan." has a space
        target = re.fullmatch(r"What color is (\w+)\?", query).group(1)
        seen = {colours[p] for p, kind in kinds.items() if kind == kinds[target] and p != target}
        assert seen == {record["answer"]}


# An independent table: how the last person of a 2- or 3-step chain is related to the first.
_STEP_KIND = {
    "father": "P", "mother": "P", "son": "C", "daughter": "C",
    "brother": "S", "sister": "S", "husband": "W", "wife": "W",
}  # fmt: skip
_FEMALE_WORDS = {"mother", "daughter", "sister", "wife"}
_COMPOSED = {
    "PP": ("grandfather", "grandmother"),
    "PS": ("uncle", "aunt"),
    "SC": ("nephew", "niece"),
    "CC": ("grandson", "granddaughter"),
    "WP": ("father-in-law", "mother-in-law"),
    "WS": ("brother-in-law", "sister-in-law"),
    "SW": ("brother-in-law", "sister-in-law"),
    "CW": ("son-in-law", "daughter-in-law"),
    "PPP": ("great-grandfather", "great-grandmother"),
    "CCC": ("great-grandson", "great-granddaughter"),
    "PSC": ("cousin", "cousin"),
}


def _kinship_facts(story: str) -> dict[tuple[str, str], str]:
    """(from, to) -> relation word, whichever of the three phrasings a fact uses."""
    facts = {}
    for a, relation, b in re.findall(r"(\w+) has a ([\w-]+) called (\w+)\.", story):
        facts[(a, b)] = relation
    for b, a, relation in re.findall(r"(\w+) is (\w+)'s ([\w-]+)\.", story):
        facts[(a, b)] = relation
    for a, relation, b in re.findall(r"(\w+)'s ([\w-]+) is (\w+)\.", story):
        facts[(a, b)] = relation
    return facts


@pytest.mark.parametrize("chain_length", [2, 3])
def test_clutrr_answer_composes_the_chain_with_gender(chain_length):
    seen_kinds = set()
    for record in rows("clutrr", size=150, difficulty={"chain_length": chain_length}):
        story, query = record["question"].split("\n")
        target, source = re.fullmatch(r"How is (\w+) related to (\w+)\?", query).groups()
        facts = _kinship_facts(story)
        assert len(facts) == chain_length
        walk, person, last_word = "", source, None
        while person != target:
            (_, nxt), last_word = next((k, v) for k, v in facts.items() if k[0] == person)
            walk += _STEP_KIND[last_word]
            person = nxt
        male, female = _COMPOSED[walk]
        expected = female if _gender_is_female(last_word, target) else male
        assert record["answer"] == expected
        seen_kinds.add(walk)
    assert len(seen_kinds) >= (6 if chain_length == 2 else 3)


def _gender_is_female(last_word: str, name: str) -> bool:
    assert (last_word in _FEMALE_WORDS) == (name in FEMALE_NAMES)
    assert (name in FEMALE_NAMES) != (name in MALE_NAMES)
    return name in FEMALE_NAMES


def test_forward_chain_known_small_case():
    facts = [("Bob", "big"), ("Anne", "red")]
    rules = [(("big",), "red"), (("red", "big"), "kind"), (("kind",), "nice"), (("cold",), "big")]
    closure = forward_chain(facts, rules)
    assert closure[("Bob", "big")] == 0
    assert closure[("Bob", "red")] == 1
    assert closure[("Bob", "kind")] == 2
    assert closure[("Bob", "nice")] == 3
    assert ("Anne", "kind") not in closure  # red alone is not enough
    assert ("Bob", "cold") not in closure


def test_forward_chain_keeps_the_shallowest_proof():
    rules = [(("a",), "b"), (("b",), "c"), (("c",), "d"), (("a",), "d")]
    assert forward_chain([("x", "a")], rules)[("x", "d")] == 1


def _parse_theory(theory: str) -> tuple[set, list]:
    facts, rules = set(), []
    for sentence in re.findall(r"[^.]+\.", theory):
        sentence = sentence.strip()
        if match := re.fullmatch(r"If someone is (.+) then they are (\w+)\.", sentence):
            rules.append((tuple(match.group(1).split(" and ")), match.group(2)))
        elif match := re.fullmatch(r"All (\w+) people are (\w+)\.", sentence):
            rules.append(((match.group(1),), match.group(2)))
        else:
            who, what = re.fullmatch(r"(\w+) is (\w+)\.", sentence).groups()
            facts.add((who, what))
    return facts, rules


def _naive_closure(facts: set, rules: list) -> set:
    known = set(facts)
    while True:
        entities = {who for who, _ in known}
        new = {
            (who, conclusion)
            for premises, conclusion in rules
            for who in entities
            if all((who, premise) in known for premise in premises)
        } - known
        if not new:
            return known
        known |= new


@pytest.mark.parametrize("depth", [0, 1, 3, 5])
def test_proofwriter_answers_agree_with_an_independent_closure(depth):
    answers = Counter()
    for record in rows("proofwriter", size=80, difficulty={"depth": depth}):
        theory, question = record["question"].split("\nTrue or False: ")
        facts, rules = _parse_theory(theory)
        who, negated, what = re.fullmatch(r"(\w+) is (not )?(\w+)\.", question).groups()
        holds = ((who, what) in _naive_closure(facts, rules)) != bool(negated)
        assert record["answer"] == ("True" if holds else "False")
        answers[record["answer"]] += 1
    assert min(answers.values()) >= 20


def test_proofwriter_depth_is_the_needed_number_of_rule_applications():
    for record in rows("proofwriter", size=40, difficulty={"depth": 4}):
        theory, question = record["question"].split("\nTrue or False: ")
        who, negated, what = re.fullmatch(r"(\w+) is (not )?(\w+)\.", question).groups()
        facts, rules = _parse_theory(theory)
        closure = forward_chain(facts, rules)
        assert closure.get((who, what), 4) == 4  # proved at depth 4 exactly, or not at all


_GSM_STEPS = [
    (r"(?:buys|finds|gives \w+) (\d+) more", lambda value, k: value + k),
    (r"(?:gives away|sells|loses) (\d+)", lambda value, k: value - k),
    (r"doubles()", lambda value, _: value * 2),
    (r"triples()", lambda value, _: value * 3),
    (r"into (\d+) equal groups", lambda value, k: value // k),
]


def _run_gsm(question: str) -> tuple[int, int]:
    sentences = re.findall(r"[^.?]+[.?]", question)
    value = int(re.search(r"has (\d+)", sentences[0]).group(1))
    steps = 0
    for sentence in sentences[1:-1]:
        for pattern, apply in _GSM_STEPS:
            if match := re.search(pattern, sentence):
                value = apply(value, int(match.group(1) or 0))
                steps += 1
                break
        else:
            raise AssertionError(f"unparsed step {sentence!r}")
    return value, steps


@pytest.mark.parametrize("n_steps", [1, 3, 6])
def test_gsm8k_style_answers_recomputed_step_by_step(n_steps):
    for record in rows("gsm8k", size=80, difficulty={"n_steps": n_steps}):
        value, steps = _run_gsm(record["question"])
        assert steps == n_steps
        assert record["answer"] == str(value)


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def test_addsub_answers_recomputed():
    for record in rows("addsub", size=100):
        a, b = _numbers(record["question"])
        combined = re.search(r"in total|altogether", record["question"])
        assert int(record["answer"]) == (a + b if combined else a - b)


def test_svamp_answers_recomputed_ignoring_distractors():
    for record in rows("svamp", size=100, difficulty={"distractors": 2}):
        q = record["question"]
        thing = re.search(r"How many ([a-z ]+?) (?:does|did|are)", q).group(1)
        counts = [int(n) for n in re.findall(rf"(\d+) (?:more )?{thing}\b", q)]
        if "gave" in q:
            expected = counts[0] - counts[1]
        elif "gives" in q:
            expected = counts[0] + counts[1]
        elif "at first" in q:
            expected = counts[1] - counts[0]
        elif "Each box" in q:
            expected = counts[0] * int(re.search(r"in (\d+) boxes", q).group(1))
        else:
            expected = counts[0] // int(re.search(r"into (\d+) bags", q).group(1))
        assert int(record["answer"]) == expected
        assert len(re.findall(r" and \d+ ", q)) == 2  # two distracting quantities


def test_multiarith_answers_recomputed():
    for record in rows("multiarith", size=100):
        q, nums = record["question"], _numbers(record["question"])
        if "bought" in q and "then" in q:
            expected = nums[0] - nums[1] + nums[2]
        elif "boxes of" in q:
            expected = (nums[0] - nums[1]) // nums[2]
        elif "earns" in q:
            expected = nums[0] * (nums[1] + nums[2])
        elif "groups of" in q:
            expected = (nums[0] + nums[1]) // nums[2]
        else:
            expected = nums[0] * nums[1] - nums[2]
        assert int(record["answer"]) == expected


# --- difficulty knobs ----------------------------------------------------------------------------


def test_difficulty_knobs_change_the_data():
    longer = rows("list_reversal", difficulty={"length": 9})
    assert {len(_reversal_items(r["question"])) for r in longer} == {9}
    assert {len(r["answer"]) for r in rows("first_letter_concat", difficulty={"n_words": 7})} == {7}
    people = rows("coin_flip", difficulty={"n_people": 9})
    assert {len(re.findall(r"flip", r["question"])) for r in people} == {9}
    easy, hard = build("gsm8k"), build("gsm8k", difficulty={"n_steps": 7})
    assert hard["question"].str.len_chars().mean() > easy["question"].str.len_chars().mean()


def test_difficulty_merges_over_the_catalogue_defaults():
    spec = resolve_task("babi_deduction", entry("babi_deduction", difficulty={"n_people": 2}))
    assert spec["generator"]["params"] == {"n_species": 4, "n_people": 2}


def test_hub_difficulty_overrides_hub_params():
    spec = resolve_task(
        "proofwriter", {"domain": "logical", "source": "hub", "difficulty": {"depth": 5}}
    )
    assert spec["hub"]["params"] == {"depth": 5}


# --- hub mapping on rows shaped like the real datasets ------------------------------------------


def hub_spec(task: str, **extra: object) -> dict:
    return resolve_task(task, {"domain": DOMAINS[task], "source": "hub", **extra})


def test_gsm8k_mapping_strips_the_solution_to_the_number():
    row = {
        "question": "How many?",
        "answer": "It is 1,000 + 234 = <<1000+234=1234>>1,234\n#### 1,234",
    }
    assert map_hub_records("gsm8k", hub_spec("gsm8k"), [row]) == [
        {"question": "How many?", "answer": "1234"}
    ]


def test_svamp_mapping_joins_body_and_question_and_drops_trailing_zero():
    row = {
        "ID": "chal-1",
        "Body": "Jack had 8 pens and Mary had 5 pens.",
        "Question": "How many more pens does Jack have than Mary?",
        "Equation": "( 8.0 - 5.0 )",
        "Answer": 3.0,
        "Type": "Subtraction",
    }
    (record,) = map_hub_records("svamp", hub_spec("svamp"), [row])
    assert record["question"] == (
        "Jack had 8 pens and Mary had 5 pens. How many more pens does Jack have than Mary?"
    )
    assert record["answer"] == "3"
    fractional = map_hub_records("svamp", hub_spec("svamp"), [{**row, "Answer": 2.5}])
    assert fractional[0]["answer"] == "2.5"


def test_multiarith_and_addsub_mappings():
    multi = {"question": " The school cafeteria ordered 42 apples. ", "final_ans": "18"}
    assert map_hub_records("multiarith", hub_spec("multiarith"), [multi])[0] == {
        "question": "The school cafeteria ordered 42 apples.",
        "answer": "18",
    }
    lila = {"input": "Sara has 31 balloons.", "output_program": "print(31+24)",
            "output_answer": "55.0", "split": "test", "dataset": "addsub.json"}  # fmt: skip
    assert map_hub_records("addsub", hub_spec("addsub"), [lila])[0]["answer"] == "55"


def test_coin_flip_and_last_letter_mappings():
    coin = {"inputs": " A coin is heads up. Ka flips the coin. Is the coin still heads up?",
            "targets": "no", "targets_vec": [0, 1]}  # fmt: skip
    (record,) = map_hub_records("coin_flip", hub_spec("coin_flip"), [coin])
    assert record["question"].startswith("A coin is heads up.")
    assert record["answer"] == "no"
    letters = {
        "question": 'Take the last letters of each words in "Whitney Erika Tj Benito" and '
        "concatenate them.",
        "answer": "yajo",
    }
    (record,) = map_hub_records("last_letter_concat", hub_spec("last_letter_concat"), [letters])
    assert record["answer"] == "yajo"


def test_clutrr_mapping_builds_the_question_from_the_query_pair():
    row = {
        "id": "a1b2",
        "story": "[Dorothy]'s brother [Michael] and her went to get ice cream. [Michael] is the "
        "proud father of the lovely [Donald].",
        "query": "('Dorothy', 'Donald')",
        "target": 3,
        "target_text": "nephew",
        "clean_story": "",
        "proof_state": "",
        "f_comb": "brother-son",
        "task_name": "task_1.2",
        "story_edges": "",
        "edge_types": "",
        "query_edge": "(0, 2)",
        "genders": "Dorothy:female,Michael:male,Donald:male",
        "task_split": "test",
    }
    (record,) = map_hub_records("clutrr", hub_spec("clutrr"), [row])
    assert record["answer"] == "nephew"
    assert record["question"].endswith("\nHow is Donald related to Dorothy?")
    assert "[" not in record["question"] and "Dorothy's brother Michael" in record["question"]


def test_clutrr_mapping_on_a_published_test_row_asks_the_direction_of_its_proof():
    # Row 0 of facebookresearch/clutrr hf/1.0/gen_train234_test2to10/test.csv (the CLUTRR/v1
    # data): proof_state ('Clarence', 'grandson', 'Michael') means Michael is Clarence's grandson.
    row = {
        "id": "511be16e-05ba-4d6a-b258-ef2201d6757a",
        "story": "[Clarence]'s granddaughter, [Emily], was busy helping her brother, [Michael], "
        "move to college.",
        "query": "('Clarence', 'Michael')",
        "target": 10,
        "target_text": "grandson",
        "proof_state": "[{('Clarence', 'grandson', 'Michael'): [('Clarence', 'granddaughter', "
        "'Emily'), ('Emily', 'brother', 'Michael')]}]",
    }
    (record,) = map_hub_records("clutrr", hub_spec("clutrr"), [row])
    assert record["answer"] == "grandson"
    assert record["question"].startswith("Clarence's granddaughter, Emily, was busy")
    assert "How is Michael related to Clarence?" in record["question"]


def test_clutrr_mapping_rejects_an_unreadable_query():
    row = {"story": "x", "query": "Dorothy and Donald", "target_text": "nephew"}
    with pytest.raises(TaskError, match=r"'clutrr'.*record 0.*'clutrr_query'.*pair of names"):
        map_hub_records("clutrr", hub_spec("clutrr"), [row])


def _proofwriter_row(qdep: int, answer: str, index: int) -> dict:
    return {
        "id": f"RelNeg-D{qdep}-{index}", "maxD": 5, "NFact": 2, "NRule": 1,
        "theory": "The bear is big. The cat is red. If something is big then it is round.",
        "question": f"The bear is round {index}.", "answer": answer, "QDep": qdep,
        "QLen": 1.0, "allProofs": "", "config": "depth-5",
    }  # fmt: skip


def test_proofwriter_mapping_filters_depth_and_unknown():
    raw = [
        _proofwriter_row(qdep, answer, i)
        for i, (qdep, answer) in enumerate(
            [(3, "True"), (3, "Unknown"), (2, "False"), (3, "False"), (5, "True")]
        )
    ]
    mapped = map_hub_records("proofwriter", hub_spec("proofwriter"), raw)
    assert [record["answer"] for record in mapped] == ["True", "False"]
    assert mapped[0]["question"] == (
        "The bear is big. The cat is red. If something is big then it is round.\n"
        "True or False: The bear is round 0."
    )
    deeper = hub_spec("proofwriter", difficulty={"depth": 5})
    assert len(map_hub_records("proofwriter", deeper, raw)) == 1


def test_babi_mapping_uses_the_assumed_columns():
    row = {"passage": "Sheep are afraid of wolves. Gertrude is a sheep.",
           "question": "What is Gertrude afraid of?", "answer": "wolf"}  # fmt: skip
    for task in ("babi_deduction", "babi_induction"):
        (record,) = map_hub_records(task, hub_spec(task), [row])
        assert record["question"] == (
            "Sheep are afraid of wolves. Gertrude is a sheep.\nWhat is Gertrude afraid of?"
        )


def test_hub_record_missing_a_mapped_field_names_record_and_field():
    good = {"question": "q", "answer": "x\n#### 3"}
    with pytest.raises(TaskError) as error:
        map_hub_records("gsm8k", hub_spec("gsm8k"), [good, {"id": "r-9", "question": "q"}])
    assert "'gsm8k'" in str(error.value)
    assert "record 1 (id 'r-9')" in str(error.value)
    assert "'answer'" in str(error.value)


def test_hub_gold_that_does_not_parse_names_record_and_field():
    with pytest.raises(TaskError, match=r"'gsm8k', record 0, field 'answer'.*#### <number>"):
        map_hub_records("gsm8k", hub_spec("gsm8k"), [{"question": "q", "answer": "no marker"}])
    with pytest.raises(TaskError, match=r"'coin_flip', record 0, field 'answer'.*'yes' or 'no'"):
        map_hub_records("coin_flip", hub_spec("coin_flip"), [{"inputs": "q", "targets": "maybe"}])


def test_hub_build_shuffles_deterministically_and_takes_size(monkeypatch):
    raw = [{"question": f"Question {i}?", "answer": f"Step.\n#### {i}"} for i in range(50)]
    calls = []

    def fake_load(hub):
        calls.append(hub["id"])
        return raw

    monkeypatch.setattr(hub_module, "load_hub_rows", fake_load)
    unchecked = {"hub": {"rows": None}}  # 50 rows, not the 1,319 of the real test set
    spec = {"domain": "arithmetic", "source": "hub", "size": 10, "spec": unchecked}
    frame = build_task_frame("gsm8k", spec, 0)
    assert calls == ["openai/gsm8k"]
    assert frame.height == 10 and tuple(frame.columns) == TASK_COLUMNS
    assert set(frame["source"]) == {"hub:openai/gsm8k/main:test"}
    assert frame.equals(build_task_frame("gsm8k", spec, 0))
    assert frame["question"].to_list() != [f"Question {i}?" for i in range(10)]
    assert not frame["question"].equals(build_task_frame("gsm8k", spec, 1)["question"])
    for question, answer in zip(frame["question"], frame["answer"], strict=True):
        assert question == f"Question {answer}?"
    everything = build_task_frame(
        "gsm8k", {"domain": "arithmetic", "source": "hub", "spec": unchecked}, 0
    )
    assert everything.height == 50


def test_hub_build_with_no_records_left_is_an_error(monkeypatch):
    monkeypatch.setattr(hub_module, "load_hub_rows", lambda hub: [_proofwriter_row(1, "True", 0)])
    with pytest.raises(TaskError, match=r"'proofwriter'.*no records"):
        build_task_frame(
            "proofwriter",
            {"domain": "logical", "source": "hub", "spec": {"hub": {"rows": 1}}},
            0,
        )


def test_hub_build_reports_a_missing_field(monkeypatch):
    monkeypatch.setattr(hub_module, "load_hub_rows", lambda hub: [{"Body": "b", "Answer": 1.0}])
    with pytest.raises(TaskError, match=r"'svamp', record 0, field 'Question'"):
        build_task_frame(
            "svamp",
            {
                "domain": "arithmetic",
                "source": "hub",
                "spec": {"hub": {"rows": 1, "columns": None}},
            },
            0,
        )


@pytest.mark.skipif(not GSM8K_FILE.exists(), reason=f"real GSM8K sample not found at {GSM8K_FILE}")
def test_real_gsm8k_file_maps_every_record_to_a_number():
    raw = [json.loads(line) for line in GSM8K_FILE.read_text(encoding="utf-8").splitlines()]
    mapped = map_hub_records("gsm8k", hub_spec("gsm8k"), raw)
    assert len(raw) == len(mapped) == 1319
    for original, record in zip(raw, mapped, strict=True):
        assert record["question"] == original["question"].strip()
        assert canonical_number(record["answer"]) == record["answer"]
        assert re.fullmatch(r"-?\d+(\.\d+)?", record["answer"])
        final = original["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        assert float(record["answer"]) == float(final)


# --- bad input -------------------------------------------------------------------------------


def test_wrong_domain_names_task_and_both_domains():
    with pytest.raises(TaskError) as error:
        resolve_task("gsm8k", {"domain": "logical"})
    message = str(error.value)
    assert "'gsm8k'" in message and "'logical'" in message and "'arithmetic'" in message


def test_missing_domain_is_an_error():
    with pytest.raises(TaskError, match=r"'gsm8k'.*field 'domain'"):
        resolve_task("gsm8k", {"size": 3})


def test_unknown_answer_type_is_an_error():
    bad = {"domain": "symbolic", "spec": {"answer_type": "float"}}
    with pytest.raises(TaskError, match=r"'coin_flip', field 'answer_type'.*'float'.*number"):
        resolve_task("coin_flip", bad)


def test_unknown_difficulty_knob_lists_the_allowed_ones():
    with pytest.raises(TaskError) as error:
        resolve_task("list_reversal", {"domain": "symbolic", "difficulty": {"n_items": 3}})
    message = str(error.value)
    assert "'list_reversal'" in message and "n_items" in message and "allowed: length" in message


def test_knob_out_of_range_is_an_error():
    with pytest.raises(TaskError, match=r"'clutrr'.*'chain_length'.*\[2, 3\].*7"):
        resolve_task("clutrr", {"domain": "logical", "difficulty": {"chain_length": 7}})


def test_template_with_a_missing_field_names_task_record_and_field():
    bad = entry("coin_flip", spec={"prompt": "{question}\nHint: {hint}"})
    with pytest.raises(TaskError) as error:
        build_task_frame("coin_flip", bad, 0)
    message = str(error.value)
    assert "'coin_flip'" in message and "record coin_flip-0000" in message
    assert "field 'hint'" in message


def test_positional_template_is_an_error():
    bad = {"domain": "symbolic", "spec": {"prompt": "{} is it?"}}
    with pytest.raises(TaskError, match=r"'coin_flip', field 'prompt'.*named fields"):
        resolve_task("coin_flip", bad)


@pytest.mark.parametrize("size", [0, -3, "ten", True])
def test_bad_size_is_an_error(size):
    with pytest.raises(TaskError, match=r"'addsub', field 'size'.*>= 1"):
        resolve_task("addsub", {"domain": "arithmetic", "size": size})


def test_unknown_entry_key_is_an_error():
    with pytest.raises(TaskError, match=r"'addsub', field 'entry'.*difficultly"):
        resolve_task("addsub", {"domain": "arithmetic", "difficultly": {}})


def test_new_task_without_enough_spec_names_the_missing_key():
    with pytest.raises(TaskError, match=r"'my_task'.*not in the catalogue.*'answer_type'"):
        resolve_task("my_task", {"domain": "symbolic"})
    partial = {"domain": "symbolic", "spec": {"answer_type": "yesno", "prompt": "{question}"}}
    with pytest.raises(TaskError, match=r"'my_task'.*'generator'"):
        resolve_task("my_task", partial)


def test_a_new_task_can_be_defined_entirely_in_the_config():
    spec = {
        "answer_type": "yesno",
        "prompt": "Track the coin.\n{question}\nReply 'The answer is yes.' or 'The answer is no.'",
        "generator": {"name": "coin_flip", "size": 30, "params": {"n_people": 8}},
    }
    frame = build_task_frame("long_coin_flip", {"domain": "symbolic", "spec": spec}, 0)
    assert frame.height == 30 and set(frame["answer_type"]) == {"yesno"}
    assert frame["id"][0] == "long_coin_flip-0000"
    assert all(
        prompt.startswith("Track the coin.\nA coin is heads up.") for prompt in frame["prompt"]
    )


def test_spec_prompt_can_use_a_source_specific_field():
    spec = {"prompt": "Words: {words}\n{question}"}
    frame = build("first_letter_concat", spec=spec)
    for record in frame.to_dicts():
        assert record["prompt"].startswith(f"Words: {' '.join(_quoted_words(record['question']))}")


def test_generator_that_cannot_fill_the_size_says_so():
    with pytest.raises(TaskError, match=r"'first_letter_concat'.*only \d+ distinct items"):
        build("first_letter_concat", size=len(WORDS) + 50, difficulty={"n_words": 1})


def test_vocabulary_is_clean():
    assert len(set(FEMALE_NAMES)) == len(FEMALE_NAMES)
    assert len(set(MALE_NAMES)) == len(MALE_NAMES)
    assert not set(FEMALE_NAMES) & set(MALE_NAMES)
    assert len(set(WORDS)) == len(WORDS)
    assert dict(ANIMALS) == PLURAL_FORMS  # scoring accepts exactly the plurals the stories use
