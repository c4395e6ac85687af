"""Measure the program jail's cost per program, before and after a change, in one alternating run.

    python scripts/bench_jail_cost.py --before /tmp/jail-base --after . --out docs/bench

`--before` and `--after` are source trees (a scratch `git worktree add` of the base commit, and
this one). Writes jail-cost.json and jail-cost.md under --out; the logic is in
codeift.score.jail_cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codeift.io import write_json, write_text
from codeift.score.jail_cost import markdown, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="source tree before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="source tree after it")
    parser.add_argument("--programs", type=int, default=50, help="programs per tree")
    parser.add_argument("--rounds", type=int, default=5, help="alternating batches per tree")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    result = measure(trees, args.programs, args.rounds)
    write_json(result, args.out / "jail-cost.json")
    write_text(markdown(result), args.out / "jail-cost.md")
    print(json.dumps({name: tree["median_ms"] for name, tree in result["trees"].items()}))


if __name__ == "__main__":
    main()
