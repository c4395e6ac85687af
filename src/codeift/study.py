"""The study's vocabulary, in one place: variants and arms, the reference arm, the domains, the
answer types, the levels results are aggregated at, and the registry of outputs (tables and
figures) that the workflow, the report and the analysis read. Every stage imports it downward
(tasks, scoring and analysis alike), so no stage keeps a copy of a name another stage defines.

A variant is `base` (the untuned backbone) or an arm `code{p}` (tuned on a mix with p% coding
examples); a replicate arm `code{p}r{r}` repeats arm `code{p}` with another mix order and SFT
seed. The analysis calls a replicate arm seed r of its arm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from codeift.errors import ConfigError

BASE = "base"
REFERENCE_ARM = "code0"
DOMAINS = ("symbolic", "logical", "arithmetic")
# How a task states its gold answer and how the scorer reads a reply (codeift.score.answers).
ANSWER_TYPES: tuple[str, ...] = ("number", "yesno", "truefalse", "list", "text")
# The levels a result is reported at, finest first, each with the keys that group it within one
# backbone x variant: a task; a domain (the macro average of its tasks); overall (the macro
# average of all tasks). Every coarser level averages the task level, never a pooled count.
LEVELS: dict[str, tuple[str, ...]] = {
    "task": ("domain", "task"),
    "domain": ("domain",),
    "overall": (),
}
MACRO_LEVELS = tuple(level for level in LEVELS if level != "task")
VARIANT_PATTERN = r"base|code\d+(?:r\d+)?"
ARM_PATTERN = r"code\d+(?:r\d+)?"
_ARM_RE = re.compile(r"code(\d+)(?:r(\d+))?")


def variant_name(proportion: int, replicate: int = 0) -> str:
    return f"code{proportion}" + (f"r{replicate}" if replicate else "")


def parse_arm(variant: str) -> tuple[int, int]:
    """(proportion, replicate) of an arm name; ConfigError naming it otherwise."""
    match = _ARM_RE.fullmatch(variant)
    if match is None:
        raise ConfigError(
            f"variant {variant!r}: expected 'base', 'code<percent>' or 'code<percent>r<replicate>'"
        )
    return int(match.group(1)), int(match.group(2) or 0)


def arm_and_seed(variant: str) -> tuple[str, int]:
    """(the arm a variant belongs to, its seed): a replicate arm code{p}r{r} is seed r of arm
    code{p}; base and a first-seed arm are seed 0 of themselves."""
    if variant == BASE:
        return BASE, 0
    proportion, replicate = parse_arm(variant)
    return variant_name(proportion), replicate


def variant_proportion(variant: str) -> int | None:
    """The coding share of a variant, None for the untuned base."""
    return None if variant == BASE else parse_arm(variant)[0]


def variant_replicate(variant: str) -> int:
    """0 for base and an arm's first seed, r for its replicate arm code{p}r{r}."""
    return 0 if variant == BASE else parse_arm(variant)[1]


def first_seed_proportion(variant: str) -> int | None:
    """The proportion of a first-seed arm code{p}; None for base and replicate arms."""
    match = _ARM_RE.fullmatch(variant)
    return int(match.group(1)) if match and match.group(2) is None else None


def variant_rank(variant: str) -> int:
    """Sort key: base first, then arms by numeric proportion (code25 before code50)."""
    proportion = variant_proportion(variant)
    return -1 if proportion is None else proportion


def level_rank(level: str) -> int:
    """Sort key: the levels of LEVELS, finest first."""
    return list(LEVELS).index(level)


def domain_rank(domain: str) -> int:
    """Sort key following the paper's domain order; unknown domains go last."""
    return DOMAINS.index(domain) if domain in DOMAINS else len(DOMAINS)


@dataclass(frozen=True)
class Output:
    """One result of the aggregate step: a table (CSV + Markdown) or a figure (PNG + caption)."""

    name: str
    kind: str  # "table" or "figure"
    caption: str = ""  # figures: the caption file under workflow/report/

    def files(self, summary_dir: str, figure_dir: str) -> list[str]:
        if self.kind == "table":
            return [f"{summary_dir}/{self.name}.csv", f"{summary_dir}/{self.name}.md"]
        return [f"{figure_dir}/{self.name}.png"]


# One result table a level, coarsest first (the order the summary reads them in).
RESULT_TABLES = tuple(reversed(LEVELS))
EVIDENCE_TABLES = (
    "intervals",
    "comparisons",
    "consistency",
    "best_proportion",
    "reasoning_mode",
    "seeds",
    "controls",
    "views",
    "power",
)
MIX_TABLE = "mixes"
FIGURES = ("overall", "domain", "task", "reasoning_mode", "controls", "views")
OUTPUTS = (
    *(Output(name, "table") for name in (*RESULT_TABLES, *EVIDENCE_TABLES, MIX_TABLE)),
    *(Output(name, "figure", f"{name}.rst") for name in FIGURES),
)
SUMMARY_FILE = "summary.md"
