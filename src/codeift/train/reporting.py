"""Where a job's training curves go: `train.report_to`, passed to TRL.

Not a param (TrainSettings.NOT_PARAMS): watching a run never changes what it trains, so the
workflow hands the study's choice to the job as environment (set in workflow/rules/common.smk)
and changing it reruns nothing. TensorBoard event files go beside the job's log
(`<results>/logs/sft/<backbone>/<arm>.tensorboard/`), so they outlive the checkpoint folder that a
finished job deletes and can be read offline (`tensorboard --logdir <results>/logs/sft`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from codeift.errors import ReportingError
from codeift.settings import TrainSettings

# Set by the workflow: the study's train.report_to, and the root of the SFT jobs' logs.
REPORT_TO_ENV = "CODEIFT_TRAIN_REPORT_TO"
LOG_ROOT_ENV = "CODEIFT_TRAIN_LOG_ROOT"
# transformers' TensorBoard callback reads its folder from here (TrainingArguments no longer
# takes logging_dir).
TENSORBOARD_ENV = "TENSORBOARD_LOGGING_DIR"
# report_to value -> the package that must be importable for it.
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
}


def tensorboard_dir(out_dir: Path, log_root: str | None) -> Path:
    """`<log_root>/<backbone>/<arm>.tensorboard` for the model folder `.../<backbone>/<arm>`
    (the job log's sibling); beside the model folder when run outside the workflow."""
    if log_root:
        return Path(log_root) / out_dir.parent.name / f"{out_dir.name}.tensorboard"
    return out_dir.parent / f"{out_dir.name}.tensorboard"


def reporting_settings(settings: TrainSettings, out_dir: Path) -> TrainSettings:
    """The job's settings with the workflow's report_to, its TensorBoard folder set for
    transformers, and a clear error when the chosen package is not installed."""
    choice = os.environ.get(REPORT_TO_ENV) or settings.report_to
    if choice != "none" and choice not in PACKAGES:
        raise ReportingError(
            f"config key 'train.report_to': {choice!r} is not allowed "
            f"(allowed: {sorted(PACKAGES)} or none)"
        )
    if choice != "none":
        if not any(importlib.util.find_spec(name) for name in PACKAGES[choice]):
            raise ReportingError(
                f"config key 'train.report_to': {choice} needs the {PACKAGES[choice][0]} package "
                "(not installed); install it or set train.report_to: none"
            )
    if choice == "tensorboard":
        os.environ[TENSORBOARD_ENV] = str(tensorboard_dir(out_dir, os.environ.get(LOG_ROOT_ENV)))
    return dataclasses.replace(settings, report_to=choice)


def reporting_environment(config: dict, results: str) -> dict[str, str]:
    """What the workflow exports to every SFT job: the study's report_to and the log root.
    report_to is study-wide (one way of watching a study): a backbone's own is refused."""
    from codeift.errors import ConfigError

    for name, spec in config["backbones"].items():
        if "report_to" in (spec.get("train") or {}):
            raise ConfigError(
                f"config key 'backbones.{name}.train.report_to': report_to is study-wide "
                "(allowed: train.report_to only)"
            )
    choice = TrainSettings.from_mapping(config.get("train")).report_to
    return {REPORT_TO_ENV: choice, LOG_ROOT_ENV: f"{results}/logs/sft"}
