"""The SFT stage: one backbone tuned on one mix with TRL (full or LoRA, one GPU or several),
resumable from its checkpoints, written as a model folder the generation stage loads.
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.train.sft": ("train",),
        "codeift.train.launch": ("allocated_launch", "needs_relaunch", "train_command"),
        "codeift.train.precision": ("job_on_gpu", "resolved_settings", "training_precision"),
        "codeift.train.lora": ("parameter_counts",),
        "codeift.errors": (
            "ConfigError",
            "TrainError",
            "GpuOutOfMemory",
            "LaunchError",
            "PeftError",
            "ReportingError",
        ),
    },
)
