"""The GPU smoke test (scripts/gpu_smoke.sh) without a GPU: it refuses clearly, and its reduced
real-model config validates and plans the study on GPU precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codeift.config import load_yaml
from codeift.gpu_smoke import PROPORTIONS, SFT_STEPS, reduced_config
from tests.conftest import REPO

BIN = Path(sys.executable).parent
REAL = load_yaml(REPO / "config" / "real.yaml")


def test_without_a_gpu_the_script_refuses_before_any_job(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env["RESULTS"] = str(tmp_path / "results")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_smoke.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA GPU visible to torch" in result.stderr
    assert not (tmp_path / "results").exists()


def test_the_reduced_config_is_the_real_study_on_gpu_precision(tmp_path):
    config = reduced_config(REAL, bwrap=True, results=str(tmp_path))
    full_tuning = {
        n for n, spec in REAL["backbones"].items() if not spec.get("train", {}).get("peft")
    }
    assert set(config["backbones"]) == full_tuning and len(full_tuning) == 2
    assert set(config["tasks"]) == set(REAL["tasks"])
    assert config["proportions"] == PROPORTIONS and "replicates" not in config
    assert config["train"]["dtype"] == "bfloat16" and config["train"]["max_steps"] == SFT_STEPS
    assert config["inference"]["dtype"] == "bfloat16"
    assert config["engines"]["max_alive"] == 1
    assert config["scoring"]["sandbox"] == "jail"
    assert reduced_config(REAL, bwrap=False)["scoring"]["sandbox"] == "jail_if_available"
    assert REAL["train"]["dtype"] == "auto"  # the real config itself is left alone


@pytest.mark.slow
def test_the_reduced_config_dry_runs_with_one_gpu_job_per_model(tmp_path):
    """Snakemake plans the whole reduced study from the written config: 2 backbones x 2 arms of
    SFT, 2 x 3 models x 12 tasks of generation and scoring; SFT params carry bf16."""
    config = tmp_path / "smoke.yaml"
    written = subprocess.run(
        [sys.executable, "-m", "codeift.gpu_smoke", "--no-gpu-check", "--out", str(config),
         "--results", str(tmp_path / "results")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert yaml.safe_load(config.read_text())["train"]["dtype"] == "bfloat16"
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "-p", "--cores", "8", "--configfile", str(config),
         "--resources", "gpu=1", "engine_slots=1"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = {
        parts[0]: int(parts[1])
        for parts in (line.split() for line in result.stdout.splitlines())
        if len(parts) == 2 and parts[1].isdigit()
    }
    assert table["sft"] == 4 and table["generate"] == 72 and table["score"] == 72
    sft_settings = [
        json.loads(line.split("--settings ", 1)[1].split(" --launch", 1)[0].strip("'"))
        for line in result.stdout.splitlines()
        if "codeift sft" in line
    ]
    assert sft_settings and {s["dtype"] for s in sft_settings} == {"bfloat16"}
