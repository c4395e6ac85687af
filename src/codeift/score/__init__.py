"""The scoring stage: each reply read as the task's answer type (the text view, the study's
metric) and its program run in the sandbox (the program view).

Public API: `__all__`, each name imported from its module on first use (codeift.lazy_exports);
the stage's errors live in codeift.errors.
"""

from __future__ import annotations

from codeift import lazy_exports

_EXPORTS = {
    "score_frame": "codeift.score.answers",
    "score_summary": "codeift.score.answers",
    "extract_answer": "codeift.score.answers",
    "answers_match": "codeift.score.answers",
    "program_answer": "codeift.score.answers",
    "text_view": "codeift.score.answer_text",
    "require": "codeift.score.sandbox",
    "run_programs": "codeift.score.sandbox",
    "ScoringError": "codeift.errors",
    "JailUnavailable": "codeift.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
