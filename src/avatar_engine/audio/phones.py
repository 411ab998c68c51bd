"""Phones from 16 kHz audio with PocketSphinx: a phone loop without a transcript, forced
alignment with one.

PocketSphinx 5 (PyPI ``pocketsphinx``) ships the en-us acoustic model, CMUdict and an ARPAbet
phone n-gram (``en-us-phone.lm.bin``); both modes here use only those files. Phones come back as
ARPAbet without stress digits (PocketSphinx's dictionary has none), plus ``SIL`` for silence and
the fillers, so they feed the Speech package's ARPAbet -> viseme table unchanged.

* **Recognition** (:class:`PhoneRecognizer`) runs the ``allphone`` search: a Viterbi phone
  loop weighted by the phone n-gram. It is language-model-light on purpose: it never invents
  words, so it works on names, jargon and mumbling, at the cost of phone errors between
  similar sounds (which mostly share a viseme anyway).
* **Alignment** (:class:`ForcedAligner`) turns the transcript into dictionary words
  (normalised by the Speech package, words missing from PocketSphinx's dictionary pronounced by
  its G2P and added), runs a word-level alignment pass, then PocketSphinx's phone-level
  alignment pass over the same audio.

Every decoder here searches our own features (:mod:`.cepstra`: PocketSphinx's front end,
normalised by the utterance's cepstral mean), so that both modes can adapt them to the voice
(:mod:`.adapt`): the phone loop from its own first decode, the aligner from its first
alignment.

Decoders are expensive to build (~0.1 s, model loading) and are reused: build one per worker,
not per utterance. They hold C state and are not thread-safe.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Final

import numpy as np

from avatar_engine.audio.adapt import AcousticModel, Adapter, Transform, acoustic_model, fit
from avatar_engine.audio.cepstra import CepstraStream, FrontEnd, front_end
from avatar_engine.kernels.audio_features import RATE
from avatar_engine.types import F32, F64, I32

FRAME_S: Final = 0.01
BOUNDARY_OFFSET_S: Final = 0.0078
"""Where PocketSphinx's boundary between frames i-1 and i lies in time: frame i's 25.6 ms
analysis window starts at i * 10 ms, so its centre is at i * 10 + 12.8 ms, and the boundary
between two frames is midway between their centres, i * 10 + 7.8 ms. (Measured on the
evaluation set before this correction: phone onsets a median one frame early on both voices.)"""


def frame_time(frame: int) -> float:
    """Time in seconds of the boundary before PocketSphinx frame ``frame`` (0 stays 0)."""
    return frame * FRAME_S + BOUNDARY_OFFSET_S if frame > 0 else 0.0


"""PocketSphinx's frame rate is 100 per second."""
SILENCE: Final = "SIL"
ALIGN_PADS_S: Final = (0.0, 0.3, 0.1)
ALIGN_BEAM: Final = 1e-120
"""Viterbi beam of the aligner (wide: see :class:`ForcedAligner`)."""
_FILLERS: Final = frozenset({"SIL", "<sil>", "<s>", "</s>", "+NSN+", "+SPN+", "[NOISE]"})


class RecognizerUnavailableError(RuntimeError):
    """PocketSphinx is not installed (``pip install pocketsphinx``)."""


class AlignmentError(ValueError):
    """The transcript could not be aligned to the audio."""


@dataclass(frozen=True, slots=True)
class TimedPhone:
    """One phone with its span in seconds from the start of the audio."""

    phone: str
    start: float
    end: float

    @property
    def silent(self) -> bool:
        """Whether this is the silence phone (it maps to the rest pose, not to a viseme)."""
        return self.phone == SILENCE


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """PocketSphinx settings for the phone loop (tuned on the espeak-ng set; see docs)."""

    lw: float = 1.0
    """Phone language-model weight: higher trusts the n-gram over the acoustics."""
    pip: float = 1.0
    """Phone insertion penalty (>1 favours more, shorter phones)."""
    beam: float = 1e-60
    pbeam: float = 1e-60
    topn: int = 8
    """Gaussians scored per codebook and frame (PocketSphinx's default is 4; 8 scored 0.5
    points higher on both evaluation voices for a few percent more CPU)."""
    adapt: bool = True
    """Adapt the features to the voice (fMLLR, :mod:`.adapt`) from a first decode."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other PocketSphinx option, passed through."""


def _pocketsphinx() -> Any:
    try:
        import pocketsphinx  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RecognizerUnavailableError(
            "audio lip-sync needs PocketSphinx: pip install pocketsphinx"
        ) from exc
    return pocketsphinx


@cache
def model_dir() -> str:
    """Directory of the en-us acoustic model shipped inside the pocketsphinx wheel."""
    return os.path.join(_pocketsphinx().get_model_path(), "en-us")


DITHER_RMS: Final = 3e-4
"""Gaussian dither (-70 dBFS) added before decoding: synthetic and gated audio contains runs of
exact digital zeros, whose log-energy floor derails PocketSphinx's cepstral normalisation
(espeak-ng frame agreement rose from 42 % to 51 % with it). Seeded, so results are repeatable."""


def dithered(samples: F32, rng: np.random.Generator) -> F32:
    """``samples`` plus :data:`DITHER_RMS` of seeded Gaussian noise."""
    noise: F32 = rng.standard_normal(int(samples.shape[0]), dtype=np.float32)
    noise *= np.float32(DITHER_RMS)
    out: F32 = samples.astype(np.float32) + noise
    return out


def to_pcm16(samples: F32) -> bytes:
    """float32 [-1, 1) -> PCM16 bytes, clipping (the decoders take integer samples)."""
    ints = np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767)
    return ints.astype("<i2").tobytes()


def _base_word(word: str) -> str:
    """``"village(2)"`` (an alternative pronunciation) -> ``"village"``."""
    if word.endswith(")") and "(" in word:
        return word[: word.rindex("(")]
    return word


def _segments(decoder: Any, first: int = 0) -> list[TimedPhone]:
    """Current segmentation of a decoder as merged timed phones; the utterance's frame 0 is
    frame ``first`` of the stream."""
    out: list[TimedPhone] = []
    for seg in decoder.seg() or ():  # None when an utterance ended without a hypothesis
        name = str(seg.word)
        phone = SILENCE if name in _FILLERS or name.startswith("+") else name.upper()
        start = frame_time(first + seg.start_frame)
        end = frame_time(first + seg.end_frame + 1)
        if end <= start:
            continue
        append_phone(out, TimedPhone(phone, start, end))
    return out


def append_phone(out: list[TimedPhone], p: TimedPhone) -> None:
    """Append ``p`` unless it is empty, merging neighbouring silences."""
    if out and out[-1].silent and p.silent:
        out[-1] = TimedPhone(SILENCE, out[-1].start, max(out[-1].end, p.end))
    elif p.end > p.start:
        out.append(p)


ADAPT_MEMORY_FRAMES: Final = 3000
"""A stream's adaptation remembers about this much speech (30 s): older statistics fade, so a
stream whose speaker changes follows the new voice."""


@dataclass(frozen=True, slots=True)
class Voice:
    """What a recogniser learned about a voice: start the next stream of the same voice (an
    agent's next turn) from it instead of cold (:meth:`PhoneRecognizer.voice`)."""

    mean: F64
    """Cepstral mean (13,), learned once (:meth:`PhoneRecognizer.warm_up`); what drifts
    after that, the transform's bias follows."""
    transform: Transform
    adapter: Adapter | None
    """Adaptation statistics so far (the next stream keeps adding to them)."""

    def copy(self) -> Voice:
        """A voice whose statistics are its own (streams add to theirs)."""
        return replace(self, adapter=self.adapter.copy() if self.adapter else None)


class PhoneRecognizer:
    """Phone-loop recognition: 16 kHz float audio -> timed ARPAbet phones.

    PocketSphinx searches; the features are ours (:mod:`.cepstra`), normalised by the
    utterance's cepstral mean and, with ``DecoderConfig.adapt``, mapped by an fMLLR transform
    estimated from a first decode (:mod:`.adapt`).

    Offline: :meth:`recognize` on a whole utterance (decode, adapt, decode again). Streaming:
    :meth:`start`, then :meth:`feed` chunks and read :meth:`partial` (the current best path,
    whose tail may still change), :meth:`warm_up` once the voice has spoken a little, then
    :meth:`finish` (or :meth:`restart` at a pause); each finished utterance refines the
    stream's transform.
    """

    def __init__(self, config: DecoderConfig | None = None) -> None:
        ps = _pocketsphinx()
        self.config = config or DecoderConfig()
        c = self.config
        options: dict[str, Any] = {
            "hmm": os.path.join(model_dir(), "en-us"),
            "allphone": os.path.join(model_dir(), "en-us-phone.lm.bin"),
            "lw": c.lw,
            "pip": c.pip,
            "beam": c.beam,
            "pbeam": c.pbeam,
            "topn": c.topn,
            "samprate": RATE,
            "loglevel": "FATAL",
        }
        options.update(c.extra)
        self._decoder = ps.Decoder(**options)
        # The model's feat.params asks for batch normalisation, which would override ours.
        self._decoder.config["cmn"] = "none"
        self._decoder.reinit_feat()
        self._front = front_end(os.path.join(model_dir(), "en-us"))
        self._model = acoustic_model(os.path.join(model_dir(), "en-us")) if c.adapt else None
        self._cold = Voice(_cold_mean(), Transform.identity(), None)
        self._voice = self._cold
        self._stream: CepstraStream | None = None
        self._frames = self._first = 0
        self._utterance: list[F64] = []
        self._rng = np.random.default_rng(0)

    def recognize(self, samples: F32) -> list[TimedPhone]:
        """Recognise a whole utterance, normalised by its own cepstral mean and adapted to its
        voice (repeatable: nothing carries over between calls)."""
        cep = dithered_cepstra(self._front, samples)
        if cep.shape[0] == 0:
            return [TimedPhone(SILENCE, 0.0, samples.shape[0] / RATE)]
        x = cep - cep.mean(axis=0)
        self._decode_all(x.astype(np.float32))
        if self._model is not None:
            codebooks = _phone_codebooks(_segments(self._decoder), x.shape[0], self._model)
            self._decode_all(fit(self._model, x, codebooks).apply(x))
        return _segments(self._decoder)

    def _decode_all(self, features: F32) -> None:
        d = self._decoder
        d.start_utt()
        d.process_cep(np.ascontiguousarray(features).tobytes(), no_search=False, full_utt=True)
        d.end_utt()

    def start(self, voice: Voice | None = None) -> None:
        """Begin a stream: cold, or from ``voice`` (see :meth:`voice`)."""
        self._voice = (voice or self._cold).copy()
        self._stream = CepstraStream(self._front)
        self._rng = np.random.default_rng(0)
        self._frames = 0  # cepstral frames of the stream so far
        self._first = 0  # the stream frame the current utterance starts at
        self._begin()

    def _begin(self) -> None:
        self._utterance = []
        self._decoder.start_utt()

    def voice(self) -> Voice:
        """The stream's voice so far: its mean, transform and adaptation statistics."""
        return self._voice.copy()

    def feed(self, samples: F32) -> None:
        """Decode more of the stream (float samples at 16 kHz), starting one cold if none is open;
        read the phones with :meth:`partial` or :meth:`finish`."""
        if self._stream is None:
            self.start()
        assert self._stream is not None
        pcm = np.frombuffer(to_pcm16(dithered(samples, self._rng)), "<i2")
        cep = self._stream.push(pcm).astype(np.float64)
        if cep.shape[0]:
            self._frames += cep.shape[0]
            self._utterance.append(cep)
            self._search(cep)

    def _search(self, cep: F64) -> None:
        v = self._voice
        features = v.transform.apply(cep - v.mean)
        self._decoder.process_cep(features.tobytes(), no_search=False, full_utt=False)

    def warm_up(self) -> None:
        """Learn the voice from the current utterance so far, then decode it again.

        A cold stream starts from the model's prior mean and no transform, far from most
        voices; this takes the utterance's own mean so far, decodes it, estimates the
        transform from that decode and restarts the utterance under both (a catch-up decode
        of the utterance so far; :class:`~avatar_engine.audio.stream.LipSyncStream` calls it
        at 0.5 s and again at 1.5 s of voice)."""
        if self._stream is None or not self._utterance:
            return
        cep = np.concatenate(self._utterance)
        mean = cep.mean(axis=0)
        self._decoder.end_utt()
        self._voice = replace(self._voice, mean=mean)
        if self._model is not None:  # the whole utterance is added again when it finishes
            x = cep - mean
            self._decode_all(self._voice.transform.apply(x))
            once = self._adapted(x, Adapter(self._model))
            self._voice = replace(self._voice, transform=once.solve(self._voice.transform))
        self._begin()
        self._utterance = [cep]
        self._search(cep)

    def _adapted(self, x: F64, adapter: Adapter) -> Adapter:
        """``adapter`` plus the decoder's last segmentation of ``x``."""
        assert self._model is not None
        codebooks = _phone_codebooks(_segments(self._decoder), x.shape[0], self._model)
        adapter.add(x, codebooks, self._voice.transform)
        return adapter

    def partial(self) -> list[TimedPhone]:
        """Best path so far (empty before any speech was searched)."""
        if self._stream is None or self._decoder.hyp() is None:
            return []
        return _segments(self._decoder, self._first)

    def finish(self) -> list[TimedPhone]:
        """End the stream's current utterance: its phones; the voice learns from it."""
        if self._stream is None:
            return []
        self._decoder.end_utt()
        phones = _segments(self._decoder, self._first)
        v = self._voice
        if self._utterance and self._model is not None:
            x = np.concatenate(self._utterance) - v.mean
            adapter = self._adapted(x, v.adapter or Adapter(self._model))
            adapter.forget(ADAPT_MEMORY_FRAMES)
            self._voice = replace(v, transform=adapter.solve(v.transform), adapter=adapter)
        self._utterance = []
        self._stream = None
        return phones

    def restart(self) -> list[TimedPhone]:
        """:meth:`finish` the current utterance and go on with the same voice and audio
        position (a stream's split at a pause). Streamed phones are timed from the start of
        the stream, across utterances."""
        stream = self._stream
        phones = self.finish()
        self._stream = stream
        if stream is not None:
            self._first = self._frames
            self._begin()
        return phones


def dithered_cepstra(front: FrontEnd, samples: F32) -> F64:
    """Cepstra of a whole recording as every decoder here sees it (seeded dither first)."""
    pcm = np.frombuffer(to_pcm16(dithered(samples, np.random.default_rng(0))), "<i2")
    out: F64 = front.cepstra(pcm).astype(np.float64)
    return out


def _phone_codebooks(phones: Sequence[TimedPhone], n: int, model: AcousticModel) -> I32:
    """Per frame: the codebook of the timed phone over it (-1 for silence)."""
    out = np.full(n, -1, np.int32)
    for p in phones:
        a = max(0, round((p.start - BOUNDARY_OFFSET_S) / FRAME_S))
        b = min(n, round((p.end - BOUNDARY_OFFSET_S) / FRAME_S))
        out[a:b] = model.codebook(p.phone)
    return out


def _cold_mean() -> F64:
    """The model's prior cepstral mean (PocketSphinx's ``cmninit``, e.g. ``40,3,-1``)."""
    values = [float(v) for v in str(_pocketsphinx().Config()["cmninit"]).split(",")]
    out = np.zeros(13)
    out[: len(values)] = values[:13]
    return out


class WordRecognizer:
    """Word recognition with PocketSphinx's bundled en-us language model and dictionary.

    Rhubarb's default approach: the recognised words (right or wrong, they are real words with
    legal phone sequences) are then force-aligned to get phones. Better than the phone loop on
    voices close to the acoustic model's (Flite: 76 % frame agreement against 67 %), worse on
    espeak-ng (49 % against 55 %), and 4-7 times slower (15-30 % of a core offline).
    """

    def __init__(self) -> None:
        ps = _pocketsphinx()
        self._decoder = ps.Decoder(
            hmm=os.path.join(model_dir(), "en-us"), samprate=RATE, loglevel="FATAL"
        )
        self._decoder.config["cmn"] = "none"  # our features come normalised
        self._decoder.reinit_feat()
        self._front = front_end(os.path.join(model_dir(), "en-us"))

    def words(self, samples: F32) -> list[str]:
        """The best word sequence (fillers dropped); empty when nothing was recognised."""
        d = self._decoder
        cep = dithered_cepstra(self._front, samples)
        if cep.shape[0] == 0:
            return []
        d.start_utt()
        d.process_cep((cep - cep.mean(axis=0)).astype(np.float32).tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return []
        return [_base_word(w) for w in str(hyp.hypstr).split() if not w.startswith("<")]


class ForcedAligner:
    """Forced alignment of a transcript: 16 kHz float audio + text -> timed ARPAbet phones."""

    def __init__(self, beam: float = ALIGN_BEAM, adapt: bool = True) -> None:
        ps = _pocketsphinx()
        # The default beams (1e-48) prune the only path when the voice is far from the
        # acoustic model's speakers (espeak-ng's en-us voice fails outright); alignment
        # searches one sentence, so wide beams cost little.
        self._decoder = ps.Decoder(
            hmm=os.path.join(model_dir(), "en-us"),
            dict=os.path.join(model_dir(), "cmudict-en-us.dict"),
            lm=None,
            samprate=RATE,
            loglevel="FATAL",
            beam=beam,
            pbeam=beam,
            lpbeam=beam,
            lponlybeam=beam,
            wbeam=beam * 1e20,
            # The lattice best-path pass after the grammar search loses the final state on
            # hard audio and returns a truncated hypothesis, which the phone-level pass then
            # cannot align (with it, 20 of the 36 espeak-ng sentences aligned; without, 36).
            bestpath=False,
        )
        self._decoder.config["cmn"] = "none"  # our features come normalised
        self._decoder.reinit_feat()
        self._front = front_end(os.path.join(model_dir(), "en-us"))
        self._model = acoustic_model(os.path.join(model_dir(), "en-us")) if adapt else None
        self._added: set[str] = set()

    def words(self, text: str) -> list[str]:
        """Transcript -> dictionary words, adding G2P pronunciations for unknown ones."""
        from avatar_engine.speech.g2p import english
        from avatar_engine.speech.text import Word, normalize
        from avatar_engine.speech.visemes import split_stress

        g2p = english()
        out: list[str] = []
        for tok in normalize(text):
            if not isinstance(tok, Word) or not tok.text:
                continue
            name = tok.text if not tok.spell else f"{tok.text}_spelled"
            unknown = tok.spell or self._decoder.lookup_word(name) is None
            if unknown and name not in self._added:
                phones = [split_stress(p)[0] for p in g2p.word_phones(tok)]
                if not phones:
                    continue
                self._decoder.add_word(name, " ".join(phones), True)
                self._added.add(name)
            out.append(name)
        return out

    def known(self, word: str) -> bool:
        """Whether ``word`` is in the aligner's dictionary."""
        return self._decoder.lookup_word(word) is not None

    def pronunciations(self, words: Sequence[str]) -> list[list[str]]:
        """ARPAbet phones of each dictionary word (as :meth:`words` returned them)."""
        out: list[list[str]] = []
        for w in words:
            pron = self._decoder.lookup_word(w)
            out.append(str(pron).split() if pron else [])
        return out

    def align(self, samples: F32, words: Sequence[str]) -> list[TimedPhone] | None:
        """Phone-level alignment of dictionary ``words`` (see :meth:`align_words`), or None."""
        phones, _ = self.align_words(samples, words)
        return phones

    def align_words(
        self, samples: F32, words: Sequence[str]
    ) -> tuple[list[TimedPhone] | None, list[tuple[float, float]] | None]:
        """PocketSphinx's two-pass alignment of dictionary ``words``, or None if it failed.

        Tried as is and again with :data:`ALIGN_PADS_S` of (dithered) silence around the
        audio, which moves the search's start and end conditions; a result counts only if
        the first pass reached every word and the phone-level pass reached its final state.

        The second value is the word spans (seconds) from the first pass when that pass
        reached every word, even if the phone-level pass then failed: a fallback aligner can
        still use them as anchors.
        """
        if not words:
            return [TimedPhone(SILENCE, 0.0, samples.shape[0] / RATE)], []
        cep = dithered_cepstra(self._front, samples)
        if cep.shape[0] == 0:
            return None, None
        mean = cep.mean(axis=0)
        phones, spans = self._padded(samples, words, mean, Transform.identity())
        if phones is None or self._model is None:
            return phones, spans
        # Supervised adaptation: the first alignment says which phone each frame is.
        x = cep - mean
        transform = fit(self._model, x, _phone_codebooks(phones, x.shape[0], self._model))
        again, _ = self._padded(samples, words, mean, transform)
        return (again or phones), spans

    def _padded(
        self, samples: F32, words: Sequence[str], mean: F64, transform: Transform
    ) -> tuple[list[TimedPhone] | None, list[tuple[float, float]] | None]:
        """:meth:`_two_pass` as is, then with :data:`ALIGN_PADS_S` of silence around."""
        duration = samples.shape[0] / RATE
        spans: list[tuple[float, float]] | None = None
        for pad_s in ALIGN_PADS_S:
            pad = np.zeros(round(pad_s * RATE), dtype=np.float32)
            x = np.concatenate([pad, samples.astype(np.float32), pad])
            features = transform.apply(dithered_cepstra(self._front, x) - mean)
            phones, found = self._two_pass(features, words)
            if found is not None and spans is None:
                spans = [
                    (min(max(a - pad_s, 0.0), duration), min(max(b - pad_s, 0.0), duration))
                    for a, b in found
                ]
            if phones is None:
                continue
            out: list[TimedPhone] = []
            for p in phones:
                start = min(max(p.start - pad_s, 0.0), duration)
                end = min(max(p.end - pad_s, 0.0), duration)
                if end > start:
                    append_phone(out, TimedPhone(p.phone, start, end))
            return out, spans
        return None, spans

    def _two_pass(
        self, features: F32, words: Sequence[str]
    ) -> tuple[list[TimedPhone] | None, list[tuple[float, float]] | None]:
        d = self._decoder
        spans: list[tuple[float, float]] | None = None
        data = np.ascontiguousarray(features, np.float32).tobytes()
        try:
            d.set_align_text(" ".join(words))
            d.start_utt()
            d.process_cep(data, no_search=False, full_utt=True)
            d.end_utt()
            if d.hyp() is None:
                return None, None
            found = [
                (_base_word(str(s.word)), frame_time(s.start_frame), frame_time(s.end_frame + 1))
                for s in d.seg()
                if str(s.word) not in _FILLERS and not str(s.word).startswith("+")
            ]
            if [w for w, _, _ in found] != list(words):
                return None, None  # the grammar search stopped short of the last word
            spans = [(a, b) for _, a, b in found]
            d.set_alignment()
            d.start_utt()
            d.process_cep(data, no_search=False, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError:
            return None, spans
        if alignment is None:
            return None, spans
        out: list[TimedPhone] = []
        for ph in alignment.phones():
            name = str(ph.name)
            phone = SILENCE if name in _FILLERS or name.startswith("+") else name.upper()
            start = frame_time(ph.start)
            append_phone(out, TimedPhone(phone, start, frame_time(ph.start + ph.duration)))
        return out, spans
