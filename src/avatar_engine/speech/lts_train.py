"""Train and measure the English letter-to-sound rules (offline tool, not used at run time).

``python -m avatar_engine.speech.lts_train [--write]`` does, deterministically:

1. splits CMUdict's plain words (first pronunciation) into 95% training and a random 5%
   held out (seeded), so the measurement is on words the rules never saw;
2. aligns letters to phones by hard EM: each letter spells nothing, one phone or two, and
   the alignment maximises the product of P(phones | letter), re-estimated three times from
   co-occurrence counts;
3. counts, for every letter context (see :mod:`avatar_engine.speech.lts`), which phones the
   letter spells, keeps the majority label of each context seen at least twice when it differs
   from its shorter parent's;
4. predicts the held-out words with the rules alone and prints the phoneme error rate
   (edit distance / reference length) with and without stress, and the word accuracy;
5. with ``--write``, stores the table in ``speech/data/lts-en.json.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from avatar_engine.speech.g2p import cmudict_words
from avatar_engine.speech.lts import EPSILON, TABLE_FILE, WINDOW, LetterToSound, contexts, pad
from avatar_engine.speech.visemes import split_stress

SEED = 20261121
HOLDOUT = 0.05
MIN_COUNT = 2
_PLAIN = re.compile(r"^[a-z]+$")

Alignment = list[tuple[str, ...]]
"""Per letter, the phones it spells (0, 1 or 2)."""


def split_words(
    seed: int = SEED,
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """CMUdict's plain words as (training, held out) with a seeded 5 % hold-out, so the error rate
    is measured on unseen words."""
    words = sorted((w, list(p)) for w, p in cmudict_words().items() if _PLAIN.match(w))
    rng = random.Random(seed)
    held = set(rng.sample(range(len(words)), round(len(words) * HOLDOUT)))
    train = [w for i, w in enumerate(words) if i not in held]
    test = [w for i, w in enumerate(words) if i in held]
    return train, test


def _align(
    word: str, phones: Sequence[str], logp: dict[tuple[str, str], float]
) -> Alignment | None:
    """Viterbi alignment of letters to 0/1/2 phones each; None when impossible."""
    n, m = len(word), len(phones)
    if m > 2 * n:
        return None
    neg = -math.inf
    best = [[neg] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    floor = -20.0
    for i in range(n):
        letter = word[i]
        row, nxt, nback = best[i], best[i + 1], back[i + 1]
        for j in range(m + 1):
            score = row[j]
            if score == neg:
                continue
            s = score + logp.get((letter, EPSILON), floor)
            if s > nxt[j]:
                nxt[j], nback[j] = s, 0
            if j < m:
                s = score + logp.get((letter, phones[j]), floor)
                if s > nxt[j + 1]:
                    nxt[j + 1], nback[j + 1] = s, 1
            if j + 1 < m:
                s = score + logp.get((letter, phones[j] + " " + phones[j + 1]), floor) - 2.0
                if s > nxt[j + 2]:
                    nxt[j + 2], nback[j + 2] = s, 2
    if best[n][m] == neg:
        return None
    out: Alignment = []
    j = m
    for i in range(n, 0, -1):
        step = back[i][j]
        out.append(tuple(phones[j - step : j]))
        j -= step
    out.reverse()
    return out


def _estimate(counts: Counter[tuple[str, str]]) -> dict[tuple[str, str], float]:
    totals: Counter[str] = Counter()
    for (letter, _), c in counts.items():
        totals[letter] += c
    return {(let, p): math.log(c / totals[let]) for (let, p), c in counts.items()}


def align_all(
    train: list[tuple[str, list[str]]], iterations: int = 3
) -> list[tuple[str, Alignment]]:
    """Letter-to-phone alignments of the training words by hard EM (see the module docstring)."""
    bases = [(w, [split_stress(p)[0] for p in ph]) for w, ph in train]
    counts: Counter[tuple[str, str]] = Counter()
    for w, ph in bases:  # co-occurrence start (every letter with every phone of its word)
        for letter in set(w):
            counts[(letter, EPSILON)] += 1
            for p in set(ph):
                counts[(letter, p)] += 1
    logp = _estimate(counts)
    aligned: list[tuple[str, Alignment]] = []
    for _ in range(iterations):
        counts = Counter()
        aligned = []
        for (w, ph), (_, full) in zip(bases, train, strict=True):
            a = _align(w, ph, logp)
            if a is None:
                continue
            k = 0
            full_a: Alignment = []
            for letter, chunk in zip(w, a, strict=True):
                counts[(letter, " ".join(chunk) if chunk else EPSILON)] += 1
                full_a.append(tuple(full[k : k + len(chunk)]))
                k += len(chunk)
            aligned.append((w, full_a))
        logp = _estimate(counts)
    return aligned


def build_table(aligned: list[tuple[str, Alignment]], min_count: int = MIN_COUNT) -> dict[str, str]:
    """The context -> label table: the majority label of each context seen ``min_count`` times, kept
    only where it differs from its shorter parent's."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for w, a in aligned:
        padded = pad(w)
        for i, chunk in enumerate(a):
            label = " ".join(chunk) if chunk else EPSILON
            for key in contexts(padded, i + WINDOW):
                counts[key][label] += 1
    table: dict[str, str] = {}
    effective: dict[str, str] = {}
    # Shorter contexts first, so a key's parent already has its effective label.
    for key in sorted(counts, key=len):
        label, n = counts[key].most_common(1)[0]
        left, centre, right = key.split("|")
        if not left and not right:
            table[key] = effective[key] = label  # single letters: always kept
            continue
        parent = _parent(left, centre, right)
        inherited = effective[parent]
        if n >= min_count and label != inherited:
            table[key] = effective[key] = label
        else:
            effective[key] = inherited
    return table


def _parent(left: str, centre: str, right: str) -> str:
    """The next shorter key in :func:`contexts` order (the right side grows first)."""
    if len(right) > len(left):
        return f"{left}|{centre}|{right[:-1]}"
    return f"{left[1:]}|{centre}|{right}"


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phone sequences (for the phoneme error rate)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def evaluate(rules: LetterToSound, test: list[tuple[str, list[str]]]) -> dict[str, float]:
    """Phoneme error rate with and without stress and word accuracy of ``rules`` on the held-out
    words."""
    errors = errors_stress = total = exact = 0
    for w, ref in test:
        pred = rules.predict(w)
        errors_stress += edit_distance(pred, ref)
        e = edit_distance([split_stress(p)[0] for p in pred], [split_stress(p)[0] for p in ref])
        errors += e
        exact += e == 0
        total += len(ref)
    return {
        "words": float(len(test)),
        "phones": float(total),
        "per": errors / total,
        "per_with_stress": errors_stress / total,
        "phone_accuracy": 1 - errors / total,
        "word_accuracy": exact / len(test),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Train, print the held-out figures and, with ``--write``, store the table (``python -m
    avatar_engine.speech.lts_train``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the trained table")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--min-count", type=int, default=MIN_COUNT, help="keep contexts seen this often"
    )
    args = parser.parse_args(argv)
    train, test = split_words(args.seed)
    aligned = align_all(train)
    table = build_table(aligned, args.min_count)
    rules = LetterToSound(table)
    result = evaluate(rules, test)
    print(
        f"train words {len(train)}, aligned {len(aligned)}, "
        f"held out {len(test)} (seed {args.seed})\n"
        f"table entries {len(table)}\n"
        f"phoneme error rate (no stress) {result['per']:.4f} -> phone accuracy "
        f"{result['phone_accuracy']:.4f}\n"
        f"phoneme error rate (with stress) {result['per_with_stress']:.4f}\n"
        f"word accuracy (no stress) {result['word_accuracy']:.4f}"
    )
    if args.write:
        path = Path(__file__).parent / "data" / TABLE_FILE
        data = json.dumps(table, separators=(",", ":"), sort_keys=True).encode("utf-8")
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
