"""The GPU smoke test's config: the real-model study (config/real.yaml), reduced to run on one GPU
in under 10 minutes, with the GPU's own precision: bf16 SFT, vLLM on CUDA in bf16, scoring.

No GPU has been lent to this project's sessions, so none of the GPU path has run yet; this is
what `scripts/gpu_smoke.sh` runs the moment one is there. Its benchmark (scripts/bench_study.py
--gpu) reports SFT tokens/s, model FLOPs utilisation against the GPU's bf16 matmul rate, and
vLLM's generated tokens/s, in the study benchmark's format.

  python -m codeift.gpu_smoke --configfile config/real.yaml --out results-gpu-smoke/smoke.yaml
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from codeift.config import load_yaml, validate_config
from codeift.errors import CodeiftError, SmokeError

RESULTS = "results-gpu-smoke"
# Two arms and the base per backbone (6 models: 6 engine loads), one pass over the mix.
PROPORTIONS = [0, 100]
SFT_STEPS = 60
ITEMS_PER_TASK = 10


def reduced_config(real: dict[str, Any], bwrap: bool, results: str = RESULTS) -> dict[str, Any]:
    """The real study made small and GPU-shaped. One GPU holds one engine at a time (engines
    share it one after another: max_alive 1, each taking at most half its memory), and the
    score jobs run programs in the jail where bwrap is installed, else not at all (said in
    the log: a bare GPU node seldom has bubblewrap)."""
    config = copy.deepcopy(real)
    config["results"] = results
    # Full fine-tuning only: a LoRA backbone (its own train.peft) repeats its base model's engine
    # loads and would push the run past its ten minutes.
    config["backbones"] = {
        name: spec
        for name, spec in config["backbones"].items()
        if not (spec.get("train") or {}).get("peft")
    }
    config["proportions"] = PROPORTIONS
    config.pop("replicates", None)
    config["tasks"] = {
        name: {**entry, "size": min(int(entry.get("size", ITEMS_PER_TASK)), ITEMS_PER_TASK)}
        for name, entry in config["tasks"].items()
    }
    planted = (config.get("controls") or {}).get("planted")
    if planted:
        config["controls"]["planted"] = {t: v for t, v in planted.items() if t in config["tasks"]}
    config["train"] = {**config.get("train", {}), "dtype": "bfloat16", "max_steps": SFT_STEPS}
    config["inference"] = {
        **config.get("inference", {}),
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.45,
        "enforce_eager": True,  # seconds to start; graph capture would cost more than it saves
    }
    for spec in config["backbones"].values():
        spec.get("inference", {}).pop("dtype", None)
        spec.get("train", {}).pop("dtype", None)
    config["engines"] = {"idle_seconds": 60, "max_alive": 1}
    config["scoring"] = {"sandbox": "jail" if bwrap else "jail_if_available"}
    validate_config(config)
    return config


def require_gpu() -> str:
    """The GPU's name, or SmokeError saying why torch sees none."""
    try:
        import torch
    except ImportError as error:
        raise SmokeError(f"torch does not import: {error}") from error
    if not torch.cuda.is_available():
        raise SmokeError(
            "no CUDA GPU visible to torch (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): the GPU smoke test needs "
            "one GPU, a CUDA build of torch and the official vllm"
        )
    return str(torch.cuda.get_device_name(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configfile", default="config/real.yaml")
    parser.add_argument("--out", default=f"{RESULTS}/smoke.yaml")
    parser.add_argument("--results", default=RESULTS)
    parser.add_argument(
        "--no-gpu-check", action="store_true", help="write the config without a GPU (tests)"
    )
    args = parser.parse_args(argv)
    try:
        gpu = "not checked" if args.no_gpu_check else require_gpu()
        bwrap = shutil.which("bwrap") is not None
        config = reduced_config(load_yaml(args.configfile), bwrap, args.results)
    except CodeiftError as error:
        print(f"gpu_smoke: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"gpu_smoke: GPU {gpu}; config {out}; scoring.sandbox {config['scoring']['sandbox']}")
    if not bwrap:
        print("gpu_smoke: no bwrap here: programs are not run (program_status not_run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
