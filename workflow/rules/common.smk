# Config validation and the small helpers that turn the config into targets and per-job params.
# A job's params come only from its own wildcards' slice of the config (see codeift.config).

import functools
import inspect
import json
import os

from snakemake.common import overwrite_function_params

from codeift.config import (
    arm_train,
    arms,
    backbone_inference,
    validate_config,
    variants,
    with_defaults,
)
from codeift.study import (
    ARM_PATTERN,
    FIGURES,
    OUTPUTS,
    SUMMARY_FILE,
    VARIANT_PATTERN,
    variant_proportion,
    variant_replicate,
)
from codeift.cluster import (
    GENERATE_GROUP,
    GROUP_SLOTS,
    INPUT_PRIORITY,
    SCORE_GROUP,
    model_priority,
)
from codeift.layout import (
    BASE_MODEL,
    CHECKPOINTS,
    FIGURE_DIR,
    GENERATIONS,
    LOGS,
    MIX,
    MIX_CARD,
    MODEL,
    POOL,
    POOL_REPORT,
    SCORES,
    SUMMARY_DIR,
    TASK,
    TUNED_MODEL,
)
from codeift.settings import EngineSettings
from codeift.resources import STAGES, job_request, resource_names, train_launch
from codeift.retries import FAILURES, previous_failure
from codeift.train.precision import job_on_gpu, resolved_settings
from codeift.train.reporting import reporting_environment

validate_config(config)
config = with_defaults(config)
R = config["results"]

# Engine-pool knobs and the study's task list change a generation job's speed, never its output
# (a model's first job generates its other tasks ahead: codeift.infer.generate). The generate
# step passes them as arguments in its shell command, not as params. Snakemake reruns a job when
# its params change, but not when only the values formatted into its command do (the `code`
# trigger compares the command's template). So adding a task or changing `engines` reruns no
# generation job, and no environment variable carries them into the job.
ENGINES_JSON = EngineSettings.from_mapping(config["engines"]).to_json()
PLANNED_TASKS = ",".join(sorted(config["tasks"]))
# Training curves (train.report_to) change nothing trained: environment, not params.
os.environ.update(reporting_environment(config, R))


# Counted per machine, or per cluster allocation (a local scope), never across the cluster's
# jobs: `engine_slots` (a model's engine runs one batch at a time; `--resources engine_slots=1`)
# and `group_slots` (see grouped_resources; profiles/slurm provides one per allocation).
resource_scopes:
    engine_slots="local",
    group_slots="local",


wildcard_constraints:
    backbone="|".join(sorted(config["backbones"])) or "^$",
    task="|".join(sorted(config["tasks"])) or "^$",
    variant=VARIANT_PATTERN,
    arm=ARM_PATTERN,


def job_function(func):
    """Declare a per-job function's parameters to Snakemake once. Snakemake reads the signature
    of every input, params, priority and resource function each time it calls one (per job, per
    resource: a sweep's dry run reads it tens of thousands of times, bench_dryrun.py); its own
    wrappers (snakemake.ioutils) hand it the parameters this way instead."""
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def ift_json(key):
    """`ift.KEY` as JSON, returned by a function: Snakemake formats plain string params as
    wildcard patterns, so a judge prompt's `{conversation}` would break the rule."""
    return job_function(lambda wildcards: as_json(config["ift"][key]))


@job_function
def backbone_source_json(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return as_json(
        {
            "source": spec["source"],
            "chat_template": spec["chat_template"],
        }
    )


@job_function
def backbone_identity_json(wildcards):
    return identity_json_of(wildcards.backbone)


@functools.cache
def identity_json_of(backbone):
    spec = config["backbones"][backbone]
    return as_json({"name": backbone, "family": spec["family"], "size": spec["size"]})


@job_function
def train_settings_json(wildcards):
    """The arm's SFT settings with `dtype: auto` resolved for the job's machine class (GPU, CPU
    with native bf16, other CPU): a dtype changes the model, so it is part of the params.
    """
    requested = train_launch(config, wildcards.backbone)["gpus"]
    on_gpu = job_on_gpu(requested, local=workflow.local_exec)
    return resolved_settings(
        train_of(wildcards.backbone, wildcards.arm), on_gpu
    ).to_json()


@job_function
def arm_proportion(wildcards):
    return variant_proportion(wildcards.arm)


@job_function
def arm_replicate(wildcards):
    """0 for an arm's first seed; r for code{p}r{r}, whose mix order and SFT seed move by r."""
    return variant_replicate(wildcards.arm)


@job_function
def train_launch_json(wildcards):
    """GPUs and strategy of the SFT job: a param, since the GPU count sets the global batch."""
    return as_json(train_launch(config, wildcards.backbone))


def cluster_resources(stage):
    """Snakemake resources of a stage, per job: its backbone's request, grown on each retry.
    `gpu`, `cpus_per_task`, `mem_mb`, `runtime` (and `nodes` for SFT and generation) are what
    the SLURM executor submits.
    """

    def resource(key):
        @job_function
        def value(wildcards, attempt):
            failure = previous_failure(R, stage, wildcards, attempt)
            return stage_request(stage, wildcards.get("backbone"), attempt, failure)[
                key
            ]

        return value

    # A value the same for every backbone, attempt and failure kind is given as is: Snakemake
    # evaluates each resource function for every job, a sweep's dry-run cost (bench_dryrun.py).
    backbones = sorted(config["backbones"]) if stage in STAGES else [None]
    resources = {}
    for key in resource_names(stage):
        values = {
            stage_request(stage, backbone, attempt, failure)[key]
            for backbone in backbones
            for attempt in range(1, PLAIN_CHECK_ATTEMPTS + 1)
            for failure in (None, *FAILURES)
        }
        resources[key] = values.pop() if len(values) == 1 else resource(key)
    return resources


# Attempts compared before a resource is taken as fixed: the profile retries twice. (The run's
# own retries are not known while the Snakefile is read: Snakemake 9 sets its execution
# settings afterwards.)
PLAIN_CHECK_ATTEMPTS = 5


# Per-job functions call these once per backbone (or arm, or task), not once per job: the config
# is fixed for the run, and a sweep's dry run evaluates them for every one of its jobs.
@functools.cache
def stage_request(stage, backbone, attempt, failure=None):
    return job_request(config, stage, backbone, attempt, failure)


@functools.cache
def inference_of(backbone):
    return backbone_inference(config, backbone)


@functools.cache
def inference_json_of(backbone):
    return inference_of(backbone).to_json()


@functools.cache
def train_of(backbone, arm):
    return arm_train(config, backbone, arm)


def grouped_resources(stage):
    """Resources of a job that travels in a group (codeift.cluster). Snakemake's SLURM executor
    runs a group's jobs one at a time inside its allocation (`--jobs 1`): each holds one
    `group_slots` of the one the profile provides per allocation, so that Snakemake sizes the
    request for jobs in sequence (one job's GPUs, CPUs and memory, the sum of their times), not
    for all of them at once."""
    return {**cluster_resources(stage), GROUP_SLOTS: 1}


@job_function
def train_threads(wildcards):
    return train_of(wildcards.backbone, wildcards.arm).threads


def sft_threads():
    """The sft rule's threads: one number where every backbone x arm has the same (Snakemake
    then calls nothing per job), else train_threads."""
    values = {
        train_of(backbone, arm).threads
        for backbone in config["backbones"]
        for arm in arms(config)
    }
    return values.pop() if len(values) == 1 else train_threads


@job_function
def inference_settings_json(wildcards):
    return inference_json_of(wildcards.backbone)


@job_function
def inference_threads(wildcards):
    return inference_of(wildcards.backbone).threads


def generate_threads():
    """The generate rule's threads: one number where every backbone has the same, else
    inference_threads (as sft_threads)."""
    values = {inference_of(backbone).threads for backbone in config["backbones"]}
    return values.pop() if len(values) == 1 else inference_threads


@job_function
def task_entry_json(wildcards):
    return as_json(config["tasks"][wildcards.task])


@job_function
def task_seed(wildcards):
    return config["tasks"][wildcards.task].get("seed", config["seed"])


@job_function
def generation_priority(wildcards):
    return cached_priority(wildcards.backbone, wildcards.variant)


cached_priority = functools.cache(model_priority)


@job_function
def model_dir(wildcards):
    return f"{R}/{MODEL.format(backbone=wildcards.backbone, variant=wildcards.variant)}"


def score_targets():
    return expand(
        f"{R}/{SCORES}",
        backbone=sorted(config["backbones"]),
        variant=variants(config),
        task=sorted(config["tasks"]),
    )


def output_files(kind):
    """The aggregate step's files of one kind, from the registry in codeift.study."""
    return [
        path
        for output in OUTPUTS
        if output.kind == kind
        for path in output.files(f"{R}/{SUMMARY_DIR}", f"{R}/{FIGURE_DIR}")
    ]


def figure_reports():
    """Each figure as a named report() output with its caption (workflow/report/*.rst)."""
    return {
        output.name: report(
            output.files(f"{R}/{SUMMARY_DIR}", f"{R}/{FIGURE_DIR}")[0],
            caption=f"../report/{output.caption}",
            category="Figures",
        )
        for output in OUTPUTS
        if output.kind == "figure"
    }


def card_targets():
    return expand(f"{R}/{MIX_CARD}", arm=arms(config))


def summary_targets():
    return (
        output_files("table")
        + output_files("figure")
        + [f"{R}/{SUMMARY_DIR}/{SUMMARY_FILE}"]
    )
