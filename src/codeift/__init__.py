"""codeift: measure what the coding share of instruction-tuning data does to LLM reasoning."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A stage package's module `__getattr__` (PEP 562): each public name (its `__all__`) is
    imported from the module that defines it on first use. A stage's package then imports none
    of its modules itself, so importing one module of a stage (the CLI imports one per job, the
    jail's runner one file) never pulls in the others' dependencies or an import cycle."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
