"""The IFT data stage: source records -> one cleaned, deduplicated, labelled pool -> one mix
per arm (a coding share of the pool) with its data card.
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.data.pool": ("build_pool",),
        "codeift.data.labels": ("label_pool", "label_report"),
        "codeift.data.mix": ("build_mix", "mix_card", "read_report"),
        "codeift.data.small_world": ("generate_conversations", "PLANTED", "PLANTED_VIEWS"),
        "codeift.errors": ("IFTError",),
    },
)
