"""build_targets: the target distribution each method trains its student against."""

from __future__ import annotations

import numpy as np
import pytest

from lelp.errors import ConfigError
from lelp.method.kmeans_subclass import KMeansSubclasser
from lelp.method.projection import LELPProjector, softmax_rows
from lelp.method.targets import SUBCLASS_METHODS, Method, build_targets

N, D, C = 240, 10, 2


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, C, N)
    emb = (rng.standard_normal((N, D)) * np.linspace(0.5, 2, D) + 2 * labels[:, None]).astype(np.float16)
    weight = rng.standard_normal((C, D)).astype(np.float32)
    logits = (emb.astype(np.float32) @ weight.T).astype(np.float32)
    return {"emb": emb, "labels": labels, "weight": weight, "logits": logits}


def build(method: str, data: dict, *, subclasses=3, beta=1.0, tau=2.0, seed=0, labels=None):
    return build_targets(
        method, data["logits"], data["emb"], data["labels"] if labels is None else labels,
        subclasses=subclasses, beta=beta, tau=tau, seed=seed, head_weight=data["weight"],
    )


def test_methods_and_subclass_set():
    assert [m.value for m in Method] == [
        "ce", "kd", "fitnet", "lelp", "random_subclass", "uniform_subclass", "kmeans_subclass"
    ]
    assert SUBCLASS_METHODS == {"lelp", "random_subclass", "uniform_subclass", "kmeans_subclass"}


def test_ce_is_one_hot_and_unlabelled_rows_take_the_teacher_argmax(data):
    labels = data["labels"].copy()
    labels[:10] = -1
    targets, used, model = build("ce", data, labels=labels)
    assert used == 1 and model is None and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[10:].argmax(1), labels[10:])
    np.testing.assert_array_equal(targets[:10].argmax(1), data["logits"][:10].argmax(1))
    np.testing.assert_array_equal(targets.sum(1), 1.0)


@pytest.mark.parametrize("method", ["kd", "fitnet"])
def test_kd_and_fitnet_use_softened_teacher_probabilities(data, method):
    targets, used, model = build(method, data, tau=3.0)
    assert used == 1 and model is None
    expected = np.exp(data["logits"] / 3.0) / np.exp(data["logits"] / 3.0).sum(1, keepdims=True)
    np.testing.assert_allclose(targets, expected, atol=1e-6)


@pytest.mark.parametrize("method, kind", [("lelp", LELPProjector), ("random_subclass", LELPProjector),
                                          ("kmeans_subclass", KMeansSubclasser)])
def test_subclass_targets_keep_the_teacher_marginals(data, method, kind):
    targets, used, model = build(method, data, subclasses=3, tau=2.0)
    assert used == 3 and isinstance(model, kind)
    assert targets.shape == (N, C * 3) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.reshape(N, C, 3).sum(-1), softmax_rows(data["logits"], 2.0), atol=1e-6)
    assert targets.reshape(N, C, 3).std(-1).max() > 1e-3  # the split is not uniform


def test_lelp_and_random_subclass_differ_in_directions(data):
    lelp, _, pca = build("lelp", data)
    rand, _, random = build("random_subclass", data)
    assert pca.directions == "pca" and random.directions == "random"
    assert not np.allclose(lelp, rand, atol=1e-3)


def test_lelp_with_one_subclass_is_kd(data):
    lelp, used, _ = build("lelp", data, subclasses=1)
    kd, _, _ = build("kd", data)
    assert used == 1
    np.testing.assert_allclose(lelp, kd, atol=1e-6)


def test_uniform_subclass_splits_each_class_evenly(data):
    targets, used, model = build("uniform_subclass", data, subclasses=4)
    assert used == 4 and model is None and targets.shape == (N, C * 4)
    expected = np.repeat(softmax_rows(data["logits"], 2.0) / 4, 4, axis=1)
    np.testing.assert_allclose(targets, expected, atol=1e-7)


def test_memmapped_embeddings(data, tmp_path):
    mm = np.memmap(tmp_path / "emb", dtype=np.float16, mode="w+", shape=data["emb"].shape)
    mm[:] = data["emb"]
    targets, _, _ = build("lelp", {**data, "emb": mm})
    np.testing.assert_allclose(targets, build("lelp", data)[0], atol=1e-6)


def test_user_mistakes_are_config_errors(data):
    with pytest.raises(ConfigError, match="choose one of: ce, kd"):
        build("distill-harder", data)
    with pytest.raises(ConfigError, match="subclasses"):
        build("lelp", data, subclasses="auto")
    with pytest.raises(ConfigError, match="tau"):
        build("kd", data, tau=0)
    with pytest.raises(ConfigError, match="beta"):
        build("lelp", data, beta=-1)
    with pytest.raises(ConfigError, match="choose subclasses <="):
        build("lelp", data, subclasses=9)
