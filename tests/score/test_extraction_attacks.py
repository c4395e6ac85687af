"""Adversarial replies that a careful grader reads one way and a loose extractor another (issue
25 item 6). Each row is a reply, its answer type, and what a careful grader takes from it: the
value, or None with the reason it has no answer. Every row failed on the extractor before this
suite was written (branch h-extract at 2b5a40f: 31 of 31 failed; docs/bench/
extraction-careful-grader.md).
"""

from __future__ import annotations

import pytest

from codeift.score.answers import extract_answer

NOAH = "Noah had 55 cookies. Noah gave 42 cookies to Helen. How many cookies does Noah have now?"

# (id, reply, answer type, expected value or None, expected missing_reason when None)
ATTACKS: list[tuple[str, str, str, str | None, str | None]] = [
    # An equation's result, not its first operand.
    ("equation_result", "The answer is 12 - 5 = 7.", "number", "7", None),
    ("equation_times_unit", "The answer is 3 x 4 = 12 apples.", "number", "12", None),
    ("boxed_equation", "\\boxed{20 - 8 = 12}", "number", "12", None),
    # A hedge between several values is no answer.
    ("hedge_or", "The answer is 5 or 7.", "number", None, "ambiguous"),
    ("hedge_between", "The answer is between 40 and 45.", "number", None, "ambiguous"),
    ("hedge_range_dash", "The answer is 40\u201345 apples.", "number", None, "ambiguous"),
    ("hedge_fallback", "Noah has either 12 or 13 cookies left.", "number", None, "ambiguous"),
    ("hedge_yes_or_no", "The answer is yes or no.", "yesno", None, "ambiguous"),
    ("hedge_true_or_false", "The answer is True or False.", "truefalse", None, "ambiguous"),
    ("hedge_text", "The answer is kitchen or garden.", "text", None, "ambiguous"),
    # Unicode minus, superscripts, vulgar fractions, digit grouping, decimal commas.
    ("en_dash_minus", "The answer is \u20135.", "number", "-5", None),
    ("superscript_power", "The answer is 4\u00b2.", "number", "16", None),
    ("vulgar_mixed", "The answer is 2\u00bd cups.", "number", "2.5", None),
    ("vulgar_alone", "The answer is \u00be of the cake.", "number", "0.75", None),
    ("thin_space_groups", "The answer is 1\u2009000\u2009000.", "number", "1000000", None),
    ("apostrophe_groups", "The answer is 1'000'000.", "number", "1000000", None),
    ("indian_groups", "The answer is 1,00,000.", "number", "100000", None),
    ("decimal_comma", "The answer is 3,5 kg.", "number", "3.5", None),
    # The committed final answer, not an invented follow-up question's.
    (
        "invented_next_question",
        "The answer is 7.\n\nQuestion: Tom has 3 apples and eats 1. How many are left?\nAnswer: 2",
        "number",
        "7",
        None,
    ),
    (
        "invented_next_question_polar",
        "The answer is no.\n\nQuestion: Is the sky blue?\nAnswer: yes",
        "yesno",
        "no",
        None,
    ),
    ("question_only", NOAH, "number", None, "no_answer"),
    # A later explicit correction wins over an earlier box or answer.
    ("correction_after_box", "\\boxed{7}\n\nActually, the answer is 9.", "number", "9", None),
    ("correction_same_line", "The answer is 7. Actually, it's 9.", "number", "9", None),
    # Unfinished working is no answer.
    (
        "cut_off_mid_working",
        "Lionel has 20 - 4 = 16 seashells.\nRita has 16 + 6 = 22 seashells.\nThe final",
        "number",
        None,
        "unfinished",
    ),
    # An answer cue repeated without content is no answer; a prose answer written inside a
    # fence the model left open is one.
    ("degenerate_cue_repetition", 'The answer is "The answer is "The answer is "The answer is "',
     "text", None, "no_answer"),
    ("answer_inside_open_fence", "```python\nprint(\n    The answer is yes.", "yesno", "yes",
     None),
    # A relation named through a person is the relation; a denied alternative is no part of
    # the answer; a question is not an answer.
    ("kinship_possessive", "The answer is Walter's son-in-law.", "text", "son-in-law", None),
    ("denied_alternative", "The answer is Heidi's sister, not Norman.", "text", "sister", None),
    ("question_as_text", "What color is Fred?", "text", None, "no_answer"),
    ("cut_off_operands", "He earned 11 * 7 = 77 dollars, so 77 * 11 =", "number", None,
     "unfinished"),
    ("cut_off_after_result", "She has 41 - 39 = 2 cupcakes left. She keeps one group,", "number",
     None, "unfinished"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "answer_type", "value", "reason"),
    [case[1:] for case in ATTACKS],
    ids=[case[0] for case in ATTACKS],
)
def test_a_careful_grader_reads_the_reply(reply, answer_type, value, reason):
    extraction = extract_answer(reply, answer_type)
    assert (extraction.value, extraction.missing_reason) == (value, reason), extraction


def test_the_suite_is_at_least_fifteen_distinct_attacks():
    assert len({case[0] for case in ATTACKS}) == len(ATTACKS) >= 15
