"""codeift: measure what the coding share of instruction-tuning data does to LLM reasoning."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__version__ = "0.1.0"


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any]]:
    """A stage package's `__all__` and module `__getattr__` (PEP 562), from its public names by
    defining module: each name is imported from its module on first use. A stage's package then
    imports none of its modules itself, so importing one module of a stage (the CLI imports one
    per job) never pulls in the others' dependencies or an import cycle."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return sorted(exports), __getattr__
