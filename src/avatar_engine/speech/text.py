"""Text normalisation: raw text -> spoken words and pauses.

Numbers, ordinals, currency, times, percentages, common abbreviations and symbols are
expanded into the words a speaker would say; punctuation becomes a pause of a known kind, and
anything unpronounceable (emoji, control characters, stray symbols) is dropped. The result is
a flat list of :class:`Word` and :class:`Pause` tokens, linear in the input length, so even
100 kB of hostile text is cheap.

English expansion rules only: other languages go to espeak-ng, which normalises its own text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class PauseKind(StrEnum):
    """Why speech stops; the duration model turns each kind into milliseconds."""

    WORD = "word"  # a dash or slash inside a phrase
    CLAUSE = "clause"  # , ; :
    SENTENCE = "sentence"  # . ! ? and line breaks
    ELLIPSIS = "ellipsis"  # ... and …


PAUSE_MS: Final[dict[PauseKind, float]] = {
    PauseKind.WORD: 80.0,
    PauseKind.CLAUSE: 220.0,
    PauseKind.SENTENCE: 420.0,
    PauseKind.ELLIPSIS: 500.0,
}
"""Pause lengths at the reference speaking rate; scaled with the rate like phones are."""


@dataclass(frozen=True, slots=True)
class Word:
    """One word to pronounce, as normalisation leaves it."""

    text: str
    """Lower-case spelling to look up (letters and apostrophes)."""
    spell: bool = False
    """Say it letter by letter (an acronym not in the dictionary)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """A pause token; its kind decides its length (``PAUSE_MS``)."""

    kind: PauseKind


Token = Word | Pause

_ONES: Final = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS: Final = [
    "_",
    "_",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
]
_SCALES: Final = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR: Final = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip

ABBREVIATIONS: Final[dict[str, str]] = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "prof": "professor", "vs": "versus", "etc": "et cetera", "eg": "for example",
    "ie": "that is", "approx": "approximately", "no": "number", "dept": "department",
    "min": "minutes", "sec": "seconds", "hr": "hours", "km": "kilometers", "kg": "kilograms",
    "cm": "centimeters", "mm": "millimeters", "ft": "feet", "lb": "pounds", "oz": "ounces",
}  # fmt: skip
"""Expanded only when written with a trailing period (``Dr.``), or always for e.g./i.e."""

SYMBOLS: Final[dict[str, str]] = {
    "&": "and", "%": "percent", "@": "at", "+": "plus", "=": "equals", "#": "number",
    "°": "degrees", "\u00d7": "times", "÷": "divided by", "<": "less than", ">": "greater than",
    "€": "euros", "£": "pounds", "$": "dollars", "¥": "yen",
}  # fmt: skip

CURRENCY: Final[dict[str, tuple[str, str, str, str]]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}

MAX_DIGITS: Final = 15
"""Longer digit strings are read digit by digit (phone numbers, IDs), which keeps cost linear."""


def number_words(n: int) -> list[str]:
    """Cardinal words for 0 <= n < 10**15."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return number_words(high) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> list[str]:
    """``n`` spoken as an ordinal: 21 -> twenty first."""
    words = number_words(n)
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def year_words(n: int) -> list[str]:
    """1984 -> nineteen eighty four; 2005 -> two thousand five; 1900 -> nineteen hundred."""
    high, low = divmod(n, 100)
    if 2000 <= n < 2010 or (low == 0 and n % 1000 == 0):
        return number_words(n)
    if low == 0:
        return [*number_words(high), "hundred"]
    tail = ["oh", _ONES[low]] if low < 10 else number_words(low)
    return number_words(high) + tail


def _digits(s: str) -> list[str]:
    return [_ONES[int(c)] for c in s if c.isdigit()]


def _integer_words(s: str) -> list[str]:
    s = s.replace(",", "")
    if len(s) > MAX_DIGITS or (len(s) > 1 and s.startswith("0")):
        return _digits(s)
    return number_words(int(s))


_TOKEN_RE: Final = re.compile(
    r"""
    (?P<money>[$€£¥])\s?(?P<amount>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d{1,2}))?
      (?:\s?(?P<scale>thousand|million|billion|trillion)\b)?
  | (?P<time>\d{1,2}):(?P<minutes>\d{2})\s?(?P<ampm>[ap]\.?m\.?)?(?![\w])
  | (?P<ordinal>\d+)(?P<suffix>st|nd|rd|th)\b
  | (?P<number>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<decimal>\d+))?(?P<percent>\s?%)?
  | (?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*)(?P<period>\.(?!\.))?
  | (?P<ellipsis>\.\.\.+|…)
  | (?P<sentence>[.!?]+|[\n\r]+)
  | (?P<clause>[,;:])
  | (?P<dash>\s[-\u2013\u2014]+\s|[\u2013\u2014]+|/)
  | (?P<symbol>[&%@+=\#°\u00d7÷<>€£$¥])
    """,
    re.VERBOSE,
)

_LATIN_RE: Final = re.compile(r"^[a-z']+$")


_LATIN_ABBREV_RE: Final = re.compile(r"\b(?:i\.e\.|e\.g\.)", re.IGNORECASE)


def _clean(text: str) -> str:
    """NFKC, and every control or format character (except line breaks) turned into a space."""
    text = unicodedata.normalize("NFKC", text)
    text = _LATIN_ABBREV_RE.sub(
        lambda m: " that is " if m.group().lower() == "i.e." else " for example ", text
    )
    return "".join(ch if ch in "\n\r" or unicodedata.category(ch)[0] != "C" else " " for ch in text)


def _push_words(out: list[Token], words: list[str]) -> None:
    out.extend(Word(w) for w in words)


def _word_token(out: list[Token], raw: str, period: bool) -> bool:
    """Appends the word(s) for ``raw``; returns True when a trailing period was consumed."""
    lower = raw.lower().replace("\u2019", "'")
    if not _LATIN_RE.match(lower):
        # Letters outside a-z (accents, other scripts): strip accents; drop what remains.
        folded = unicodedata.normalize("NFKD", lower)
        lower = "".join(c for c in folded if "a" <= c <= "z" or c == "'")
        if not lower:
            return False
    key = lower.replace("'", "")
    if period and key in ABBREVIATIONS:
        _push_words(out, ABBREVIATIONS[key].split())
        return True
    spell = raw.isupper() and 2 <= len(raw) <= 5 and "'" not in raw
    out.append(Word(lower, spell=spell))
    return False


def normalize(text: str) -> list[Token]:
    """Text -> words and pauses, with numbers, currency, times and symbols spoken."""
    out: list[Token] = []
    for m in _TOKEN_RE.finditer(_clean(text)):
        kind = m.lastgroup
        g = m.groupdict()
        if g["money"] is not None:
            one, many, minor_one, minor_many = CURRENCY[g["money"]]
            amount = _integer_words(g["amount"])
            if g["scale"]:
                _push_words(out, [*amount, g["scale"], many])
                continue
            major = one if amount == ["one"] else many
            _push_words(out, [*amount, major])
            if g["cents"]:
                cents = int(g["cents"].ljust(2, "0"))
                if cents:
                    _push_words(out, ["and", *number_words(cents)])
                    _push_words(out, [minor_one if cents == 1 else minor_many])
        elif g["time"] is not None:
            hours, minutes = int(g["time"]), int(g["minutes"])
            words = number_words(hours)
            if minutes == 0:
                words += [] if g["ampm"] else ["o'clock"]
            elif minutes < 10:
                words += ["oh", *number_words(minutes)]
            else:
                words += number_words(minutes)
            _push_words(out, words)
            if g["ampm"]:
                out.extend([Word(g["ampm"][0], spell=True), Word("m", spell=True)])
        elif g["ordinal"] is not None:
            n = g["ordinal"]
            _push_words(out, ordinal_words(int(n)) if len(n) <= MAX_DIGITS else _digits(n))
        elif g["number"] is not None:
            s = g["number"]
            plain = s.isdigit() and len(s) == 4 and 1100 <= int(s) <= 2099 and not g["decimal"]
            words = year_words(int(s)) if plain else _integer_words(s)
            if g["decimal"]:
                words += ["point", *_digits(g["decimal"][:MAX_DIGITS])]
            if g["percent"]:
                words.append("percent")
            _push_words(out, words)
        elif g["word"] is not None:
            consumed = _word_token(out, g["word"], g["period"] is not None)
            if g["period"] is not None and not consumed:
                out.append(Pause(PauseKind.SENTENCE))
        elif kind == "ellipsis":
            out.append(Pause(PauseKind.ELLIPSIS))
        elif kind == "sentence":
            out.append(Pause(PauseKind.SENTENCE))
        elif kind == "clause":
            out.append(Pause(PauseKind.CLAUSE))
        elif kind == "dash":
            out.append(Pause(PauseKind.WORD))
        elif kind == "symbol":
            _push_words(out, SYMBOLS[m.group()].split())
    return _merge_pauses(out)


def _merge_pauses(tokens: list[Token]) -> list[Token]:
    """Runs of pauses collapse into the longest; leading pauses are dropped."""
    merged: list[Token] = []
    for tok in tokens:
        if isinstance(tok, Pause):
            if not merged:
                continue
            prev = merged[-1]
            if isinstance(prev, Pause):
                if PAUSE_MS[tok.kind] > PAUSE_MS[prev.kind]:
                    merged[-1] = tok
                continue
        merged.append(tok)
    return merged
