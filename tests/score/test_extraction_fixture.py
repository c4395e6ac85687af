"""Answer extraction against answers read by hand from real replies (SmolLM2-135M-Instruct and
Gemma 3 270M base in the real-model study of 2026-12-03, and the code arms of the embedded
default's run of 2026-12-05; tests/fixtures/real_replies.jsonl,
docs/tasks-and-scoring.md, "Answer extraction on real replies"). The floors are the figures measured
when the fixture was made, so a change that reads real replies worse fails here."""

from __future__ import annotations

import importlib.util

import pytest

from codeift.data.small_world import CODE_SKILLS, SKILL_TASKS, generate_conversations
from codeift.score.answers import answers_match, extract_answer, program_answer
from codeift.score.sandbox import extract_program, run_programs
from codeift.study import ANSWER_TYPES
from codeift.tasks.catalog import load_catalog
from tests.conftest import REPO

_SPEC = importlib.util.spec_from_file_location(
    "measure_extraction", REPO / "scripts" / "measure_extraction.py"
)
measure = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(measure)

# Measured on the 432 replies (python scripts/measure_extraction.py): precision 0.926, recall
# 0.969, verdict agreement 0.993, no false credit (docs/tasks-and-scoring.md, "Answer extraction
# on real replies", has the history per run of replies).
FLOORS = {"precision": 0.92, "recall": 0.96, "verdict_agreement": 0.99, "false_credit": 0}
# The runs the replies come from: the real-model study's base and code100 replies (360), and 72
# code-arm replies of the embedded default (the first 4 per task of code100, 2 of code50).
RUNS = {"real-study-2026-12-03": 360, "default-2026-12-05": 72}

KEYS = [
    "run", "backbone", "variant", "task", "id", "answer_type", "prompt", "response", "gold",
    "hand_answer", "hand_correct", "note",
]  # fmt: skip


def test_the_fixture_holds_real_replies_of_both_models_labelled_by_hand():
    records = measure.load_fixture()
    assert {run: sum(r["run"] == run for r in records) for run in RUNS} == RUNS
    assert len(records) == sum(RUNS.values())
    assert {r["backbone"] for r in records} == {"smollm2-135m-instruct", "gemma3-270m"}
    assert len({r["task"] for r in records}) == 12
    for record in records:
        assert list(record) == KEYS
        assert record["answer_type"] in ANSWER_TYPES
        if record["hand_answer"] is None:
            assert record["hand_correct"] is False


def test_extraction_reads_real_replies_as_the_hand_does():
    overall = measure.summarise(measure.load_fixture())[-1]
    assert overall["answer_type"] == "all"
    assert overall["precision"] >= FLOORS["precision"], overall
    assert overall["recall"] >= FLOORS["recall"], overall
    assert overall["verdict_agreement"] >= FLOORS["verdict_agreement"], overall


def test_no_reply_is_credited_that_the_hand_marks_wrong_beyond_the_measured_few():
    false_credit = [
        r for r in measure.load_fixture() if measure.judge(r)["credited"] and not r["hand_correct"]
    ]
    assert len(false_credit) <= FLOORS["false_credit"], [r["id"] for r in false_credit]


# The program view on the same replies (tests/fixtures/real_program_outputs.jsonl: the 85
# code-arm replies above that hold a program, with what it printed in the jail and the answer a
# reader took from that output). Of the real-model study's 52, 51 crashed on a syntax error; the
# one that ran is Gemma's traced letter join (`Jack Dmitri Lucy Henry J`: the answer it prints is
# `J`). Of the embedded default's 33, 27 ran: traced letter joins (`pepper occp`), reversed lists
# and sums. Before the program view read the last field of the last line by answer type
# (b55139e) it took whole lines: precision and recall 0.704 on the default's 27, 0.0 on the
# study's 1; now 1.0 on both.
PROGRAM_FLOORS = {"precision": 1.0, "recall": 1.0, "verdict_agreement": 1.0}
PROGRAM_RUNS = {"real-study-2026-12-03": 52, "default-2026-12-05": 33}


def test_the_program_view_reads_real_program_output_as_the_hand_does():
    records = measure.load_fixture(measure.PROGRAM_FIXTURE)
    assert {run: sum(r["run"] == run for r in records) for run in PROGRAM_RUNS} == PROGRAM_RUNS
    assert sum(r["program_status"] == "ok" for r in records) == 28
    for run in PROGRAM_RUNS:
        overall = measure.summarise([r for r in records if r["run"] == run], "program")[-1]
        for key, floor in PROGRAM_FLOORS.items():
            assert overall[key] >= floor, (run, overall)


# The traces the study's own coding data teaches (codeift.data.small_world): per skill that
# serves a task, conversations whose program is run here in the jail; the program view must
# read from the output the answer the conversation's reply states ("The answer is ...").
_PER_SKILL = 3


@pytest.fixture(scope="module")
def taught_programs() -> list[tuple[str, str, str]]:
    """(task, answer type, reply) of coding conversations whose skill serves a task."""
    catalog = load_catalog()
    chosen: dict[str, list[tuple[str, str, str]]] = {}
    for record in generate_conversations(0, 200, seed=3):
        tasks = SKILL_TASKS.get(record["skill"], ())
        if record["skill"] in CODE_SKILLS and tasks:
            task = tasks[0]
            reply = record["messages"][-1]["content"]
            chosen.setdefault(record["skill"], []).append(
                (task, catalog[task]["answer_type"], reply)
            )
    assert set(chosen) == {"reverse", "first_letters", "last_letters", "arithmetic"}
    return [item for items in chosen.values() for item in items[:_PER_SKILL]]


def test_the_program_view_reads_the_traces_the_coding_data_teaches(taught_programs):
    runs = run_programs([extract_program(reply) for _, _, reply in taught_programs])
    for (task, answer_type, reply), run in zip(taught_programs, runs, strict=True):
        if run.status == "not_run":
            pytest.skip(f"programs cannot run here: {run.detail}")
        assert run.status == "ok", (task, run.detail)
        stated = extract_answer(reply.rsplit("\n", 1)[-1], answer_type).value
        read = program_answer(run.stdout, answer_type).value
        assert stated is not None and answers_match(read, stated, answer_type), (
            task,
            run.stdout,
            read,
            stated,
        )
