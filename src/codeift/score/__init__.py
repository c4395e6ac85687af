"""The scoring stage: each reply read as the task's answer type (the text view, the study's
metric) and its program run in the sandbox (the program view).
"""

from __future__ import annotations

from codeift import lazy_exports

# The stage's public API by defining module (its errors: codeift.errors).
__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "codeift.score.answers": (
            "score_frame",
            "score_summary",
            "extract_answer",
            "answers_match",
            "program_answer",
        ),
        "codeift.score.answer_text": ("text_view",),
        "codeift.score.sandbox": ("require", "run_programs"),
        "codeift.errors": ("ScoringError", "JailUnavailable"),
    },
)
