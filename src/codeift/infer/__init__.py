"""The generation stage: a model's replies to a task's prompts, through the model's shared
engine (vLLM, transformers or the fake test engine) that the jobs of one model reuse.

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "generate_task": "codeift.infer.generate",
    "read_task": "codeift.infer.generate",
    "Generation": "codeift.infer.engines",
    "build_vllm": "codeift.infer.engines",
    "load_engine": "codeift.infer.engines",
    "live_engines": "codeift.infer.server",
    "stop_engines": "codeift.infer.server",
    "shared_batches": "codeift.infer.server",
    "rates": "codeift.infer.throughput",
    "reply_agreement": "codeift.infer.throughput",
    "BackboneError": "codeift.errors",
    "ConfigError": "codeift.errors",
    "GenerationError": "codeift.errors",
    "EngineError": "codeift.errors",
    "EngineStopped": "codeift.errors",
    "UnsafeEntryError": "codeift.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
