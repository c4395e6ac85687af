"""What `snakemake --executor slurm ...` would submit now, by the SLURM executor plugin's own code.

Run as a script by tests/test_site_profile.py, in its own process, with fake `sbatch`,
`sacctmgr` and `scontrol` first on PATH (the test writes them: `sbatch` records its argv and
answers a job id). Snakemake parses the given command line (profiles included) and builds its
DAG and job groups exactly as for a real run with the slurm executor (so group resources are
those of a submitted group, not of a local dry run); the scheduler's loop is replaced by one
pass that hands every job or group to the plugin's `Executor.run_job`, which builds and runs
the sbatch line. Nothing waits for a job, and nothing is submitted to a real cluster.

    python tests/slurm_preview.py OUT.json -- SNAKEMAKE ARGS...

OUT.json: the jobs to run (outside the login node), and one entry per submission: its name,
whether it is a group, its jobs (rule and wildcards), and the job id the fake sbatch answered
(the test matches it with the argv the fake recorded).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def preview(out: Path, snakemake_args: list[str]) -> int:
    from snakemake import cli
    from snakemake.scheduling.job_scheduler import JobScheduler

    submitted: list[dict] = []
    errors: list[str] = []
    needrun: list = []

    def schedule(scheduler: JobScheduler) -> bool:
        executor = scheduler._executor
        # The plugin reports to the scheduler's callbacks; here it reports to us.
        executor.report_job_submission = lambda info, **_: submitted.append(
            {"external_jobid": info.external_jobid, "unit": info.job}
        )
        executor.report_job_error = lambda info, msg=None, **_: errors.append(str(msg))
        dag = scheduler.workflow.dag
        for unit in dag.get_jobs_or_groups():
            if unit.is_local or not any(dag.needrun(job) for job in _jobs(unit)):
                continue
            executor.run_job(unit)
        needrun.extend(job for job in dag.needrun_jobs() if not job.is_local)
        executor.wait = False  # the status thread ends at its next look; nothing to wait on
        return True

    JobScheduler.schedule = schedule
    time.sleep = lambda seconds: None  # run_job pauses 5 s before each sbatch
    parser, args = cli.parse_args(["--no-hooks", *snakemake_args])
    ok = cli.args_to_api(args, parser)
    entries = [
        {
            "name": entry["unit"].groupid if entry["unit"].is_group() else entry["unit"].name,
            "group": entry["unit"].is_group(),
            "jobs": [
                {"rule": job.rule.name, "wildcards": dict(job.wildcards_dict)}
                for job in _jobs(entry["unit"])
            ],
            "external_jobid": entry["external_jobid"],
        }
        for entry in submitted
    ]
    report = {"ok": bool(ok), "errors": errors, "needrun": len(needrun), "submissions": entries}
    out.write_text(json.dumps(report))
    return 0 if ok and not errors else 1


def _jobs(unit) -> list:
    return list(unit.jobs) if unit.is_group() else [unit]


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(preview(Path(sys.argv[1]), sys.argv[separator + 1 :]))
