"""LELPProjector and KMeansSubclasser on small synthetic embeddings (numpy/torch only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lelp.errors import ConfigError, DataError
from lelp.method.kmeans_subclass import KMeansSubclasser
from lelp.method.projection import LELPProjector, softmax_rows

N, D, C, S = 360, 12, 3, 3


@pytest.fixture(scope="module")
def data() -> dict:
    """Anisotropic classes with large means (to exercise the centring) and a random head."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N)
    scales = np.linspace(0.3, 3.0, D)
    means = rng.normal(0, 4, (C, D))
    emb = (rng.standard_normal((N, D)) * scales + means[labels]).astype(np.float32)
    weight = rng.standard_normal((C, D)).astype(np.float32)
    logits = emb @ weight.T / 4
    return {"emb": emb, "labels": labels, "weight": weight, "logits": logits}


def fit(data: dict, **kwargs) -> LELPProjector:
    return LELPProjector(S, **kwargs).fit(data["emb"], data["labels"], data["weight"])


def test_coordinates_ignore_moves_along_the_head_rows(data):
    proj = fit(data)
    shift = np.random.default_rng(1).normal(0, 3, (N, C)).astype(np.float32) @ data["weight"]
    np.testing.assert_allclose(proj.transform(data["emb"] + shift), proj.transform(data["emb"]), atol=2e-4)


def test_components_live_in_the_null_space(data):
    proj = fit(data)
    assert np.abs(proj.components_ @ data["weight"].T).max() < 1e-10
    assert np.abs(proj.null_projector_ @ data["weight"].T).max() < 1e-10
    assert proj.components_.shape == (C, S, D) and proj.mean_.shape == (C, D)


def test_rotations_are_orthogonal(data):
    proj = fit(data)
    for q in proj.rotation_:
        np.testing.assert_allclose(q @ q.T, np.eye(S), atol=1e-12)


def test_directions_span_the_top_null_space_pca(data):
    proj = fit(data)
    p = proj.null_projector_
    for c in range(C):
        rows = data["emb"][data["labels"] == c].astype(np.float64)
        cov = p @ np.cov(rows, rowvar=False) @ p
        top = np.linalg.eigh(cov)[1][:, -S:]
        directions = proj.rotation_[c].T @ proj.components_[c]  # undo the rotation: V_c (S, D)
        np.testing.assert_allclose(directions.T @ directions, top @ top.T, atol=1e-6)
        np.testing.assert_allclose(proj.mean_[c], rows.mean(0), atol=1e-5)


def test_standardised_coordinates_have_unit_mean_std(data):
    z = fit(data).transform(data["emb"])
    for c in range(C):
        own = z[data["labels"] == c, c].astype(np.float64)
        assert np.sqrt(own.var(0, ddof=1).mean()) == pytest.approx(1.0, abs=1e-4)
        assert np.abs(own.mean(0)).max() < 1e-4


def test_targets_split_teacher_probabilities(data):
    proj = fit(data, beta=0.7)
    targets = proj.targets(data["emb"], data["logits"], tau=2.0)
    assert targets.shape == (N, C * S) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5)
    marginals = targets.reshape(N, C, S).sum(-1)
    np.testing.assert_allclose(marginals, softmax_rows(data["logits"], 2.0), atol=1e-6)
    sub = torch.softmax(torch.from_numpy(proj.transform(data["emb"])) / 0.7, -1).numpy()
    np.testing.assert_allclose(targets.reshape(N, C, S), marginals[..., None] * sub, atol=1e-6)


def test_same_seed_same_output_other_seed_different(data):
    a, b, other = fit(data, seed=3), fit(data, seed=3), fit(data, seed=4)
    np.testing.assert_array_equal(a.transform(data["emb"]), b.transform(data["emb"]))
    assert not np.allclose(a.rotation_, other.rotation_)
    assert not np.allclose(a.transform(data["emb"]), other.transform(data["emb"]), atol=1e-2)


def test_partial_fit_over_chunks_equals_fit(data):
    whole = fit(data)
    streamed = LELPProjector(S)
    for start in range(0, N, 50):
        rows = slice(start, start + 50)
        streamed.partial_fit(data["emb"][rows], data["labels"][rows], data["weight"])
    streamed.finalize()
    np.testing.assert_allclose(streamed.transform(data["emb"]), whole.transform(data["emb"]), atol=1e-4)
    small_chunks = LELPProjector(S, chunk_size=7).fit(data["emb"], data["labels"], data["weight"])
    np.testing.assert_allclose(small_chunks.components_, whole.components_, atol=1e-5)


def test_numpy_and_torch_inputs_agree(data):
    from_numpy = fit(data)
    from_torch = LELPProjector(S).fit(
        torch.from_numpy(data["emb"]), torch.from_numpy(data["labels"]), torch.from_numpy(data["weight"])
    )
    np.testing.assert_allclose(from_torch.components_, from_numpy.components_, atol=1e-12)
    out = from_torch.targets(torch.from_numpy(data["emb"]), torch.from_numpy(data["logits"]))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), from_numpy.targets(data["emb"], data["logits"]))


def test_float16_memmap_is_streamed(data, tmp_path):
    path = tmp_path / "emb.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=(N, D))
    mm[:] = data["emb"]
    mm.flush()
    mm = np.memmap(path, dtype=np.float16, mode="r", shape=(N, D))
    proj = LELPProjector(S, chunk_size=64).fit(mm, data["labels"], data["weight"])
    in_memory = LELPProjector(S, chunk_size=64).fit(np.asarray(mm, np.float32), data["labels"], data["weight"])
    targets = proj.targets(mm, data["logits"])
    np.testing.assert_allclose(targets, in_memory.targets(np.asarray(mm, np.float32), data["logits"]), atol=1e-6)
    assert isinstance(targets, np.ndarray) and np.isfinite(targets).all()


def test_refuses_too_few_dimensions():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match=r"choose subclasses <= 3"):
        LELPProjector(4).fit(rng.standard_normal((40, 5)), rng.integers(0, 2, 40), rng.standard_normal((2, 5)))


def test_refuses_a_class_with_too_few_rows(data):
    labels = data["labels"].copy()
    labels[labels == 1] = 0
    labels[:3] = 1
    with pytest.raises(ConfigError, match=r"class 'b' has only 3 rows.*at least 4.*subclasses <= 2"):
        LELPProjector(S).fit(data["emb"], labels, data["weight"], class_names=["a", "b", "c"])


def test_unlabelled_rows_take_the_teacher_argmax(data):
    labels = data["labels"].copy()
    labels[::3] = -1
    filled = labels.copy()
    filled[::3] = data["logits"][::3].argmax(1)
    assert (filled != data["labels"]).any()  # the argmax really differs from the truth somewhere
    proj = LELPProjector(S).fit(data["emb"], labels, data["weight"], logits=data["logits"])
    np.testing.assert_allclose(proj.mean_, fit({**data, "labels": filled}).mean_, atol=1e-6)
    with pytest.raises(ConfigError, match="logits"):
        LELPProjector(S).fit(data["emb"], labels, data["weight"])


def test_out_of_range_labels_are_data_errors(data):
    labels = data["labels"].copy()
    labels[0] = C
    with pytest.raises(DataError, match="class indices"):
        LELPProjector(S).fit(data["emb"], labels, data["weight"])


def test_random_directions_are_orthonormal_in_the_null_space(data):
    proj = fit(data, directions="random")
    pca = fit(data)
    for c in range(C):
        directions = proj.rotation_[c].T @ proj.components_[c]
        np.testing.assert_allclose(directions @ directions.T, np.eye(S), atol=1e-10)
        assert np.abs(directions @ data["weight"].T).max() < 1e-10
        assert not np.allclose(directions.T @ directions, pca.components_[c].T @ pca.components_[c], atol=1e-2)


def test_without_null_space_the_head_directions_are_kept(data):
    proj = fit(data, null_space=False)
    np.testing.assert_array_equal(proj.null_projector_, np.eye(D))
    assert np.abs(proj.components_ @ data["weight"].T).max() > 1e-3


def test_unknown_directions_and_unfitted_use_are_refused(data):
    with pytest.raises(ConfigError, match="directions"):
        fit(data, directions="ica")
    with pytest.raises(ConfigError, match="not fitted"):
        LELPProjector(S).transform(data["emb"])


def test_kmeans_targets_and_memberships(data):
    model = KMeansSubclasser(S, beta=0.5, seed=0).fit(data["emb"], data["labels"], data["weight"])
    z = model.transform(data["emb"])
    assert z.shape == (N, C, S) and (z <= 0).all()
    assert np.abs(model.centroids_ @ data["weight"].T).max() < 1e-3  # clustered in the null space
    targets = model.targets(data["emb"], data["logits"], tau=1.5)
    np.testing.assert_allclose(targets.reshape(N, C, S).sum(-1), softmax_rows(data["logits"], 1.5), atol=1e-6)
    # each row's strongest sub-class is the cluster k-means put it in
    rows = data["labels"] == 0
    nearest = z[rows, 0].argmax(-1)
    assert len(np.unique(nearest)) == S
    again = KMeansSubclasser(S, beta=0.5, seed=0).fit(data["emb"], data["labels"], data["weight"])
    np.testing.assert_array_equal(again.transform(data["emb"]), z)


def test_kmeans_refuses_like_the_projector(data):
    with pytest.raises(ConfigError, match="has only"):
        KMeansSubclasser(S).fit(data["emb"][:6], data["labels"][:6], data["weight"])


def test_a_class_without_variance_splits_evenly(data):
    emb = data["emb"].copy()
    emb[data["labels"] == 2] = 1.5  # every row of class 2 identical
    proj = LELPProjector(S).fit(emb, data["labels"], data["weight"])
    assert proj.scale_[2] == 1.0
    own = proj.targets(emb, data["logits"])[data["labels"] == 2].reshape(-1, C, S)[:, 2]
    np.testing.assert_allclose(own, own[:, :1].repeat(S, 1), atol=1e-6)


def test_torch_float16_input(data):
    half = torch.from_numpy(data["emb"]).half()
    proj = LELPProjector(S).fit(half, data["labels"], data["weight"])
    z = proj.transform(half)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    reference = LELPProjector(S).fit(half.float().numpy(), data["labels"], data["weight"])
    np.testing.assert_allclose(z.numpy(), reference.transform(half.float().numpy()), atol=1e-5)
