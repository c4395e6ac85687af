"""The generation stage: a model's replies to a task's prompts, through the model's shared
engine (vLLM, transformers or the fake test engine) that the jobs of one model reuse.
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.infer.generate": ("generate_task", "read_task"),
        "codeift.infer.engines": ("Generation", "build_vllm", "load_engine"),
        "codeift.infer.server": ("live_engines", "stop_engines", "shared_batches"),
        "codeift.infer.throughput": ("rates", "reply_agreement"),
        "codeift.errors": (
            "BackboneError",
            "ConfigError",
            "GenerationError",
            "EngineError",
            "EngineStopped",
            "UnsafeEntryError",
        ),
    },
)
