"""Answer extraction and matching for zero-shot generations.

Models seldom answer in exactly the requested form, so extraction tries the explicit forms first
(a \\boxed{} value, then "the answer is ..." / "Answer:" / "#### ...") and only then falls back to
type-specific heuristics. Every result records its `method`, so an analysis can tell a formatting
failure (fallbacks, missing answers) from a reasoning failure (an explicit but wrong answer).

Two views of a response are scored, and they never mix:
- the text view (`correct`, the study's metric) reads only what the response says: program
  source (fenced blocks, code spans, bare Python lines; `codeift.score.answer_text.text_view`) is
  removed first, so digits in a program never count. A response that is only a program has no
  text answer (`missing_reason` "code_only").
- the program view (`program_correct`) reads what the response's program printed when run
  (`program_answer`: the final value it prints, read by the task's answer type: the last field
  of its last printed line for text and lists, the last number for numbers; a traced program
  prints its steps first and its answer last).

Numbers are read by one grammar, `codeift.numbers` (shared with the task stage's gold answers).
Nothing here raises on any text, whatever its size, and every pass is linear in it.

The reading is a careful grader's (issue 25): an equation's result, not its first operand
("12 - 5 = 7" is 7); a hedge between values is no answer (`missing_reason` "ambiguous": "5 or
7", "between 40 and 45", "yes or no"); the reply's own answer, not that of a next question it
invents ("Question: ... Answer: ..."); a later explicit correction over an earlier box
("\\boxed{7} Actually, the answer is 9" is 9); and where only the fallback can read a number, a
reply cut off mid-sentence commits to nothing before its last clause (`missing_reason`
"unfinished") and a question's givens are not its answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

import polars as pl

from codeift.errors import ScoringError
from codeift.numbers import (
    DECIMAL_CONTEXT,
    NUMBER_RE,
    canonical_number,
    format_decimal,
    normalise_numerals,
    strip_currency,
    token_decimal,
)
from codeift.score import sandbox
from codeift.score.answer_text import (
    committed_text,
    correction_start,
    is_negated,
    leading_list_lines,
    leading_word_number,
    list_lines,
    normalise_latex,
    stated_candidates,
    text_view,
)
from codeift.score.sandbox import ProgramRun, SandboxLimits, extract_program
from codeift.study import ANSWER_TYPES

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

_ANSWER_IS_RE = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is\s*:?|:|=|would\s+be|will\s+be)|^[ \t]*####",
    re.IGNORECASE | re.MULTILINE,
)
_REL_TOL, _ABS_TOL = Decimal("1e-9"), Decimal("1e-6")
_BOXED_RE = re.compile(r"\\boxed\s*\{")
_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}")
_YESNO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"[.!?](?:\s|$)")
# No whitespace around the arrow: "\s*->" would rescan a long run of spaces at every start
# (quadratic); the parts are stripped instead.
_ARROW_RE = re.compile(r"->|=>|→|⟶")
_AND_RE = re.compile(r"\s(?:and|&)\s", re.IGNORECASE)
_LIST_SEPARATOR_RE = re.compile(r"[,;]|\s(?:and|&)\s", re.IGNORECASE)
_QUOTES = "'\"`“”‘’"
_EDGE_PUNCTUATION = _QUOTES + "*_.,;:!?()[]{} \t"


@dataclass(frozen=True)
class Extraction:
    """What was read from a response; `value` is None exactly when `missing_reason` is set."""

    value: str | None
    method: str
    missing_reason: str | None


def _to_decimal(text: str) -> Decimal | None:
    canonical = canonical_number(text)
    return None if canonical is None else Decimal(canonical)


def _normalise_response(response: str, strip_code: bool = True) -> str:
    """The text view, minus presentation that hides answers: program source (see the module
    docstring), markdown emphasis, Unicode number notation, LaTeX \\text{} and number notation."""
    text = unicodedata.normalize("NFKC", normalise_numerals(response))
    if strip_code:
        text = text_view(text)
    text = text.replace("**", "").replace("`", "")
    return normalise_latex(_TEXT_WRAPPER_RE.sub(r"\1", text)).strip()


def _last_boxed(text: str) -> tuple[str, int] | None:
    """Content of the last \\boxed{...}, with nested braces balanced, and where it ends."""
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
                return text[start:position].strip(), position
    return None


def _last_answer_cue(text: str) -> re.Match[str] | None:
    """The last "the answer is"/"Answer:": models that revise themselves state the final
    answer last."""
    last = None
    for last in _ANSWER_IS_RE.finditer(text):  # noqa: B007 - the last match is wanted
        pass
    return last


def _after_answer_is(text: str, cue: re.Match[str] | None) -> str | None:
    """The text after the answer cue, up to the end of its line.

    When the phrase ends its line ("The answer is:\\n42") the next non-empty line is the answer.
    """
    if cue is None:
        return None
    rest = text[cue.end() :]
    lines = rest.splitlines()
    if lines and not lines[0].strip():  # "The answer is:" then a numbered list: its items
        items = leading_list_lines(_non_empty_lines(rest))
        if items:
            return ", ".join(items)
    for line in lines:
        if line.strip():
            return line.strip()
    return None


def _first_sentence(segment: str) -> str:
    match = _SENTENCE_END_RE.search(segment)
    return segment if match is None else segment[: match.start()]


class _Hedge:
    """What a parser returns for a hedge between several values ("5 or 7", "yes or no"): a
    careful grader credits no answer there (missing_reason "ambiguous")."""


_HEDGE = _Hedge()
_Parsed = str | _Hedge | None
# What joins two values of a hedge: "5 or 7", "40 to 45" (a range dash is written "to" by
# normalise_numerals), "12 apples or 13"; "between 40 and 45" with the "between" before.
_HEDGE_JOIN_RE = re.compile(
    r"[ \t]*(?:[A-Za-z]+[ \t]+)?,?[ \t]*(?:or|to)[ \t]+(?:maybe[ \t]+|perhaps[ \t]+)?", re.I
)
_AND_JOIN_RE = re.compile(r"[ \t]*(?:[A-Za-z]+[ \t]+)?and[ \t]+", re.I)
_BETWEEN_RE = re.compile(r"\bbetween[ \t]+\Z", re.I)
_JOIN_MAX = 40
# A number an operator or "=" follows is an operand of working ("796 * 11 ="), not a result.
_OPERAND_RE = re.compile(r"[ \t]*(?:[-+*/×x÷^][ \t]*\d|=)")


def _hedged(scope: str, first: re.Match[str], second: re.Match[str]) -> bool:
    """Whether two number candidates are alternatives ("5 or 7", "between 40 and 45")."""
    join = scope[first.end() : second.start()]
    if len(join) > _JOIN_MAX or token_decimal(first.group(0)) == token_decimal(second.group(0)):
        return False
    if _HEDGE_JOIN_RE.fullmatch(join):
        return True
    before = scope[max(0, first.start() - 12) : first.start()]
    return _AND_JOIN_RE.fullmatch(join) is not None and _BETWEEN_RE.search(before) is not None


def _equation_result(scope: str, stated: list[re.Match[str]]) -> list[re.Match[str]]:
    """The candidates after the last "=" when it is followed by a result ("12 - 5 = 7" -> 7),
    not by more working ("60 = 10 + 50" keeps 60)."""
    equals = scope.rfind("=")
    after = [match for match in stated if match.start() > equals]
    if equals < 0 or not after or _OPERAND_RE.match(scope, after[0].end()):
        return stated
    return after


def _answer_scopes(text: str) -> list[str]:
    """Where an answer segment states its answer, in order: after its last explicit correction
    ("7. Actually, it's 9"), its first sentence, the whole segment."""
    cue = correction_start(text)
    scopes = [_first_sentence(text[cue:])] if cue else []
    return list(dict.fromkeys([*scopes, _first_sentence(text), text]))


def _parse_number(segment: str) -> _Parsed:
    """The number an answer segment states: in its first sentence, after any self-correction,
    an equation's result, skipping denied ones ("not 5, it is 7" -> 7); a hedge between two
    ("5 or 7") is no answer; else a leading number word ("forty-two")."""
    text = strip_currency(segment)
    for scope in _answer_scopes(text):
        stated = [m for m, negated in stated_candidates(scope, NUMBER_RE.finditer) if not negated]
        stated = _equation_result(scope, stated)
        for index, match in enumerate(stated):
            decimal = token_decimal(match.group(0))
            if decimal is not None:
                if index + 1 < len(stated) and _hedged(scope, match, stated[index + 1]):
                    return _HEDGE
                return format_decimal(decimal)
    word = leading_word_number(segment)
    return None if word is None else str(word)


def _polarity(word: str) -> bool:
    return word.lower() in ("yes", "true")


_POLAR_JOIN_RE = re.compile(r"[ \t]*,?[ \t]*(?:or|/)[ \t]*", re.I)


def _parse_polar(segment: str) -> bool | _Hedge | None:
    """The polarity an answer segment states: after any self-correction ("no, wait, yes" ->
    yes), inverted when denied ("not true" -> False); both offered ("yes or no") is a hedge."""
    text = segment.replace("\n", " ")
    for scope in _answer_scopes(text):
        stated = stated_candidates(scope, _YESNO_RE.finditer)
        if stated:
            (match, negated), *rest = stated
            polarity = _polarity(match.group(1)) != negated
            if rest:
                other, other_negated = rest[0]
                join = scope[match.end() : other.start()]
                other_polarity = _polarity(other.group(1)) != other_negated
                hedge = len(join) <= _JOIN_MAX and _POLAR_JOIN_RE.fullmatch(join) is not None
                if other_polarity != polarity and hedge:
                    return _HEDGE
            return polarity
    return None


def _parse_yesno(segment: str) -> str | _Hedge | None:
    polarity = _parse_polar(segment)
    if isinstance(polarity, _Hedge):
        return polarity
    return None if polarity is None else ("yes" if polarity else "no")


def _parse_truefalse(segment: str) -> str | _Hedge | None:
    polarity = _parse_polar(segment)
    if isinstance(polarity, _Hedge):
        return polarity
    return None if polarity is None else ("True" if polarity else "False")


def split_list(segment: str) -> list[str]:
    """Items of a list written as "a, b, c", "a, b and c", "[a, b, c]", "['a','b']", "a b c" or
    "a -> b -> c"."""
    text = segment.strip().rstrip(".")
    if "[" in text and "]" in text:
        text = text[text.rfind("[", 0, text.rfind("]")) + 1 : text.rfind("]")]
    if _ARROW_RE.search(text):
        parts = _ARROW_RE.split(text)
    elif "," in text or ";" in text or _AND_RE.search(text):
        parts = _LIST_SEPARATOR_RE.split(text)
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


# "kitchen or garden": two one-word alternatives offered as the answer.
_TEXT_HEDGE_RE = re.compile(r"(?:either\s+)?(\w+)\s+or\s+(\w+)", re.I)


# "Heidi's sister, not Norman": the alternative a reply denies is not part of its answer.
_DENIED_TAIL_RE = re.compile(r",?[ \t]+(?:not|rather[ \t]+than)[ \t]+[^,]{1,40}\Z", re.I)
# "Walter's son-in-law": a relation named through a person is the relation.
_DENIED_TAIL_MAX = 60
_POSSESSIVE_RE = re.compile(r"[A-Z][\w-]{0,40}['’]s[ \t]+([\w-]+)")


def _parse_text(segment: str) -> _Parsed:
    """A short text answer (`_clean_text`) without a denied alternative or a possessor; two
    one-word alternatives ("kitchen or garden") are a hedge."""
    text = _clean_text(segment)
    if text is None:
        return None
    head, tail = text[:-_DENIED_TAIL_MAX], text[-_DENIED_TAIL_MAX:]  # bounded: no rescans
    text = (head + _DENIED_TAIL_RE.sub("", tail)) or text
    possessive = _POSSESSIVE_RE.fullmatch(text)
    if possessive is not None:
        text = possessive.group(1)
    hedge = _TEXT_HEDGE_RE.fullmatch(text)
    if hedge is not None and hedge.group(1).casefold() != hedge.group(2).casefold():
        return _HEDGE
    return text


_PARSERS: dict[str, Callable[[str], _Parsed]] = {
    "number": _parse_number,
    "yesno": _parse_yesno,
    "truefalse": _parse_truefalse,
    "list": _parse_list,
    "text": _parse_text,
}


def _non_empty_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


_QUESTION_END_RE = re.compile(r"\?(?=\s|\Z)")
_CLAUSE_BOUNDARY_RE = re.compile(r"[.!?,;](?=\s|\Z)|\n")
_UNFINISHED_ENDS = ",;:=+-*/×(&"


def _ends_mid_sentence(text: str) -> bool:
    """Whether a reply stops mid-sentence ("The final", "so 796 * 11 ="): cut off at the
    token limit before it committed to an answer."""
    stripped = text.rstrip()
    return bool(stripped) and (stripped[-1].isalpha() or stripped[-1] in _UNFINISHED_ENDS)


def _last_end(pattern: re.Pattern[str], text: str) -> int:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - the last match is wanted
        pass
    return 0 if last is None else last.end()


def _fallback_number(text: str, reply: bool = True) -> tuple[str | None, str]:
    """The last number that is a result: not denied ("7, not 5" -> 7), not an operand of
    working ("796 * 11 ="), not a given of a question the reply asks ("... How many are
    left?"). A reply cut off mid-sentence commits only to what its last clause says: the
    clauses before are working (missing "unfinished"). A hedge ("12 or 13") is no answer
    ("ambiguous"). Else a leading number word. A program's output (`reply` False) is never cut
    off at a token limit: its last number stands wherever its last line ends."""
    cleaned = strip_currency(text)
    start = _last_end(_QUESTION_END_RE, cleaned)  # a question's numbers are its givens
    unfinished = reply and _ends_mid_sentence(cleaned)
    if unfinished:
        start = max(start, _last_end(_CLAUSE_BOUNDARY_RE, cleaned.rstrip()))
    scope = cleaned[start:]
    results = [
        match
        for match in NUMBER_RE.finditer(scope)
        if not is_negated(scope, match.start()) and not _OPERAND_RE.match(scope, match.end())
    ]
    for index in range(len(results) - 1, -1, -1):
        decimal = token_decimal(results[index].group(0))
        if decimal is not None:
            if index > 0 and _hedged(scope, results[index - 1], results[index]):
                return None, "ambiguous"
            return format_decimal(decimal), "last_number"
    for line in (scope, *_non_empty_lines(scope)[-1:]):
        word = leading_word_number(line)
        if word is not None:
            return str(word), "number_word"
    return None, "unfinished" if unfinished else "no_answer"


# "True or False: ...", "yes/no": the question's choice, restated, answers nothing.
_POLAR_CHOICE_RE = re.compile(
    r"\b(?:yes|true)\s*(?:or|/)\s*(?:no|false)\b|\b(?:no|false)\s*(?:or|/)\s*(?:yes|true)\b",
    re.IGNORECASE,
)


def _fallback_polar(
    text: str, parse: Callable[[str], str | None], method: str
) -> tuple[str | None, str]:
    """A leading yes/no is the direct answer; otherwise the last one closes the reasoning
    (inverted when denied: "... so it is not true"). A restated choice ("True or False:")
    is neither."""
    text = _POLAR_CHOICE_RE.sub(" ", text)
    leading = re.match(r"\W*(yes|no|true|false)\b", text, re.IGNORECASE)
    if leading is not None:
        return parse(leading.group(1)), method
    words = list(_YESNO_RE.finditer(text))
    if not words:
        return None, method
    last = words[-1]
    polarity = _polarity(last.group(1)) != is_negated(text, last.start())
    return parse("yes" if polarity else "no"), method


def _fallback_list(text: str) -> tuple[str | None, str]:
    brackets = re.findall(r"\[[^\[\]]*\]", text)
    if brackets:
        return _parse_list(brackets[-1]), "list_brackets"
    lines = _non_empty_lines(text)
    items = list_lines(lines)  # a numbered or bulleted list closing the response
    if items:
        return _parse_list(", ".join(items)), "list_lines"
    arrows = [line for line in lines if _ARROW_RE.search(line)]
    if arrows:
        return _parse_list(arrows[-1].rsplit(":", 1)[-1]), "list_arrow"
    return _parse_list(lines[-1].rsplit(":", 1)[-1]), "last_line"


def _fallback_text(text: str) -> tuple[str | None, str]:
    """A short first line is a direct answer; a longer response ends with its conclusion. A
    line that holds an answer cue the explicit reading found empty ("The answer is "The
    answer is ...", a degenerate repetition) answers nothing, nor does a question."""
    lines = _non_empty_lines(text)
    line, method = (lines[0], "first_line")
    if len(lines) > 1 and len(lines[0].split()) > 6:
        line, method = (lines[-1], "last_line")
    if _ANSWER_IS_RE.search(line) or line.endswith("?"):  # an empty cue, or a question
        return None, "no_answer"
    value = _parse_text(line.rsplit(":", 1)[-1])
    return (None, "ambiguous") if isinstance(value, _Hedge) else (value, method)


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


# A response line this long or longer that copies a prompt line (or begins one: a reply cut
# mid-echo) restates the question; shorter lines ("The answer is 7.") are the reply's own.
ECHO_MIN_CHARS = 20


def without_echo(text: str, prompt: str | None) -> str:
    """The response minus lines that repeat the prompt: a base model that writes the question
    out again states its numbers and its "True or False" without answering (measured on Gemma
    3 270M base, docs/tasks-and-scoring.md, "Answer extraction on real replies")."""
    if not prompt:
        return text
    prompt_lines = [" ".join(line.split()) for line in prompt.splitlines() if line.strip()]

    def echoed(line: str) -> bool:
        flat = " ".join(line.split())
        return len(flat) >= ECHO_MIN_CHARS and any(p.startswith(flat) for p in prompt_lines)

    return "\n".join(line for line in text.splitlines() if not echoed(line))


def extract_answer(
    response: str | None, answer_type: str, strip_code: bool = True, prompt: str | None = None
) -> Extraction:
    """Read the final answer of `answer_type` from what a response says; never raises on text.

    Program source is removed first (`strip_code`; off only for a program's printed output), so
    a response that is only a program is missing ("code_only"), never scored by its digits.
    With the `prompt`, lines that copy it are removed too: a response that only restates the
    question is missing ("echo").
    """
    _check_answer_type(answer_type)
    if response is None or not str(response).strip():
        return Extraction(None, "none", "empty_response")
    text = _normalise_response(str(response), strip_code)
    if text and prompt:
        text = without_echo(text, _normalise_response(prompt, False)).strip()
        if not text:
            return Extraction(None, "none", "echo")
    if not text:
        if strip_code and _normalise_response(str(response), False):
            return Extraction(None, "none", "code_only")
        return Extraction(None, "none", "no_answer")  # only markup, e.g. a run of empty fences
    if strip_code:  # a reply, not a program's output: it may invent the next question
        text = committed_text(text).strip()
    parse = _PARSERS[answer_type]
    for method, segment in _explicit_segments(text):
        if segment:
            value = parse(segment)
            if isinstance(value, _Hedge):
                return Extraction(None, "none", "ambiguous")
            if value is not None:
                return Extraction(value, method, None)
    if answer_type == "number":
        value, method = _fallback_number(text, reply=strip_code)
    else:
        value, method = _FALLBACKS[answer_type](text)
    if value is None:
        reason = method if method in _FALLBACK_MISSING else "no_answer"
        return Extraction(None, "none", reason)
    return Extraction(value, method, None)


# Why a fallback found no answer, where it can tell: a hedge, or a reply cut off mid-working.
_FALLBACK_MISSING = ("ambiguous", "unfinished")


def _explicit_segments(text: str) -> list[tuple[str, str | None]]:
    """The explicit answer segments in the order they are read: the last box, then the last
    "the answer is"; the latter first when an explicit correction comes between them
    ("\\boxed{7} Actually, the answer is 9")."""
    box = _last_boxed(text)
    cue = _last_answer_cue(text)
    boxed = ("boxed", None if box is None else box[0])
    stated = ("answer_is", _after_answer_is(text, cue))
    if box is not None and cue is not None and cue.start() > box[1]:
        if correction_start(text[box[1] : cue.start()]) > 0:
            return [stated, boxed]
    return [boxed, stated]


def normalise_text(text: str) -> str:
    """Case-, punctuation- and whitespace-free form ("Son-in-law." -> "soninlaw")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in folded if char.isalnum())


def _singular(normalised: str) -> str:
    return _SINGULAR_OF.get(normalised, normalised)


def _numbers_match(extracted: str, gold: str) -> bool:
    """Equal within 1e-9 relative or 1e-6 absolute, computed in Decimal at any magnitude."""
    left, right = _to_decimal(extracted), _to_decimal(gold)
    if left is None or right is None:
        return False
    with localcontext(DECIMAL_CONTEXT):
        tolerance = max(_REL_TOL * max(abs(left), abs(right)), _ABS_TOL)
        return abs(left - right) <= tolerance


def _polar_match(extracted: str, gold: str) -> bool:
    left, right = _parse_yesno(extracted), _parse_yesno(gold)
    return isinstance(left, str) and left == right


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

    Adds, per row (row order is kept):
    - `extracted`, `method`, `missing_reason`, `correct`: the text view, the study's metric. It
      reads only what the response says; program source never counts (a response that is only
      a program is missing, `missing_reason` "code_only", and `correct` is False).
    - `program_status`, `program_output`, `program_detail`: how the response's last Python
      block ran in the sandbox and what it printed (all null where the response has no
      program, or `run_programs` is False).
    - `program_extracted`, `program_method`, `program_correct`: the program view, the answer
      read from that printed output (`program_answer`); `program_correct` is False when the
      run did not end ok, null when nothing ran.
    - `correct_any`: `correct` or `program_correct`, the program-aided metric, so an analysis
      can show how much of a code arm's score comes from running its programs.
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
    prompts = (
        generations["prompt"].to_list() if "prompt" in generations.columns else [None] * len(rows)
    )
    for index, (response, gold, answer_type) in enumerate(rows):
        if answer_type not in ANSWER_TYPES:
            row = ids[index] if ids is not None else index
            raise ScoringError(f"row {row}: unknown answer_type {answer_type!r}")
        extraction = extract_answer(response, answer_type, prompt=prompts[index])
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
    extraction = program_answer(run.stdout, answer_type)
    return extraction.value, extraction.method, answers_match(extraction.value, gold, answer_type)


def program_answer(stdout: str | None, answer_type: str) -> Extraction:
    """The answer a program printed: the final value it prints, read by the task's answer type.

    A traced program prints its steps first and its answer last, and a trace line often holds
    the step's input beside its result: the small world's letter join prints `print(w, joined)`,
    so its last line is `pepper occp` for the answer `occp` (docs/small-world.md, "The small
    world"). So the last non-empty line is read as the value it ends with (`printed_value`): its
    last field for text, its last list for lists (a bracketed or comma-joined list is one field; a
    line with neither, `print(*items)`, is one list), its last number for numbers,
    its polar word for yes/no and true/false; an explicit "The answer is ..." or \\boxed{} on that
    line is read as written. When that line holds none (a closing "done"), the whole output is
    read like a reply. Method "output_last_line" or the whole-output method. Never raises.
    """
    _check_answer_type(answer_type)
    lines = _non_empty_lines(str(stdout)) if stdout else []
    if not lines:
        return Extraction(None, "none", "empty_output")
    value = printed_value(lines[-1], answer_type)
    if value is not None:
        return Extraction(value, "output_last_line", None)
    return extract_answer(str(stdout), answer_type, strip_code=False)


# A field of a printed line: a bracketed list, or a run of words joined by commas or semicolons
# ("c, b, a" is one field), else one whitespace-separated token.
_PRINTED_FIELD_RE = re.compile(r"\[[^\[\]]*\]|[^\s,;]+(?:[ \t]*[,;][ \t]*[^\s,;]+)*")


def printed_value(line: str, answer_type: str) -> str | None:
    """The value one printed line ends with, read by `answer_type` (see `program_answer`)."""
    explicit = extract_answer(line, answer_type, strip_code=False)
    if explicit.value is None or explicit.method in ("boxed", "answer_is"):
        return explicit.value
    if answer_type not in ("text", "list"):
        return explicit.value  # numbers: the last number; polar words: the closing one
    fields = _PRINTED_FIELD_RE.findall(line.rsplit(":", 1)[-1]) or _PRINTED_FIELD_RE.findall(line)
    if answer_type == "list":
        # A list with no brackets or separators ("c b a", from `print(*items)`) is the whole line.
        listed = [field for field in fields if field.startswith("[") or re.search("[,;]", field)]
        return _parse_list(listed[-1]) if listed else explicit.value
    return (_clean_text(fields[-1]) if fields else None) or explicit.value


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


def score_summary(scored: pl.DataFrame, sandbox_mode: str) -> dict[str, Any]:
    """One scoring job's counts for its log: examples, correct, why answers were missing, how
    the programs ran (and how many were not run), and the sandbox work folders left behind (a
    non-zero count is a leak worth seeing in the job log)."""
    missing = scored["missing_reason"].drop_nulls().value_counts(sort=True).rows()
    statuses = scored["program_status"].drop_nulls().value_counts(sort=True).rows()
    return {
        "examples": scored.height,
        "correct": int(scored["correct"].sum()),
        "missing": dict(missing),
        "sandbox": sandbox_mode,
        "program_status": dict(statuses),
        "not_run": int((scored["program_status"] == "not_run").sum()),
        "work_folders_left": sandbox.leftover_count(),
    }
