"""Tests for codeift.score.answers: extraction from realistic responses, matching, score_frame."""

from __future__ import annotations

import json
import random
import re

import polars as pl
import pytest

from codeift.numbers import canonical_number
from codeift.score.answers import (
    Extraction,
    ScoringError,
    answers_match,
    extract_answer,
    program_answer,
    score_frame,
)
from codeift.study import ANSWER_TYPES
from codeift.tasks import build_task_frame, load_catalog
from tests.conftest import SHARED_DATA

GSM8K_FILE = SHARED_DATA / "gsm8k_test.jsonl"


@pytest.mark.parametrize(
    ("response", "answer_type", "value", "method"),
    [
        # numbers
        ("The answer is 18.", "number", "18", "answer_is"),
        ("the ANSWER IS 7 apples", "number", "7", "answer_is"),
        ("Answer: 42", "number", "42", "answer_is"),
        ("Final answer: $1,234.50", "number", "1234.5", "answer_is"),
        ("She pays $1,234.50 dollars", "number", "1234.5", "last_number"),
        ("3 + 4 = 7, then 7 * 2 = 14 cookies", "number", "14", "last_number"),
        ("The answer is 12. Check: 12 - 5 = 7.", "number", "12", "answer_is"),
        ("The answer is 5. Wait, recount: the answer is 6.", "number", "6", "answer_is"),
        ("So we get \\boxed{72} in total, i.e. 3 boxes.", "number", "72", "boxed"),
        ("\\boxed{\\frac{1}{2}} no, \\boxed{0.50}", "number", "0.5", "boxed"),
        ("The answer is:\n\n  -15", "number", "-15", "answer_is"),
        ("The answer is −3 degrees.", "number", "-3", "answer_is"),
        ("That is 3/4 of the cake.", "number", "0.75", "last_number"),
        ("The answer is eight.", "number", "8", "answer_is"),
        ("**Answer:** 2,000", "number", "2000", "answer_is"),
        ("The answer is 18.00", "number", "18", "answer_is"),
        # yes/no
        ("Yes.", "yesno", "yes", "yesno_word"),
        ("yes, the coin is still heads up", "yesno", "yes", "yesno_word"),
        ("No, it is not.", "yesno", "no", "yesno_word"),
        ("True", "yesno", "yes", "yesno_word"),
        ("Two flips cancel out, so the coin is heads up. YES", "yesno", "yes", "yesno_word"),
        ("Alice flips it once. The answer is no.", "yesno", "no", "answer_is"),
        ("The answer is \\boxed{\\text{No}}", "yesno", "no", "boxed"),
        # true/false
        ("False.", "truefalse", "False", "truefalse_word"),
        ("The answer is True.", "truefalse", "True", "answer_is"),
        ("Answer: false", "truefalse", "False", "answer_is"),
        ("yes", "truefalse", "True", "truefalse_word"),
        # lists
        ("lamp, door, cup", "list", "lamp, door, cup", "last_line"),
        ("[lamp, door, cup]", "list", "lamp, door, cup", "list_brackets"),
        ("['lamp','door','cup']", "list", "lamp, door, cup", "list_brackets"),
        ('Reversed: ["lamp", "door", "cup"].', "list", "lamp, door, cup", "list_brackets"),
        ("lamp door cup", "list", "lamp, door, cup", "last_line"),
        ("lamp -> door -> cup", "list", "lamp, door, cup", "list_arrow"),
        ("The answer is lamp, door, and cup.", "list", "lamp, door, cup", "answer_is"),
        (
            "First I reverse it.\nReversed list: lamp, door, cup",
            "list",
            "lamp, door, cup",
            "last_line",
        ),
        # text
        ("The answer is nephew.", "text", "nephew", "answer_is"),
        ("**Answer:** Son-in-law", "text", "Son-in-law", "answer_is"),
        ('The answer is "wolf".', "text", "wolf", "answer_is"),
        ("The answer is a wolf.", "text", "wolf", "answer_is"),
        ("Aunt.", "text", "Aunt", "first_line"),
        ("green\nBecause Lily is a green swan.", "text", "green", "first_line"),
        ("The answer is yajo", "text", "yajo", "answer_is"),
    ],
)
def test_extraction_handles_real_response_shapes(response, answer_type, value, method):
    assert extract_answer(response, answer_type) == Extraction(value, method, None)


@pytest.mark.parametrize("answer_type", ANSWER_TYPES)
@pytest.mark.parametrize("response", [None, "", "   \n\t "])
def test_empty_responses_are_missing_not_errors(response, answer_type):
    assert extract_answer(response, answer_type) == Extraction(None, "none", "empty_response")


@pytest.mark.parametrize(
    ("response", "answer_type"),
    [
        ("I cannot solve this.", "number"),
        ("The coin may or may not be heads up.", "yesno"),
        ("It depends on the rules.", "truefalse"),
    ],
)
def test_responses_without_an_answer_are_missing(response, answer_type):
    assert extract_answer(response, answer_type) == Extraction(None, "none", "no_answer")


@pytest.mark.parametrize("answer_type", ANSWER_TYPES)
@pytest.mark.parametrize(
    "response",
    ["\\boxed{", "}}}{{{", "Answer:", "the answer is", "[", "]", "->", "1/0", "9" * 400,
     "\x00\x01", "£€$", "[[]]", ", , ,", "The answer is [", "…", "\\boxed{\\boxed{}}"],
)  # fmt: skip
def test_extraction_never_raises_on_odd_text(response, answer_type):
    extraction = extract_answer(response, answer_type)
    assert (extraction.value is None) == (extraction.missing_reason is not None)


def test_unknown_answer_type_is_a_scoring_error():
    with pytest.raises(ScoringError, match="'float'"):
        extract_answer("The answer is 3.", "float")
    with pytest.raises(ScoringError, match="'float'"):
        answers_match("3", "3", "float")


@pytest.mark.parametrize(
    ("extracted", "gold", "answer_type", "expected"),
    [
        ("1234.5", "1,234.50", "number", True),
        ("18", "18.0", "number", True),
        ("0.3333333", "0.33333333", "number", True),
        ("0.333", "0.334", "number", False),
        ("18", "81", "number", False),
        ("eighteen", "18", "number", False),
        ("yes", "yes", "yesno", True),
        ("no", "yes", "yesno", False),
        ("True", "True", "truefalse", True),
        ("False", "True", "truefalse", False),
        ("lamp, door, cup", "lamp, door, cup", "list", True),
        ("['Lamp', 'door', 'cup.']", "lamp, door, cup", "list", True),
        ("lamp, cup, door", "lamp, door, cup", "list", False),
        ("lamp, door", "lamp, door, cup", "list", False),
        ("Son in law", "son-in-law", "text", True),
        ("NEPHEW!", "nephew", "text", True),
        ("niece", "nephew", "text", False),
        ("wolves", "wolf", "text", True),
        ("mice", "mouse", "text", True),
        ("tans", "tan", "text", False),  # plural tolerance is only for the bAbI animal names
        ("yajos", "yajo", "text", False),
        (None, "18", "number", False),
    ],
)
def test_answers_match(extracted, gold, answer_type, expected):
    assert answers_match(extracted, gold, answer_type) is expected


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("5.0", "5"), (5.0, "5"), (7, "7"), ("1,234", "1234"), ("$1,234.50", "1234.5"),
     ("-0.50", "-0.5"), ("3/4", "0.75"), ("twelve", None), ("1 2", None), (True, None)],
)  # fmt: skip
def test_canonical_number(raw, canonical):
    assert canonical_number(raw) == canonical


def _generations() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["t-0", "t-1", "t-2", "t-3", "t-4"],
            "task": ["gsm8k", "coin_flip", "list_reversal", "clutrr", "gsm8k"],
            "answer_type": ["number", "yesno", "list", "text", "number"],
            "answer": ["18", "no", "c, b, a", "uncle", "5"],
            "response": ["So the answer is 18.", "Yes.", "[c, b, a]", None, "It is 6."],
            "model": ["m1"] * 5,
        },
        schema_overrides={"response": pl.Utf8},
    )


def test_score_frame_adds_columns_and_keeps_rows_and_inputs():
    generations = _generations()
    scored = score_frame(generations)
    assert scored.columns == [
        *generations.columns,
        "extracted",
        "method",
        "missing_reason",
        "correct",
        "program_status",
        "program_output",
        "program_detail",
        "program_extracted",
        "program_method",
        "program_correct",
        "program_sandbox",
        "correct_any",
    ]
    assert scored["program_status"].null_count() == scored.height  # no response holds a program
    assert scored["correct_any"].to_list() == scored["correct"].to_list()
    assert scored.select(generations.columns).equals(generations)
    assert scored.schema["extracted"] == pl.Utf8 and scored.schema["method"] == pl.Utf8
    assert scored.schema["missing_reason"] == pl.Utf8
    assert scored.schema["correct"] == pl.Boolean
    assert scored["correct"].to_list() == [True, False, True, False, False]
    assert scored["extracted"].to_list() == ["18", "yes", "c, b, a", None, "6"]
    assert scored["missing_reason"].to_list() == [None, None, None, "empty_response", None]
    reversed_rows = score_frame(generations.reverse())
    assert reversed_rows["id"].to_list() == generations["id"].to_list()[::-1]
    assert reversed_rows["correct"].to_list() == [False, False, True, False, True]


def test_score_frame_needs_its_columns_and_known_types():
    with pytest.raises(ScoringError, match="response"):
        score_frame(_generations().drop("response"))
    bad = _generations().with_columns(pl.lit("decimal").alias("answer_type"))
    with pytest.raises(ScoringError, match="row t-0.*'decimal'"):
        score_frame(bad)


def test_score_frame_on_an_empty_frame():
    scored = score_frame(_generations().head(0))
    assert scored.height == 0 and scored.schema["correct"] == pl.Boolean


@pytest.mark.parametrize("task", sorted(load_catalog()))
def test_every_task_gold_restated_scores_correct_and_a_wrong_one_does_not(task):
    """The canonical golds of the tasks module are what the scorer reads back."""
    frame = build_task_frame(task, {"domain": load_catalog()[task]["domain"], "size": 40}, 0)
    golds = frame["answer"].to_list()
    restated = frame.with_columns(
        pl.Series("response", [f"Let me think.\nThe answer is {gold}." for gold in golds])
    )
    assert score_frame(restated)["correct"].all()
    shifted = golds[1:] + golds[:1]
    wrong = frame.with_columns(pl.Series("response", [f"The answer is {g}." for g in shifted]))
    differs = [a != b for a, b in zip(golds, shifted, strict=True)]
    scored = score_frame(wrong)["correct"].to_list()
    assert not any(c for c, d in zip(scored, differs, strict=True) if d)


def _model_style(solution: str) -> str:
    """A GSM8K worked solution as a model would write it: no <<calc>> notes, a closing line."""
    without_notes = re.sub(r"<<[^>]*>>", "", solution)
    return re.sub(r"####\s*(\S+)\s*$", r"So the answer is \1.", without_notes.strip())


@pytest.mark.skipif(not GSM8K_FILE.exists(), reason=f"real GSM8K sample not found at {GSM8K_FILE}")
def test_real_gsm8k_restated_solutions_score_correct_and_shuffled_ones_do_not():
    raw = [json.loads(line) for line in GSM8K_FILE.read_text(encoding="utf-8").splitlines()]
    assert len(raw) == 1319
    golds = [canonical_number(row["answer"].rsplit("####", 1)[1]) for row in raw]
    responses = [_model_style(row["answer"]) for row in raw]
    assert not any("####" in response or "<<" in response for response in responses)
    frame = pl.DataFrame(
        {
            "id": [f"gsm8k-{i:04d}" for i in range(len(raw))],
            "answer_type": ["number"] * len(raw),
            "answer": golds,
            "response": responses,
        }
    )
    scored = score_frame(frame)
    assert scored["correct"].all()
    assert set(scored["method"]) == {"answer_is"}
    shuffled = responses[:]
    random.Random(1234).shuffle(shuffled)
    wrong = score_frame(frame.with_columns(pl.Series("response", shuffled)))
    assert wrong["correct"].mean() < 0.05


@pytest.mark.parametrize("answer_type", ["number", "yesno", "truefalse", "list", "text"])
@pytest.mark.parametrize("response", ["```\n```\n```\n", "**\n\n**", "`", "\n\n\n"])
def test_markup_only_responses_are_missing_not_crashes(answer_type, response):
    extraction = extract_answer(response, answer_type)
    assert extraction.value is None
    assert extraction.missing_reason in {"no_answer", "empty_response"}


# Issue 15: each misread, with the answer a careful human grader reads (not the scorer's output).
@pytest.mark.parametrize(
    ("response", "answer_type", "gold", "value", "correct"),
    [
        ("```python\nprint(6 * 7)\n```", "number", "7", None, False),
        ("```python\nprint(6 * 7)\n```", "number", "42", None, False),
        ("The answer is not 5, it is 7.", "number", "7", "7", True),
        ("\\boxed{\\frac{1}{2}}", "number", "0.5", "0.5", True),
        ("\\boxed{\\dfrac{3}{4}}", "number", "0.75", "0.75", True),
        ("1.000,50", "number", "1000.5", "1000.5", True),
        ("forty-two", "number", "42", "42", True),
        ("1. apple\n2. banana\n3. cherry", "list", "apple, banana, cherry",
         "apple, banana, cherry", True),
        ("cherry, banana and apple", "list", "cherry, banana, apple", "cherry, banana, apple",
         True),
        ("The answer is no, wait, yes.", "yesno", "yes", "yes", True),
        ("The answer is not true.", "truefalse", "False", "False", True),
    ],
)  # fmt: skip
def test_issue_15_misreads(response, answer_type, gold, value, correct):
    assert extract_answer(response, answer_type).value == value
    assert answers_match(extract_answer(response, answer_type).value, gold, answer_type) is correct


def test_a_program_only_response_has_no_text_answer():
    extraction = extract_answer("```python\nprint(6 * 7)\n```", "number")
    assert extraction == Extraction(None, "none", "code_only")
    frame = pl.DataFrame(
        {
            "answer_type": ["number", "number"],
            "answer": ["7", "42"],
            "response": ["```python\nprint(6 * 7)\n```"] * 2,
        }
    )
    scored = score_frame(frame, run_programs=False)
    assert scored["correct"].to_list() == [False, False]
    assert scored["missing_reason"].to_list() == ["code_only", "code_only"]


def test_a_4301_digit_number_in_response_or_gold_does_not_raise():
    huge = "9" * 4301
    frame = pl.DataFrame(
        {
            "answer_type": ["number"] * 3,
            "answer": [huge, "5", huge[:-1] + "8"],
            "response": [f"The answer is {huge}.", f"The answer is {huge}.", f"So {huge}"],
        }
    )
    scored = score_frame(frame, run_programs=False)
    assert scored["extracted"].to_list() == [huge] * 3
    # The third gold differs in the last digit only: within the 1e-9 relative tolerance.
    assert scored["correct"].to_list() == [True, False, True]
    assert canonical_number(huge) == huge and canonical_number(10**4301 - 1) == huge
    assert not answers_match("1" + "0" * 5000, "2" + "0" * 5000, "number")  # not equal via inf


@pytest.mark.parametrize(
    ("response", "answer_type", "value"),
    [
        # program source never feeds the text view
        ("The answer is `print(6*7)`", "number", None),
        ("Compute it:\nprint(6 * 7)", "number", None),
        ("def f(n):\n    total = 1\n    return total * n\nprint(f(6))", "number", None),
        ("x = 5\ny = x * 2\nprint(y)", "number", None),
        ("if n > 2:\n    print(3)\nelse:\n    print(4)\nSo it is 9.", "number", "9"),
        ("Code:\n\nx = 5\ny = x * 2\nprint(y)\n\nSo the answer is 10.", "number", "10"),
        ("Here:\n```python\nx = 41\nprint(x + 1)\n```\nSo the answer is 42.", "number", "42"),
        ("```\n5\n```\nThe answer is 6.", "number", "6"),  # a fenced block is not the answer
        ("Cut off:\n```python\nfor i in range(9):\n    print(i)", "number", None),
        ("~~~python\nprint(3)\n~~~\nAnswer: 4", "number", "4"),
        ("The answer is `42`.", "number", "42"),  # a quoted value is text, not code
        ("Answer: `[c, b, a]`", "list", "c, b, a"),
        # more real shapes
        ("**7**", "number", "7"),
        ("The answer is **$7**.", "number", "7"),
        ("7%", "number", "7"),
        ("x = 7", "number", "7"),
        ("She has 7 apples.", "number", "7"),
        ("#### 42", "number", "42"),
        ("The answer is 5, wait, 6.", "number", "6"),
        ("It is 7, not 5.", "number", "7"),
        ("The answer is not 5.", "number", None),
        ("The answer is $\\boxed{-\\frac{1}{2}}$", "number", "-0.5"),
        ("\\boxed{\\frac12}", "number", "0.5"),
        ("The answer is 1{,}000.", "number", "1000"),
        ("1.000.000", "number", "1000000"),
        ("The answer is 1.000", "number", "1"),  # ambiguous: the English reading, documented
        ("The answer is one hundred and five.", "number", "105"),
        ("The answer is three thousand two hundred.", "number", "3200"),
        ('The answer is "Yes".', "yesno", "yes"),
        ("The answer is yes, because no flip happened.", "yesno", "yes"),
        ("Two flips, so it is not true.", "truefalse", "False"),
        ("The answer is:\n1. cup\n2. door\n3. lamp", "list", "cup, door, lamp"),
        ("Reversed:\n- cup\n- door\n- lamp", "list", "cup, door, lamp"),
        ("lamp and cup", "list", "lamp, cup"),
        ("Answer: B", "text", "B"),
        ("Answer: (B)", "text", "B"),
    ],
)
def test_more_answer_shapes(response, answer_type, value):
    assert extract_answer(response, answer_type).value == value


@pytest.mark.parametrize(
    ("stdout", "answer_type", "value", "method"),
    [
        ("step 1: 3 + 4 = 7\nstep 2: 7 * 6 = 42\n42", "number", "42", "output_last_line"),
        ("Total: 42", "number", "42", "output_last_line"),
        ("The answer is 12\ndone", "number", "12", "answer_is"),
        ("flip 1: tails\nflip 2: heads\nyes", "yesno", "yes", "output_last_line"),
        ("no flips\nTrue", "truefalse", "True", "output_last_line"),
        ("['a', 'b', 'c']\n['c', 'b', 'a']", "list", "c, b, a", "output_last_line"),
        ("checking relations...\nnephew", "text", "nephew", "output_last_line"),
        ("print(6 * 7)", "number", "7", "output_last_line"),  # output is output, not source
        ("", "number", None, "none"),
        # The small world's traced letter join (`print(w, joined)`): the answer is the last field.
        ("salt s\npepper sp", "text", "sp", "output_last_line"),
        ("apple e\nriver er\n", "text", "er", "output_last_line"),
        ("word 3: occp.", "text", "occp", "output_last_line"),
        # A list is one field, bracketed or comma-joined, after whatever the line prints first.
        ("step 2 c, b, a", "list", "c, b, a", "output_last_line"),
        ("reversed ['c', 'b', 'a']", "list", "c, b, a", "output_last_line"),
        ("c b a", "list", "c, b, a", "output_last_line"),  # print(*items): one list
        ("sum 3 + 4 = 7", "number", "7", "output_last_line"),
    ],
)
def test_program_answer_reads_the_last_printed_line(stdout, answer_type, value, method):
    extraction = program_answer(stdout, answer_type)
    assert (extraction.value, extraction.method) == (value, method)


# Replies of Gemma 3 270M base in the real-model study (tests/fixtures/real_replies.jsonl): it
# writes the question out again; the restated numbers and choices must not score.
ECHO_PROMPT = (
    "There were 6 candles in a box. Ursula took 3 candles out of the box. How many candles are "
    "left in the box?\nGive the final answer as a number, in the form 'The answer is N.'"
)


def test_a_reply_that_restates_the_question_is_missing_not_scored():
    echo = ECHO_PROMPT + "\n"
    # Without the prompt too: a question's numbers are its givens, not an answer (issue 25).
    assert extract_answer(echo, "number").missing_reason == "no_answer"
    extraction = extract_answer(echo, "number", prompt=ECHO_PROMPT)
    assert (extraction.value, extraction.missing_reason) == (None, "echo")
    cut = "There were 6 candles in a box. Ursula took 3 can"  # cut off mid-echo
    assert extract_answer(cut, "number", prompt=ECHO_PROMPT).missing_reason == "echo"


def test_an_answer_after_a_restated_question_is_still_read():
    reply = ECHO_PROMPT.splitlines()[0] + "\n6 - 3 = 3 candles are left.\nThe answer is 3."
    assert extract_answer(reply, "number", prompt=ECHO_PROMPT).value == "3"
    # Short lines are the reply's own even where the prompt holds them ("The answer is N.").
    prompt = "Is the coin heads up?\nAnswer yes or no.\nThe answer is yes."
    assert extract_answer("The answer is yes.", "yesno", prompt=prompt).value == "yes"


def test_a_restated_choice_is_not_a_polar_answer():
    assert extract_answer("True or False: Lucas is not a liar.", "truefalse").value is None
    assert extract_answer("Yes or no? I cannot tell.", "yesno").value is None
    assert extract_answer("True or false: it is false.", "truefalse").value == "False"
    assert extract_answer("yes/no: yes", "yesno").value == "yes"


def test_score_frame_reads_the_prompt_column_for_echoes():
    frame = pl.DataFrame(
        {
            "id": ["a", "b"],
            "prompt": [ECHO_PROMPT, ECHO_PROMPT],
            "response": [ECHO_PROMPT, "The answer is 3."],
            "answer": ["3", "3"],
            "answer_type": ["number", "number"],
        }
    )
    scored = score_frame(frame, run_programs=False)
    assert scored["correct"].to_list() == [False, True]
    assert scored["missing_reason"].to_list() == ["echo", None]


# The careful-grader rules (issue 25) keep what is not a hedge, an equation or a cut-off reply.
@pytest.mark.parametrize(
    ("response", "answer_type", "value"),
    [
        ("The answer is 7 or 7.0.", "number", "7"),  # one value, written twice
        ("The answer is 6 or more.", "number", "6"),
        ("The answer is 60 = 10 + 50.", "number", "60"),  # more working after "=", not a result
        ("The answer is 12. Check: 12 - 5 = 7.", "number", "12"),
        ("The answer is 1,234.", "number", "1234"),  # three digits after the comma: a group
        ("The answer is 25 m².", "number", "25"),
        ("The answer is 7. Sorry for the confusion.", "number", "7"),  # a cue with no new value
        ("Emma has 44 balloons now", "number", "44"),  # no full stop, but a stated result
        ("How many are left? 6 - 3 = 3.", "number", "3"),
        ("The answer is yes, not no.", "yesno", "yes"),
        ("The answer is or.", "text", "or"),  # a letter answer, not a hedge
        ("Question: What is 3 + 4?\nAnswer: 7\n\nQuestion: What is 2 + 2?\nAnswer: 4", "number",
         "7"),  # the restated question's answer, not the invented one's
    ],
)  # fmt: skip
def test_what_a_careful_grader_still_reads(response, answer_type, value):
    assert extract_answer(response, answer_type).value == value


def test_a_prose_answer_inside_a_string_in_a_fence_is_program_text():
    reply = '```python\nprint("""\nThe answer is 5.\n""")\n```'
    assert extract_answer(reply, "number").missing_reason == "code_only"


def test_program_output_is_never_read_as_a_cut_off_reply():
    """A program is not cut off at a token limit: its printed working ends where it ends."""
    assert program_answer("sum: 40 + 2 = 42, done", "number").value == "42"
    assert extract_answer("sum: 40 + 2 = 42, done", "number").missing_reason == "unfinished"
