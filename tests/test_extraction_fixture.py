"""Answer extraction against answers read by hand from real replies (SmolLM2-135M-Instruct and
Gemma 3 270M base in the real-model study; tests/fixtures/real_replies.jsonl, README "Answer
extraction on real replies"). The floors are the figures measured when the fixture was made,
so a change that reads real replies worse fails here."""

from __future__ import annotations

import importlib.util

from codeift.score.answers import ANSWER_TYPES
from tests.conftest import REPO

_SPEC = importlib.util.spec_from_file_location(
    "measure_extraction", REPO / "scripts" / "measure_extraction.py"
)
measure = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(measure)

# Measured on the 360 replies (python scripts/measure_extraction.py): precision 0.792, recall
# 0.812, verdict agreement 0.986, no false credit (before the echo rule: 0.664, 0.812, 0.975, 4).
FLOORS = {"precision": 0.79, "recall": 0.81, "verdict_agreement": 0.98, "false_credit": 0}

KEYS = [
    "backbone", "variant", "task", "id", "answer_type", "prompt", "response", "gold",
    "hand_answer", "hand_correct", "note",
]  # fmt: skip


def test_the_fixture_holds_real_replies_of_both_models_labelled_by_hand():
    records = measure.load_fixture()
    assert len(records) == 360
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
