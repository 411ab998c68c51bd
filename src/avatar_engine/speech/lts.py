"""English letter-to-sound rules for words CMUdict does not have (names, typos, new words).

The rules are a back-off table of letter contexts: for each letter, the longest context
around it (up to four letters either side, ``#`` marking the word edge) that was seen in
training names the phones that letter spells (none, one, or two, e.g. ``x`` -> ``K S``).
Contexts that agree with their shorter parent are pruned, so the table holds only the
exceptions to simpler rules, which keeps it small.

The table is learned, not hand-written: ``python -m avatar_engine.speech.lts_train`` aligns
letters to phones over 95% of CMUdict, builds the table, and measures the phoneme error rate
on the held-out 5% that the rules never saw (see ``docs/g2p-accuracy.md``).
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Final

WINDOW: Final = 4
"""Letters of context either side of the letter being read."""
EPSILON: Final = "_"
"""Label of a silent letter."""
TABLE_FILE: Final = "lts-en.json.gz"


def contexts(padded: str, pos: int) -> list[str]:
    """Context keys for ``padded[pos]``, shortest first: ``c``, ``c +1``, ``-1 c +1``, ...

    Keys are ``left|centre|right`` strings so different widths never collide.
    """
    keys = []
    for width in range(2 * WINDOW + 1):
        left = width // 2  # right context grows first: English vowels look ahead (magic e)
        right = width - left
        keys.append(f"{padded[pos - left : pos]}|{padded[pos]}|{padded[pos + 1 : pos + 1 + right]}")
    return keys


def pad(word: str) -> str:
    """The word with ``#`` boundaries, so every letter has a full context window."""
    return "#" * WINDOW + word + "#" * WINDOW


class LetterToSound:
    """Predicts ARPAbet phones (with stress digits) for a lower-case word."""

    __slots__ = ("_table",)

    def __init__(self, table: dict[str, str]) -> None:
        self._table = table

    def predict(self, word: str) -> list[str]:
        """ARPAbet phones (with stress) for a word the dictionary lacks: per letter, the label of
        its longest known context."""
        letters = "".join(c for c in word.lower() if "a" <= c <= "z")
        padded = pad(letters)
        phones: list[str] = []
        for i in range(len(letters)):
            label = None
            for key in reversed(contexts(padded, i + WINDOW)):
                label = self._table.get(key)
                if label is not None:
                    break
            if label and label != EPSILON:
                phones.extend(label.split())
        return phones

    def __len__(self) -> int:
        return len(self._table)


@cache
def builtin_rules() -> LetterToSound:
    """The shipped table (trained on 95% of CMUdict), loaded on first use."""
    raw = resources.files("avatar_engine.speech.data").joinpath(TABLE_FILE).read_bytes()
    table: dict[str, str] = json.loads(gzip.decompress(raw).decode("utf-8"))
    return LetterToSound(table)
