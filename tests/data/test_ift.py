from __future__ import annotations

import json
import re
import subprocess
import sys

import polars as pl
import pytest

from codeift.data.labels import classify_code, label_pool
from codeift.data.mix import build_mix, code_count, mix_card
from codeift.data.pool import build_pool
from codeift.data.small_world import generate_conversations
from codeift.errors import IFTError
from tests.conftest import shared_file

# A program, then (traced programs) what it prints, then the answer line.
FENCE = re.compile(r"```python\n(.*?)\n```\n(?:(.*)\n)?The answer is (.*)\.$", re.DOTALL)


@pytest.fixture(scope="module")
def labelled_pool() -> pl.DataFrame:
    pool, _ = build_pool([{"kind": "generator", "n_general": 300, "n_code": 300}], seed=0)
    return label_pool(pool)


def test_generator_is_deterministic_and_seed_dependent():
    assert generate_conversations(20, 20, 3) == generate_conversations(20, 20, 3)
    assert generate_conversations(20, 20, 3) != generate_conversations(20, 20, 4)


def test_every_coding_answer_is_python_that_prints_what_it_claims():
    records = [r for r in generate_conversations(0, 60, 1)]
    for record in records:
        match = FENCE.search(record["messages"][1]["content"])
        assert match, record
        code, trace, claimed = match.groups()
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 0, run.stderr
        if trace is None:
            assert run.stdout.strip() == claimed.strip()
        else:  # the trace is what the program prints; the answer is its last step
            assert run.stdout.strip() == trace.strip()
            assert trace.split()[-1] == claimed.strip()


def test_classifier_separates_the_generators_kinds(labelled_pool):
    assert (labelled_pool["label"] == labelled_pool["origin"]).all()


def test_classifier_on_unfenced_code_and_prose():
    code = [
        {"role": "user", "content": "Write a function"},
        {"role": "assistant", "content": "def f(x):\n    return x + 1\nprint(f(2))"},
    ]
    prose = [
        {"role": "user", "content": "Tell me about rivers"},
        {"role": "assistant", "content": "Rivers carry water to the sea.\nThey shape valleys."},
    ]
    assert classify_code(code)[0] == "code"
    assert classify_code(prose)[0] == "general"


@pytest.mark.parametrize("proportion", [0, 25, 50, 75, 100])
def test_mix_has_exact_size_and_code_share(labelled_pool, proportion):
    mix = build_mix(labelled_pool, proportion, total=101, seed=0)
    assert mix.height == 101
    assert (mix["label"] == "code").sum() == code_count(proportion, 101)
    assert mix["id"].n_unique() == 101


def test_code_count_rounds_halves_up():
    assert code_count(50, 101) == 51
    assert code_count(50, 3) == 2
    assert code_count(0, 7) == 0 and code_count(100, 7) == 7


def test_mixes_are_deterministic_and_nested(labelled_pool):
    half = build_mix(labelled_pool, 50, total=100, seed=0)
    assert half.equals(build_mix(labelled_pool, 50, total=100, seed=0))
    full = build_mix(labelled_pool, 100, total=100, seed=0)
    general = build_mix(labelled_pool, 0, total=100, seed=0)
    half_code = set(half.filter(pl.col("label") == "code")["id"])
    half_general = set(half.filter(pl.col("label") == "general")["id"])
    assert half_code <= set(full["id"]) and half_general <= set(general["id"])
    assert not half.equals(build_mix(labelled_pool, 50, total=100, seed=1))


def test_mix_asking_for_more_code_than_the_pool_has(labelled_pool):
    available = int((labelled_pool["label"] == "code").sum())
    with pytest.raises(IFTError, match=rf"mix code100: needs {available + 1} code examples"):
        build_mix(labelled_pool, 100, total=available + 1, seed=0)


def test_mix_card_counts(labelled_pool):
    mix = build_mix(labelled_pool, 50, total=40, seed=0)
    card = mix_card(mix, 50, {"size": labelled_pool.height})
    assert card["labels"] == {"code": 20, "general": 20}
    assert card["examples"] == 40 and len(card["content_hash"]) == 16


def test_file_sources_count_every_skip(tmp_path):
    sharegpt = tmp_path / "sharegpt.jsonl"
    lines = [
        {
            "id": "a",
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
        },
        {"id": "b", "conversations": [{"from": "human", "value": "only a question"}]},
        {
            "id": "c",
            "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}],
        },
        {"id": "d"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n"
    sharegpt.write_text(text)
    pool, report = build_pool([{"kind": "sharegpt", "path": str(sharegpt), "name": "sg"}], seed=0)
    assert pool["id"].to_list() == ["sg-a"]
    assert report["sources"]["sg"]["skipped"] == {
        "malformed_json": 1,
        "missing_fields": 1,
        "no_assistant_turn": 1,
        "starts_with_assistant": 1,
    }


def test_source_with_zero_valid_records_stops(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(IFTError, match="no valid records"):
        build_pool([{"kind": "alpaca", "path": str(empty)}], seed=0)


def test_invalid_utf8_line_is_skipped_and_counted_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"instruction": "Say hi", "output": "Hi"}).encode()
    bad.write_bytes(good + b'\n{"instruction": "a", "output": "\xff\xfe"}\n')
    pool, report = build_pool([{"kind": "alpaca", "path": str(bad), "name": "b"}], seed=0)
    assert pool.height == 1
    assert report["sources"]["b"]["skipped"] == {"invalid_utf8": 1}
    assert report["skipped_sample"] == [{"source": "b", "reason": "invalid_utf8", "position": 2}]


def test_a_source_of_only_invalid_utf8_stops_with_the_reason(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"instruction": "a", "output": "\xff\xfe"}\n')
    with pytest.raises(IFTError, match="no valid records.*invalid_utf8"):
        build_pool([{"kind": "alpaca", "path": str(bad)}], seed=0)


def test_real_code_alpaca_builds_a_pool_of_code():
    path = shared_file("code_alpaca_2k.json")
    pool, report = build_pool([{"kind": "alpaca", "path": str(path), "name": "ca"}], seed=0)
    assert (
        report["sources"]["ca"]["kept"] + sum(report["sources"]["ca"]["skipped"].values()) == 2017
    )
    assert pool.height > 1900
