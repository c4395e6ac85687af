"""The text view of a model response, and the answer shapes that plain regexes misread.

`codeift.score.answers` reads the study's metric (`correct`) from what a response *says*. A
program a response holds is the program view: it is run, and only its printed output may score
(`program_correct`, `correct_any`). So before any answer is read, `text_view` removes program
source: fenced blocks (closed, or left open by a generation cut off at the token limit), inline
code spans that are code rather than a quoted value, and unfenced Python: a paragraph that
parses as a program, a bare line that calls, imports, defines or loops (`print(6 * 7)`), and the
body indented under such a header. Digits inside a program are never a text answer; a prose
answer line written inside a fence ("The answer is yes." under an unclosed `print(`, outside any
string) is no program, and stays. A program
line mixed into a prose paragraph without its header (a lone `x = 5`) is left as text: it
cannot be told from an equation reliably.

The other helpers here turn written shapes into the canonical ones the matcher compares:
LaTeX fractions (`\\frac{1}{2}` -> `1/2`), number words ("forty-two" -> 42, through the
maintained `text2num` package), numbered or bulleted lines as list items, negated candidates
("not 5, it is 7"), self-corrections ("no, wait, yes") and an invented next question
(`committed_text`); Unicode number notation is `codeift.numbers.normalise_numerals`. Every
function is total: on any string it returns a value, never raises, and runs in time linear in
the input (no regex here can backtrack catastrophically or rescan a run;
tests/score/test_scoring_properties.py checks both, up to 1 MB).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterator

# A fenced block (``` or ~~~, three or more, at a line start, indented or not) up to its closing
# fence or, when a generation was cut off inside it, to the end of the text. The one grammar of a
# fence: the text view removes these blocks, the program runner runs one of them. Groups: the
# fence, its info string ("python"), the body.
_FENCE_RE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})([^\n`]*)(?:\n(.*?)(?:^[ \t]*\1[`~]*[ \t]*$|\Z)|\Z)",
    re.DOTALL | re.MULTILINE,
)


def fenced_blocks(response: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order; an unclosed final fence runs to the
    end of the text."""
    return [(match.group(2), match.group(3) or "") for match in _FENCE_RE.finditer(response)]


# An inline code span: one to three backticks, content on one line, the same run closing it.
# The look-arounds pin the span to whole backtick runs, which keeps the match linear.
_INLINE_CODE_RE = re.compile(r"(?<!`)(`{1,3})(?!`)([^`\n]+)(?<!`)\1(?!`)")
# What Python source looks like before it is parsed: an identifier glued to "(" (prose puts a
# space there), or a line opening with a statement keyword.
_CODE_SHAPE_RE = re.compile(
    r"[A-Za-z_][\w.]*\(|^[ \t]*(?:import|from|def|class|return|for|while|with|lambda)[ \t]",
    re.MULTILINE,
)
_CLAUSE_RE = re.compile(r"[ \t]*(?:else|elif\b[^\n]*|except\b[^\n]*|finally)[ \t]*:[ \t]*$")
_CODE_LINE_MAX = 400  # longer lines are prose for this purpose (and parse in bounded time)
_PARAGRAPH_MAX = 20_000  # an unfenced program paragraph is parsed whole up to this size
_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")
_PROGRAM_NODES = (
    ast.Call,
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.With,
    ast.Return,
    ast.Lambda,
)

_FRAC_RE = re.compile(
    r"\\[dt]?frac\s*\{\s*(-?\d[\d,]*(?:\.\d+)?)\s*\}\s*\{\s*(-?\d[\d,]*(?:\.\d+)?)\s*\}"
)
_FRAC_SHORT_RE = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")  # \frac12
_LATEX_REPLACEMENTS = (("{,}", ","), ("\\,", ""), ("\\!", ""), ("\\%", "%"), ("\\$", "$"))

_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand million billion trillion"
).split()
_NUMBER_WORD = "(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"
# A run of number words joined by spaces, hyphens or "and" ("one hundred and forty-two"); only
# at the start of a segment, as a direct answer ("The answer is forty-two.").
_LEADING_WORDS_RE = re.compile(
    r"[\W_]*(" + _NUMBER_WORD + r"(?:(?:[ \t-]+|[ \t]+and[ \t]+)" + _NUMBER_WORD + r")*)\b",
    re.IGNORECASE | re.ASCII,
)
_WORD_RUN_MAX = 160

# A numbered or bulleted line: "1. apple", "2) banana", "- cherry", "* plum", "• fig".
_LIST_LINE_RE = re.compile(r"[ \t]*(?:\d{1,3}[.)]|[-*•+])[ \t]+(\S[^\n]*)")

# "not 5", "isn't true", "never yes": the candidate right after is what the answer is not.
_NEGATION_RE = re.compile(r"(?:\bnot|n't|\bnever)[ \t]+(?:equal[ \t]+to[ \t]+)?\Z", re.IGNORECASE)
_NEGATION_WINDOW = 24
# A self-correction inside one answer sentence: what follows the last cue replaces what came
# before ("The answer is no, wait, yes."). "rather" is left out: "7 rather than 5" keeps 7.
_CORRECTION_RE = re.compile(
    r"\b(?:wait|actually|sorry|correction|oops|i[ \t]+mean|scratch[ \t]+that|make[ \t]+that|"
    r"on[ \t]+second[ \t]+thought)\b",
    re.IGNORECASE,
)


# A line inside a fence that states an answer in prose ("The answer is yes.", unquoted, outside
# any triple-quoted string) is no Python: a model that left its fence open, or wrote its answer
# inside it, said it. The text view keeps it (measured on Gemma 3 270M's code-arm replies).
_FENCED_ANSWER_RE = re.compile(
    r"^[ \t]*(?:the[ \t]+)?(?:final[ \t]+)?answer[ \t]*(?:is\b|:)[^\n]*",
    re.IGNORECASE | re.MULTILINE,
)
_TRIPLE_QUOTE_RE = re.compile("\"\"\"|'''")


def _fence_replacement(match: re.Match[str]) -> str:
    """A fenced block leaves only the prose answer lines written inside it."""
    body = match.group(3) or ""
    kept, quotes, scanned = [], 0, 0
    for line in _FENCED_ANSWER_RE.finditer(body):
        quotes += len(_TRIPLE_QUOTE_RE.findall(body, scanned, line.start()))
        scanned = line.start()
        if quotes % 2 == 0:
            kept.append(line.group(0).strip())
    return "\n" + "\n".join(kept) + "\n"


def text_view(response: str) -> str:
    """The response without program source: what it says, not what its code contains."""
    without_blocks = _FENCE_RE.sub(_fence_replacement, response)
    without_spans = _INLINE_CODE_RE.sub(_inline_replacement, without_blocks)
    paragraphs = _PARAGRAPH_RE.split(without_spans)
    kept = [para for para in paragraphs if not _is_program_source(para, _PARAGRAPH_MAX)]
    return "\n".join(_prose_lines("\n\n".join(kept).split("\n")))


def _prose_lines(lines: list[str]) -> Iterator[str]:
    """Drop bare program lines, and with a dropped header ("def f(n):") the body indented
    under it and its else/elif/except/finally clauses, so an unfenced program leaves nothing."""
    body_indent: int | None = None  # indentation of the dropped header whose body we are in
    for line in lines:
        indent = len(line) - len(line.lstrip(" \t"))
        if body_indent is not None:
            if not line.strip() or indent > body_indent or _CLAUSE_RE.match(line):
                continue
            body_indent = None
        if is_program_line(line):
            if line.rstrip().endswith(":"):
                body_indent = indent
            continue
        yield line


def _inline_replacement(match: re.Match[str]) -> str:
    """A quoted value (`42`, `[c, b, a]`, `x = 7`) stays as text; a code span goes."""
    content = match.group(2)
    return " " if _is_program_source(content) else content


def is_program_line(line: str) -> bool:
    """Whether a bare line is Python that does something (calls, imports, defines, loops)."""
    stripped = line.strip()
    if not stripped or len(stripped) > _CODE_LINE_MAX or _CODE_SHAPE_RE.search(stripped) is None:
        return False
    return _is_program_source(stripped)


def _is_program_source(code: str, max_chars: int = _CODE_LINE_MAX) -> bool:
    if len(code) > max_chars or _CODE_SHAPE_RE.search(code) is None:
        return False
    source = textwrap.dedent(code).strip()
    if source.endswith(":"):  # a compound statement's header line: give it a body to parse
        source += "\n    pass"
    try:
        tree = ast.parse(source)
    except Exception:  # SyntaxError, ValueError (NUL), RecursionError, MemoryError: not code
        return False
    return any(isinstance(node, _PROGRAM_NODES) for node in ast.walk(tree))


def normalise_latex(text: str) -> str:
    """LaTeX number notation as plain text: `\\frac{1}{2}` -> `1/2`, `1{,}000` -> `1,000`."""
    for old, new in _LATEX_REPLACEMENTS:
        text = text.replace(old, new)
    text = _FRAC_RE.sub(r"\1/\2", text)
    return _FRAC_SHORT_RE.sub(r"\1/\2", text)


def leading_word_number(segment: str) -> int | None:
    """The number a segment starts with when written in words ("forty-two apples" -> 42)."""
    match = _LEADING_WORDS_RE.match(segment)
    if match is None or len(match.group(1)) > _WORD_RUN_MAX:
        return None
    words = re.sub(r"[\s-]+", " ", match.group(1).lower())
    from text_to_num import text2num

    try:
        return int(text2num(words, "en"))
    except ValueError:  # not one number ("two three"): no word answer
        return None


def list_lines(lines: list[str], end: int | None = None) -> list[str] | None:
    """Items of the run of numbered/bulleted lines that ends at `lines[end]` (default: last)."""
    end = len(lines) - 1 if end is None else end
    if end < 0 or _LIST_LINE_RE.fullmatch(lines[end]) is None:
        return None
    start = end
    while start > 0 and _LIST_LINE_RE.fullmatch(lines[start - 1]) is not None:
        start -= 1
    return [_LIST_LINE_RE.fullmatch(line).group(1) for line in lines[start : end + 1]]


def leading_list_lines(lines: list[str]) -> list[str] | None:
    """Items of the run of numbered/bulleted lines that starts at `lines[0]`."""
    items = []
    for line in lines:
        match = _LIST_LINE_RE.fullmatch(line)
        if match is None:
            break
        items.append(match.group(1))
    return items or None


def is_negated(text: str, position: int) -> bool:
    """Whether the candidate starting at `position` is denied ("not 5", "isn't true")."""
    window = text[max(0, position - _NEGATION_WINDOW) : position]
    return _NEGATION_RE.search(window) is not None


def correction_start(sentence: str) -> int:
    """Where the answer's last self-correction starts (0 when it has none)."""
    last = None
    for last in _CORRECTION_RE.finditer(sentence):  # noqa: B007 - the last match is wanted
        pass
    return 0 if last is None else last.end()


def stated_candidates(
    scope: str, candidates: Callable[[str], Iterator[re.Match[str]]]
) -> list[tuple[re.Match[str], bool]]:
    """The candidates an answer sentence states, each with whether it is negated.

    Those after the last self-correction cue replace the ones before it; with none after the
    cue, all of the sentence's stand. The caller decides what a negated one means: a denied
    number is skipped, a denied polarity word is inverted.
    """
    for start in dict.fromkeys((correction_start(scope), 0)):
        found = [match for match in candidates(scope) if match.start() >= start]
        if found:
            return [(match, is_negated(scope, match.start())) for match in found]
    return []


# A base model that has answered goes on to invent the next exercise ("Question: ... Answer:
# ..."): what follows the first such header is not its answer. A header that opens the reply
# restates the real question; then the second header ends the reply's own part.
_NEW_QUESTION_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:question|problem|exercise|human|user|q)[ \t]*\d{0,3}[ \t]*[:.)]",
    re.IGNORECASE | re.MULTILINE,
)


def committed_text(text: str) -> str:
    """The reply up to the invented next question, if it writes one."""
    headers = _NEW_QUESTION_RE.finditer(text)
    first = next(headers, None)
    if first is None:
        return text
    if text[: first.start()].strip():
        return text[: first.start()]
    second = next(headers, None)
    return text if second is None else text[: second.start()]
