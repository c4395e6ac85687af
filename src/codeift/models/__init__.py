"""The backbones: each one prepared once into a model folder (a hub snapshot, a packaged GGUF
converted, or a tiny base built and pretrained here), with the FLOP and memory estimates that
price its jobs.
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.models.backbones": ("prepare_backbone", "model_fingerprint"),
        "codeift.models.pretrain": ("RECIPES", "pretrain"),
        "codeift.models.flops": ("training_flops", "generation_flops", "parameter_split"),
        "codeift.models.memory": ("SftJob", "check_sft_requests"),
        "codeift.errors": ("BackboneError", "TemplateError", "SftMemoryError"),
    },
)
