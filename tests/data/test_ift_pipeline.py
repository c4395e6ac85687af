"""The IFT pipeline of issue 4: streamed sources, counted cleaning, labellers, mix modes, cards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from codeift.config import ConfigError, validate_config
from codeift.data.cleaning import near_key, strip_html
from codeift.data.judge import judge_prompt, parse_answer
from codeift.data.labels import classify_code, label_pool
from codeift.data.mix import build_mix, mix_card, token_budget
from codeift.data.pool import build_pool
from codeift.data.sources import SKIP_SAMPLE_LIMIT
from codeift.errors import IFTError
from codeift.settings import CleaningSettings, LabellerSettings, MixSettings
from tests.conftest import REPO, shared_file

FIXTURES = REPO / "tests" / "fixtures"
SELF_INSTRUCT_FIELDS = {"input": "instances.0.input", "output": "instances.0.output"}


def _turns(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]


def _write_sharegpt(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


@pytest.fixture(scope="module")
def labelled_pool() -> pl.DataFrame:
    pool, _ = build_pool([{"kind": "generator", "n_general": 300, "n_code": 300}], seed=0)
    return label_pool(pool)


# --------------------------------------------------------------------------- sources


def test_sharegpt_json_array_is_streamed_with_multi_turn_and_system_roles(tmp_path):
    records = [
        {
            "id": "multi",
            "conversations": [
                {"from": "system", "value": "Be brief."},
                *_turns("Name a colour.", "Blue."),
                *_turns("Another?", "Red."),
            ],
        },
        {"id": "gpt-first", "conversations": [{"from": "gpt", "value": "x"}, *_turns("a", "b")]},
        {"id": "twice", "conversations": [*_turns("q", "a")[:1], *_turns("q2", "a2")]},
        {"id": "nofields", "text": "no conversation"},
        {"id": "lonely", "conversations": [{"from": "human", "value": "Anyone?"}]},
        {"id": "blank", "conversations": [{"from": "human", "value": " "}]},
        "not an object",
    ]
    path = _write_sharegpt(tmp_path / "sg.json", records)
    pool, report = build_pool([{"kind": "sharegpt", "path": str(path), "name": "sg"}], seed=0)
    assert pool["id"].to_list() == ["sg-multi"]
    roles = [m["role"] for m in pool["messages"][0]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert report["sources"]["sg"]["skipped"] == {
        "broken_alternation": 1,
        "empty": 1,
        "missing_fields": 1,
        "no_assistant_turn": 1,
        "not_an_object": 1,
        "starts_with_assistant": 1,
    }
    positions = {(s["reason"], s["position"]) for s in report["skipped_sample"]}
    assert ("not_an_object", 6) in positions and ("missing_fields", 3) in positions


def test_truncated_json_array_keeps_what_came_before_and_counts_the_break(tmp_path):
    path = tmp_path / "cut.json"
    good = json.dumps({"id": "a", "conversations": _turns("Hi there", "Hello")})
    path.write_text(f'[{good}, {{"id": "b", "conversations": [')
    pool, report = build_pool([{"kind": "sharegpt", "path": str(path), "name": "cut"}], seed=0)
    assert pool.height == 1
    assert report["sources"]["cut"]["skipped"] == {"malformed_json": 1}


def test_parquet_source_with_a_field_mapping_is_read_in_batches(tmp_path, monkeypatch):
    import codeift.data.sources as sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 3)
    frame = pl.DataFrame(
        {
            "question": [f"Question number {i}?" for i in range(8)],
            "answer": [f"Answer {i}." if i != 5 else None for i in range(8)],
        }
    )
    path = tmp_path / "qa.parquet"
    frame.write_parquet(path)
    source = {
        "kind": "alpaca",
        "path": str(path),
        "name": "qa",
        "fields": {"instruction": "question", "output": "answer"},
    }
    pool, report = build_pool([source], seed=0)
    assert pool.height == 7
    assert report["sources"]["qa"]["skipped"] == {"missing_fields": 1}
    assert report["skipped_sample"][0]["position"] == 5


def test_skip_sample_is_bounded_while_counts_are_complete(tmp_path):
    path = tmp_path / "many.jsonl"
    lines = ["{broken"] * (SKIP_SAMPLE_LIMIT + 20)
    lines.append(json.dumps({"instruction": "Say yes", "output": "Yes"}))
    path.write_text("\n".join(lines) + "\n")
    _, report = build_pool([{"kind": "alpaca", "path": str(path), "name": "m"}], seed=0)
    assert report["sources"]["m"]["skipped"] == {"malformed_json": SKIP_SAMPLE_LIMIT + 20}
    assert len(report["skipped_sample"]) == SKIP_SAMPLE_LIMIT
    assert report["skipped_sample"][-1]["position"] == SKIP_SAMPLE_LIMIT


# --------------------------------------------------------------------------- cleaning


def test_html_remnants_are_stripped_outside_code_fences_only():
    text = '<div class="markdown prose"><p>Use it:</p>```html\n<p>keep</p>\n```</div> a &amp; b'
    assert strip_html(text) == "Use it:```html\n<p>keep</p>\n``` a & b"
    assert strip_html("<p>Wrap it in `<div>` tags.</p>") == "Wrap it in `<div>` tags."


def test_repeated_record_ids_are_made_unique_with_the_position(tmp_path):
    records = [
        {"id": "x", "conversations": _turns("First question?", "First.")},
        {"id": "x", "conversations": _turns("Second question?", "Second.")},
    ]
    path = _write_sharegpt(tmp_path / "ids.json", records)
    pool, _ = build_pool([{"kind": "sharegpt", "path": str(path), "name": "i"}], seed=0)
    assert pool["id"].to_list() == ["i-x", "i-x@1"]


def test_html_cleaning_modes_are_counted(tmp_path):
    records = [
        {"id": "h", "conversations": _turns("Hi <b>you</b>", "<p>Hello there</p>")},
        {"id": "e", "conversations": _turns("Only markup", "<div></div>")},
        {"id": "c", "conversations": _turns("Plain", "Plain answer")},
    ]
    path = _write_sharegpt(tmp_path / "h.json", records)
    source = {"kind": "sharegpt", "path": str(path), "name": "h"}
    pool, report = build_pool([source], seed=0, cleaning=CleaningSettings(html="strip"))
    assert pool["id"].to_list() == ["h-h", "h-c"]
    assert pool["messages"][0][1]["content"] == "Hello there"
    assert report["cleaning"]["counts"] == {"html_stripped": 2, "no_assistant_turn": 1}
    pool, report = build_pool([source], seed=0, cleaning=CleaningSettings(html="drop"))
    assert pool["id"].to_list() == ["h-c"] and report["sources"]["h"]["skipped"] == {"html": 2}


def test_near_duplicates_differ_only_in_case_spacing_and_punctuation(tmp_path):
    records = [
        {"id": "a", "conversations": _turns("What is rain?", "Water falling from clouds.")},
        {"id": "b", "conversations": _turns("what is  rain", "Water falling from clouds!")},
        {"id": "c", "conversations": _turns("What is rain?", "Water falling from clouds.")},
        {"id": "d", "conversations": _turns("What is rain?", "Drops of water.")},
    ]
    path = _write_sharegpt(tmp_path / "d.json", records)
    source = {"kind": "sharegpt", "path": str(path), "name": "d"}
    pool, report = build_pool([source], seed=0)
    assert pool["id"].to_list() == ["d-a", "d-d"]
    assert report["sources"]["d"]["skipped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    first = {"enabled": True, "method": "first_turn"}
    pool, _ = build_pool([source], seed=0, cleaning=CleaningSettings(near_duplicates=first))
    assert pool["id"].to_list() == ["d-a"]
    off = {"enabled": False}
    pool, _ = build_pool([source], seed=0, cleaning=CleaningSettings(near_duplicates=off))
    assert pool["id"].to_list() == ["d-a", "d-b", "d-d"]


def test_near_key_ignores_unicode_form_and_case():
    one = [{"role": "user", "content": "Ｃafé, OK?"}]
    two = [{"role": "user", "content": "café ok"}]
    assert near_key(one, "conversation") == near_key(two, "conversation")


def test_over_long_by_characters_without_a_tokenizer_is_said_in_the_report(tmp_path):
    records = [
        {"id": "s", "conversations": _turns("Short?", "Yes.")},
        {"id": "l", "conversations": _turns("Long?", "word " * 100)},
    ]
    path = _write_sharegpt(tmp_path / "l.json", records)
    source = {"kind": "sharegpt", "path": str(path), "name": "l"}
    pool, report = build_pool([source], seed=0, cleaning=CleaningSettings(max_chars=200))
    assert pool["id"].to_list() == ["l-s"]
    assert report["sources"]["l"]["skipped"] == {"too_long_chars": 1}
    assert "no tokenizer configured" in report["cleaning"]["length_measure"]
    assert pool["tokens"].to_list() == [4]  # word pieces: Short ? Yes .


def test_over_long_by_tokens_of_a_configured_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from codeift.models.tiny import build_tiny

    build_tiny({"architecture": "llama", "corpus_examples": 100, "vocab_size": 400}, tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    records = [
        {"id": "s", "conversations": _turns("Short?", "Yes.")},
        {"id": "l", "conversations": _turns("Long?", "zebra quantum " * 40)},
    ]
    path = _write_sharegpt(tmp_path / "t.json", records)
    cleaning = {"tokenizer": str(tmp_path / "m"), "max_tokens": 60}
    source = {"kind": "sharegpt", "path": str(path), "name": "t"}
    pool, report = build_pool([source], seed=0, cleaning=CleaningSettings(**cleaning))
    assert pool["id"].to_list() == ["t-s"]
    assert report["sources"]["t"]["skipped"] == {"too_long_tokens": 1}
    expected = sum(
        len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ["Short?", "Yes."]
    )
    assert pool["tokens"].to_list() == [expected]
    assert report["cleaning"]["length_measure"] == f"tokenizer:{tmp_path / 'm'}"


def test_max_tokens_without_a_tokenizer_is_refused():
    with pytest.raises(ConfigError, match="needs ift.cleaning.tokenizer"):
        CleaningSettings(max_tokens=9)


# --------------------------------------------------------------------------- real data


def _self_instruct_source() -> dict:
    path = shared_file("self_instruct_seed_tasks.jsonl")
    return {"kind": "alpaca", "name": "si", "path": str(path), "fields": SELF_INSTRUCT_FIELDS}


def test_pool_from_the_real_files_in_shared_data():
    alpaca = {"kind": "alpaca", "name": "ca", "path": str(shared_file("code_alpaca_2k.json"))}
    pool, report = build_pool([alpaca, _self_instruct_source()], seed=0)
    for name, records in (("ca", 2017), ("si", 175)):
        source = report["sources"][name]
        assert source["kept"] + sum(source["skipped"].values()) == records
    assert report["sources"]["si"]["kept"] == 175
    assert pool.height == report["size"] > 2100
    assert pool["id"].n_unique() == pool.height


def _measured_labels() -> tuple[list[bool], list[bool]]:
    """(truth, predicted is-code) over Code Alpaca (all code) and the hand-labelled seeds."""
    hand = set(json.loads((FIXTURES / "self_instruct_code_ids.json").read_text())["code_ids"])
    alpaca = {"kind": "alpaca", "name": "ca", "path": str(shared_file("code_alpaca_2k.json"))}
    truth, predicted = [], []
    for source, is_code in ((alpaca, lambda _: True), (_self_instruct_source(), hand.__contains__)):
        skips_off = {"near_duplicates": {"enabled": False}}
        pool, _ = build_pool([source], seed=0, cleaning=CleaningSettings(**skips_off))
        for record_id, messages in zip(pool["id"], pool["messages"], strict=True):
            truth.append(is_code(record_id.split("-", 1)[1]))
            predicted.append(classify_code(messages)[0] == "code")
    return truth, predicted


def test_heuristic_classifier_precision_and_recall_on_real_data():
    truth, predicted = _measured_labels()
    pairs = list(zip(truth, predicted, strict=True))
    tp = sum(t and p for t, p in pairs)
    precision = tp / sum(predicted)
    recall = tp / sum(truth)
    # Figures in docs/ift-data.md, "Classifier accuracy"; a classifier change that moves them must
    # update it.
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert (round(precision, 3), round(recall, 3)) == (0.998, 0.957)
    # The pooled precision is mostly Code Alpaca's; on the 175 seeds alone: 13/13 coding tasks
    # found, 4 of 162 general ones flagged.
    seeds = pairs[-175:]
    assert sum(t and p for t, p in seeds) == 13 and sum(p and not t for t, p in seeds) == 4


# --------------------------------------------------------------------------- labellers


def test_heuristic_labels_record_their_method_and_no_raw_answer(labelled_pool):
    assert set(labelled_pool["label_method"]) == {"heuristic"}
    assert labelled_pool["label_raw"].null_count() == labelled_pool.height


def test_unknown_labeller_is_refused(labelled_pool):
    with pytest.raises(IFTError, match="ift.labeller.method 'coin'"):
        label_pool(labelled_pool.head(2), LabellerSettings(method="coin"))


def test_judge_prompt_and_answer_parsing():
    messages = [{"role": "user", "content": "x" * 50}, {"role": "assistant", "content": "y"}]
    prompt = judge_prompt(messages, "Label this:\n{conversation}\nEnd", max_chars=20)
    assert prompt == "Label this:\nUSER: " + "x" * 14 + "\n[...]\nEnd"
    assert parse_answer(" Code\n") == "code"
    with pytest.raises(ValueError, match="not one of"):
        parse_answer("maybe")


@pytest.mark.slow
def test_llm_judge_answers_only_with_a_label_even_untrained(tmp_path, labelled_pool):
    from codeift.models.tiny import build_tiny

    build_tiny({"architecture": "llama", "corpus_examples": 100}, tmp_path / "judge")
    for key, value in {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }.items():
        os.environ.setdefault(key, value)
    sample = labelled_pool.head(6)
    labeller = {
        "method": "llm_judge",
        "model": str(tmp_path / "judge"),
        "batch_size": 4,
        "max_chars": 300,
        "max_model_len": 512,
        "dtype": "float32",
        "threads": 1,
    }
    judged = label_pool(sample, LabellerSettings(**labeller))
    assert set(judged["label"]) <= {"code", "general"}
    assert judged["label"].to_list() == [raw.strip() for raw in judged["label_raw"]]
    assert set(judged["label_method"]) == {f"llm_judge:{tmp_path / 'judge'}"}


# --------------------------------------------------------------------------- mixes and cards


def test_non_nested_mixes_draw_independently_with_exact_counts(labelled_pool):
    half = build_mix(labelled_pool, 50, total=100, seed=0, settings=MixSettings(nested=False))
    full = build_mix(labelled_pool, 100, total=100, seed=0, settings=MixSettings(nested=False))
    assert (half["label"] == "code").sum() == 50 and full.height == 100
    half_code = set(half.filter(pl.col("label") == "code")["id"])
    assert not half_code <= set(full["id"])
    assert half.equals(
        build_mix(labelled_pool, 50, total=100, seed=0, settings=MixSettings(nested=False))
    )


def test_token_matched_mixes_hold_equal_tokens_with_the_code_share_in_tokens(labelled_pool):
    budget = token_budget(labelled_pool, 100)
    longest = int(labelled_pool["tokens"].max())
    counts = {}
    for proportion in (0, 50, 100):
        mix = build_mix(
            labelled_pool, proportion, total=100, seed=0, settings=MixSettings(match="tokens")
        )
        tokens = mix["tokens"].to_list()
        code = sum(t for t, lab in zip(tokens, mix["label"], strict=True) if lab == "code")
        assert abs(sum(tokens) - budget) <= longest
        assert abs(code - proportion * budget / 100) <= longest
        counts[proportion] = mix.height
    # Coding answers are longer, so the code arm holds fewer examples for the same tokens.
    assert counts[100] < counts[0]
    nested_half = build_mix(
        labelled_pool, 50, total=100, seed=0, settings=MixSettings(match="tokens")
    )
    full = build_mix(labelled_pool, 100, total=100, seed=0, settings=MixSettings(match="tokens"))
    assert set(nested_half.filter(pl.col("label") == "code")["id"]) <= set(full["id"])


def test_token_budget_beyond_the_pool_is_refused(labelled_pool):
    with pytest.raises(IFTError, match="tokens of code examples"):
        build_mix(
            labelled_pool,
            100,
            total=10,
            seed=0,
            settings=MixSettings(match="tokens", total_tokens=10**9),
        )


def test_card_has_token_statistics_sources_and_cleaning_counts(tmp_path, labelled_pool):
    pool, report = build_pool([{"kind": "generator", "n_general": 40, "n_code": 40}], seed=0)
    mix = build_mix(label_pool(pool), 50, total=20, seed=0)
    card = mix_card(mix, 50, report, MixSettings())
    assert card["labels"] == {"code": 10, "general": 10}
    assert card["tokens"]["total"] == sum(mix["tokens"])
    by_label = card["tokens"]["by_label"]
    assert by_label["code"]["total"] + by_label["general"]["total"] == card["tokens"]["total"]
    assert 0 < card["code_token_share"] < 1
    assert card["sources"] == report["sources"] and card["cleaning"] == report["cleaning"]["counts"]
    assert card["label_methods"] == {"heuristic": 20}
    again = mix_card(build_mix(label_pool(pool), 50, total=20, seed=0), 50, report)
    assert again["content_hash"] == card["content_hash"]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("ift", "message"),
    [
        ({"cleaning": {"max_tokens": 100}}, "ift.cleaning.max_tokens"),
        ({"labeller": {"method": "llm_judge"}}, "ift.labeller.model"),
        ({"labeller": {"method": "oracle"}}, "ift.labeller.method"),
        ({"labeller": {"method": "heuristic", "prompt": "no slot"}}, "ift.labeller.prompt"),
        ({"mix": {"match": "bytes"}}, "ift.mix.match"),
        ({"mix": {"total_tokens": 5}}, "ift.mix.total_tokens"),
        ({"cleaning": {"near_duplicates": {"method": "minhash"}}}, "near_duplicates.method"),
    ],
)
def test_bad_ift_settings_name_their_key(config, ift, message):
    config["ift"].update(ift)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(config)


def test_the_shipped_configs_validate_their_ift_sections():
    from codeift.config import load_yaml

    for name in ("config.yaml", "tiny.yaml", "real.yaml", "paper.yaml"):
        validate_config(load_yaml(REPO / "config" / name))


# --------------------------------------------------------------------------- benchmark


def test_benchmark_streams_a_sharegpt_file_and_reports_throughput_and_memory(tmp_path):
    from codeift.data.bench import markdown, run_benchmark

    result = run_benchmark(600, seed=0, workdir=tmp_path)
    skipped = sum(v for k, v in result["cleaning"].items() if k != "html_stripped")
    assert result["pool_size"] + skipped == 600
    assert result["cleaning"]["html_stripped"] > 0 and result["cleaning"]["exact_duplicate"] > 0
    assert sum(result["labels"].values()) == result["pool_size"]
    assert result["end_to_end_conversations_per_s"] > 0
    assert result["peak_rss_mib"] >= result["peak_rss_mib_before"] > 0
    assert "| peak RSS |" in markdown(result)


def test_pool_is_the_same_whatever_the_arrow_chunk_size(monkeypatch):
    import codeift.data.pool as ift

    source = [{"kind": "generator", "n_general": 60, "n_code": 60}]
    whole, _ = build_pool(source, seed=0)
    monkeypatch.setattr(ift, "FRAME_ROWS", 7)
    chunked, report = build_pool(source, seed=0)
    assert chunked.equals(whole) and report["size"] == whole.height


def test_cli_passes_cleaning_labeller_and_mix_settings_into_pool_and_card(tmp_path):
    from codeift.cli import main

    sources = json.dumps([{"kind": "generator", "name": "g", "n_general": 80, "n_code": 80}])
    pool, report = tmp_path / "pool.parquet", tmp_path / "pool.report.json"
    main(
        [
            "build-pool",
            *("--sources", sources, "--seed", "0", "--out", str(pool), "--report", str(report)),
            *("--cleaning", json.dumps({"max_chars": 240, "near_duplicates": {"enabled": False}})),
            *("--labeller", json.dumps({"method": "heuristic"})),
        ]
    )
    pool_report = json.loads(report.read_text())
    assert pool_report["cleaning"]["counts"].get("too_long_chars", 0) > 0
    assert pool_report["labeller"] == {"method": "heuristic"}
    card_path = tmp_path / "code50.card.json"
    main(
        [
            "build-mix",
            *("--pool", str(pool), "--pool-report", str(report), "--proportion", "50"),
            *("--total", "20", "--seed", "0", "--out", str(tmp_path / "code50.parquet")),
            *("--card", str(card_path), "--mix", json.dumps({"nested": False, "match": "tokens"})),
        ]
    )
    card = json.loads(card_path.read_text())
    assert card["mix_settings"] == {"nested": False, "match": "tokens"}
    assert 0.4 < card["code_token_share"] < 0.6
    assert card["cleaning"] == pool_report["cleaning"]["counts"]
    # The generator's planted effects travel with the data to the analysis.
    assert card["planted"]["list_reversal"] == "gain"
    assert card["planted"]["babi_deduction"] == "lose"
    assert card["planted"]["gsm8k"] == "none"
    # ... and the view each is judged in, beside its direction.
    assert card["planted_views"]["list_reversal"] == "text_or_program"
    assert card["planted_views"]["babi_deduction"] == "text"
    assert card["planted_views"]["gsm8k"] == "text"
    from codeift.analysis.controls import planted_from_cards, planted_views_from_cards

    assert planted_from_cards([card_path]) == card["planted"]
    assert planted_views_from_cards([card_path]) == card["planted_views"]


def test_a_pool_from_files_claims_no_planted_effect(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(5)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    _, report = build_pool([{"kind": "jsonl", "path": str(path)}], seed=0)
    assert "planted" not in report
