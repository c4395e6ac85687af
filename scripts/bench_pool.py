"""Benchmark the IFT pool build on ShareGPT-shaped data: `python scripts/bench_pool.py`.

Writes bench_pool.json and bench_pool.md under --out (default results/bench); the logic is in
codeift.data.bench.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from codeift.data.bench import markdown, run_benchmark
from codeift.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="conversations to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = run_benchmark(args.n, args.seed, workdir)
    out = Path(args.out)
    write_json(result, out / "bench_pool.json")
    write_text(markdown(result), out / "bench_pool.md")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
