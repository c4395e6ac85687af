"""The study benchmark: `python scripts/bench_study.py` runs a config and says where the time went.

Runs `snakemake --cores N` on the config (default: the embedded default) unless --log names the
Snakemake log of a finished run, then writes bench_study.json and bench_study.md under --out:
wall time, the critical path and the job-seconds per core (the two floors of the wall time),
engine loads against models, SFT and generation rates against a float32 matmul probe of this
machine (the roofline), or with --gpu against the GPU's bf16 matmul rate (model FLOPs
utilisation; scripts/gpu_smoke.sh). The logic is in codeift.bench.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from codeift.bench import gpu_roof_probe, markdown, roof_probe, study_benchmark
from codeift.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--configfile", nargs="+", default=["config/config.yaml"], help="merged in order"
    )
    parser.add_argument(
        "--gpu", action="store_true", help="the roof is the GPU's bf16 matmul rate: MFU"
    )
    parser.add_argument("--results", default="results", help="the config's results folder")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--log", help="a finished run's .snakemake/log/*.snakemake.log")
    parser.add_argument("--out", default=None, help="default: <results>/bench")
    parser.add_argument("snakemake_args", nargs="*", help="passed to snakemake (after --)")
    args = parser.parse_args()
    wall = roof_before = None
    if args.log:
        log = Path(args.log)
    else:
        roof_before = gpu_roof_probe(args.cores) if args.gpu else roof_probe(args.cores)
        before = set(Path(".snakemake/log").glob("*.snakemake.log"))
        started = time.time()
        command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
        command += ["--configfile", *args.configfile, *args.snakemake_args]
        subprocess.run(command, check=True)
        wall = time.time() - started
        (log,) = set(Path(".snakemake/log").glob("*.snakemake.log")) - before
    kind = "gpu" if args.gpu else "cpu"
    result = study_benchmark(log, Path(args.results), args.cores, wall, roof_before, kind)
    out = Path(args.out or Path(args.results) / "bench")
    write_json(result, out / "bench_study.json")
    write_text(markdown(result), out / "bench_study.md")
    print(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sft", "generation")}, indent=1))


if __name__ == "__main__":
    main()
