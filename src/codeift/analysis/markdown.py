"""Markdown renderings of the tables and the summary report (summary.md)."""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl

from codeift.analysis import controls, evidence
from codeift.analysis.load import PROGRAM_VIEW_MARKER
from codeift.analysis.tables import tasks_in_order, variants_in_order
from codeift.settings import AnalysisSettings
from codeift.study import domain_rank

EVIDENCE_NOTES = {
    "intervals": "Accuracy (%) with percentile bootstrap intervals over test examples; domain "
    "and overall rows are macro averages of the task resamples.",
    "comparisons": "Every tuned proportion against the same backbone's code0 on the same "
    "examples. Task rows: exact McNemar test; domain/overall rows: paired bootstrap of the "
    "macro difference. Δ and its interval in percentage points; OR = discordant-pair odds "
    "ratio (items only the variant solves / items only code0 solves); Holm adjusts over "
    "every row.",
    "consistency": "Do backbones agree on the direction of the change against code0? "
    "Agreement = share of backbones moving in the majority direction; ρ (Spearman) and τ "
    "(Kendall) = mean over backbone pairs of the rank correlation of per-task changes.",
    "best_proportion": "Best coding share per backbone and task among the tuned variants, the "
    "shares not distinguishable from it (exact McNemar p ≥ α against the best, unadjusted), "
    "and with three or more shares the optimum of a quadratic fit of accuracy on the share.",
    "reasoning_mode": "How each response reasons: code (a program the scorer ran, nothing "
    "else), text (no program), both, or none (no program ran and nothing is left once program "
    "source is removed, the scorer's text view: empty, markup or code only). Share of "
    "responses and accuracy within each mode.",
    "seeds": "Spread of accuracy over training seeds of the same arm (empty when the scores "
    "carry no `seed` column: one seed per arm).",
    "controls": "Positive control: per task with a planted direction (the mix cards, or config "
    "`controls.planted`), the most-code arm against code0 in the view the planted data names "
    "(text, or text-or-program: the text or what the reply's program printed; exact McNemar, "
    "Holm over that view's comparisons table); recovered = significant in the planted "
    "direction; underpowered = not significant where the design cannot detect the planted "
    "effect size it must (smallest detectable difference after Holm, column detectable, above "
    "`analysis.min_effect`); missed = not significant although it could. Unplanted: tasks "
    "planted not to move. Null control: each replicate arm (same proportion, other mix order "
    "and SFT seed) against its first seed, exact McNemar at the raw level α.",
    "power": "Power up front: per task, the smallest accuracy difference against code0 that "
    "the exact McNemar test on its items detects with the configured power, at α and at "
    "α / tests (Holm's strictest level over the comparisons table, a bound whatever the task's "
    "rank); n/a: no difference can be detected at all. Model: `power_churn` of the items "
    "flip each way by chance, the effect adds flips in its direction (codeift.analysis.power).",
    "views": "Two views of each answer. Text: what the response says (`correct`, the study's "
    "metric; program source never counts). Text or program: the text, or what the response's "
    "program printed when run in the sandbox (`correct_any`). Program gain = text-or-program "
    "minus text; from programs = the part of the change against code0 that comes from running "
    "programs (the variant's program gain minus code0's). Program ok = share of responses "
    "whose program ran and ended ok. Macro averages over tasks; p (Holm) from the paired "
    "comparisons against code0 in each view, each view its own Holm family.",
}


_MD_COLUMNS = {
    "backbone": "backbone",
    "variant": "variant",
    "domain": "domain",
    "task": "task",
    "n_tasks": "tasks",
    "n": "examples",
    "n_correct": "correct",
    "n_missing": "missing",
    "accuracy": "accuracy (%)",
    "delta_vs_code0": "Δ vs code0 (pp)",
    "delta_vs_base": "Δ vs base (pp)",
}


def markdown_table(table: pl.DataFrame) -> str:
    """Render a result table with percentages to one decimal, the precision the paper reports."""
    columns = [name for name in _MD_COLUMNS if name in table.columns]
    header = [_MD_COLUMNS[name] for name in columns]
    rows = [[_md_cell(name, row[name]) for name in columns] for row in table.iter_rows(named=True)]
    return _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_cell(column: str, value: object) -> str:
    if column == "accuracy":
        return _percent(value)
    if column.startswith("delta_"):
        return _points(value)
    return "n/a" if value is None else str(value)


def _percent(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}"


def _points(value: object) -> str:
    # + 0.0 turns a rounded -0.0 (float noise around an exact tie) into +0.0
    return "n/a" if value is None else f"{round(100 * float(value), 1) + 0.0:+.1f}"


def _p_value(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _decimal(digits: int) -> Callable[[object], str]:
    def render(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{float(value):.{digits}f}"

    return render


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "n/a" if value is None else str(value)


_PP = "(pp)"
# Per table: column -> (header, renderer); columns not listed are left out of the Markdown.
_EVIDENCE_COLUMNS: dict[str, dict[str, tuple[str, Callable[[object], str]]]] = {
    "intervals": {
        "level": ("level", _plain),
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n": ("examples", _plain),
        "accuracy": ("accuracy (%)", _percent),
        "ci_low": ("CI low", _percent),
        "ci_high": ("CI high", _percent),
    },
    "comparisons": {
        "level": ("level", _plain),
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n_pairs": ("pairs", _plain),
        "accuracy": ("accuracy (%)", _percent),
        "reference_accuracy": ("code0 (%)", _percent),
        "difference": (f"Δ {_PP}", _points),
        "ci_low": ("CI low", _points),
        "ci_high": ("CI high", _points),
        "only_variant": ("only variant", _plain),
        "only_reference": ("only code0", _plain),
        "odds_ratio": ("OR", _decimal(2)),
        "p_value": ("p", _p_value),
        "p_holm": ("p (Holm)", _p_value),
        "significant": ("significant", _plain),
    },
    "consistency": {
        "domain": ("domain", _plain),
        "variant": ("variant", _plain),
        "n_backbones": ("backbones", _plain),
        "n_up": ("up", _plain),
        "n_down": ("down", _plain),
        "n_flat": ("flat", _plain),
        "majority": ("majority", _plain),
        "agreement": ("agreement", _decimal(2)),
        "mean_difference": (f"mean Δ {_PP}", _points),
        "n_significant": ("significant", _plain),
        "spearman": ("ρ", _decimal(2)),
        "kendall": ("τ", _decimal(2)),
    },
    "best_proportion": {
        "backbone": ("backbone", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "best_proportion": ("best (%)", _plain),
        "best_accuracy": ("accuracy (%)", _percent),
        "indistinguishable": ("indistinguishable (%)", _plain),
        "fit_optimum": ("fitted optimum (%)", _decimal(0)),
        "fit_accuracy": ("fitted accuracy (%)", _percent),
    },
    "reasoning_mode": {
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "mode": ("mode", _plain),
        "n": ("responses", _plain),
        "share": ("share (%)", _percent),
        "accuracy": ("accuracy (%)", _percent),
    },
    "controls": {
        "control": ("control", _plain),
        "backbone": ("backbone", _plain),
        "task": ("task", _plain),
        "expected": ("planted", _plain),
        "view": ("view", _plain),
        "variant": ("arm", _plain),
        "reference": ("against", _plain),
        "accuracy": ("arm (%)", _percent),
        "reference_accuracy": ("against (%)", _percent),
        "difference": (f"Δ {_PP}", _points),
        "only_variant": ("only arm", _plain),
        "only_reference": ("only against", _plain),
        "p_value": ("p", _p_value),
        "p_holm": ("p (Holm)", _p_value),
        "detectable_holm": (f"detectable {_PP}", _percent),
        "verdict": ("verdict", _plain),
    },
    "power": {
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n_items": ("items", _plain),
        "alpha": ("α", _plain),
        "tests": ("tests", _plain),
        "detectable": (f"detectable at α {_PP}", _percent),
        "detectable_holm": (f"detectable at α / tests {_PP}", _percent),
    },
    "views": {
        "level": ("level", _plain),
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "domain": ("domain", _plain),
        "task": ("task", _plain),
        "n": ("responses", _plain),
        "n_programs": ("programs", _plain),
        "program_ok_share": ("program ok (%)", _percent),
        "accuracy": ("text (%)", _percent),
        "accuracy_any": ("text or program (%)", _percent),
        "program_gain": (f"program gain {_PP}", _points),
        "delta_vs_code0": (f"text Δ vs code0 {_PP}", _points),
        "delta_any_vs_code0": (f"text-or-program Δ vs code0 {_PP}", _points),
        "delta_from_programs": (f"from programs {_PP}", _points),
        "p_holm": ("text p (Holm)", _p_value),
        "p_holm_any": ("text-or-program p (Holm)", _p_value),
    },
    "seeds": {
        "backbone": ("backbone", _plain),
        "variant": ("variant", _plain),
        "task": ("task", _plain),
        "n_seeds": ("seeds", _plain),
        "mean": ("mean (%)", _percent),
        "std": (f"sd {_PP}", _percent),
        "min": ("min (%)", _percent),
        "max": ("max (%)", _percent),
    },
}


def evidence_markdown(name: str, table: pl.DataFrame) -> str:
    """Render one evidence table with the precision each column needs (p-values apart)."""
    columns = {k: v for k, v in _EVIDENCE_COLUMNS[name].items() if k in table.columns}
    header = [label for label, _ in columns.values()]
    rows = [
        [render(row[key]) for key, (_, render) in columns.items()]
        for row in table.iter_rows(named=True)
    ]
    return _markdown(header, rows)


def summary_report(
    scores: pl.DataFrame,
    overall: pl.DataFrame,
    domain: pl.DataFrame,
    found: dict[str, pl.DataFrame] | None = None,
    settings: AnalysisSettings | None = None,
    mixes: pl.DataFrame | None = None,
) -> str:
    """A short Markdown report: what was evaluated, the headline tables and who wins where,
    then (given the evidence tables) how sure each difference is and how much programs add,
    and (given the mix table) what each arm was trained on.

    `scores` holds every row, all seeds (the program lines count every program); the tables
    were built from first seeds."""
    sections = [
        "# Coding-data instruction tuning: reasoning results",
        "Accuracies are macro averages over tasks (each task weighs the same); deltas are "
        "percentage points against the same backbone's code0 (tuned without coding data) "
        "and base (untuned) model.",
        "## What was evaluated\n\n" + _evaluated_section(scores),
        *([_controls_section(found["controls"], settings or AnalysisSettings())] if found else []),
        *([_power_section(found["power"], settings or AnalysisSettings())] if found else []),
        "## Overall accuracy\n\n" + markdown_table(overall),
        "## Best variant per backbone\n\n" + _best_overall_section(overall),
        "## Accuracy per domain\n\n" + markdown_table(domain),
        "## Winning variant per domain\n\n" + _domain_winner_section(domain),
    ]
    if found is not None:
        sections += _evidence_sections(found, settings or AnalysisSettings())
    if mixes is not None:
        sections.append(
            "## What each arm was trained on\n\nFrom the mix data cards "
            "(`ift/mixes/code{p}.card.json`): examples and training tokens, and the coding share "
            "of each.\n\n" + mix_markdown(mixes)
        )
    return "\n\n".join(sections) + "\n"


def _evidence_sections(found: dict[str, pl.DataFrame], settings: AnalysisSettings) -> list[str]:
    """Short readable sections over the evidence tables; the full tables sit beside summary.md."""
    comparisons = found["comparisons"]
    headline = comparisons.filter(pl.col("level") != "task")
    n_tests = comparisons.height
    n_task = comparisons.filter(pl.col("level") == "task").height
    n_significant = int(comparisons["significant"].sum()) if n_tests else 0
    tests = (
        f"{n_tests} tests were run ({n_task} per task with the exact McNemar test, "
        f"{n_tests - n_task} per domain or overall with the paired bootstrap, "
        f"{settings.bootstrap_samples} resamples, seed {settings.seed}); "
        f"{n_significant} remain significant at α = {settings.alpha} after Holm's adjustment "
        "over all of them. Full table: `comparisons.md`."
    )
    if n_tests == 0:
        tests = "No paired comparison: no backbone has both code0 and another tuned proportion."
    modes = found["reasoning_mode"]
    return [
        "## Change against code0, with uncertainty\n\n"
        + tests
        + ("\n\n" + evidence_markdown("comparisons", headline) if headline.height else ""),
        _views_section(found["views"]),
        "## Consistency across backbones\n\n"
        + EVIDENCE_NOTES["consistency"]
        + "\n\n"
        + evidence_markdown("consistency", found["consistency"]),
        "## Best coding share per task\n\n"
        + EVIDENCE_NOTES["best_proportion"]
        + "\n\n"
        + evidence_markdown("best_proportion", found["best_proportion"]),
        "## How responses reason\n\n"
        + EVIDENCE_NOTES["reasoning_mode"]
        + "\n\n"
        + evidence_markdown("reasoning_mode", modes),
        "## Seeds\n\n"
        + (
            evidence_markdown("seeds", found["seeds"].filter(pl.col("task") == "overall"))
            if found["seeds"].height
            else "One seed per arm: no spread over seeds to report (`seeds.md` is empty)."
        ),
        "Accuracy intervals per task, domain and model: `intervals.md`.",
    ]


def _views_section(views: pl.DataFrame) -> str:
    """The overall rows of the views table: how much of each arm's score is its programs'."""
    overall = views.filter(pl.col("level") == "overall")
    lines = ["## Text answers and program-aided answers", EVIDENCE_NOTES["views"]]
    if overall.height and int(overall["n_programs"].sum()) == 0:
        lines.append("No response holds a program that the scorer ran: the two views agree.")
    not_run = int(overall["n_not_run"].sum()) if overall.height else 0
    if not_run:
        lines.append(
            f'{not_run} programs were not run (see "What was evaluated"): the text-or-program '
            "view understates what running them would add."
        )
    lines.append(evidence_markdown("views", overall.drop("level", "domain", "task")))
    lines.append("Per domain and task: `views.md`.")
    return "\n\n".join(lines)


def program_lines(scores: pl.DataFrame) -> list[str]:
    """Summary lines on how programs ran: how many were not run and why, a warning where they
    ran under the Python-only guard, and rows whose score file had no program columns."""
    columns = scores.columns
    lines = []
    if "program_status" in columns:
        programs = scores.filter(pl.col("program_status").is_not_null())
        not_run = programs.filter(pl.col("program_status") == "not_run")
        if not_run.height:
            detail = (
                pl.col("program_detail").fill_null("no reason recorded")
                if "program_detail" in columns
                else pl.lit("no reason recorded")
            )
            reasons = (
                not_run.group_by(detail.alias("reason"))
                .len()
                .sort(["len", "reason"], descending=[True, False])
            )
            counted = "; ".join(f"{reason} ({count})" for reason, count in reasons.iter_rows())
            lines.append(
                f"- Programs not run: {not_run.height} of {programs.height} programs in the "
                f"responses were not run ({counted}); they count as wrong in the program view, so "
                "those rows' text-or-program answer is their text answer."
            )
    if "program_sandbox" in columns:
        guarded = scores.filter(pl.col("program_sandbox") == "python_guard").height
        if guarded:
            lines.append(
                f"- **Warning:** {guarded} programs ran under the weaker Python-only guard "
                "(config `scoring.sandbox: python_guard`: audit hook and rlimits, no "
                "operating-system jail), not the jail the README describes."
            )
    if PROGRAM_VIEW_MARKER in columns:
        old = scores.filter(~pl.col(PROGRAM_VIEW_MARKER)).height
        if old:
            lines.append(
                f"- Program view absent: {old} of {scores.height} responses come from score "
                "files without program columns (scored before programs were scored apart); "
                "they count as responses without a program (text-or-program = text)."
            )
    return lines


def _controls_section(table: pl.DataFrame, settings: AnalysisSettings) -> str:
    """The controls' verdicts, one line each (docs/small-world.md, "The small world")."""
    outcome = controls.verdicts(table, settings.alpha)
    if not outcome["lines"]:
        return (
            "## Controls\n\nNone configured: no planted directions (`controls.planted`) and no "
            "replicate arms (`replicates`)."
        )
    lines = "\n".join(f"- {line}" for line in outcome["lines"])
    return (
        "## Controls\n\n" + lines + "\n\nPer task: `controls.md`; figure: `figures/controls.png`."
    )


def _power_section(table: pl.DataFrame, settings: AnalysisSettings) -> str:
    """Per task, the smallest difference the design detects (codeift.analysis.power)."""
    if table.height == 0:
        return "## Power\n\nNo task scored."
    tests = int(table["tests"][0])
    return (
        "## Power\n\n"
        f"The smallest difference against code0 each task's items detect with "
        f"{settings.power:.0%} power, at α = {settings.alpha} and at α / {tests} (Holm's "
        f"strictest level over the {tests} comparisons), assuming {settings.power_churn:.0%} of "
        "the items flip each way by chance. A planted effect not recovered where the design "
        f"cannot detect {100 * settings.min_effect:.0f} points (`analysis.min_effect`) is "
        '"underpowered", not "missed". Full table: `power.md`.\n\n'
        + evidence_markdown("power", table)
    )


def _evaluated_section(scores: pl.DataFrame) -> str:
    """Who and what was scored (first seeds, as the tables), then how programs ran (all rows)."""
    programs = program_lines(scores)
    scores = evidence.first_seed(scores)
    backbones = scores.select("backbone", "family", "size_label").unique().sort("backbone")
    engines = sorted(scores["engine"].unique().drop_nulls().to_list())
    variants = variants_in_order(scores)
    lines = [
        "- Backbones: " + ", ".join(f"{b} ({f}, {s})" for b, f, s in backbones.iter_rows()),
        "- Variants: " + ", ".join(variants),
        "- Engines: " + (", ".join(engines) if engines else "n/a"),
        f"- Scored examples: {scores.height}",
        *programs,
        "",
    ]
    counts = scores.group_by("task", "domain", "backbone", "variant").agg(pl.len().alias("n"))
    per_task = counts.group_by("task", "domain").agg(
        pl.col("n").min().alias("lo"), pl.col("n").max().alias("hi")
    )
    spans = {(t, d): (lo, hi) for t, d, lo, hi in per_task.iter_rows()}
    rows = []
    for task, dom in tasks_in_order(scores):
        lo, hi = spans[(task, dom)]
        rows.append([task, dom, str(lo) if lo == hi else f"{lo}–{hi}"])
    lines.append(_markdown(["task", "domain", "examples per model"], rows))
    return "\n".join(lines)


def _winners(group: pl.DataFrame) -> tuple[list[str], float]:
    """Variants with the top accuracy; ties within float noise are all reported."""
    best = max(group["accuracy"].to_list())
    tied = group.filter((pl.col("accuracy") - best).abs() <= 1e-12)
    return variants_in_order(tied), best


def _best_overall_section(overall: pl.DataFrame) -> str:
    rows = []
    for backbone in sorted(overall["backbone"].unique().to_list()):
        group = overall.filter(pl.col("backbone") == backbone)
        winners, best = _winners(group)
        row = group.filter(pl.col("variant") == winners[0]).row(0, named=True)
        rows.append(
            [
                backbone,
                " / ".join(winners),
                _percent(best),
                _points(row["delta_vs_code0"]),
                _points(row["delta_vs_base"]),
            ]
        )
    header = ["backbone", "best variant", "accuracy (%)", "Δ vs code0 (pp)", "Δ vs base (pp)"]
    return _markdown(header, rows)


def _domain_winner_section(domain: pl.DataFrame) -> str:
    domains = sorted(domain["domain"].unique().to_list(), key=lambda d: (domain_rank(d), d))
    rows = []
    for backbone in sorted(domain["backbone"].unique().to_list()):
        row = [backbone]
        for name in domains:
            group = domain.filter((pl.col("backbone") == backbone) & (pl.col("domain") == name))
            if group.height == 0:
                row.append("n/a")
                continue
            winners, best = _winners(group)
            row.append(f"{' / '.join(winners)} ({_percent(best)})")
        rows.append(row)
    return _markdown(["backbone", *domains], rows)


def mix_markdown(mixes: pl.DataFrame) -> str:
    header = (
        "| variant | examples | code examples (%) | tokens | code tokens (%) | match | nested |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in mixes.iter_rows(named=True):
        lines.append(
            f"| {row['variant']} | {row['examples']} | {100 * row['code_example_share']:.1f} "
            f"| {row['tokens']} | {100 * row['code_token_share']:.1f} | {row['match']} "
            f"| {'yes' if row['nested'] else 'no'} |"
        )
    return "\n".join(lines)
