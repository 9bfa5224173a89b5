"""Teacher-guided transfer sets (lelp.data.augment): seeded lazy variants, neighbour swaps, the auto
count, streaming with bounded memory, and validation / test rows never augmented."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from lelp.data.augment import (
    AUTO_MAX_ROWS,
    AUTO_MAX_VARIANTS,
    AugmentedTexts,
    AugmentSpec,
    ChainedTexts,
    WordNeighbours,
    augment_rows,
    augment_text,
    auto_variants,
)
from lelp.pipeline import DistillConfig

TEXTS = ["a very good film indeed", "bad plot and worse acting", "fine"]


def test_variants_are_seeded_lazy_and_order_free():
    spec = AugmentSpec(variants=3, seed=5)
    one = augment_rows(TEXTS, None, np.array([0, 1, 2]), spec, dataset_sha256="x")
    two = augment_rows(TEXTS, None, np.array([2, 0, 1]), spec, dataset_sha256="x")
    assert len(one.texts) == 9 and one.source_rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    listed = list(one.texts)
    assert one.texts[2:7] == listed[2:7] and one.texts[-1] == listed[-1]  # slices and items agree
    by_source = set(zip(two.source_rows.tolist(), two.texts, strict=True))
    assert by_source == set(zip(one.source_rows.tolist(), listed, strict=True))  # order does not matter
    assert any(t != TEXTS[r] for r, t in zip(one.source_rows, listed, strict=True))
    other = augment_rows(TEXTS, None, np.array([0, 1, 2]), AugmentSpec(variants=3, seed=6), dataset_sha256="x")
    assert list(other.texts) != listed and other.key != one.key
    assert augment_rows(TEXTS, None, np.array([0, 1, 2]), spec, dataset_sha256="y").key != one.key
    with pytest.raises(IndexError):
        one.texts[9]


def test_chained_texts_slice_across_the_boundary():
    aug = AugmentedTexts(TEXTS, np.array([0, 1]), AugmentSpec(variants=2))
    chained = ChainedTexts(TEXTS, aug)
    whole = TEXTS + list(aug)
    assert len(chained) == 7 and list(chained) == whole
    assert chained[2:5] == whole[2:5] and chained[0:7:3] == whole[0:7:3] and chained[-1] == whole[-1]


def test_spliced_variants_join_a_prefix_to_another_training_rows_suffix():
    texts = ["one two three", "four five six", "held out row", "seven eight"]
    plain = AugmentSpec(variants=4, p_mask=0.0, p_swap=0.0, p_ngram=0.0)
    spliced = AugmentSpec(variants=4, p_mask=0.0, p_swap=0.0, p_ngram=0.0, p_splice=1.0)
    rows = np.array([0, 1, 3])  # row 2 is held out: never a partner
    variants = list(augment_rows(texts, None, rows, spliced, dataset_sha256="x").texts)
    sources = np.repeat(rows, 4)
    training_words = [texts[r].split() for r in rows]
    for source, variant in zip(sources, variants, strict=True):
        own, words = texts[source].split(), variant.split()
        cut = next(c for c in range(len(own), 0, -1) if words[:c] == own[:c])  # the longest own prefix
        rest = words[cut:]
        assert any(rest == other[len(other) - len(rest):] for other in training_words), variant
        assert "held" not in variant and "out" not in variant
    assert any(v != texts[s] for s, v in zip(sources, variants, strict=True))
    # without splicing (the default) the same spec leaves each row as it was
    assert list(augment_rows(texts, None, rows, plain, dataset_sha256="x").texts) == [texts[r] for r in sources]
    assert (augment_rows(texts, None, rows, spliced, dataset_sha256="x").key
            != augment_rows(texts, None, rows, plain, dataset_sha256="x").key)


def test_word_swaps_take_nearest_neighbours_in_the_table():
    vocab = {"good": 0, "great": 1, "bad": 2, "awful": 3, "film": 4, "##s": 5}
    table = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    neighbours = WordNeighbours.build(table, vocab, ["good film", "great bad awful", "unknown words"], k=1)
    assert sorted(neighbours.words) == ["awful", "bad", "film", "good", "great"]  # in the data and the vocab
    rng = np.random.default_rng(0)
    assert neighbours.swap("Good", rng) == "great" and neighbours.swap("bad", rng) == "awful"
    assert neighbours.swap("unknown", rng) is None
    # every word swapped (p_swap 1): the variant is the neighbours, and the spec's hash includes the table
    spec = AugmentSpec(variants=1, p_mask=0.0, p_swap=1.0, p_ngram=0.0)
    assert augment_text("good film", spec, 0, 0, neighbours) == "great " + neighbours.swap("film", rng)
    assert (augment_rows(["good"], None, np.array([0]), spec, dataset_sha256="x", neighbours=neighbours).key
            != augment_rows(["good"], None, np.array([0]), spec, dataset_sha256="x").key)


def test_auto_count_follows_the_data_size_and_the_budget():
    assert auto_variants(0) == 0 and auto_variants(AUTO_MAX_ROWS) == 0 and auto_variants(10 * AUTO_MAX_ROWS) == 0
    assert auto_variants(100) == AUTO_MAX_VARIANTS
    counts = [auto_variants(n) for n in (1000, 5000, 7000, 10_000, 15_000)]
    assert counts == sorted(counts, reverse=True) and all(0 <= c <= AUTO_MAX_VARIANTS for c in counts)
    assert auto_variants(15_000, gpu=True) >= auto_variants(15_000)
    from lelp.data.augment import AUTO_CPU_BUDGET_ROWS

    assert all(auto_variants(n) * n <= AUTO_CPU_BUDGET_ROWS for n in range(100, AUTO_MAX_ROWS, 997))


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_scoring_variants_streams_with_bounded_memory(tiny_teacher_dir):
    """Peak Python/numpy memory of generating and scoring a set does not grow with its size."""
    from lelp.teacher.features import extend_teacher_features, extract_teacher_features
    from lelp.teacher.loading import load_teacher

    teacher = load_teacher(tiny_teacher_dir)
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "acting", "great", "dull", "story", "very", "not"]
    texts = [" ".join(rng.choice(words, 36)) for _ in range(480)]
    base = extract_teacher_features(teacher, texts[:10], max_length=48)
    spec = AugmentSpec(variants=4)

    def score(rows: int):
        aug = augment_rows(texts, None, np.arange(rows), spec, dataset_sha256=f"x{rows}")
        feats = extend_teacher_features(teacher, base, aug.texts, dataset_sha256=aug.key, max_length=48,
                                        block_rows=128)
        assert feats.logits.shape == (10 + 4 * rows, 2) and np.isfinite(np.asarray(feats.logits)).all()
        np.testing.assert_array_equal(feats.logits[:10], base.logits)  # the base rows come first, unchanged

    score(16)  # warm-up: imports and one-off caches are not the set's memory
    small, large = _peak_bytes(lambda: score(60)), _peak_bytes(lambda: score(480))
    # 1,680 more variants of ~200 characters: a list of their strings alone would be > 350 kB
    assert large - small < 150_000, (small, large)


def test_validation_and_test_rows_are_never_augmented(tiny_teacher_dir, tiny_train_csv, tmp_path):
    from lelp.job import DistillJob
    from lelp.pipeline import distill

    def job_for(augment):
        cfg = DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv), student="static",
                            student_options={"hidden": 16, "pca_dims": 8}, method="kd", epochs=1, max_length=32,
                            augment=augment)
        job = DistillJob(cfg, cache_dir=tmp_path / "cache")
        job.load()
        return cfg, job

    _, plain = job_for(0)
    plain.extract()
    cfg, job = job_for("auto")
    original_fit = job.fit_rows.copy()
    job.extract()
    k = auto_variants(len(original_fit))
    assert k > 0 and job.augment_variants == k and job.augmented_rows == k * len(original_fit)
    held = set(job.validation_rows.tolist()) | set(job.eval_rows.tolist())
    assert not held & set(job.aug_source_rows.tolist())
    assert set(job.aug_source_rows.tolist()) == set(original_fit.tolist())
    n = len(job.train_data.texts)
    assert set(job.fit_rows[job.fit_rows >= n].tolist()) == set(range(n, n + job.augmented_rows))
    # validation / test rows: the same rows, inputs and teacher scores as without augmentation
    np.testing.assert_array_equal(job.validation_rows, plain.validation_rows)
    np.testing.assert_array_equal(job.eval_rows, plain.eval_rows)
    np.testing.assert_array_equal(job.pool_logits[:n], plain.pool_logits)
    for rows in (job.validation_rows, job.eval_rows):
        batch = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        assert torch.equal(job.train_inputs.batch(batch, job.device)["ids"],
                           plain.train_inputs.batch(batch, plain.device)["ids"])
    result = distill(cfg, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert result.metrics["augmented_rows"] == job.augmented_rows
    assert result.metrics["train_rows"] == len(original_fit) and result.metrics["chosen"]["augment"] == k


def test_a_cnn_job_on_variants_plans_the_augmented_epoch_budget(tiny_teacher_dir, tiny_train_csv, tmp_path):
    from lelp.config import budget_epochs, candidates_for
    from lelp.job import DistillJob

    budgets = {}
    for augment in (0, 8):
        cfg = DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv), student="cnn",
                            method="kd", max_length=32, augment=augment, batch_size=1)
        job = DistillJob(cfg, cache_dir=tmp_path / "cache")
        job.load()
        job.extract()
        hp = job.candidate_hyperparameters(candidates_for(cfg)[0])
        assert hp["augment"] == augment
        assert hp["epochs"] == budget_epochs(cfg, len(job.fit_rows), augmented=augment > 0)
        budgets[augment] = hp["epochs"]
    # batches of one row: ~130 rows need 12 epochs for min_steps; 9x the rows need 2, and plan cnn's 3
    assert budgets[0] >= 10 and budgets[8] == 3

