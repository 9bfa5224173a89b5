"""Teacher-guided transfer sets: seeded variants of training rows, generated on demand, for the teacher to score.

A small transfer set starves the student of teacher signal; Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks") grow it with cheap rule-based
variants that the teacher then scores with soft targets. Per variant, every word is
independently replaced by the tokenizer's mask token (``p_mask``), swapped for one of its
nearest neighbours in the teacher-distilled static token table (``p_swap``; that table already
encodes the teacher's notion of similarity, so "dull" may become "boring" or "lively": the
teacher relabels the variant either way), or dropped (``p_drop``); then, with probability
``p_ngram``, only a random n-gram (n in 1..5) of the result is kept. ``window`` > 0 also
shuffles words within small windows (off by default, as in Tang et al.). ``p_splice`` > 0 first
joins, for that share of the variants, a prefix of the row to a suffix of another training row
(cut at random words; TreeMix-like mixing without a parser): new word combinations the teacher
relabels (off by default: screened in benchmarks/README.md).

Nothing is materialised: ``AugmentedTexts`` is a sequence whose item ``i`` is variant
``i % K`` of source row ``rows[i // K]``, generated when read from an RNG seeded by
``(seed, source row, variant)``; the same set whatever the order or chunking of reads. The
teacher's scores of a set are cached like any features, keyed by ``AugmentedSet.key`` (the
source data's hash, the spec, the source rows and the neighbour table), so a second job skips
both the generation and the teacher. Only training rows are ever augmented: the job passes its
fit rows, never validation or test rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

AUGMENT_VERSION = 2

# How many variants ``augment="auto"`` asks for (benchmarks/README.md, "Teacher-guided transfer
# sets"). On CPU the teacher's extraction is the cost: a MiniLM-L6 teacher scores ~457 SST-2 sentences/s
# on 2 idle cores (benchmarks/throughput.py), so AUTO_CPU_BUDGET_ROWS variant rows add about 105 s of
# extraction to a job (and the student trains on up to 1 + K times the rows). Sets of AUTO_MAX_ROWS fit
# rows or more get no variants (the budget would give them at most one, and real rows are plenty there).
# SST-2 at 7k (3 seeds each, paired): 6 a row beat 3 by +1.22 +- 0.36 validation points, 3 beat none by +0.96;
# 12 a row did not beat 6 (-0.75 +- 0.42 validation, 6 seeds; test +0.15 +- 0.35) at about twice the scoring
# and training time, so 6 stays.
AUTO_MAX_VARIANTS = 6
AUTO_CPU_BUDGET_ROWS = 48_000
AUTO_GPU_BUDGET_ROWS = 480_000  # the teacher is ~10x+ faster on a GPU worker
AUTO_MAX_ROWS = 20_000


def auto_variants(fit_rows: int, *, gpu: bool = False) -> int:
    """Variants per row for ``augment="auto"``: at most AUTO_MAX_VARIANTS, within the device's row budget,
    none for sets of AUTO_MAX_ROWS rows or more."""
    if fit_rows <= 0 or fit_rows >= AUTO_MAX_ROWS:
        return 0
    budget = AUTO_GPU_BUDGET_ROWS if gpu else AUTO_CPU_BUDGET_ROWS
    return max(0, min(AUTO_MAX_VARIANTS, budget // fit_rows))


@dataclass(frozen=True)
class AugmentSpec:
    variants: int  # per source row
    p_mask: float = 0.1
    p_swap: float = 0.1
    p_drop: float = 0.0
    p_ngram: float = 0.25
    window: int = 0
    p_splice: float = 0.0
    mask_token: str = "[MASK]"
    seed: int = 0


class WordNeighbours:
    """Each word's ``k`` nearest words (cosine) in a static token table, among the words of the data.

    Candidates are whole-word, alphabetic tokens of the tokenizer's vocabulary that occur in the
    rows given, so swaps stay in the data's own vocabulary; memory is bounded by that vocabulary,
    not by the number of rows.
    """

    def __init__(self, words: list[str], neighbours: np.ndarray):
        self.words, self.neighbours = words, neighbours  # (m, k) indices into words
        self.index = {w: i for i, w in enumerate(words)}
        digest = hashlib.sha256("\n".join(words).encode())
        digest.update(np.ascontiguousarray(neighbours).tobytes())
        self.sha256 = digest.hexdigest()

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, table: np.ndarray, vocab: dict[str, int], texts: Iterable[str], *, k: int = 5,
              lowercase: bool = True, chunk: int = 2048) -> WordNeighbours:
        seen: set[str] = set()
        for text in texts:
            for word in (text.lower() if lowercase else text).split():
                if word.isalpha() and len(word) > 1 and word in vocab:
                    seen.add(word)
        words = sorted(seen)
        if len(words) <= 1:
            return cls(words, np.zeros((len(words), 0), dtype=np.int32))
        vectors = np.asarray(table, dtype=np.float32)[[vocab[w] for w in words]]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-8)
        k = min(k, len(words) - 1)
        out = np.empty((len(words), k), dtype=np.int32)
        for start in range(0, len(words), chunk):  # (chunk, m) similarities at a time
            sims = vectors[start:start + chunk] @ vectors.T
            sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf  # never itself
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
            out[start:start + chunk] = np.take_along_axis(top, order, 1)
        return cls(words, out)

    def swap(self, word: str, rng: np.random.Generator) -> str | None:
        i = self.index.get(word.lower())
        if i is None or not self.neighbours.shape[1]:
            return None
        return self.words[int(self.neighbours[i, int(rng.integers(self.neighbours.shape[1]))])]


def _variant(words: list[str], spec: AugmentSpec, rng: np.random.Generator,
             neighbours: WordNeighbours | None) -> list[str]:
    out, positions = [], []
    for i, word in enumerate(words):
        r = rng.random()
        if r < spec.p_mask:
            out.append(spec.mask_token)
        elif r < spec.p_mask + spec.p_swap:
            swapped = neighbours.swap(word, rng) if neighbours is not None else None
            out.append(swapped if swapped is not None else word)
        elif r < spec.p_mask + spec.p_swap + spec.p_drop:
            continue
        else:
            out.append(word)
        positions.append(i + (rng.uniform(0, spec.window) if spec.window else 0.0))
    if spec.window:  # a local shuffle: sort by jittered index
        order = np.argsort(np.asarray(positions), kind="stable")
        out = [out[j] for j in order]
    if len(out) > 1 and rng.random() < spec.p_ngram:
        n = int(rng.integers(1, min(5, len(out)) + 1))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out or words[:1]


def augment_text(text: str, spec: AugmentSpec, row: int, variant: int,
                 neighbours: WordNeighbours | None = None, partner: str | None = None) -> str:
    """Variant ``variant`` of ``text`` (source row ``row``): the same string on every call.

    ``partner``: the other row a spliced variant takes its suffix from (``AugmentedTexts`` picks it)."""
    rng = np.random.default_rng([spec.seed, row, variant, AUGMENT_VERSION])
    words = text.split()
    if partner is not None and words:
        other = partner.split()
        # its own stream, so that splicing never changes what the other variants of a spec draw
        cut = np.random.default_rng([spec.seed, row, variant, AUGMENT_VERSION, 2])
        words = words[:int(cut.integers(1, len(words) + 1))] + other[int(cut.integers(0, max(1, len(other)))):]
    return " ".join(_variant(words, spec, rng, neighbours))


class AugmentedTexts(Sequence):
    """``len(rows) * K`` variant strings, made when read (index or slice); none is stored.

    ``variant_offset`` separates the second text of a pair from the first (different RNG streams).
    """

    def __init__(self, texts: Sequence[str], rows: np.ndarray, spec: AugmentSpec,
                 neighbours: WordNeighbours | None = None, variant_offset: int = 0):
        self.texts, self.rows, self.spec = texts, np.asarray(rows, dtype=np.int64), spec
        self.neighbours, self.variant_offset = neighbours, variant_offset

    def __len__(self) -> int:
        return len(self.rows) * self.spec.variants

    def _one(self, i: int) -> str:
        row = int(self.rows[i // self.spec.variants])
        variant = self.variant_offset + i % self.spec.variants
        return augment_text(self.texts[row], self.spec, row, variant, self.neighbours, self._partner(row, variant))

    def _partner(self, row: int, variant: int) -> str | None:
        """The training row a spliced variant joins (any source row, itself included; never a held-out one)."""
        if not self.spec.p_splice or len(self.rows) < 2:
            return None
        rng = np.random.default_rng([self.spec.seed, row, variant, AUGMENT_VERSION, 1])
        if rng.random() >= self.spec.p_splice:
            return None
        return self.texts[int(self.rows[int(rng.integers(len(self.rows)))])]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._one(i)


class ChainedTexts(Sequence):
    """``first`` then ``second`` as one sequence, slices included, without copying either."""

    def __init__(self, first: Sequence[str], second: Sequence[str]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i):
        n = len(self.first)
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            head = list(self.first[start:min(stop, n)]) if start < n else []
            tail = list(self.second[max(start - n, 0):stop - n]) if stop > n else []
            return head + tail
        if i < 0:
            i += len(self)
        return self.first[i] if i < n else self.second[i - n]


@dataclass
class AugmentedSet:
    texts: AugmentedTexts
    text_pairs: AugmentedTexts | None
    spec: AugmentSpec
    rows: np.ndarray  # the source rows, each giving spec.variants consecutive variants
    key: str  # dataset hash of the set (cache key of its teacher features)

    @property
    def source_rows(self) -> np.ndarray:
        """The training row each variant came from."""
        return np.repeat(self.rows, self.spec.variants)


def augment_rows(texts: Sequence[str], text_pairs: Sequence[str] | None, rows: np.ndarray, spec: AugmentSpec, *,
                 dataset_sha256: str, neighbours: WordNeighbours | None = None) -> AugmentedSet:
    """``spec.variants`` variants of each row in ``rows`` (source order), made lazily when read."""
    rows = np.asarray(rows, dtype=np.int64)
    fields = asdict(spec)
    if not spec.p_splice:  # a field added later: sets without it keep their keys (and cached scores)
        del fields["p_splice"]
    digest = hashlib.sha256(json.dumps([dataset_sha256, fields, AUGMENT_VERSION,
                                        neighbours.sha256 if neighbours is not None else None]).encode())
    digest.update(rows.tobytes())
    pairs = (AugmentedTexts(text_pairs, rows, spec, neighbours, variant_offset=spec.variants)
             if text_pairs is not None else None)
    return AugmentedSet(AugmentedTexts(texts, rows, spec, neighbours), pairs, spec, rows,
                        "augment-" + digest.hexdigest())

