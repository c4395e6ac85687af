"""The IFT data stage: source records -> one cleaned, deduplicated, labelled pool -> one mix
per arm (a coding share of the pool) with its data card.

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "build_pool": "codeift.data.pool",
    "label_pool": "codeift.data.labels",
    "label_report": "codeift.data.labels",
    "build_mix": "codeift.data.mix",
    "mix_card": "codeift.data.mix",
    "read_report": "codeift.data.mix",
    "generate_conversations": "codeift.data.small_world",
    "PLANTED": "codeift.data.small_world",
    "PLANTED_VIEWS": "codeift.data.small_world",
    "IFTError": "codeift.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
