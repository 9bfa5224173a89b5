"""distillation_loss, class_log_probs and fitnet_loss against hand-written formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lelp.method.losses import class_log_probs, distillation_loss, fitnet_loss

B, C, S = 6, 3, 4


@pytest.fixture()
def batch() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "student": torch.randn(B, C, generator=gen, requires_grad=True),
        "student_sub": torch.randn(B, C * S, generator=gen, requires_grad=True),
        "teacher": torch.softmax(torch.randn(B, C, generator=gen), -1),
        "teacher_sub": torch.softmax(torch.randn(B, C * S, generator=gen), -1),
        "labels": torch.tensor([0, 2, 1, 1, 0, 2]),
    }


def test_alpha_zero_one_subclass_is_hinton_kd(batch):
    tau = 2.5
    loss = distillation_loss(batch["student"], batch["teacher"], batch["labels"], alpha=0.0, tau=tau, subclasses=1)
    by_hand = 0.0
    for b in range(B):
        q = torch.exp(batch["student"][b] / tau) / torch.exp(batch["student"][b] / tau).sum()
        by_hand += -(batch["teacher"][b] * torch.log(q)).sum()
    torch.testing.assert_close(loss, tau**2 * by_hand / B)
    loss.backward()
    assert batch["student"].grad is not None and batch["student"].grad.abs().sum() > 0


def test_alpha_one_is_cross_entropy(batch):
    loss = distillation_loss(batch["student"], batch["teacher"], batch["labels"], alpha=1.0, tau=4.0, subclasses=1)
    torch.testing.assert_close(loss, F.cross_entropy(batch["student"], batch["labels"]))


def test_alpha_one_with_subclasses_sums_subclass_probabilities(batch):
    loss = distillation_loss(
        batch["student_sub"], batch["teacher_sub"], batch["labels"], alpha=1.0, tau=1.0, subclasses=S
    )
    class_probs = torch.softmax(batch["student_sub"], -1).reshape(B, C, S).sum(-1)
    torch.testing.assert_close(loss, -torch.log(class_probs[torch.arange(B), batch["labels"]]).mean())


def test_mixed_loss_weights_both_terms(batch):
    kwargs = {"tau": 2.0, "subclasses": S}
    args = (batch["student_sub"], batch["teacher_sub"], batch["labels"])
    soft = distillation_loss(*args, alpha=0.0, **kwargs)
    hard = distillation_loss(*args, alpha=1.0, **kwargs)
    torch.testing.assert_close(distillation_loss(*args, alpha=0.3, **kwargs), 0.7 * soft + 0.3 * hard)


def test_unlabelled_rows_are_masked_from_the_hard_term(batch):
    labels = batch["labels"].clone()
    labels[:3] = -1
    loss = distillation_loss(batch["student"], batch["teacher"], labels, alpha=1.0, tau=1.0, subclasses=1)
    torch.testing.assert_close(loss, F.cross_entropy(batch["student"][3:], labels[3:]))
    none = torch.full((B,), -1)
    assert distillation_loss(batch["student"], batch["teacher"], none, alpha=1.0, tau=1.0, subclasses=1) == 0
    soft_only = distillation_loss(batch["student"], batch["teacher"], none, alpha=0.5, tau=1.0, subclasses=1)
    full = distillation_loss(batch["student"], batch["teacher"], none, alpha=0.0, tau=1.0, subclasses=1)
    torch.testing.assert_close(soft_only, 0.5 * full)


def test_class_log_probs_fold_subclass_probabilities(batch):
    folded = class_log_probs(batch["student_sub"], S)
    assert folded.shape == (B, C)
    expected = torch.softmax(batch["student_sub"], -1).reshape(B, C, S).sum(-1)
    torch.testing.assert_close(folded.exp(), expected)
    torch.testing.assert_close(folded.exp().sum(-1), torch.ones(B))
    torch.testing.assert_close(class_log_probs(batch["student"], 1), F.log_softmax(batch["student"], -1))
    with pytest.raises(ValueError, match="multiple"):
        class_log_probs(torch.zeros(2, 7), 3)


def test_shape_mismatch_is_refused(batch):
    with pytest.raises(ValueError, match="differ"):
        distillation_loss(batch["student_sub"], batch["teacher"], batch["labels"], alpha=0.0, tau=1.0, subclasses=S)


def test_fitnet_loss_is_mse():
    student, teacher = torch.randn(4, 8), torch.randn(4, 8, dtype=torch.float64)
    torch.testing.assert_close(fitnet_loss(student, teacher), ((student - teacher.float()) ** 2).mean())
