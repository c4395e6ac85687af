"""The analysis stage: every score file -> the result tables (task, domain, overall), the
evidence tables, the summary and the figures that codeift.study.OUTPUTS lists.

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "run_analysis": "codeift.analysis.aggregate",
    "write_tables": "codeift.analysis.aggregate",
    "load_scores": "codeift.analysis.load",
    "LEVEL_TABLES": "codeift.analysis.tables",
    "evidence_tables": "codeift.analysis.tables",
    "mix_table": "codeift.analysis.tables",
    "evidence_markdown": "codeift.analysis.markdown",
    "design_table": "codeift.analysis.power",
    "planted_from_cards": "codeift.analysis.controls",
    "planted_views_from_cards": "codeift.analysis.controls",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
