"""How the study reads and writes a number: one grammar for gold answers (built by the task
stage) and for the numbers a reply states (read by the scorer), so that both sides of a match go
through the same code. It sits below every stage: tasks and scoring import it downward.

Numbers: "1,234.50" is 1234.5; a dot-grouped number with a decimal comma ("1.000,50") or with
two or more dot groups ("1.000.000") is read the European way (1000.5, 1000000); a lone "1.000"
stays 1 (the tasks are English, where the dot is decimal); a comma before one or two digits is
decimal ("3,5" is 3.5), before three a group; Indian ("1,00,000"), thin-space and apostrophe
groups are joined. Fractions (3/4, \\frac{3}{4}, "2½") become decimals; "4²" is 16, "–5" is -5
(`normalise_numerals`, before NFKC could misread them). Nothing here raises on any text,
whatever its size (no int(str) conversion), and every pass is linear in it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation, localcontext
from fractions import Fraction

# A number token: optional sign, then a European-grouped number ("1.000,50", "1.000.000"; see
# the module docstring), or digits with well-formed thousands commas, optional decimals or a
# simple fraction. The look-behind keeps "x2" or the "5" of "2.5" from counting as numbers.
NUMBER_RE = re.compile(
    r"(?<![\w.])(?<!\d,)-?(?:\d{1,3}(?:\.\d{3})+,\d+(?!\d|\.\d)|\d{1,3}(?:\.\d{3}){2,}(?!\d|[.,]\d)"
    r"|\d{1,2}(?:,\d{2})+,\d{3}(?![\d,])|\d+,\d{1,2}(?!\d|[.,]\d)"
    r"|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?)"
)
# Decimal arithmetic on numbers of any size: no exponent overflow, no traps, so matching a
# 100,000-digit number neither raises nor silently agrees through float infinity.
DECIMAL_CONTEXT = Context(prec=50, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])


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
        return format_decimal(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    decimal = _parse_number_token(str(value))
    return None if decimal is None else format_decimal(decimal)


def _parse_number_token(text: str) -> Decimal | None:
    """Parse one number written the way people write it: $, commas, %, a trailing unit word."""
    cleaned = strip_currency(normalise_numerals(text.strip()))
    match = NUMBER_RE.search(cleaned)
    if match is None or cleaned[: match.start()].strip(" -+") or _has_second_number(cleaned, match):
        return None
    return token_decimal(match.group(0))


def strip_currency(text: str) -> str:
    return text.replace("$", "").replace("€", "").replace("£", "")


def token_decimal(token: str) -> Decimal | None:
    """The value of one NUMBER_RE token, European grouping included."""
    if "," in token and "." in token and token.rfind(",") > token.rfind("."):
        token = token.replace(".", "").replace(",", ".")  # 1.000,50
    elif token.count(".") > 1:
        token = token.replace(".", "")  # 1.000.000
    elif token.count(",") == 1 and "." not in token and len(token.rsplit(",", 1)[1]) < 3:
        token = token.replace(",", ".")  # 3,5: a decimal comma (a group has three digits)
    else:
        token = token.replace(",", "")
    try:
        with localcontext(DECIMAL_CONTEXT):
            if "/" in token:
                numerator, denominator = token.split("/")
                if Decimal(denominator) == 0:
                    return None
                return Decimal(numerator) / Decimal(denominator)
            return Decimal(token)
    except (InvalidOperation, ValueError):
        return None


def _has_second_number(text: str, first: re.Match[str]) -> bool:
    return NUMBER_RE.search(text, first.end()) is not None


def format_decimal(decimal: Decimal) -> str:
    """Plain digits, no exponent, no trailing zeros; exact at any size (never int(str))."""
    text = format(decimal, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# Written numbers that Unicode normalisation (NFKC) misreads: it turns "4²" into "42", "2½"
# into "21⁄2" (read as 21), and a thin-space or apostrophe grouped "1 000 000" into three
# numbers. `normalise_numerals` runs before NFKC and writes them the way the number grammar reads.
_GROUP_SEPARATORS = "\u2009\u202f\u00a0\u2007'\u2019"
_GROUPED_RE = re.compile(
    r"(?<![\d.," + _GROUP_SEPARATORS + r"])\d{1,3}(?:[" + _GROUP_SEPARATORS + r"]\d{3})+"
    r"(?![\d" + _GROUP_SEPARATORS + "])"
)
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_POWER_RE = re.compile(
    r"(?<!\d)(\d{1,6})([" + _SUPERSCRIPTS + r"]{1,2})(?![" + _SUPERSCRIPTS + "])"
)
_POWER_MAX_DIGITS = 40  # "12³" is 1728; a power longer than this stays written as "b^e"
_VULGAR = "¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞"
_VULGAR_RE = re.compile(r"(?<![\d.])(\d{1,9})?[ \t\u2009\u202f\u00a0]?([" + _VULGAR + "])")
# A dash used as a minus sign ("–5", "12 – 5"); between two digits with no space it is a range
# ("40–45"), written "40 to 45" so that a hedge reads as one.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"
_RANGE_DASH_RE = re.compile(r"(?<=\d)[\u2012\u2013\u2014](?=\d)")
_DASH_RE = re.compile("[" + _DASHES + r"](?=[ \t]?\d)")


def normalise_numerals(text: str) -> str:
    """Numbers as the number grammar reads them, before NFKC can misread them: digit groups
    joined ("1 000 000", "1'000" -> "1000000", "1000"), powers evaluated ("4²" -> "16"),
    vulgar fractions as fractions ("2½" -> "5/2", "¾" -> "3/4"), a fraction slash as "/", a
    range dash as "to" and any other dash before a digit as a minus sign."""
    text = _GROUPED_RE.sub(lambda m: re.sub("[" + _GROUP_SEPARATORS + "]", "", m.group(0)), text)
    text = _POWER_RE.sub(_power, text)
    text = _VULGAR_RE.sub(_vulgar, text.replace("\u2044", "/"))
    text = _RANGE_DASH_RE.sub(" to ", text)
    return _DASH_RE.sub("-", text)


def _power(match: re.Match[str]) -> str:
    base = int(match.group(1))
    exponent = int(match.group(2).translate(str.maketrans(_SUPERSCRIPTS, "0123456789")))
    digits = exponent * len(match.group(1))  # an upper bound on the power's length
    return str(base**exponent) if digits <= _POWER_MAX_DIGITS else f"{base}^{exponent}"


_VULGAR_VALUES = {
    char: Fraction(unicodedata.numeric(char)).limit_denominator(10) for char in _VULGAR
}


def _vulgar(match: re.Match[str]) -> str:
    total = int(match.group(1) or 0) + _VULGAR_VALUES[match.group(2)]
    return f"{total.numerator}/{total.denominator}"
