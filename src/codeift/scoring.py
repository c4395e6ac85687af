"""Answer extraction and matching for zero-shot generations.

Models seldom answer in exactly the requested form, so extraction tries the explicit forms first
(a \\boxed{} value, then "the answer is ...") and only then falls back to type-specific heuristics.
Every result records its `method`, so an analysis can tell a formatting failure (fallbacks,
missing answers) from a reasoning failure (an explicit but wrong answer).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import polars as pl

from codeift import sandbox
from codeift.sandbox import ProgramRun, SandboxLimits, extract_program

ANSWER_TYPES: tuple[str, ...] = ("number", "yesno", "truefalse", "list", "text")

# Singular -> plural of the nouns that tasks ask for by name (the bAbI animals). A model that
# answers "wolves" where bAbI's gold is "wolf" has reasoned correctly, so matching ignores
# grammatical number for exactly these words and nowhere else: a blanket "strip the s" rule would
# accept wrong letter-concatenation answers such as "tans" for "tan".
PLURAL_FORMS: dict[str, str] = {
    "mouse": "mice",
    "cat": "cats",
    "wolf": "wolves",
    "sheep": "sheep",
    "lion": "lions",
    "rabbit": "rabbits",
    "fox": "foxes",
    "bear": "bears",
    "snake": "snakes",
    "hawk": "hawks",
}
_SINGULAR_OF = {plural: singular for singular, plural in PLURAL_FORMS.items()}

_WORD_NUMBERS = {
    word: index
    for index, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}

# A number token: optional sign, digits with well-formed thousands commas, optional decimals or a
# simple fraction. The look-behind keeps "x2" or the "5" of "2.5" from counting as numbers.
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?")
_LEADING_WORD_NUMBER_RE = re.compile(
    r"\W*(" + "|".join(_WORD_NUMBERS) + r")\b(?!\s*(?:hundred|thousand|million))", re.IGNORECASE
)
_ANSWER_IS_RE = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is\s*:?|:|=|would\s+be|will\s+be)", re.IGNORECASE
)
_BOXED_RE = re.compile(r"\\boxed\s*\{")
_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}")
_YESNO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"[.!?](?:\s|$)")
_ARROW_RE = re.compile(r"\s*(?:->|=>|→|⟶)\s*")
_QUOTES = "'\"`“”‘’"
_EDGE_PUNCTUATION = _QUOTES + "*_.,;:!?()[]{} \t"


class ScoringError(ValueError):
    """Input that cannot be scored at all (unknown answer type, missing columns)."""


@dataclass(frozen=True)
class Extraction:
    """What was read from a response; `value` is None exactly when `missing_reason` is set."""

    value: str | None
    method: str
    missing_reason: str | None


def canonical_number(value: object) -> str | None:
    """The canonical string of a number ("1,234.50" -> "1234.5", 5.0 -> "5"), or None.

    Gold answers and extracted answers go through this one function so that their string forms
    agree exactly for the common case of whole numbers.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return _format_decimal(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    decimal = _parse_number_token(str(value))
    return None if decimal is None else _format_decimal(decimal)


def _parse_number_token(text: str) -> Decimal | None:
    """Parse one number written the way people write it: $, commas, %, a trailing unit word."""
    cleaned = text.strip().replace("−", "-").replace("$", "").replace("€", "").replace("£", "")
    match = _NUMBER_RE.search(cleaned)
    if match is None or cleaned[: match.start()].strip(" -+") or _has_second_number(cleaned, match):
        return None
    token = match.group(0).replace(",", "")
    try:
        if "/" in token:
            numerator, denominator = token.split("/")
            if Decimal(denominator) == 0:
                return None
            return Decimal(numerator) / Decimal(denominator)
        return Decimal(token)
    except InvalidOperation:
        return None


def _has_second_number(text: str, first: re.Match[str]) -> bool:
    return _NUMBER_RE.search(text, first.end()) is not None


def _format_decimal(decimal: Decimal) -> str:
    if decimal == decimal.to_integral_value():
        return str(int(decimal))
    return format(decimal.normalize(), "f")


def _to_decimal(text: str) -> Decimal | None:
    canonical = canonical_number(text)
    return None if canonical is None else Decimal(canonical)


def _normalise_response(response: str) -> str:
    """Undo presentation that hides answers: markdown emphasis, unicode minus, LaTeX \\text{}."""
    text = unicodedata.normalize("NFKC", response).replace("−", "-")
    text = text.replace("**", "").replace("`", "")
    return _TEXT_WRAPPER_RE.sub(r"\1", text).strip()


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with nested braces balanced."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start:position].strip()
    return None


def _after_answer_is(text: str) -> str | None:
    """The text after the last "the answer is"/"Answer:", up to the end of its line.

    The last occurrence wins because models that revise themselves state the final answer last.
    When the phrase ends its line ("The answer is:\\n42") the next non-empty line is the answer.
    """
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    for line in rest.splitlines():
        if line.strip():
            return line.strip()
    return None


def _first_sentence(segment: str) -> str:
    match = _SENTENCE_END_RE.search(segment)
    return segment if match is None else segment[: match.start()]


def _parse_number(segment: str) -> str | None:
    match = _NUMBER_RE.search(segment.replace("$", "").replace("€", "").replace("£", ""))
    if match is not None:
        return canonical_number(match.group(0))
    word = _LEADING_WORD_NUMBER_RE.match(segment)
    return None if word is None else str(_WORD_NUMBERS[word.group(1).lower()])


def _polarity(word: str) -> bool:
    return word.lower() in ("yes", "true")


def _parse_yesno(segment: str) -> str | None:
    match = _YESNO_RE.search(segment)
    return None if match is None else ("yes" if _polarity(match.group(1)) else "no")


def _parse_truefalse(segment: str) -> str | None:
    match = _YESNO_RE.search(segment)
    return None if match is None else ("True" if _polarity(match.group(1)) else "False")


def split_list(segment: str) -> list[str]:
    """Items of a list written as "a, b, c", "[a, b, c]", "['a','b']", "a b c" or "a -> b -> c"."""
    text = segment.strip().rstrip(".")
    if "[" in text and "]" in text:
        text = text[text.rfind("[", 0, text.rfind("]")) + 1 : text.rfind("]")]
    if _ARROW_RE.search(text):
        parts = _ARROW_RE.split(text)
    elif "," in text or ";" in text:
        parts = re.split(r"[,;]", text)
    else:
        parts = text.split()
    items = [_strip_and(part.strip().strip(_EDGE_PUNCTUATION)) for part in parts]
    return [item for item in items if item]


def _strip_and(item: str) -> str:
    """Drop the "and" of an Oxford-comma list ("a, b, and c")."""
    return item[4:].strip() if item.lower().startswith("and ") else item


def _parse_list(segment: str) -> str | None:
    items = split_list(_first_sentence(segment) if "[" not in segment else segment)
    return ", ".join(items) if items else None


def _clean_text(segment: str) -> str | None:
    """A short answer as written, minus quotes, emphasis, trailing punctuation and an article."""
    text = _first_sentence(segment.strip()).strip(_EDGE_PUNCTUATION)
    article = re.match(r"(?i)(?:the|a|an)\s+(\S+)$", text)
    if article is not None and len(article.group(1)) > 1:
        text = article.group(1)
    text = text.strip(_EDGE_PUNCTUATION)
    return text or None


_PARSERS: dict[str, Callable[[str], str | None]] = {
    "number": _parse_number,
    "yesno": _parse_yesno,
    "truefalse": _parse_truefalse,
    "list": _parse_list,
    "text": _clean_text,
}


def _non_empty_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _fallback_number(text: str) -> tuple[str | None, str]:
    matches = _NUMBER_RE.findall(text.replace("$", "").replace("€", "").replace("£", ""))
    return (canonical_number(matches[-1]) if matches else None), "last_number"


def _fallback_polar(
    text: str, parse: Callable[[str], str | None], method: str
) -> tuple[str | None, str]:
    """A leading yes/no is the direct answer; otherwise the last one closes the reasoning."""
    leading = re.match(r"\W*(yes|no|true|false)\b", text, re.IGNORECASE)
    if leading is not None:
        return parse(leading.group(1)), method
    words = _YESNO_RE.findall(text)
    return (parse(words[-1]) if words else None), method


def _fallback_list(text: str) -> tuple[str | None, str]:
    brackets = re.findall(r"\[[^\[\]]*\]", text)
    if brackets:
        return _parse_list(brackets[-1]), "list_brackets"
    lines = _non_empty_lines(text)
    arrows = [line for line in lines if _ARROW_RE.search(line)]
    if arrows:
        return _parse_list(arrows[-1].rsplit(":", 1)[-1]), "list_arrow"
    return _parse_list(lines[-1].rsplit(":", 1)[-1]), "last_line"


def _fallback_text(text: str) -> tuple[str | None, str]:
    """A short first line is a direct answer; a longer response ends with its conclusion."""
    lines = _non_empty_lines(text)
    if len(lines) == 1 or len(lines[0].split()) <= 6:
        return _clean_text(lines[0].rsplit(":", 1)[-1]), "first_line"
    return _clean_text(lines[-1].rsplit(":", 1)[-1]), "last_line"


_FALLBACKS: dict[str, Callable[[str], tuple[str | None, str]]] = {
    "number": _fallback_number,
    "yesno": lambda text: _fallback_polar(text, _parse_yesno, "yesno_word"),
    "truefalse": lambda text: _fallback_polar(text, _parse_truefalse, "truefalse_word"),
    "list": _fallback_list,
    "text": _fallback_text,
}


def _check_answer_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise ScoringError(
            f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}"
        )


def extract_answer(response: str | None, answer_type: str) -> Extraction:
    """Read the final answer of `answer_type` from a model response; never raises on text."""
    _check_answer_type(answer_type)
    if response is None or not str(response).strip():
        return Extraction(None, "none", "empty_response")
    text = _normalise_response(str(response))
    if not text:  # only markup (e.g. a run of code fences): nothing to read an answer from
        return Extraction(None, "none", "no_answer")
    parse = _PARSERS[answer_type]
    for method, segment in (("boxed", _last_boxed(text)), ("answer_is", _after_answer_is(text))):
        if segment:
            value = parse(segment)
            if value is not None:
                return Extraction(value, method, None)
    value, method = _FALLBACKS[answer_type](text)
    if value is None:
        return Extraction(None, "none", "no_answer")
    return Extraction(value, method, None)


def normalise_text(text: str) -> str:
    """Case-, punctuation- and whitespace-free form ("Son-in-law." -> "soninlaw")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in folded if char.isalnum())


def _singular(normalised: str) -> str:
    return _SINGULAR_OF.get(normalised, normalised)


def _numbers_match(extracted: str, gold: str) -> bool:
    left, right = _to_decimal(extracted), _to_decimal(gold)
    if left is None or right is None:
        return False
    return math.isclose(float(left), float(right), rel_tol=1e-9, abs_tol=1e-6)


def _polar_match(extracted: str, gold: str) -> bool:
    left, right = _parse_yesno(extracted), _parse_yesno(gold)
    return left is not None and left == right


def _lists_match(extracted: str, gold: str) -> bool:
    left = [normalise_text(item) for item in split_list(extracted)]
    right = [normalise_text(item) for item in split_list(gold)]
    return bool(right) and left == right


def _texts_match(extracted: str, gold: str) -> bool:
    left, right = normalise_text(extracted), normalise_text(gold)
    return bool(right) and (left == right or _singular(left) == _singular(right))


_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "number": _numbers_match,
    "yesno": _polar_match,
    "truefalse": _polar_match,
    "list": _lists_match,
    "text": _texts_match,
}


def answers_match(extracted: str | None, gold: str, answer_type: str) -> bool:
    """Whether an extracted answer equals the gold one under the type's notion of equality."""
    _check_answer_type(answer_type)
    if extracted is None or gold is None:
        return False
    return _MATCHERS[answer_type](str(extracted), str(gold))


_SCORE_INPUTS = ("response", "answer", "answer_type")


def score_frame(
    generations: pl.DataFrame,
    run_programs: bool = True,
    limits: SandboxLimits | None = None,
    workers: int = 2,
    sandbox_mode: str = sandbox.jail.DEFAULT_MODE,
) -> pl.DataFrame:
    """Score every generation from its text and, where it holds a program, from what that prints.

    Adds extracted/method/missing_reason/correct (the text answer), then the program_* columns
    (null where a response has no program, or `run_programs` is False) and `correct_any`, so an
    analysis can credit a code-tuned model that answers with a program. Row order is kept.
    `sandbox_mode` (config `scoring.sandbox`) is what programs run under; where the jail cannot be
    set up, program_status is `not_run` and program_detail says why; program_sandbox names it.
    """
    absent = [column for column in _SCORE_INPUTS if column not in generations.columns]
    if absent:
        raise ScoringError(f"generations frame lacks column(s) {', '.join(absent)}")
    ids = generations["id"].to_list() if "id" in generations.columns else None
    extracted: list[str | None] = []
    methods: list[str] = []
    reasons: list[str | None] = []
    correct: list[bool] = []
    rows = list(generations.select(_SCORE_INPUTS).iter_rows())
    for index, (response, gold, answer_type) in enumerate(rows):
        if answer_type not in ANSWER_TYPES:
            row = ids[index] if ids is not None else index
            raise ScoringError(f"row {row}: unknown answer_type {answer_type!r}")
        extraction = extract_answer(response, answer_type)
        extracted.append(extraction.value)
        methods.append(extraction.method)
        reasons.append(extraction.missing_reason)
        correct.append(answers_match(extraction.value, gold, answer_type))
    scored = generations.with_columns(
        pl.Series("extracted", extracted, dtype=pl.Utf8),
        pl.Series("method", methods, dtype=pl.Utf8),
        pl.Series("missing_reason", reasons, dtype=pl.Utf8),
        pl.Series("correct", correct, dtype=pl.Boolean),
    )
    programs = [extract_program(response) if run_programs else None for response, _, _ in rows]
    runs = sandbox.run_programs(programs, limits, workers, sandbox_mode)
    return _add_program_columns(scored, rows, runs, sandbox_mode)


def _program_score(
    run: ProgramRun | None, gold: str, answer_type: str
) -> tuple[str | None, str | None, bool | None]:
    """(extracted, method, correct) of a program's output; only a run that ended ok can score."""
    if run is None:
        return None, None, None
    if run.status != "ok":
        return None, "none", False
    extraction = extract_answer(run.stdout, answer_type)
    return extraction.value, extraction.method, answers_match(extraction.value, gold, answer_type)


PROGRAM_COLUMNS: tuple[str, ...] = (
    "program_status",
    "program_output",
    "program_detail",
    "program_extracted",
    "program_method",
    "program_correct",
    "program_sandbox",
)


def _add_program_columns(
    scored: pl.DataFrame, rows: list[tuple], runs: list[ProgramRun | None], sandbox_mode: str
) -> pl.DataFrame:
    scores = [
        _program_score(run, gold, answer_type)
        for run, (_, gold, answer_type) in zip(runs, rows, strict=True)
    ]
    return scored.with_columns(
        pl.Series("program_status", [run and run.status for run in runs], dtype=pl.Utf8),
        pl.Series("program_output", [run and run.stdout for run in runs], dtype=pl.Utf8),
        pl.Series("program_detail", [run and run.detail for run in runs], dtype=pl.Utf8),
        pl.Series("program_extracted", [score[0] for score in scores], dtype=pl.Utf8),
        pl.Series("program_method", [score[1] for score in scores], dtype=pl.Utf8),
        pl.Series("program_correct", [score[2] for score in scores], dtype=pl.Boolean),
        pl.Series("program_sandbox", [run and sandbox_mode for run in runs], dtype=pl.Utf8),
    ).with_columns(
        (pl.col("correct") | pl.col("program_correct").fill_null(False)).alias("correct_any")
    )
