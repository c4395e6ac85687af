"""The analysis stage: every score file -> the result tables (task, domain, overall), the
evidence tables, the summary and the figures that codeift.study.OUTPUTS lists.
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.analysis.aggregate": ("run_analysis", "write_tables"),
        "codeift.analysis.load": ("load_scores",),
        "codeift.analysis.tables": ("LEVEL_TABLES", "evidence_tables", "mix_table"),
        "codeift.analysis.markdown": ("evidence_markdown",),
        "codeift.analysis.power": ("design_table",),
        "codeift.analysis.controls": ("planted_from_cards", "planted_views_from_cards"),
        "codeift.errors": ("AnalysisError",),
    },
)
