"""The study ends in one HTML report: a real Snakemake run, then `snakemake --report`."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from codeift import study
from tests.conftest import REPO
from tests.test_workflow import reduced_config, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report")
    config = reduced_config(workdir / "results", engine="hf")
    config["analysis"] = {"bootstrap_samples": 200, "alpha": 0.05, "seed": 1}
    snakemake(workdir, config)
    report = workdir / "report.html"
    snakemake(workdir, config, "--report", str(report))
    return Path(config["results"]), report


def _caption_phrase(name: str) -> str:
    """The first few words of a figure's caption, as the rendered report shows them."""
    words = (REPO / "workflow" / "report" / f"{name}.rst").read_text().split()
    return " ".join(word for word in words[:4] if "`" not in word)


def test_report_contains_every_figure_with_its_caption(report_run):
    _, report = report_run
    html = report.read_text(errors="replace")
    assert len(html) > 100_000  # the figures are embedded, not linked
    for name in study.FIGURES:
        assert f"{name}.png" in html, name
        assert _caption_phrase(name) in html, name


def test_run_writes_evidence_tables_and_summary(report_run):
    results, _ = report_run
    summary = (results / "summary" / "summary.md").read_text()
    for heading in ("Change against code0", "Consistency across backbones", "Best coding share"):
        assert f"## {heading}" in summary
    assert "200 resamples, seed 1" in summary
    comparisons = pl.read_csv(results / "summary" / "comparisons.csv")
    # one backbone, code100 vs code0: 2 tasks + 2 domains + overall
    assert comparisons.height == 5
    assert set(comparisons["test"]) == {"mcnemar_exact", "paired_bootstrap"}
    modes = pl.read_csv(results / "summary" / "reasoning_mode.csv")
    shares = modes.group_by("variant").agg(pl.col("share").sum())["share"].to_list()
    assert shares == pytest.approx([1.0] * len(shares))
