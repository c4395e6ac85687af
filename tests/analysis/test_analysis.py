"""Analysis tables and figures on synthetic scores with planted accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from codeift import study
from codeift.analysis import aggregate, figures, load, markdown, tables
from codeift.io import write_parquet

# Task names are chosen so alphabetical order differs from the required domain order.
DOMAINS = {"zeta_symbol": "symbolic", "alpha_logic": "logical", "beta_logic": "logical"}
# beta_logic has twice the examples, so macro and micro averages differ.
SIZES = {"zeta_symbol": 10, "alpha_logic": 10, "beta_logic": 20}
# Correct answers per (backbone, variant) for zeta_symbol, alpha_logic, beta_logic.
CORRECT = {
    ("b1", "base"): (3, 4, 10),
    ("b1", "code0"): (5, 5, 12),
    ("b1", "code50"): (7, 6, 12),
    ("b1", "code100"): (9, 4, 10),
    ("a2", "base"): (2, 2, 4),
    ("a2", "code0"): (4, 4, 8),
    ("a2", "code50"): (5, 6, 14),
    ("a2", "code100"): (6, 8, 6),
}
MISSING = 2  # the last two examples of every task have no extracted answer


def make_scores(correct: dict[tuple[str, str], tuple[int, ...]] = CORRECT) -> pl.DataFrame:
    """Score rows in the contract's schema: the first k examples of a task are correct."""
    rows = []
    for (backbone, variant), counts in correct.items():
        proportion = study.variant_proportion(variant)
        for task, k in zip(DOMAINS, counts, strict=True):
            size = SIZES[task]
            for index in range(size):
                rows.append(
                    {
                        "id": f"{task}-{index}",
                        "task": task,
                        "domain": DOMAINS[task],
                        "answer_type": "text",
                        "answer": "yes",
                        "response": "...",
                        "extracted": None if index >= size - MISSING else "yes",
                        "method": "regex",
                        "missing_reason": "no_answer" if index >= size - MISSING else None,
                        "correct": index < k,
                        "backbone": backbone,
                        "family": "llama" if backbone == "b1" else "qwen",
                        "size_label": "7B",
                        "variant": variant,
                        "proportion": proportion,
                        "engine": "vllm" if variant != "base" else "hf",
                        "model_path": f"models/{backbone}/{variant}",
                        "data_hash": "abc",
                    }
                )
    schema = {"extracted": pl.Utf8, "missing_reason": pl.Utf8, "proportion": pl.Int64}
    return pl.DataFrame(rows, schema_overrides=schema)


def cell(table: pl.DataFrame, column: str, **keys: str) -> object:
    """The single value of `column` in the row matching keys (fails if not exactly one row)."""
    matched = table.filter(pl.all_horizontal(pl.col(k) == v for k, v in keys.items()))
    assert matched.height == 1, (keys, matched)
    return matched[column][0]


def acc(backbone: str, variant: str, task: str) -> float:
    return CORRECT[(backbone, variant)][list(DOMAINS).index(task)] / SIZES[task]


def test_task_table_counts_accuracy_and_deltas() -> None:
    table = tables.task_table(make_scores())
    assert table.height == 2 * 4 * 3
    row = table.filter(
        (pl.col("backbone") == "b1")
        & (pl.col("variant") == "code50")
        & (pl.col("task") == "beta_logic")
    ).row(0, named=True)
    assert row["n"] == 20 and row["n_correct"] == 12 and row["n_missing"] == 2
    assert row["accuracy"] == pytest.approx(0.6)
    assert row["delta_vs_code0"] == pytest.approx(0.0)
    assert row["delta_vs_base"] == pytest.approx(0.1)
    assert row["domain"] == "logical" and row["proportion"] == 50 and row["family"] == "llama"
    for (backbone, variant), _ in CORRECT.items():
        for task in DOMAINS:
            keys = {"backbone": backbone, "variant": variant, "task": task}
            assert cell(table, "accuracy", **keys) == pytest.approx(acc(backbone, variant, task))
            expected = acc(backbone, variant, task) - acc(backbone, "code0", task)
            assert cell(table, "delta_vs_code0", **keys) == pytest.approx(expected)


def test_task_table_sort_order() -> None:
    table = tables.task_table(make_scores().sample(fraction=1.0, shuffle=True, seed=3))
    first = table.filter(pl.col("backbone") == "a2")
    assert table["backbone"].to_list()[:12] == ["a2"] * 12
    assert first["variant"].to_list()[::3] == ["base", "code0", "code50", "code100"]
    assert first["task"].to_list()[:3] == ["zeta_symbol", "alpha_logic", "beta_logic"]


def test_domain_table_is_macro_over_tasks() -> None:
    table = tables.domain_table(make_scores())
    assert table.height == 2 * 4 * 2
    logical = {"backbone": "b1", "variant": "code100", "domain": "logical"}
    # (4/10 + 10/20) / 2, not the micro 14/30
    assert cell(table, "accuracy", **logical) == pytest.approx(0.45)
    assert cell(table, "n_tasks", **logical) == 2
    assert cell(table, "n", **logical) == 30
    assert cell(table, "delta_vs_code0", **logical) == pytest.approx(0.45 - 0.55)
    assert cell(table, "delta_vs_base", **logical) == pytest.approx(0.45 - 0.45)
    assert table.filter(pl.col("backbone") == "a2")["domain"].to_list()[:2] == [
        "symbolic",
        "logical",
    ]


def test_overall_table_is_macro_over_tasks() -> None:
    table = tables.overall_table(make_scores())
    assert table["variant"].to_list() == ["base", "code0", "code50", "code100"] * 2
    assert table["backbone"].to_list() == ["a2"] * 4 + ["b1"] * 4
    b1 = {"backbone": "b1", "variant": "code50"}
    assert cell(table, "accuracy", **b1) == pytest.approx((0.7 + 0.6 + 0.6) / 3)
    assert cell(table, "n_tasks", **b1) == 3
    assert cell(table, "delta_vs_code0", **b1) == pytest.approx(0.1)
    assert cell(table, "delta_vs_base", **b1) == pytest.approx((0.4 + 0.2 + 0.1) / 3)
    a2 = {"backbone": "a2", "variant": "code100"}
    assert cell(table, "accuracy", **a2) == pytest.approx((0.6 + 0.8 + 0.3) / 3)
    assert cell(table, "delta_vs_base", **a2) == pytest.approx((0.6 + 0.8 + 0.3) / 3 - 0.2)


def test_deltas_null_without_reference_variants() -> None:
    without = {key: value for key, value in CORRECT.items() if key[1] not in {"base", "code0"}}
    scores = make_scores(without)
    for table in (
        tables.task_table(scores),
        tables.domain_table(scores),
        tables.overall_table(scores),
    ):
        assert table["delta_vs_code0"].null_count() == table.height
        assert table["delta_vs_base"].null_count() == table.height
        assert table["accuracy"].null_count() == 0


def test_extra_proportion_sorts_numerically() -> None:
    extra = dict(CORRECT)
    extra[("b1", "code25")] = (6, 6, 6)
    table = tables.overall_table(make_scores(extra))
    assert table.filter(pl.col("backbone") == "b1")["variant"].to_list() == [
        "base",
        "code0",
        "code25",
        "code50",
        "code100",
    ]
    assert cell(table, "proportion", backbone="b1", variant="code25") == 25


def test_unknown_variant_is_rejected() -> None:
    scores = make_scores().with_columns(
        pl.when(pl.col("variant") == "code50")
        .then(pl.lit("codeX"))
        .otherwise("variant")
        .alias("variant")
    )
    with pytest.raises(ValueError, match="codeX"):
        tables.task_table(scores)


def test_variant_colours_are_fixed_per_proportion() -> None:
    assert figures.variant_colour("base") == figures.BASE_COLOUR
    colours = [figures.variant_colour(f"code{p}") for p in (0, 25, 50, 100)]
    assert len(set(colours)) == 4
    assert figures.variant_colour("code50") == colours[2]


def test_load_scores_concatenates_parquet_files(tmp_path: Path) -> None:
    scores = make_scores()
    paths = []
    for (backbone, variant), part in scores.group_by("backbone", "variant", maintain_order=True):
        path = tmp_path / str(backbone) / str(variant) / "all.parquet"
        write_parquet(part, path)
        paths.append(path)
    loaded = load.load_scores(paths)
    assert loaded.height == scores.height
    assert tables.overall_table(loaded).equals(tables.overall_table(scores))


def test_a_replicate_arm_loads_as_a_seed_of_its_arm(tmp_path: Path) -> None:
    first = make_scores({("b1", "code0"): (5, 5, 12), ("b1", "code50"): (7, 6, 12)})
    replicate = make_scores({("b1", "code50r2"): (1, 1, 1)})
    paths = [tmp_path / "first.parquet", tmp_path / "replicate.parquet"]
    write_parquet(first, paths[0])
    write_parquet(replicate, paths[1])
    loaded = load.load_scores(paths)
    seeds = loaded.group_by("variant", "seed").len().sort("variant", "seed").rows()
    assert seeds == [("code0", 0, 40), ("code50", 0, 40), ("code50", 2, 40)]
    assert "seed" not in load.load_scores(paths[:1]).columns  # no replicate: no seed column


def test_arm_and_seed_reads_the_variant_grammar() -> None:
    assert study.arm_and_seed("code50r2") == ("code50", 2)
    assert study.arm_and_seed("code50") == ("code50", 0)
    assert study.arm_and_seed("base") == ("base", 0)
    with pytest.raises(ValueError, match="code50x"):
        study.arm_and_seed("code50x")


def test_load_scores_names_file_and_missing_column(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    bad = tmp_path / "bad.parquet"
    write_parquet(make_scores(), good)
    write_parquet(make_scores().drop("missing_reason"), bad)
    with pytest.raises(ValueError, match=r"bad\.parquet.*missing_reason"):
        load.load_scores([good, bad])


def test_load_scores_rejects_empty_file_and_duplicates(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    write_parquet(make_scores().head(0), empty)
    with pytest.raises(ValueError, match=r"empty\.parquet.*empty"):
        load.load_scores([empty])
    good = tmp_path / "good.parquet"
    write_parquet(make_scores(), good)
    with pytest.raises(ValueError, match="scored twice"):
        load.load_scores([good, good])


def test_write_tables_files_and_markdown(tmp_path: Path) -> None:
    written = aggregate.write_tables(make_scores(), tmp_path)
    names = ["overall", "domain", "task", *study.EVIDENCE_TABLES]
    expected = {f"{n}.{ext}" for n in names for ext in ("csv", "md")} | {"summary.md"}
    assert set(written) == expected
    assert all(path.is_file() for path in written.values())
    csv = pl.read_csv(written["overall.csv"])
    assert csv.height == 8 and "delta_vs_code0" in csv.columns
    overall_md = written["overall.md"].read_text()
    # b1 code50: 63.3 % accuracy, +10.0 pp over code0, +23.3 pp over base
    assert "| b1 | code50 | 3 | 40 | 6 | 63.3 | +10.0 | +23.3 |" in overall_md
    assert "| a2 | base | 3 | 40 | 6 | 20.0 | -20.0 | +0.0 |" in overall_md
    summary = written["summary.md"].read_text()
    assert "a2 (qwen, 7B), b1 (llama, 7B)" in summary
    assert "base, code0, code50, code100" in summary
    assert "hf, vllm" in summary
    assert "| beta_logic | logical | 20 |" in summary
    # best overall: a2 -> code50 (60.0), b1 -> code50 (63.3)
    assert "| a2 | code50 | 60.0 |" in summary
    assert "| b1 | code50 | 63.3 |" in summary
    # per-domain winners: b1 symbolic is code100 (90.0), a2 logical is code50 (65.0)
    assert "| b1 | code100 (90.0) | code50 (60.0) |" in summary
    assert "| a2 | code100 (60.0) | code50 (65.0) |" in summary


def test_summary_reports_ties() -> None:
    tied = dict(CORRECT)
    tied[("a2", "code100")] = CORRECT[("a2", "code50")]
    overall = tables.overall_table(make_scores(tied))
    domain = tables.domain_table(make_scores(tied))
    report = markdown.summary_report(make_scores(tied), overall, domain)
    assert "| a2 | code50 / code100 | 60.0 |" in report


def read_outputs(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_run_analysis_writes_deterministic_outputs(tmp_path: Path) -> None:
    score_path = tmp_path / "scores.parquet"
    write_parquet(make_scores(), score_path)
    outputs = []
    for run in ("one", "two"):
        root = tmp_path / run
        aggregate.run_analysis([score_path], root / "tables", root / "figures")
        outputs.append(read_outputs(root))
    assert outputs[0] == outputs[1]
    for name in ("overall", "domain", "task"):
        png = outputs[0][f"figures/{name}.png"]
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 10_000
        assert b"Software" not in png
    assert {f"tables/{n}.csv" for n in ("overall", "domain", "task")} <= set(outputs[0])
    assert not [name for name in outputs[0] if ".tmp-" in name]


def test_plots_handle_twelve_tasks_and_extra_proportions(tmp_path: Path) -> None:
    domains = ["symbolic", "logical", "arithmetic"]
    rows = []
    for t in range(12):
        for backbone in ("m1", "m2", "m3"):
            for variant in ("base", "code0", "code25", "code50", "code75", "code100"):
                rows.append(
                    {
                        "backbone": backbone,
                        "family": "f",
                        "size_label": "1B",
                        "variant": variant,
                        "proportion": study.variant_proportion(variant),
                        "domain": domains[t % 3],
                        "task": f"task{t:02d}",
                        "accuracy": (t + len(variant) + 8 * int(backbone[1])) / 50,
                    }
                )
    task = pl.DataFrame(rows, schema_overrides={"proportion": pl.Int64})
    figures.plot_task(task, tmp_path / "task.png")
    figures.plot_overall(
        task.group_by(tables.MODEL_KEYS).agg(pl.col("accuracy").mean()), tmp_path / "overall.png"
    )
    domain = task.group_by([*tables.MODEL_KEYS, "domain"]).agg(pl.col("accuracy").mean())
    figures.plot_domain(domain, tmp_path / "domain.png")
    for name in ("task", "overall", "domain"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def _card(proportion: int, code: int, tokens: int, code_tokens: int) -> dict:
    return {
        "proportion": proportion,
        "examples": 10,
        "labels": {"code": code, "general": 10 - code},
        "tokens": {"measure": "tokenizer", "total": tokens},
        "code_token_share": round(code_tokens / tokens, 4),
        "mix_settings": {"nested": True, "match": "examples"},
        "content_hash": f"hash{proportion}",
    }


def test_mix_cards_become_a_table_and_a_summary_section(tmp_path):
    paths = []
    for proportion, code, tokens, code_tokens in ((50, 5, 400, 300), (0, 0, 200, 0)):
        path = tmp_path / f"code{proportion}.card.json"
        path.write_text(json.dumps(_card(proportion, code, tokens, code_tokens)))
        paths.append(path)
    replicate = tmp_path / "code50r1.card.json"
    replicate.write_text(json.dumps({**_card(50, 5, 400, 300), "replicate": 1}))
    assert tables.mix_table([replicate])["variant"].to_list() == ["code50r1"]
    mixes = tables.mix_table(paths)
    assert mixes["variant"].to_list() == ["code0", "code50"]
    assert mixes["code_example_share"].to_list() == [0.0, 0.5]
    assert mixes["code_token_share"].to_list() == [0.0, 0.75]
    written = aggregate.write_tables(make_scores(), tmp_path / "out", mixes=mixes)
    summary = written["summary.md"].read_text()
    assert summary.rstrip().endswith("| code50 | 10 | 50.0 | 400 | 75.0 | examples | yes |")
    assert "## What each arm was trained on" in summary
    assert (tmp_path / "out" / "mixes.csv").read_text().splitlines()[0].startswith("variant,")


def test_a_card_missing_a_field_names_the_file(tmp_path):
    card = _card(0, 0, 10, 0)
    del card["code_token_share"]
    path = tmp_path / "code0.card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"code0.card.json: mix card lacks 'code_token_share'"):
        tables.mix_table([path])
