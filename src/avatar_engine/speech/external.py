"""External timings: let a TTS drive the mouth exactly, instead of the duration model.

Four formats, all parsed from already-read text or JSON values (no file I/O here):

- ours: ``[{"p": "AA1", "start": 0.12, "end": 0.21}, ...]`` (seconds; ARPAbet with or without
  stress digit, or an IPA symbol);
- Azure viseme events: ``[{"visemeId": 21, "audioOffset": 1250000}, ...]`` (ID 0-21, offset in
  100-ns ticks; ``VisemeId``/``AudioOffset`` spellings and an ``{"events": [...]}`` wrapper are
  accepted). Each viseme lasts until the next event;
- Amazon Polly speech marks, JSON lines: ``{"time": 125, "type": "viseme", "value": "p"}``
  (ms; other mark types are skipped). Each viseme lasts until the next;
- word timestamps: ``[{"word": "hello", "start": 0.0, "end": 0.42}, ...]`` (seconds, as
  ElevenLabs/OpenAI-style alignments give); each word's phones are spread over its span in
  proportion to their mean durations, and gaps between words are silence.

Every parser returns :class:`~avatar_engine.speech.timing.Segments`; errors raise
:class:`TimingFormatError` naming the entry and the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final

from avatar_engine.speech.g2p import Phone, english, g2p, is_english
from avatar_engine.speech.text import normalize
from avatar_engine.speech.timing import EMPHASIS, Row, Segments, finish_rows
from avatar_engine.speech.visemes import (
    TableError,
    arpabet_info,
    azure_table,
    parse_ipa_token,
    polly_table,
    split_stress,
)

TICKS_PER_SECOND: Final = 10_000_000
LAST_EVENT_S: Final = 0.12
"""How long the last Azure/Polly viseme lasts (the formats give only start times)."""
MAX_ENTRIES: Final = 1_000_000


class TimingFormatError(ValueError):
    """External timing data that cannot be used; the message names the entry."""


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimingFormatError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _entries(data: Any, where: str, wrappers: Sequence[str] = ()) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for key in wrappers:
            if key in data:
                data = data[key]
                break
    if not isinstance(data, list):
        raise TimingFormatError(f"{where}: expected a JSON list of objects")
    if len(data) > MAX_ENTRIES:
        raise TimingFormatError(f"{where}: more than {MAX_ENTRIES} entries")
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise TimingFormatError(f"{where}[{i}]: expected an object, got {type(e).__name__}")
    return data


def _label_visemes(label: str) -> tuple[tuple[str, ...], bool, int]:
    """(visemes, vowel, stress) for an ARPAbet or IPA label."""
    try:
        info = arpabet_info(label)
        return info.visemes, info.vowel, split_stress(label)[1]
    except TableError:
        ipa = parse_ipa_token(label)  # raises TableError naming the symbol
        if ipa is None:
            return ("sil",), False, 0
        return ipa.visemes, ipa.vowel, ipa.stress


def _rows_for(visemes: Sequence[str], start: float, end: float, emphasis: float, label: str,
              rows: list[Row], flat: list[str]) -> None:  # fmt: skip
    if len(visemes) == 1:
        rows.append((-1, start, end, 1.0, emphasis, label))
        flat.append(visemes[0])
        return
    cut = start + (end - start) * 0.6
    rows.extend([(-1, start, cut, 1.0, emphasis, label), (-1, cut, end, 1.0, emphasis, label)])
    flat.extend(visemes[:2])


def _check_order(where: str, start: float, end: float, prev_end: float) -> None:
    if end < start:
        raise TimingFormatError(f"{where}: end {end} is before start {start}")
    if start < prev_end - 1e-6:
        raise TimingFormatError(f"{where}: starts at {start}, before the previous entry ends")


def _fill_gaps(rows: list[Row], flat: list[str], start: float, prev_end: float) -> None:
    if rows and start > prev_end + 1e-6:
        rows.append((-1, prev_end, start, 1.0, 1.0, "|"))
        flat.append("sil")


def phoneme_list(data: Any) -> Segments:
    """Our JSON phone list -> segments."""
    rows: list[Row] = []
    flat: list[str] = []
    prev_end = -math.inf
    for i, e in enumerate(_entries(data, "phonemes", ("phonemes", "phones"))):
        where = f"phonemes[{i}]"
        label = e.get("p", e.get("phoneme"))
        if not isinstance(label, str) or not label:
            raise TimingFormatError(f"{where}: 'p' must be a phone label string")
        start, end = (
            _number(f"{where}.start", e.get("start")),
            _number(f"{where}.end", e.get("end")),
        )
        _check_order(where, start, end, prev_end)
        try:
            visemes, vowel, stress = _label_visemes(label)
        except TableError as exc:
            raise TimingFormatError(f"{where}: {exc}") from None
        _fill_gaps(rows, flat, start, prev_end)
        emphasis = EMPHASIS.get(stress, 1.0) if vowel else 1.0
        _rows_for(visemes, start, end, emphasis, label, rows, flat)
        prev_end = end
    return finish_rows(rows, flat)


def _events_to_segments(events: list[tuple[float, tuple[str, ...], str]]) -> Segments:
    events.sort(key=lambda e: e[0])
    rows: list[Row] = []
    flat: list[str] = []
    for i, (start, visemes, label) in enumerate(events):
        end = events[i + 1][0] if i + 1 < len(events) else start + LAST_EVENT_S
        if end <= start:
            continue  # two events at one instant: the later one wins
        _rows_for(visemes, start, end, 1.0, label, rows, flat)
    return finish_rows(rows, flat)


def _get(e: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in e:
            return e[n]
    return None


def azure_events(data: Any) -> Segments:
    """Azure viseme events (IDs 0-21, offsets in 100-ns ticks) -> segments."""
    table = azure_table()
    events: list[tuple[float, tuple[str, ...], str]] = []
    for i, e in enumerate(_entries(data, "azure", ("events", "visemes"))):
        where = f"azure[{i}]"
        vid = _get(e, "visemeId", "VisemeId", "viseme_id", "id")
        if isinstance(vid, bool) or not isinstance(vid, int) or not 0 <= vid < len(table):
            raise TimingFormatError(f"{where}: viseme id must be an integer 0..21, got {vid!r}")
        ticks = _number(
            f"{where}.audioOffset", _get(e, "audioOffset", "AudioOffset", "audio_offset")
        )
        if ticks < 0:
            raise TimingFormatError(f"{where}: negative audio offset")
        events.append((ticks / TICKS_PER_SECOND, table[vid], f"az{vid}"))
    return _events_to_segments(events)


def polly_marks(text: str) -> Segments:
    """Polly speech marks (JSON lines, ms) -> segments from the viseme marks."""
    table = polly_table()
    events: list[tuple[float, tuple[str, ...], str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"polly line {n}"
        try:
            mark = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TimingFormatError(f"{where}: not valid JSON: {exc.msg}") from None
        if not isinstance(mark, dict):
            raise TimingFormatError(f"{where}: expected a JSON object")
        if mark.get("type") != "viseme":
            continue
        value = mark.get("value")
        if not isinstance(value, str) or value not in table:
            raise TimingFormatError(f"{where}: unknown Polly viseme {value!r}")
        ms = _number(f"{where}.time", mark.get("time"))
        if ms < 0:
            raise TimingFormatError(f"{where}: negative time")
        if len(events) >= MAX_ENTRIES:
            raise TimingFormatError(f"polly: more than {MAX_ENTRIES} marks")
        events.append((ms / 1000.0, (table[value],), value))
    return _events_to_segments(events)


def _word_phones(text: str, lang: str) -> list[Phone]:
    """Phones of one timed word (its text normalised first: "42" is two words' phones)."""
    if is_english(lang):
        g = english()
        return [u for u in g.units(normalize(text)) if isinstance(u, Phone)]
    return [u for u in g2p(text, lang) if isinstance(u, Phone)]


def word_timestamps(data: Any, lang: str = "en") -> Segments:
    """Word spans -> segments, phones spread in proportion to their mean durations."""
    rows: list[Row] = []
    flat: list[str] = []
    prev_end = -math.inf
    for i, e in enumerate(_entries(data, "words", ("words", "alignment"))):
        where = f"words[{i}]"
        text = e.get("word", e.get("text"))
        if not isinstance(text, str):
            raise TimingFormatError(f"{where}: 'word' must be a string")
        start, end = (
            _number(f"{where}.start", e.get("start")),
            _number(f"{where}.end", e.get("end")),
        )
        _check_order(where, start, end, prev_end)
        phones = _word_phones(text, lang)
        if not phones or end <= start:
            continue
        _fill_gaps(rows, flat, start, prev_end)
        weights = [p.mean_ms for p in phones]
        total = sum(weights)
        t = start
        for p, w in zip(phones, weights, strict=True):
            d = (end - start) * w / total
            emphasis = EMPHASIS.get(p.stress, 1.0) if p.vowel else 1.0
            _rows_for(p.visemes, t, t + d, emphasis, p.label, rows, flat)
            t += d
        prev_end = end
    return finish_rows(rows, flat)
