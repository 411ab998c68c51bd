"""Transcript alignment that always finishes: a Viterbi pass of the transcript's phones over
what the phone loop heard, frame by frame.

PocketSphinx's own forced alignment (grammar search, then a state-level pass) is the first
choice and succeeds on every sentence of the evaluation set; but its grammar search can end
in a non-final state (a truncated hypothesis) or its second pass can fail to reach the final
state when audio and transcript disagree badly. This module is the fallback, and needs nothing
PocketSphinx does not always give: the phone-loop segmentation.

Model: a left-to-right chain of the transcript's phones, with an optional silence before the
first word and after every word. Each 10 ms frame pays, for the state it is in,

* ``phone_cost(state, recognised phone at that frame)``: 0 for the same phone, 0.3 for the
  same viseme, 0.6 for the same broad class (vowel, stop, fricative, nasal, liquid), 1
  otherwise; silence against a stop costs 0.6 (a stop's closure is silent);
* ``VOICING_WEIGHT *`` periodicity for unvoiced obstruents and ``* (1 - periodicity)`` for
  voiced sonorants (the feature kernel's YIN periodicity), which sharpens the boundaries the
  recogniser blurs;
* ``SPEECH_WEIGHT`` when a silence state meets a speaking frame, or a phone a silent one.

Each frame either stays, advances one state, or skips one optional silence; every phone gets
at least one frame. The best path is found by dynamic programming vectorised over states
(one numpy step per frame).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from avatar_engine.audio.phones import FRAME_S, SILENCE, AlignmentError, TimedPhone
from avatar_engine.kernels.audio_features import PERIODICITY
from avatar_engine.speech.visemes import TableError, arpabet_info
from avatar_engine.types import B1, F32, F64, I32

VOICING_WEIGHT: Final = 0.5
SPEECH_WEIGHT: Final = 0.5
SPAN_SLACK_S: Final = 0.03
SPAN_PENALTY: Final = 5.0
MAX_CELLS: Final = 20_000_000
"""Frames x states the fallback will take on (its tables cost 12 bytes a cell: 240 MB)."""

_VOWELS: Final = (
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "EH",
    "ER",
    "EY",
    "IH",
    "IY",
    "OW",
    "OY",
    "UH",
    "UW",
)
_CLASSES: Final[dict[str, str]] = {
    **dict.fromkeys(_VOWELS, "vowel"),
    **dict.fromkeys(["B", "D", "G", "K", "P", "T"], "stop"),
    **dict.fromkeys(["CH", "JH"], "affricate"),
    **dict.fromkeys(["DH", "F", "HH", "S", "SH", "TH", "V", "Z", "ZH"], "fricative"),
    **dict.fromkeys(["M", "N", "NG"], "nasal"),
    **dict.fromkeys(["L", "R", "W", "Y"], "liquid"),
    SILENCE: "silence",
}
PHONES: Final[tuple[str, ...]] = tuple(_CLASSES)
PHONE_INDEX: Final[dict[str, int]] = {p: i for i, p in enumerate(PHONES)}
_UNVOICED: Final = frozenset(["P", "T", "K", "F", "TH", "S", "SH", "CH", "HH"])
_VOICED: Final = frozenset([*_VOWELS, "M", "N", "NG", "L", "R", "W", "Y"])
_NEAR: Final = frozenset({frozenset({"fricative", "affricate"}), frozenset({"stop", "affricate"})})


def _cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    ca, cb = _CLASSES[a], _CLASSES[b]
    if "silence" in (ca, cb):
        other = cb if ca == "silence" else ca
        return 0.6 if other in ("stop", "affricate") else 1.0
    if arpabet_info(a).visemes[0] == arpabet_info(b).visemes[0]:
        return 0.3
    if ca == cb:
        return 0.6
    if frozenset({ca, cb}) in _NEAR:
        return 0.7
    return 1.0


@cache
def cost_matrix() -> F64:
    """(P, P) phone-vs-recognised-phone cost over :data:`PHONES` (ARPAbet + ``SIL``)."""
    return np.array([[_cost(a, b) for b in PHONES] for a in PHONES])


def frame_labels(phones: Sequence[TimedPhone], n_frames: int) -> npt.NDArray[np.int64]:
    """Recognised phone index under every 10 ms frame (silence where nothing was heard)."""
    labels = np.full(n_frames, PHONE_INDEX[SILENCE], dtype=np.int64)
    for p in phones:  # tens of phones per utterance
        a = max(round(p.start / FRAME_S), 0)
        b = min(round(p.end / FRAME_S), n_frames)
        labels[a:b] = PHONE_INDEX.get(p.phone, PHONE_INDEX[SILENCE])
    return labels


def known_phone(phone: str) -> str:
    """Map any transcript phone onto :data:`PHONES` (unknown labels become a schwa)."""
    if phone in PHONE_INDEX:
        return phone
    try:
        arpabet_info(phone)
    except TableError:
        return "AH"
    return phone if phone in PHONE_INDEX else "AH"


def viterbi_align(
    words: Sequence[Sequence[str]],
    recognised: Sequence[TimedPhone],
    features: F32,
    speaking: B1,
    n_frames: int,
    word_spans: Sequence[tuple[float, float]] | None = None,
) -> list[TimedPhone]:
    """Align the transcript (ARPAbet phones per word) to ``n_frames`` 10 ms frames.

    ``word_spans`` (seconds, one per word), when a word-level alignment is known, confine
    each word's phones to its span (with :data:`SPAN_SLACK_S` of slack either side).
    """
    graph = _StateGraph.of(words)
    n_states = len(graph.states)
    if n_frames <= 0:
        return []
    if n_frames < n_states - sum(graph.optional):
        raise AlignmentError("audio too short for the transcript (fewer frames than phones)")
    if n_frames * n_states > MAX_CELLS:
        raise AlignmentError(
            f"{n_frames / 100:.0f} s of audio with {n_states} states is too long for the "
            "fallback aligner; split the audio into utterances (under a minute each)"
        )
    emit = _emission_costs(graph, recognised, features, speaking, n_frames)
    if word_spans is not None and len(word_spans) == len(words):
        _confine_to_spans(emit, graph.owner, word_spans)
    path = _best_path(emit, np.array(graph.optional))
    return _segments(graph.states, path)


@dataclass(frozen=True, slots=True)
class _StateGraph:
    """The left-to-right states of a transcript: optional silence, each word's phones, optional
    silence between words and at the end. ``owner`` is each state's word (-1: silence)."""

    states: list[str]
    optional: list[bool]
    owner: list[int]

    @staticmethod
    def of(words: Sequence[Sequence[str]]) -> _StateGraph:
        states: list[str] = [SILENCE]
        optional: list[bool] = [True]
        owner: list[int] = [-1]
        for w, word in enumerate(words):
            for p in word:
                states.append(known_phone(p))
                optional.append(False)
                owner.append(w)
            states.append(SILENCE)
            optional.append(True)
            owner.append(-1)
        return _StateGraph(states, optional, owner)


def _emission_costs(
    graph: _StateGraph,
    recognised: Sequence[TimedPhone],
    features: F32,
    speaking: B1,
    n_frames: int,
) -> F64:
    """(F, S) cost of state ``s`` at frame ``f``: distance to the recognised phone, plus
    penalties for voicing against the periodicity and for speech against the speaking flag."""
    states = graph.states
    sidx = np.array([PHONE_INDEX[s] for s in states])
    labels = frame_labels(recognised, n_frames)
    emit: F64 = cost_matrix()[sidx][:, labels].T
    per = np.zeros(n_frames)
    m = min(n_frames, features.shape[0])
    per[:m] = features[:m, PERIODICITY]
    spk = np.zeros(n_frames, dtype=bool)
    spk[: min(n_frames, speaking.shape[0])] = speaking[:n_frames]
    unv = np.array([s in _UNVOICED for s in states], dtype=np.float64)
    voi = np.array([s in _VOICED for s in states], dtype=np.float64)
    sil = np.array([s == SILENCE for s in states])
    emit += VOICING_WEIGHT * (np.outer(per, unv) + np.outer(1.0 - per, voi))
    emit += SPEECH_WEIGHT * (np.outer(spk, sil) + np.outer(~spk, ~sil))
    return emit


def _confine_to_spans(
    emit: F64, owner: Sequence[int], word_spans: Sequence[tuple[float, float]]
) -> None:
    """Penalise, in place, each word's phone states outside its known span (plus slack)."""
    t = np.arange(emit.shape[0]) * FRAME_S
    for s_i, w in enumerate(owner):
        if w < 0:
            continue
        a, b = word_spans[w]
        outside = (t < a - SPAN_SLACK_S) | (t >= b + SPAN_SLACK_S)
        emit[outside, s_i] += SPAN_PENALTY


def _best_path(emit: F64, optional: B1) -> I32:
    """The cheapest left-to-right state per frame: stay, advance one, or skip an optional
    silence; ends in the last state or the one before it (the final silence is optional)."""
    n_frames, n_states = emit.shape
    inf = np.inf
    skip_ok = np.concatenate([[False], optional[:-1]])  # state s may be entered from s-2
    cost = np.full(n_states, inf)
    cost[0] = emit[0, 0]
    cost[1] = emit[0, 1]
    back = np.zeros((n_frames, n_states), dtype=np.int32)
    arange = np.arange(n_states)
    for f in range(1, n_frames):  # one vectorised step per frame (offline only)
        one = np.concatenate([[inf], cost[:-1]])
        two = np.where(skip_ok, np.concatenate([[inf, inf], cost[:-2]]), inf)
        cand = np.stack([cost, one, two])
        k = np.argmin(cand, axis=0)
        cost = cand[k, arange] + emit[f]
        back[f] = arange - k
    end = n_states - 1 if cost[-1] <= cost[-2] else n_states - 2
    path = np.empty(n_frames, dtype=np.int32)
    s = end
    for f in range(n_frames - 1, -1, -1):
        path[f] = s
        s = back[f, s]
    return path


def _segments(states: Sequence[str], path: I32) -> list[TimedPhone]:
    """Runs of one state as timed phones, adjacent silences merged."""
    cuts = np.flatnonzero(np.diff(path)) + 1
    bounds = np.concatenate([[0], cuts, [path.shape[0]]])
    out: list[TimedPhone] = []
    for a, b in itertools.pairwise(bounds.tolist()):
        seg = TimedPhone(states[int(path[a])], float(a) * FRAME_S, float(b) * FRAME_S)
        if out and out[-1].silent and seg.silent:
            out[-1] = TimedPhone(SILENCE, out[-1].start, seg.end)
        else:
            out.append(seg)
    return out
