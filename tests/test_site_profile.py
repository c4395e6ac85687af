"""The shipped SLURM profile with its SITE values filled in as a site would: the sbatch lines.

A site sets what profiles/slurm/config.yaml marks SITE: an account, the CPU default partition,
and a GPU partition and constraint for each rule that asks for GPUs. With those, Snakemake must
build every job group of the paper, real-model and reduced studies, and the SLURM executor
plugin's own code (tests/slurm_preview.py: its Executor.run_job, against a fake `sbatch` that
records its argv) must produce the sbatch lines the study's requests call for: partition,
account, GPUs, one node for multi-GPU jobs, memory, time and CPUs. No group mixes GPU and CPU
jobs (Snakemake refuses to merge their partitions: "Error grouping resources in group").
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codeift.cluster import GENERATE_GROUP, GROUP_SLOTS, SCORE_GROUP
from codeift.config import with_defaults
from codeift.resources import SINGLE_NODE_STAGES, job_request
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
ACCOUNT, CPU_PARTITION, GPU_PARTITION, CONSTRAINT = "lab-account", "cpu", "gpu", "a100|h100"
CONFIGS = {
    "paper": REPO / "config" / "paper.yaml",
    "real": REPO / "config" / "real.yaml",
    "reduced": REPO / ".test" / "config.yaml",
}
# Rule -> the request stage of codeift.resources.
STAGE = {
    "build_pool": "build_pool",
    "build_task": "small",
    "build_mix": "small",
    "prepare_backbone": "prepare",
    "sft": "sft",
    "generate": "generate",
    "score": "small",
    "aggregate": "small",
}

FAKE_SBATCH = """#!/bin/sh
# Records its argv (NUL-separated) and answers a job id, as `sbatch --parsable` does.
n=$(( $(cat "$CODEIFT_FAKE_SLURM/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$CODEIFT_FAKE_SLURM/count"
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$CODEIFT_FAKE_SLURM/sbatch.$n"
cat >/dev/null
echo "$n"
"""


def gpu_rules_in_profile() -> set[str]:
    """The rules the profile's commented SITE example gives the GPU partition."""
    return set(re.findall(r"^#\s+(\w+): \{slurm_partition:", PROFILE.read_text(), re.MULTILINE))


def gpu_rules_of(config: dict) -> set[str]:
    """The rules with a job that asks for GPUs under this study config (by its requests)."""
    rules = set()
    for rule, stage in STAGE.items():
        backbones = sorted(config["backbones"]) if stage in SINGLE_NODE_STAGES else [None]
        if any(job_request(config, stage, backbone)["gpu"] for backbone in backbones):
            rules.add(rule)
    return rules


def site_profile(folder: Path, gpu_rules: set[str]) -> Path:
    """profiles/slurm/config.yaml with every SITE value set, as the profile tells a site to:
    the GPU partition and constraint for the rules that ask for GPUs in the study."""
    text = PROFILE.read_text()
    # Four SITE values, no more: a new one must be filled in here too.
    assert sorted(set(re.findall(r"\bSITE (\d+):", text))) == ["1", "2", "3", "4"]
    profile = yaml.safe_load(text)
    profile["default-resources"].update(slurm_account=ACCOUNT, slurm_partition=CPU_PARTITION)
    # The profile's example names every rule that can ask for a GPU.
    assert gpu_rules <= gpu_rules_in_profile()
    if gpu_rules:
        profile["set-resources"] = {
            rule: {"slurm_partition": GPU_PARTITION, "constraint": CONSTRAINT}
            for rule in sorted(gpu_rules)
        }
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def fake_slurm(folder: Path) -> dict[str, str]:
    """sbatch records, sacctmgr knows the site's account, scontrol states an array limit."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "sbatch": FAKE_SBATCH,
        "sacctmgr": f"#!/bin/sh\necho {ACCOUNT}\n",
        "scontrol": "#!/bin/sh\necho 'MaxArraySize = 1001'\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        "CODEIFT_FAKE_SLURM": str(folder),
    }


def parse_sbatch(argv: list[str]) -> dict[str, str]:
    """sbatch options as name -> value (`--mem 2000`, `--gpus=1` and `-p cpu` alike)."""
    options: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            options[name] = value
        elif arg in ("-A", "-p", "-t", "-C", "-D", "--mem", "--job-name", "--output", "--comment"):
            options[arg] = argv[index + 1]
            index += 1
        else:
            options[arg] = ""
        index += 1
    return options


def study_config(name: str) -> dict:
    return with_defaults(yaml.safe_load(CONFIGS[name].read_text()))


def preview(tmp_path: Path, name: str) -> tuple[dict, list[dict]]:
    """What `snakemake --profile <site> --forceall --configfile <config>` would submit."""
    folder = tmp_path / name
    env = fake_slurm(folder)
    profile = site_profile(folder / "site", gpu_rules_of(study_config(name)))
    out = folder / "preview.json"
    command = [
        *(sys.executable, str(REPO / "tests" / "slurm_preview.py"), str(out), "--"),
        *("--profile", str(profile), "--forceall", "-s", str(REPO / "Snakefile")),
        *("-d", str(folder / "work"), "--configfile", str(CONFIGS[name])),
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and out.exists(), run.stdout[-3000:] + run.stderr[-5000:]
    report = json.loads(out.read_text())
    for submission in report["submissions"]:
        recorded = folder / f"sbatch.{submission['external_jobid']}"
        submission["argv"] = recorded.read_text().split("\0")[:-1]
        submission["sbatch"] = parse_sbatch(submission["argv"])
    return report, report["submissions"]


def expected_request(config: dict, submission: dict) -> dict[str, int]:
    """The request the study's config asks for: a job's own, or for a group (its jobs run one
    after another in the allocation) the largest GPUs, CPUs and memory and the summed time."""
    requests = [
        job_request(config, STAGE[job["rule"]], job["wildcards"].get("backbone"))
        for job in submission["jobs"]
    ]
    return {
        "gpu": max(r["gpu"] for r in requests),
        "cpus_per_task": max(r["cpus_per_task"] for r in requests),
        "mem_mb": max(r["mem_mb"] for r in requests),
        "runtime": sum(r["runtime"] for r in requests),
    }


@pytest.fixture(scope="module")
def previews(tmp_path_factory):
    """Each study's preview, made once for the tests that read it."""
    made: dict[str, tuple[dict, list[dict]]] = {}

    def get(name: str) -> tuple[dict, list[dict]]:
        if name not in made:
            made[name] = preview(tmp_path_factory.mktemp("site"), name)
        return made[name]

    return get


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_site_profile_builds_every_group_and_submits_what_the_study_asks(previews, name):
    config = study_config(name)
    report, submissions = previews(name)
    assert not report["errors"]
    # Every job to run travels in exactly one submission.
    assert sum(len(s["jobs"]) for s in submissions) == report["needrun"] > 0

    gpu_rules = gpu_rules_of(config)
    for submission in submissions:
        sbatch, rules = submission["sbatch"], {job["rule"] for job in submission["jobs"]}
        label = f"{submission['name']} ({len(submission['jobs'])} jobs): {submission['argv']}"
        assert sbatch["-A"] == ACCOUNT, label
        want = expected_request(config, submission)
        gpus = int(sbatch.get("--gpus", 0))
        assert gpus == want["gpu"], label
        # GPU jobs go to the GPU partition with the site's constraint, all others to the CPU
        # one; a group is of one kind (never a GPU waiting on CPU work).
        if gpus:
            assert rules <= gpu_rules, label
            assert (sbatch["-p"], sbatch["-C"]) == (GPU_PARTITION, CONSTRAINT), label
        else:
            assert sbatch["-p"] == CPU_PARTITION and "-C" not in sbatch, label
        assert len(rules) == 1 or not submission["group"], label
        assert int(sbatch["--mem"]) == want["mem_mb"], label
        assert int(sbatch["-t"]) == want["runtime"], label
        assert int(sbatch["--cpus-per-task"]) == want["cpus_per_task"], label
        # train/launch.py and vLLM's tensor parallelism run on one node.
        if STAGE[next(iter(rules))] in SINGLE_NODE_STAGES:
            assert sbatch["--nodes"] == "1", label
        if gpus > 1:
            assert sbatch["--nodes"] == "1", label

    # A model's generation is one submission holding all its tasks, and so is its scoring.
    for rule, pattern in (("generate", GENERATE_GROUP), ("score", SCORE_GROUP)):
        models = {}
        for submission in submissions:
            if {job["rule"] for job in submission["jobs"]} != {rule}:
                continue
            (model,) = {
                (j["wildcards"]["backbone"], j["wildcards"]["variant"]) for j in submission["jobs"]
            }
            assert submission["name"] == pattern.format(backbone=model[0], variant=model[1])
            assert model not in models
            models[model] = sorted(j["wildcards"]["task"] for j in submission["jobs"])
        assert models and all(tasks == sorted(config["tasks"]) for tasks in models.values())


def test_paper_study_submissions_on_a_site(previews):
    """The paper study (6 backbones x 4 variants x 12 tasks) on a site: 76 submissions, of which
    24 GPU generation jobs (one per model, 6 h for its 12 tasks) and no scoring on a GPU."""
    _, submissions = previews("paper")
    kinds: dict[str, list[dict]] = {}
    for submission in submissions:
        kind = submission["name"].split("_")[0] if submission["group"] else submission["name"]
        kinds.setdefault(kind, []).append(submission["sbatch"])
    assert {kind: len(lines) for kind, lines in kinds.items()} == {
        "aggregate": 1,
        "build_pool": 1,
        "generate": 24,
        "mixes": 1,
        "prepare_backbone": 6,
        "score": 24,
        "sft": 18,
        "tasks": 1,
    }
    assert {(s["--gpus"], s["-t"], s["--mem"], s["--nodes"]) for s in kinds["generate"]} == {
        ("1", "360", "64000", "1")
    }
    assert {(s["--gpus"], s["--nodes"], s["--cpus-per-task"]) for s in kinds["sft"]} == {
        ("4", "1", "32")
    }
    assert not [s for s in kinds["score"] if "--gpus" in s]
    assert {(s["-p"], s["-t"], s["--mem"]) for s in kinds["score"]} == {("cpu", "180", "2000")}
    # The LLM judge of the pool build asks for its GPU.
    assert kinds["build_pool"][0]["--gpus"] == "1"


def test_the_profile_provides_one_group_slot_per_allocation():
    """Without it, Snakemake sizes a group for all its jobs at once (12 GPUs for a model's
    generation) while the executor runs them one at a time."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert f"{GROUP_SLOTS}=1" in profile["resources"]
    components = dict(entry.split("=") for entry in profile["group-components"])
    assert {GENERATE_GROUP, SCORE_GROUP, "tasks", "mixes"} <= set(components)
    smk = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(rf'^\s+{GROUP_SLOTS}="local",$', smk, re.MULTILINE)
