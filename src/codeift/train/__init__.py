"""The SFT stage: one backbone tuned on one mix with TRL (full or LoRA, one GPU or several),
resumable from its checkpoints, written as a model folder the generation stage loads.

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "train": "codeift.train.sft",
    "allocated_launch": "codeift.train.launch",
    "needs_relaunch": "codeift.train.launch",
    "train_command": "codeift.train.launch",
    "job_on_gpu": "codeift.train.precision",
    "resolved_settings": "codeift.train.precision",
    "training_precision": "codeift.train.precision",
    "parameter_counts": "codeift.train.lora",
    "ConfigError": "codeift.errors",
    "TrainError": "codeift.errors",
    "GpuOutOfMemory": "codeift.errors",
    "LaunchError": "codeift.errors",
    "PeftError": "codeift.errors",
    "ReportingError": "codeift.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
