"""The canonical viseme set and the phoneme -> viseme tables (data files in ``speech/data``).

Every input path (ARPAbet from CMUdict, IPA from espeak-ng, Azure viseme IDs, Polly speech
marks, and later recognised phones from audio) lands on one vocabulary: the Oculus/OVR 15
visemes. Rigs map those 15 onto their own morphs (the rig file's ``visemes`` mapping), so a
table is written once and every rig speaks.

A table entry is a list of one or two visemes (two = a diphthong, split in time), or the
marker ``hh``: /h/ and glottal sounds have no mouth shape of their own and take the next
vowel's shape at low dominance (Cohen-Massaro's example of a weak segment).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

VISEMES: Final[tuple[str, ...]] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)  # fmt: skip
"""The Oculus/OVR 15 in their standard order (index = OVR viseme id)."""

VISEME_INDEX: Final[dict[str, int]] = {v: i for i, v in enumerate(VISEMES)}
SIL: Final = 0
HH: Final = "hh"
"""Table marker: no shape of its own; borrow the next vowel's at low dominance."""

BILABIAL: Final = VISEME_INDEX["PP"]
LABIODENTAL: Final = VISEME_INDEX["FF"]
VOWEL_VISEMES: Final[frozenset[int]] = frozenset(
    VISEME_INDEX[v] for v in ("aa", "E", "I", "O", "U")
)

PRIMARY_STRESS: Final = "\u02c8"
SECONDARY_STRESS: Final = "\u02cc"
LENGTH_MARK: Final = "\u02d0"

_DATA = "avatar_engine.speech.data"


class TableError(ValueError):
    """A phoneme, IPA symbol or viseme code that the tables do not know."""


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files(_DATA).joinpath(name).read_text("utf-8"))
    return data


@dataclass(frozen=True, slots=True)
class PhoneInfo:
    """What the timing and co-articulation stages need to know about one phone."""

    visemes: tuple[str, ...]
    mean_ms: float
    vowel: bool


def _check_visemes(where: str, visemes: list[str]) -> tuple[str, ...]:
    for v in visemes:
        if v != HH and v not in VISEME_INDEX:
            raise TableError(f"{where}: {v!r} is not a canonical viseme")
    return tuple(visemes)


@cache
def arpabet_table() -> dict[str, PhoneInfo]:
    """ARPAbet phone (no stress digit) -> :class:`PhoneInfo`."""
    raw = _load("arpabet.json")
    return {
        name: PhoneInfo(
            _check_visemes(f"arpabet.{name}", entry["visemes"]),
            float(entry["ms"]),
            bool(entry.get("vowel", False)),
        )
        for name, entry in raw["phones"].items()
    }


def split_stress(phone: str) -> tuple[str, int]:
    """``"AA1"`` -> ``("AA", 1)``; unstressed or consonant -> stress 0."""
    if phone and phone[-1].isdigit():
        return phone[:-1], int(phone[-1])
    return phone, 0


def arpabet_info(phone: str) -> PhoneInfo:
    """Table entry for an ARPAbet phone, with or without its stress digit."""
    base, _ = split_stress(phone.upper())
    try:
        return arpabet_table()[base]
    except KeyError:
        raise TableError(f"unknown ARPAbet phone {phone!r}") from None


@cache
def azure_table() -> tuple[tuple[str, ...], ...]:
    """Azure/SAPI viseme id (0-21) -> canonical visemes."""
    ids = _load("azure.json")["ids"]
    return tuple(_check_visemes(f"azure[{i}]", v) for i, v in enumerate(ids))


@cache
def polly_table() -> dict[str, str]:
    """Polly viseme speech-mark value -> canonical viseme."""
    values: dict[str, str] = _load("polly.json")["values"]
    for code, v in values.items():
        _check_visemes(f"polly.{code}", [v])
    return values


@dataclass(frozen=True, slots=True)
class IpaTable:
    """IPA symbol -> visemes, split into vowels and consonants, plus duration defaults."""

    vowels: dict[str, tuple[str, ...]]
    consonants: dict[str, tuple[str, ...]]
    ignore: frozenset[str]
    vowel_ms: float
    consonant_ms: float
    long_factor: float

    @property
    def longest(self) -> int:
        """Length of the longest IPA key, the window of greedy longest-match parsing."""
        return max(len(k) for k in (*self.vowels, *self.consonants))


@cache
def ipa_table() -> IpaTable:
    """The IPA -> viseme table from ``data/ipa.json``, loaded and checked once."""
    raw = _load("ipa.json")
    return IpaTable(
        vowels={k: _check_visemes(f"ipa.{k}", v) for k, v in raw["vowels"].items()},
        consonants={k: _check_visemes(f"ipa.{k}", v) for k, v in raw["consonants"].items()},
        ignore=frozenset(raw["ignore"]),
        vowel_ms=float(raw["vowel_ms"]),
        consonant_ms=float(raw["consonant_ms"]),
        long_factor=float(raw["long_factor"]),
    )


@dataclass(frozen=True, slots=True)
class IpaPhone:
    """One espeak-ng phoneme token, resolved against the IPA table."""

    symbol: str
    visemes: tuple[str, ...]
    vowel: bool
    stress: int
    long: bool


def parse_ipa_token(token: str) -> IpaPhone | None:
    """Resolve one espeak-ng phoneme (a stressed long a, a tied t+sh, a nasal o) to visemes.

    Stress marks (U+02C8, U+02CC) become the stress level, U+02D0 marks length, combining
    diacritics (nasal tilde, tie bars) and tone digits are dropped; what is left is matched
    greedily, longest symbol first. Returns None for a token that is only marks. Raises
    :class:`TableError` naming the symbol the table lacks, so a coverage test can list every
    gap.
    """
    table = ipa_table()
    stress = 1 if PRIMARY_STRESS in token else (2 if SECONDARY_STRESS in token else 0)
    long = LENGTH_MARK in token
    decomposed = unicodedata.normalize("NFD", token)
    base = "".join(
        ch for ch in decomposed if not unicodedata.combining(ch) and ch not in table.ignore
    )
    if not base:
        return None
    visemes: list[str] = []
    vowel = False
    i = 0
    longest = table.longest
    while i < len(base):
        for width in range(min(longest, len(base) - i), 0, -1):
            chunk = base[i : i + width]
            if chunk in table.vowels:
                visemes.extend(table.vowels[chunk])
                vowel = True
                break
            if chunk in table.consonants:
                visemes.extend(table.consonants[chunk])
                break
        else:
            raise TableError(f"IPA symbol {base[i]!r} (U+{ord(base[i]):04X}) is not in the table")
        i += width
    # A diphthong keeps at most two shapes; longer clusters keep their first and last.
    if len(visemes) > 2:
        visemes = [visemes[0], visemes[-1]]
    return IpaPhone(token, tuple(visemes), vowel, stress if vowel else 0, long)
