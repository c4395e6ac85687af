"""Answer extraction measured on real replies: precision and recall of the scorer's text view
against answers read by hand (tests/fixtures/real_replies.jsonl, docs/tasks-and-scoring.md, "Answer
extraction on real replies").

  python scripts/measure_extraction.py --out docs/real-study/extraction

A record's `hand_answer` is the final answer its reply commits to, written in the task's answer
form, or null where the reply commits to none. Precision: of the replies the extractor reads an
answer from, the share where it reads the hand answer. Recall: of the replies with a hand
answer, the share where the extractor reads it. Agreement: the scorer's `correct` against the
hand's `hand_correct`.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from codeift.io import write_report
from codeift.score.answers import answers_match, extract_answer, program_answer

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real_replies.jsonl"
# The code-arm replies of the fixture that hold a program, with what the program printed when
# run in the jail and the answer a reader took from that output (`hand_program_answer`).
PROGRAM_FIXTURE = FIXTURE.with_name("real_program_outputs.jsonl")


def load_fixture(path: Path = FIXTURE) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def judge(record: dict) -> dict[str, bool]:
    """One reply: did the extractor read an answer, is there a hand answer, do they agree,
    and does the scorer's verdict equal the hand's."""
    value = extract_answer(record["response"], record["answer_type"], prompt=record["prompt"]).value
    hand = record["hand_answer"]
    read = value is not None
    agree = read and hand is not None and answers_match(value, str(hand), record["answer_type"])
    correct = read and answers_match(value, record["gold"], record["answer_type"])
    return {
        "hand_correct": bool(record["hand_correct"]),
        "read": read,
        "has_hand": hand is not None,
        "agree": agree,
        "credited": correct,
        "verdict_agrees": correct == bool(record["hand_correct"]),
    }


def judge_program(record: dict) -> dict[str, bool]:
    """The program view of one reply, as `judge` does the text view: only a program that ran
    to its end is read (the scorer's rule), from what it printed."""
    ran = record["program_status"] == "ok"
    value = program_answer(record["program_output"], record["answer_type"]).value if ran else None
    hand = record["hand_program_answer"]
    read = value is not None
    agree = read and hand is not None and answers_match(value, str(hand), record["answer_type"])
    correct = read and answers_match(value, record["gold"], record["answer_type"])
    return {
        "hand_correct": bool(record["hand_program_correct"]),
        "read": read,
        "has_hand": hand is not None,
        "agree": agree,
        "credited": correct,
        "verdict_agrees": correct == bool(record["hand_program_correct"]),
    }


def summarise(records: list[dict], view: str = "text") -> list[dict]:
    """Precision, recall and verdict agreement per answer type and overall, in the text view
    (`judge`) or the program view (`judge_program`)."""
    groups: dict[str, list[dict[str, bool]]] = defaultdict(list)
    for record in records:
        verdict = judge(record) if view == "text" else judge_program(record)
        groups[record["answer_type"]].append(verdict)
        groups["all"].append(verdict)
    rows = []
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        verdicts = groups[name]
        read = sum(v["read"] for v in verdicts)
        has_hand = sum(v["has_hand"] for v in verdicts)
        agree = sum(v["agree"] for v in verdicts)
        rows.append(
            {
                "answer_type": name,
                "replies": len(verdicts),
                "with_hand_answer": has_hand,
                "extracted": read,
                "precision": round(agree / read, 3) if read else None,
                "recall": round(agree / has_hand, 3) if has_hand else None,
                "verdict_agreement": round(
                    sum(v["verdict_agrees"] for v in verdicts) / len(verdicts), 3
                ),
                "false_credit": sum(v["credited"] and not v["hand_correct"] for v in verdicts),
                "missed_credit": sum(v["hand_correct"] and not v["credited"] for v in verdicts),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixture", default=str(FIXTURE))
    parser.add_argument("--out", default=None, help="path stem for .json and .md")
    args = parser.parse_args()
    rows = summarise(load_fixture(Path(args.fixture)))
    print(markdown(rows))
    print("Program view (" + PROGRAM_FIXTURE.name + "):\n")
    print(markdown(summarise(load_fixture(PROGRAM_FIXTURE), "program")))
    if args.out:
        write_report(rows, markdown(rows), args.out)


if __name__ == "__main__":
    main()
