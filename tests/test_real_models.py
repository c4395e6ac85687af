"""End to end on a real pretrained LM: config/real.yaml reduced to SmolLM2-135M-Instruct, two
tasks and one SFT step, run by Snakemake for real (prepare, SFT with TRL, vLLM generation,
scoring in the jail, aggregate).

What it asserts was measured first on the full real-model study (docs/real-study/README.md, "Sizing,
run and outcome"): the untuned instruct model answers in the requested form, tuned replies decode
without the chat template's markers, the mix's assistant masks cover exactly the assistant turns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import snakemake

pytestmark = pytest.mark.slow

# The chat template's role and end-of-turn markers: none may reach a decoded reply.
MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|assistant|>", "<|user|>")


def reduced_real_config(results: Path, model: Path) -> dict:
    """config/real.yaml with one backbone (the session's converted SmolLM2 folder, so the
    suite converts it once), two tasks of six items, base + code100, one SFT step."""
    config = yaml.safe_load((REPO / "config" / "real.yaml").read_text())
    backbone = config["backbones"]["smollm2-135m-instruct"]
    backbone["source"] = {"path": str(model)}
    config["backbones"] = {"smollm2-135m-instruct": backbone}
    config["results"] = str(results)
    config["proportions"] = [100]
    del config["replicates"]
    config["tasks"] = {
        "list_reversal": {"domain": "symbolic", "size": 6},
        "coin_flip": {"domain": "symbolic", "size": 6},
    }
    config["ift"]["total"] = 16
    config["ift"]["sources"][0].update(n_general=40, n_code=40)
    config["train"].update(max_steps=1, per_device_train_batch_size=4, threads=2)
    config["inference"].update(max_new_tokens=48, threads=2)
    config["controls"] = {"planted": {}}
    return config


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, smollm2):
    workdir = tmp_path_factory.mktemp("real")
    config = reduced_real_config(workdir / "results", smollm2)
    snakemake(workdir, config)
    return workdir / "results", config


def _frame(results: Path, kind: str, variant: str) -> pl.DataFrame:
    folder = results / kind / "smollm2-135m-instruct" / variant
    return pl.concat([pl.read_parquet(path) for path in sorted(folder.glob("*.parquet"))])


def test_the_untuned_instruct_model_answers_in_the_form_the_prompt_asks(real_run):
    """SmolLM2-135M solves few items (docs/real-study/README.md, "Sizing, run and outcome"), but an
    instruct model on its own template follows the requested answer form, which a broken template or
    tokenizer would not: measured in the study, 10 of 10 list reversals began "The answer is"
    and 9 of 10 coin-flip replies were read as yes or no."""
    results, _ = real_run
    scores = _frame(results, "scores", "base")
    reversal = scores.filter(pl.col("task") == "list_reversal")
    coin = scores.filter(pl.col("task") == "coin_flip")
    assert reversal.height == coin.height == 6
    assert sum(r.startswith("The answer is") for r in reversal["response"]) >= 5, reversal[
        "response"
    ]
    assert coin["extracted"].is_in(["yes", "no"]).sum() >= 4, coin["response"].to_list()


def test_replies_decode_without_template_markers_and_prompts_match(real_run):
    results, _ = real_run
    base = _frame(results, "generations", "base").sort("task", "id")
    tuned = _frame(results, "generations", "code100").sort("task", "id")
    for frame in (base, tuned):
        assert set(frame["engine"]) == {"vllm"}
        for response in frame["response"]:
            assert not any(marker in response for marker in MARKERS), response
        assert (frame["n_response_tokens"] > 0).all()
    # The same prompt bytes under the same template: equal prompt token counts item by item.
    assert base["n_prompt_tokens"].to_list() == tuned["n_prompt_tokens"].to_list()
    assert min(base["n_prompt_tokens"]) > 20  # ChatML with its default system line


def test_the_mix_trains_on_assistant_tokens_only(real_run):
    from transformers import AutoTokenizer

    results, _ = real_run
    tokenizer = AutoTokenizer.from_pretrained(results / "models" / "smollm2-135m-instruct" / "base")
    mix = pl.read_parquet(results / "ift" / "mixes" / "code100.parquet")
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for messages in mix["messages"].to_list():
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = encoded["input_ids"], encoded["assistant_masks"]
        kept = [token for token, on in zip(ids, mask, strict=True) if on]
        assert kept and kept[-1] == end_of_turn
        answer = next(m["content"] for m in messages if m["role"] == "assistant")
        assert tokenizer.decode(kept[:-1]).strip() == answer.strip()
    record = json.loads(
        (
            results / "models" / "smollm2-135m-instruct" / "code100" / "codeift_training.json"
        ).read_text()
    )
    assert record["global_step"] == 1 and math.isfinite(record["train_loss"])


def test_the_aggregate_reports_both_variants(real_run):
    results, _ = real_run
    task = pl.read_csv(results / "summary" / "task.csv")
    assert set(task["variant"]) == {"base", "code100"}
    assert (results / "summary" / "summary.md").read_text().strip()
