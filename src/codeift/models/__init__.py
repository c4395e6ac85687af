"""The backbones: each one prepared once into a model folder (a hub snapshot, a packaged GGUF
converted, or a tiny base built and pretrained here), with the FLOP and memory estimates that
price its jobs.

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "prepare_backbone": "codeift.models.backbones",
    "model_fingerprint": "codeift.models.backbones",
    "RECIPES": "codeift.models.pretrain",
    "pretrain": "codeift.models.pretrain",
    "training_flops": "codeift.models.flops",
    "generation_flops": "codeift.models.flops",
    "parameter_split": "codeift.models.flops",
    "SftJob": "codeift.models.memory",
    "check_sft_requests": "codeift.models.memory",
    "BackboneError": "codeift.errors",
    "TemplateError": "codeift.errors",
    "SftMemoryError": "codeift.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
