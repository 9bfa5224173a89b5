"""Batched feature extraction: same numbers as a plain forward, original order, real caching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lelp.errors import JobCancelled
from lelp.progress import Progress
from lelp.teacher import features
from lelp.teacher.features import encode_mean_pooled, extract_teacher_features
from lelp.teacher.loading import load_teacher

# Mixed lengths on purpose, long ones in the middle: sorting must not leak into the output order.
TEXTS = [
    "good",
    "the movie was very good and the plot was great and the actor was superb " * 3,
    "bad film",
    "a dull story",
    "the scene was grim cold and weak and the film was quite sad",
    "lovely",
    "the team won the match and the coach was happy with the goal " * 2,
    "awful awful awful",
    "w1 w2 w3 w4 w5",
    "fine",
    "the plot is poor",
]
PAIRS = ["great", "bad", "the story", "fine", "w3", "sad", "goal", "warm", "cold", "team", "a"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    return load_teacher(tiny_teacher_dir)


class ForwardCounter:
    """Counts calls of the teacher's forward, to prove a cache hit skips the model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = model.register_forward_hook(self._count)

    def _count(self, *_args) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


@pytest.fixture()
def counter(teacher):
    c = ForwardCounter(teacher.model)
    yield c
    c.close()


def _one_by_one(teacher, texts, pairs=None, max_length=128):
    """Reference: each row alone, no padding, no sorting, no cache."""
    embeddings, logits = [], []
    captured = []
    hook = teacher.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        with torch.inference_mode():
            for i, text in enumerate(texts):
                enc = teacher.tokenizer(text, None if pairs is None else pairs[i], truncation=True,
                                        max_length=max_length, return_tensors="pt")
                logits.append(teacher.model(**enc).logits[0].numpy())
                embeddings.append(captured[-1][0].numpy())
    finally:
        hook.remove()
    return np.stack(embeddings), np.stack(logits)


def test_matches_unbatched_forward_in_original_order(teacher, tmp_path):
    seen: list[Progress] = []
    result = extract_teacher_features(teacher, TEXTS, batch_size=4, cache_dir=tmp_path, progress=seen.append)
    ref_emb, ref_logits = _one_by_one(teacher, TEXTS)
    assert result.embeddings.dtype == np.float16 and result.embeddings.shape == (len(TEXTS), 32)
    assert result.logits.dtype == np.float32 and result.logits.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(result.embeddings.astype(np.float32), ref_emb, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(result.logits, ref_logits, rtol=1e-4, atol=1e-5)
    assert isinstance(result.embeddings, np.memmap)
    assert len(seen) == math.ceil(len(TEXTS) / 4)
    assert [p.step for p in seen] == [4, 8, 11]
    assert all(p.total_steps == len(TEXTS) and p.stage == "extract" for p in seen)


def test_text_pairs(teacher, tmp_path):
    result = extract_teacher_features(teacher, TEXTS, PAIRS, batch_size=3, cache_dir=tmp_path)
    ref_emb, ref_logits = _one_by_one(teacher, TEXTS, PAIRS)
    np.testing.assert_allclose(result.logits, ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.embeddings.astype(np.float32), ref_emb, rtol=2e-3, atol=2e-3)
    single = extract_teacher_features(teacher, TEXTS, batch_size=3, cache_dir=tmp_path)
    assert not np.allclose(single.logits, result.logits)  # pairs change both the input and the cache key


def test_truncation_to_max_length(teacher, tmp_path):
    result = extract_teacher_features(teacher, TEXTS, max_length=6, batch_size=4, cache_dir=tmp_path)
    _, ref_logits = _one_by_one(teacher, TEXTS, max_length=6)
    np.testing.assert_allclose(result.logits, ref_logits, rtol=1e-4, atol=1e-5)


def test_cache_hit_skips_the_model(teacher, tmp_path, counter):
    first = extract_teacher_features(teacher, TEXTS, batch_size=4, cache_dir=tmp_path)
    assert counter.calls == 3
    entries = [p.name for p in tmp_path.iterdir()]
    assert len(entries) == 1 and not entries[0].startswith(".tmp")
    second = extract_teacher_features(teacher, TEXTS, batch_size=8, cache_dir=tmp_path)
    assert counter.calls == 3
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    np.testing.assert_array_equal(first.logits, second.logits)


def test_cache_key_parts(teacher, tmp_path, counter):
    extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path)
    extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path, max_length=16)
    assert counter.calls == 2  # another max length is another entry
    extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path, dataset_sha256="a" * 64)
    extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path, dataset_sha256="a" * 64)
    assert counter.calls == 3  # the caller's dataset hash replaces the text hash, and hits
    extract_teacher_features(teacher, TEXTS[:-1], batch_size=16, cache_dir=tmp_path)
    assert counter.calls == 4
    assert len(list(tmp_path.iterdir())) == 4


def test_damaged_cache_entry_is_recomputed(teacher, tmp_path, counter):
    first = extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path)
    logits = first.logits.copy()
    del first
    entry = next(tmp_path.iterdir())
    (entry / "logits.npy").write_bytes(b"garbage")
    again = extract_teacher_features(teacher, TEXTS, batch_size=16, cache_dir=tmp_path)
    assert counter.calls == 2
    np.testing.assert_array_equal(again.logits, logits)


def test_cancel_raises_and_leaves_no_cache(teacher, tmp_path, counter):
    answers = iter([False, True])
    with pytest.raises(JobCancelled):
        extract_teacher_features(teacher, TEXTS, batch_size=2, cache_dir=tmp_path, should_cancel=lambda: next(answers))
    assert counter.calls == 1
    assert list(tmp_path.iterdir()) == []  # neither a complete-looking entry nor a temp dir
    extract_teacher_features(teacher, TEXTS, batch_size=2, cache_dir=tmp_path, should_cancel=lambda: False)
    assert counter.calls == 1 + math.ceil(len(TEXTS) / 2)


def test_crash_mid_run_leaves_no_entry(teacher, tmp_path, monkeypatch):
    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "report", crash)
    with pytest.raises(KeyboardInterrupt):
        extract_teacher_features(teacher, TEXTS, batch_size=2, cache_dir=tmp_path, progress=print)
    assert list(tmp_path.iterdir()) == []


def test_without_cache_dir_arrays_stay_readable(teacher):
    result = extract_teacher_features(teacher, TEXTS, batch_size=4)
    _, ref_logits = _one_by_one(teacher, TEXTS)
    np.testing.assert_allclose(np.asarray(result.logits), ref_logits, rtol=1e-4, atol=1e-5)


def test_empty_input(teacher, tmp_path):
    result = extract_teacher_features(teacher, [], cache_dir=tmp_path)
    assert result.embeddings.shape == (0, 32) and result.logits.shape == (0, 2)


# --------------------------------------------------------------------------- frozen encoder


def test_encode_mean_pooled_matches_manual_pooling_and_caches(tiny_teacher_dir, tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    vectors = encode_mean_pooled(tiny_teacher_dir, TEXTS, batch_size=4, cache_dir=tmp_path)
    assert vectors.dtype == np.float16 and vectors.shape == (len(TEXTS), 32)

    model = AutoModel.from_pretrained(tiny_teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    with torch.inference_mode():
        expected = np.stack(
            [model(**tokenizer(t, truncation=True, max_length=128, return_tensors="pt")).last_hidden_state[0]
             .mean(dim=0).numpy() for t in TEXTS]
        )
    np.testing.assert_allclose(vectors.astype(np.float32), expected, rtol=2e-3, atol=2e-3)

    def no_model(*_args, **_kwargs):
        raise AssertionError("the encoder was loaded on a cache hit")

    monkeypatch.setattr(features, "load_encoder", no_model)
    again = encode_mean_pooled(tiny_teacher_dir, TEXTS, batch_size=8, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, vectors)
    with pytest.raises(AssertionError, match="loaded on a cache hit"):
        encode_mean_pooled(tiny_teacher_dir, TEXTS, max_length=8, cache_dir=tmp_path)


def test_encode_mean_pooled_pairs_and_distinct_from_teacher_cache(tiny_teacher_dir, teacher, tmp_path):
    pooled = encode_mean_pooled(tiny_teacher_dir, TEXTS, PAIRS, cache_dir=tmp_path)
    teacher_feats = extract_teacher_features(teacher, TEXTS, PAIRS, cache_dir=tmp_path)
    assert pooled.shape == (len(TEXTS), 32)
    assert len(list(Path(tmp_path).iterdir())) == 2
    assert not np.allclose(pooled.astype(np.float32), teacher_feats.embeddings.astype(np.float32))


def test_tokenize_rows_packs_chunks_without_changing_rows(teacher):
    packed = features.tokenize_rows(teacher.tokenizer, TEXTS, PAIRS, max_length=12, chunk_rows=3)
    direct = teacher.tokenizer(TEXTS, PAIRS, truncation=True, max_length=12)
    rows = packed.batch(np.arange(len(TEXTS))[::-1])
    assert set(rows) == set(direct.keys())
    for key in rows:
        assert rows[key] == direct[key][::-1]
    assert packed.lengths.tolist() == [len(ids) for ids in direct["input_ids"]]


def test_user_mistakes_raise_library_errors(teacher, tmp_path):
    from lelp.errors import ConfigError, DataError

    with pytest.raises(DataError, match="same length"):
        extract_teacher_features(teacher, TEXTS, PAIRS[:-1], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        extract_teacher_features(teacher, TEXTS, batch_size=0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_abandoned_half_written_cache_is_removed_but_a_live_one_is_kept(tmp_path):
    import os
    import time

    from lelp.teacher.features import remove_abandoned_work

    old = tmp_path / ".tmp-k1-dead"
    old.mkdir()
    (old / "embeddings.npy").write_bytes(b"x" * 10)
    two_hours_ago = time.time() - 7200
    os.utime(old / "embeddings.npy", (two_hours_ago, two_hours_ago))
    live = tmp_path / ".tmp-k1-live"
    live.mkdir()
    (live / "embeddings.npy").write_bytes(b"x")
    other_key = tmp_path / ".tmp-k2-dead"
    other_key.mkdir()
    assert remove_abandoned_work(tmp_path, "k1") == 1
    assert not old.exists() and live.exists() and other_key.exists()
