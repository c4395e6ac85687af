"""Print how many SLURM jobs a study submits: `python scripts/count_slurm_jobs.py [--configfile X]`.

Runs `snakemake -n --profile slurm` from the repository root (nothing is submitted) and counts
group jobs once each. Extra arguments go to snakemake.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codeift.cluster import count_submissions

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    dry_run = subprocess.run(
        ["snakemake", "-n", "--profile", "slurm", "--forceall", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if dry_run.returncode != 0:
        print(dry_run.stdout[-3000:], dry_run.stderr[-3000:], file=sys.stderr)
        return dry_run.returncode
    print(json.dumps(count_submissions(dry_run.stdout + dry_run.stderr), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
