"""Text normalisation, English G2P (CMUdict + rules), espeak-ng languages, fuzzed text."""

from __future__ import annotations

import shutil
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_engine.speech import g2p as g2p_mod
from avatar_engine.speech.g2p import (
    EspeakG2P,
    MissingEspeakError,
    Phone,
    Silence,
    english,
    g2p,
)
from avatar_engine.speech.lipsync import from_text
from avatar_engine.speech.lts import builtin_rules
from avatar_engine.speech.text import Pause, PauseKind, Word, normalize
from avatar_engine.speech.visemes import (
    VISEME_INDEX,
    arpabet_table,
    azure_table,
    parse_ipa_token,
    polly_table,
)
from speech_wordlists import WORDLISTS

HAVE_ESPEAK = shutil.which("espeak-ng") is not None


def spoken(text: str) -> str:
    return " ".join(t.text if isinstance(t, Word) else f"<{t.kind.value}>" for t in normalize(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It costs $12.50.", "it costs twelve dollars and fifty cents <sentence>"),
        ("£1 and €3", "one pound and three euros"),
        ("$3 million", "three million dollars"),
        ("Meet at 10:30pm, ok", "meet at ten thirty p m <clause> ok"),
        ("at 7:05", "at seven oh five"),
        ("the 21st and 2nd", "the twenty first and second"),
        ("in 1998 and 2005", "in nineteen ninety eight and two thousand five"),
        ("50% & more", "fifty percent and more"),
        ("3.14", "three point one four"),
        ("1,250,000", "one million two hundred fifty thousand"),
        ("Dr. Smith vs. Mr. Jones", "doctor smith versus mister jones"),
        ("i.e. this", "that is this"),
        ("wait... what?! ok", "wait <ellipsis> what <sentence> ok"),
        ("café naïve", "cafe naive"),
    ],
)
def test_normalisation(text: str, expected: str) -> None:
    assert spoken(text) == expected


def test_leading_and_repeated_pauses_collapse() -> None:
    tokens = normalize("... , hello , . world")
    assert isinstance(tokens[0], Word)
    assert tokens[1] == Pause(PauseKind.SENTENCE)
    assert isinstance(tokens[2], Word)


def test_dictionary_words_use_cmudict() -> None:
    labels = [u.label for u in g2p("hello world") if isinstance(u, Phone)]
    assert labels == ["HH", "AH0", "L", "OW1", "W", "ER1", "L", "D"]


def test_out_of_vocabulary_words_use_the_rules() -> None:
    g = english()
    for word in ("blorptastic", "zorbinating", "kwyjibo"):
        phones = g.word_phones(Word(word))
        assert phones and all(p.rstrip("012") in arpabet_table() for p in phones)
    assert [p.rstrip("012") for p in g.word_phones(Word("blorp"))][:2] == ["B", "L"]
    assert len(builtin_rules()) > 1000


def test_acronyms_are_spelled() -> None:
    phones = english().word_phones(Word("xqz", spell=True))
    assert phones[:3] == ["EH1", "K", "S"]


def test_every_arpabet_phone_the_g2p_can_emit_has_a_viseme() -> None:
    table = arpabet_table()
    seen = {p.rstrip("012") for pron in g2p_mod.cmudict_words().values() for p in pron}
    assert seen <= set(table)
    for info in table.values():
        assert all(v == "hh" or v in VISEME_INDEX for v in info.visemes)


def test_azure_and_polly_tables_are_complete() -> None:
    assert len(azure_table()) == 22
    assert set(polly_table()) >= set("ptSTfkirsu@aeEoO") | {"sil"}


@settings(max_examples=60)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300))
def test_fuzzed_text_never_crashes(text: str) -> None:
    units = g2p(text)
    assert all(isinstance(u, Phone | Silence) for u in units)
    from_text(text)  # the whole pipeline, too


@pytest.mark.timeout(60)
def test_100kB_of_hostile_text_is_bounded() -> None:
    chunk = "Hello 😀\x00\x1b[31m wörld 12345678901234567890 $5.5 ☃☃ 1st,,,;;; ﷽ a\u200bb\n"
    text = (chunk * (100_000 // len(chunk) + 1))[:100_000]
    start = time.perf_counter()
    units = g2p(text)
    utt = from_text(text)
    elapsed = time.perf_counter() - start
    assert len(units) < 3 * len(text)  # linear in the input (a digit is a word of ~4 phones)
    assert utt.keys.values.shape[0] > 0
    assert elapsed < 60  # generous: CI machines are shared


@pytest.mark.skipif(
    not HAVE_ESPEAK,
    reason="espeak-ng is not on PATH (Debian: apt-get install espeak-ng; CI installs it)",
)
@pytest.mark.parametrize("lang", sorted(WORDLISTS))
def test_every_language_table_covers_what_espeak_emits(lang: str) -> None:
    g = EspeakG2P(lang)
    tokens = set()
    for line, _ in g.ipa(WORDLISTS[lang]):
        for word in g2p_mod._SWITCH_RE.sub("", line).split():
            tokens.update(t for t in word.split("_") if t)
    assert tokens
    for token in sorted(tokens):
        parse_ipa_token(token)  # raises TableError naming the missing symbol
    units = g(WORDLISTS[lang])
    assert sum(isinstance(u, Phone) for u in units) > 20


@pytest.mark.skipif(
    not HAVE_ESPEAK,
    reason="espeak-ng is not on PATH (Debian: apt-get install espeak-ng; CI installs it)",
)
def test_other_languages_lip_sync() -> None:
    utt = from_text("Bonjour, je m'appelle Marie.", lang="fr")
    assert VISEME_INDEX["PP"] in utt.segments.viseme.tolist()
    with pytest.raises(g2p_mod.UnknownLanguageError):
        g2p("hola", lang="xx-nope")


def test_missing_espeak_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g2p_mod.shutil, "which", lambda name: None)
    g2p_mod.espeak_languages.cache_clear()
    try:
        with pytest.raises(MissingEspeakError, match="espeak-ng"):
            g2p("bonjour", lang="fr")
        assert g2p("hello", lang="en")  # English never needs it
    finally:
        g2p_mod.espeak_languages.cache_clear()
