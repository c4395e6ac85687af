# Config validation and the small helpers that turn the config into targets and per-job params.
# A job's params come only from its own wildcards' slice of the config (see codeift.config).

import json
import os

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
from codeift.infer.server import INPUT_PRIORITY, model_priority
from codeift.resources import job_request, train_launch
from codeift.retries import previous_failure
from codeift.train.reporting import reporting_environment

validate_config(config)
config = with_defaults(config)
R = config["results"]

# Engine-pool knobs change speed, never outputs: they travel as environment, not params.
os.environ["CODEIFT_ENGINE_IDLE_SECONDS"] = str(config["engines"]["idle_seconds"])
os.environ["CODEIFT_MAX_ENGINES"] = str(config["engines"]["max_alive"])
# A model's first generation job generates its other tasks ahead (infer.generate).
os.environ["CODEIFT_PLANNED_TASKS"] = ",".join(sorted(config["tasks"]))
# Training curves (train.report_to) change nothing trained: environment, not params.
os.environ.update(reporting_environment(config, R))


wildcard_constraints:
    backbone="|".join(sorted(config["backbones"])) or "^$",
    task="|".join(sorted(config["tasks"])) or "^$",
    variant=VARIANT_PATTERN,
    arm=ARM_PATTERN,


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def ift_json(key):
    """`ift.KEY` as JSON, returned by a function: Snakemake formats plain string params as
    wildcard patterns, so a judge prompt's `{conversation}` would break the rule."""
    return lambda wildcards: as_json(config["ift"][key])


def backbone_source_json(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return as_json(
        {
            "source": spec["source"],
            "chat_template": spec.get("chat_template", "codeift"),
        }
    )


def backbone_identity_json(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return as_json(
        {"name": wildcards.backbone, "family": spec["family"], "size": spec["size"]}
    )


def train_settings_json(wildcards):
    return arm_train(config, wildcards.backbone, wildcards.arm).to_json()


def arm_proportion(wildcards):
    return variant_proportion(wildcards.arm)


def arm_replicate(wildcards):
    """0 for an arm's first seed; r for code{p}r{r}, whose mix order and SFT seed move by r."""
    return variant_replicate(wildcards.arm)


def train_launch_json(wildcards):
    """GPUs and strategy of the SFT job: a param, since the GPU count sets the global batch."""
    return as_json(train_launch(config, wildcards.backbone))


def cluster_resources(stage):
    """Snakemake resources of a stage, per job: its backbone's request, grown on each retry.
    `gpu`, `cpus_per_task`, `mem_mb` and `runtime` are what the SLURM executor submits.
    """

    def resource(key):
        def value(wildcards, attempt):
            failure = previous_failure(R, stage, wildcards, attempt)
            return job_request(
                config, stage, wildcards.get("backbone"), attempt, failure
            )[key]

        return value

    return {key: resource(key) for key in ("gpu", "cpus_per_task", "mem_mb", "runtime")}


def train_threads(wildcards):
    return arm_train(config, wildcards.backbone, wildcards.arm).threads


def inference_settings_json(wildcards):
    return backbone_inference(config, wildcards.backbone).to_json()


def inference_threads(wildcards):
    return backbone_inference(config, wildcards.backbone).threads


def task_entry_json(wildcards):
    return as_json(config["tasks"][wildcards.task])


def task_seed(wildcards):
    return config["tasks"][wildcards.task].get("seed", config["seed"])


def generation_priority(wildcards):
    return model_priority(wildcards.backbone, wildcards.variant)


def model_dir(wildcards):
    return f"{R}/models/{wildcards.backbone}/{wildcards.variant}"


def score_targets():
    return expand(
        f"{R}/scores/{{backbone}}/{{variant}}/{{task}}.parquet",
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
        for path in output.files(f"{R}/summary", f"{R}/figures")
    ]


def figure_reports():
    """Each figure as a named report() output with its caption (workflow/report/*.rst)."""
    return {
        output.name: report(
            output.files(f"{R}/summary", f"{R}/figures")[0],
            caption=f"../report/{output.caption}",
            category="Figures",
        )
        for output in OUTPUTS
        if output.kind == "figure"
    }


def card_targets():
    return expand(f"{R}/ift/mixes/{{arm}}.card.json", arm=arms(config))


def summary_targets():
    return (
        output_files("table") + output_files("figure") + [f"{R}/summary/{SUMMARY_FILE}"]
    )
