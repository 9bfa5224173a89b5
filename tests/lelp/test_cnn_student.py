"""The cnn student: the static student's table + a convolution that sees word order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lelp.artifacts import load_student, read_manifest
from lelp.errors import ConfigError
from lelp.pipeline import DistillConfig, distill
from lelp.students.cnn import CnnStudent, PaddedTokenInputs
from lelp.students.static import StaticInputs, StaticStudent

SMALL_CNN = {"hidden": 16, "pca_dims": 8, "filters": 8, "widths": [3]}


def cnn_config(teacher, train, eval_, **overrides) -> DistillConfig:
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval_), student="cnn",
                method="kd", student_options=SMALL_CNN, max_length=32, epochs=2)
    base.update(overrides)
    return DistillConfig(**base)


def _scores(student, batch) -> np.ndarray:
    student.eval()
    with torch.no_grad():
        return student(batch)[0].numpy()


def test_the_convolution_sees_word_order_where_the_mean_does_not():
    torch.manual_seed(0)
    ids = {"ids": torch.tensor([[5, 6, 7], [7, 6, 5]]), "mask": torch.ones(2, 3, dtype=torch.int64)}
    cnn = CnnStudent(2, vocab_size=10, embedding_dim=4, filters=6, widths=[2, 3], hidden=8)
    out = _scores(cnn, ids)
    assert not np.allclose(out[0], out[1], atol=1e-4)  # same tokens, other order: another score
    static = StaticStudent(2, vocab_size=10, embedding_dim=4, hidden=8)
    bag = {"ids": torch.tensor([5, 6, 7, 7, 6, 5]), "offsets": torch.tensor([0, 3])}
    same = _scores(static, bag)
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_padding_does_not_change_a_rows_score(tiny_teacher_dir):
    from lelp.teacher.loading import load_teacher

    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    texts = ["good film", "a much longer sentence about a rather bad film", ""]
    inputs = PaddedTokenInputs(tokenizer, texts, None, 32)
    assert len(inputs) == 3
    flat = StaticInputs(tokenizer, texts, None, 32)  # the same ids, unpadded
    together = inputs.batch(torch.arange(3), torch.device("cpu"))
    assert together["ids"].shape == (3, int(flat.indptr.diff().max()))
    assert together["mask"].sum(1).tolist() == flat.indptr.diff().tolist()
    torch.manual_seed(1)
    student = CnnStudent(2, vocab_size=len(tokenizer), embedding_dim=8, filters=4, widths=[3, 4], hidden=8)
    batched = _scores(student, together)
    for i in range(3):
        alone = _scores(student, inputs.batch(torch.tensor([i]), torch.device("cpu")))
        np.testing.assert_allclose(alone[0], batched[i], rtol=1e-5, atol=1e-6)
    empty = inputs.batch(torch.tensor([2]), torch.device("cpu"))
    assert empty["ids"].shape == (1, 1) and empty["mask"].sum() == 0 and np.isfinite(batched[2]).all()


@pytest.mark.parametrize(("widths", "lengths"), [([3], [0, 1, 2, 7, 3, 7, 5]), ([2, 3, 4], [0, 1, 2, 7, 3, 7, 5]),
                                                ([1, 5], [0, 1, 2, 7, 3, 7, 5]), ([1], [0, 0])])
def test_training_packs_the_tokens_and_gets_the_padded_batchs_outputs_and_gradients(widths, lengths):
    """Training lays each batch's real tokens end to end (no padded positions convolved): the
    outputs and every gradient must be those of the padded batch, empty and full-width rows included
    (and a batch of empty rows with width-1 filters, where no zeros separate rows)."""
    torch.manual_seed(2)
    lengths = torch.tensor(lengths)
    width = max(1, int(lengths.max()))  # as PaddedTokenInputs.batch: an empty row still gets a column
    mask = (torch.arange(width)[None, :] < lengths[:, None]).to(torch.int64)
    ids = torch.randint(1, 30, (len(lengths), width)) * mask
    batch = {"ids": ids, "mask": mask}

    def run(packed: bool):
        torch.manual_seed(3)
        student = CnnStudent(3, vocab_size=30, embedding_dim=6, filters=5, widths=widths, hidden=8, dropout=0.0)
        student.train()
        if not packed:
            student._packed_responses = lambda x, m: student._padded_responses(x)
        logits, hidden = student(batch)
        (logits.square().sum() + hidden.sum()).backward()
        grads = {name: p.grad.to_dense() if p.grad.is_sparse else p.grad for name, p in student.named_parameters()}
        return logits.detach(), grads

    packed_logits, packed_grads = run(True)
    padded_logits, padded_grads = run(False)
    torch.testing.assert_close(packed_logits, padded_logits, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == padded_grads.keys()
    for name in packed_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_folded_taps_give_the_convolutions_scores(tiny_teacher_dir):
    from lelp.teacher.loading import load_teacher

    tokenizer = load_teacher(tiny_teacher_dir).tokenizer
    inputs = PaddedTokenInputs(tokenizer, ["good film", "a much longer sentence about a bad film", ""], None, 32)
    batch = inputs.batch(torch.arange(3), torch.device("cpu"))
    torch.manual_seed(2)
    student = CnnStudent(2, vocab_size=len(tokenizer), embedding_dim=8, filters=4, widths=[2, 3, 4], hidden=8)
    plain = _scores(student, batch)
    student.fold()
    np.testing.assert_allclose(_scores(student, batch), plain, rtol=1e-5, atol=1e-6)
    student.unfold()
    np.testing.assert_array_equal(_scores(student, batch), plain)


def test_cnn_artifact_starts_from_the_static_table_and_loads_as_a_model2vec_static_model(
        tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    from lelp.students.cnn import CnnKind
    from lelp.students.kind import KindContext
    from lelp.students.static import StaticKind
    from lelp.teacher.loading import load_teacher

    teacher = load_teacher(tiny_teacher_dir)
    ctx = KindContext(teacher=teacher, options=SMALL_CNN, cache_dir=tmp_path / "cache")
    student = CnnKind(ctx).build(4, ["negative", "positive"], 2)
    static_table = StaticKind(KindContext(teacher=teacher, options={"pca_dims": 8}, cache_dir=tmp_path / "cache"))
    np.testing.assert_allclose(student.embeddings.weight.detach().numpy(), static_table.table())

    result = distill(cnn_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, method="lelp", subclasses=2),
                     tmp_path / "out", cache_dir=tmp_path / "cache")
    out = result.artifact_dir
    manifest = read_manifest(out)
    assert manifest["kind"] == "cnn" and manifest["spec"]["widths"] == [3] and manifest["subclasses"] == 2
    predictor = load_student(out)
    assert predictor.student.folded is not None  # served as table lookups
    texts = ["good great film", "bad awful plot", ""]
    probs = predictor.predict_proba(texts)
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    from model2vec import StaticModel

    vectors = StaticModel.from_pretrained(out).encode(texts[:2])  # the mean of the fine-tuned token rows
    table = predictor.student.embeddings.weight.detach().numpy()
    batch = predictor.make_inputs(texts[:2], None).batch(torch.arange(2), torch.device("cpu"))
    for row, (ids, mask) in enumerate(zip(batch["ids"], batch["mask"], strict=True)):
        np.testing.assert_allclose(vectors[row], table[ids[mask.bool()].numpy()].mean(0), rtol=1e-4, atol=1e-5)


def test_bad_cnn_option_is_a_config_error(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    for options in ({**SMALL_CNN, "widht": 3}, {**SMALL_CNN, "widths": []}):
        with pytest.raises(ConfigError, match="bad student option for cnn"):
            distill(cnn_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, student_options=options),
                    tmp_path / "out", cache_dir=tmp_path / "cache")
