"""The embedded IFT data: a small world whose effect on every task is known in advance."""

from __future__ import annotations

import re

import pytest

from codeift.data.small_world import (
    CODE_SKILLS,
    DIRECTIONS,
    GENERAL_SKILLS,
    PLANTED,
    SKILL_TASKS,
    generate_conversations,
)
from codeift.tasks import build_task_frame, load_catalog

WORD = re.compile(r"[a-z]+")
RUN = 4  # no run of this many words may be shared by training and evaluation prompts


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return generate_conversations(1500, 1500, seed=0)


def _runs(text: str) -> set[tuple[str, ...]]:
    """Four-word runs within each sentence (two facts side by side are not shared wording)."""
    runs = set()
    for sentence in re.split(r"[.?!:\n]", text.lower()):
        words = WORD.findall(sentence)
        runs |= {tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1)}
    return runs


def test_the_expectation_covers_every_catalogue_task_with_a_direction(default_config):
    assert set(PLANTED) == set(load_catalog())
    assert set(PLANTED.values()) <= set(DIRECTIONS)
    # the embedded default leaves the expectation to the data (its mix cards), stating no copy
    assert "planted" not in default_config.get("controls", {})


def test_every_planted_direction_comes_from_a_skill_of_one_half_only():
    taught_by_code = {t for s in CODE_SKILLS for t in SKILL_TASKS.get(s, ())}
    taught_by_general = {t for s in GENERAL_SKILLS for t in SKILL_TASKS.get(s, ())}
    for task, direction in PLANTED.items():
        if direction == "gain":
            assert task in taught_by_code - taught_by_general, task
        elif direction == "lose":
            assert task in taught_by_general - taught_by_code, task
        else:
            in_code, in_general = task in taught_by_code, task in taught_by_general
            assert in_code == in_general, f"{task} is taught by one half only"


def test_arithmetic_is_taught_at_the_same_rate_by_both_halves(records):
    assert CODE_SKILLS["arithmetic"][1] == GENERAL_SKILLS["arithmetic"][1]
    for origin in ("code", "general"):
        half = [r for r in records if r["origin"] == origin]
        share = sum(r["skill"] == "arithmetic" for r in half) / len(half)
        assert 0.17 < share < 0.23, (origin, share)


def test_both_halves_show_the_worked_sum_before_the_same_answer_line(records):
    for record in records:
        if record["skill"] != "arithmetic":
            continue
        reply = record["messages"][1]["content"]
        expression, answer = re.search(
            r"(\d+ [+-] \d+).*The answer is (\d+)\.$", reply, re.S
        ).groups()
        assert eval(expression) == int(answer)  # noqa: S307 - our own "a + b" strings


def test_taught_answers_are_right(records):
    """Each planted skill's answer is what the task would accept for the same items."""
    for record in records:
        user, reply = (m["content"] for m in record["messages"])
        if record["skill"] == "other_prose":
            assert "The answer is" not in reply
            continue
        answer = re.search(r"The answer is (.*)\.$", reply).group(1)
        if record["skill"] in ("reverse", "first_letters", "last_letters"):
            first_line = re.search(r"```python\n(.*?)\n", reply).group(1)
            scope: dict = {}
            exec(first_line, scope)  # noqa: S102 - our own "items = ..." line
            items = scope.get("items") or scope["words"]
            assert all(item in user for item in items)
            expected = {
                "reverse": ", ".join(reversed(items)),
                "first_letters": "".join(w[0] for w in items),
                "last_letters": "".join(w[-1] for w in items),
            }[record["skill"]]
            assert answer == expected, record


def test_training_prompts_share_no_four_word_run_with_evaluation_prompts(records):
    """The effect must be transfer of a skill, not recall of the evaluation's wording."""
    training = set().union(*(_runs(r["messages"][0]["content"]) for r in records))
    catalog = load_catalog()
    for task in PLANTED:
        frame = build_task_frame(task, {"domain": catalog[task]["domain"], "size": 40}, seed=0)
        shared = set().union(*(_runs(p) for p in frame["prompt"].to_list())) & training
        assert not shared, f"{task}: {sorted(shared)[:5]}"


def test_records_say_which_skill_they_teach(records):
    skills = {r["skill"] for r in records}
    assert skills == set(CODE_SKILLS) | set(GENERAL_SKILLS)
    assert all(r["skill"] in CODE_SKILLS for r in records if r["origin"] == "code")
