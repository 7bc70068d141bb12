"""Losses: values against torch.nn.functional, flattening, reductions, activations and decodings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ember.losses
from ember.learner.preds import loss_per_item
from ember.losses import (
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    L1LossFlat,
    LabelSmoothingCrossEntropy,
    MSELossFlat,
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


# ---- CrossEntropyLossFlat ------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_flat_matches_torch_on_class_outputs(reduction):
    g = seeded()
    inp, targ = torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    loss = CrossEntropyLossFlat(reduction=reduction)(inp, targ)
    assert close(loss, F.cross_entropy(inp, targ, reduction=reduction))


def test_cross_entropy_flat_on_segmentation_gives_one_value_per_pixel_without_reduction():
    g = seeded()
    inp, targ = (
        torch.randn(2, 5, 3, 4, generator=g),
        torch.randint(0, 5, (2, 3, 4), generator=g),
    )  # (bs,c,h,w)
    assert close(CrossEntropyLossFlat(axis=1)(inp, targ), F.cross_entropy(inp, targ))
    per_pixel = CrossEntropyLossFlat(axis=1, reduction="none")(inp, targ)
    assert close(per_pixel, F.cross_entropy(inp, targ, reduction="none").reshape(-1))  # (bs*h*w,)
    unflat = CrossEntropyLossFlat(axis=1, reduction="none", flatten=False)(inp, targ)
    assert close(unflat, F.cross_entropy(inp, targ, reduction="none"))  # (bs, h, w)


def test_cross_entropy_flat_activation_and_decodes_follow_the_class_axis():
    loss = CrossEntropyLossFlat(axis=1)
    inp = torch.randn(2, 5, 3, 4, generator=seeded())
    probs = loss.activation(inp)
    assert torch.allclose(probs.sum(1), torch.ones(2, 3, 4))
    assert torch.equal(loss.decodes(probs), inp.argmax(1))  # (bs, h, w)


def test_cross_entropy_flat_passes_weight_ignore_index_and_label_smoothing_to_torch():
    g = seeded()
    inp, targ = torch.randn(8, 3, generator=g), torch.tensor([0, 1, 2, -1, 2, 1, 0, 2])
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = CrossEntropyLossFlat(weight=w, ignore_index=-1, label_smoothing=0.1)(inp, targ)
    expected = F.cross_entropy(inp, targ, weight=w, ignore_index=-1, label_smoothing=0.1)
    assert close(loss, expected)
    assert not close(loss, F.cross_entropy(inp, targ.clamp(min=0)))


def test_cross_entropy_flat_casts_targets_to_long_and_reads_a_column_of_targets():
    g = seeded()
    inp, targ = torch.randn(5, 3, generator=g), torch.randint(0, 3, (5,), generator=g)
    expected = F.cross_entropy(inp, targ)
    assert close(CrossEntropyLossFlat()(inp, targ.float()), expected)
    assert close(CrossEntropyLossFlat()(inp, targ.unsqueeze(1)), expected)  # (bs, 1) targets


def test_cross_entropy_flat_reads_same_shaped_targets_as_class_probabilities():
    g = seeded()
    inp, soft = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g).softmax(1)
    assert close(CrossEntropyLossFlat()(inp, soft), F.cross_entropy(inp, soft))


def test_cross_entropy_weight_is_a_buffer_that_moves_with_the_module():
    loss = CrossEntropyLossFlat(weight=torch.tensor([1.0, 2.0]))
    assert "weight" in dict(loss.named_buffers())
    assert loss.to(torch.float64).weight.dtype == torch.float64


# ---- BCEWithLogitsLossFlat -----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_flat_matches_torch_on_multi_label_outputs_with_integer_targets(reduction):
    g = seeded()
    inp, targ = torch.randn(4, 3, generator=g), torch.randint(0, 2, (4, 3), generator=g)
    loss = BCEWithLogitsLossFlat(reduction=reduction)(inp, targ)
    assert close(loss, F.binary_cross_entropy_with_logits(inp, targ.float(), reduction=reduction))


def test_bce_flat_without_reduction_gives_one_value_per_item_and_label():
    g = seeded()
    inp, targ = torch.randn(4, 3, generator=g), torch.randint(0, 2, (4, 3), generator=g).float()
    per_value = BCEWithLogitsLossFlat(reduction="none")(inp, targ)
    assert close(per_value, F.binary_cross_entropy_with_logits(inp, targ, reduction="none").reshape(-1))


def test_bce_flat_lines_pos_weight_up_with_the_labels():
    g = seeded()
    inp, targ = torch.randn(5, 3, generator=g), torch.randint(0, 2, (5, 3), generator=g).float()
    pw = torch.tensor([1.0, 3.0, 0.5])  # one per label, on the last axis as torch expects
    loss = BCEWithLogitsLossFlat(pos_weight=pw)(inp, targ)
    assert close(loss, F.binary_cross_entropy_with_logits(inp, targ, pos_weight=pw))
    on_labels_first = BCEWithLogitsLossFlat(axis=0, pos_weight=pw)(inp.T, targ.T)
    assert close(on_labels_first, loss)


def test_bce_flat_takes_one_logit_column_against_a_vector_of_targets():
    g = seeded()
    inp, targ = torch.randn(6, 1, generator=g), torch.randint(0, 2, (6,), generator=g)
    loss = BCEWithLogitsLossFlat()(inp, targ)
    assert close(loss, F.binary_cross_entropy_with_logits(inp.view(-1), targ.float()))


def test_bce_flat_decodes_with_its_threshold_after_the_sigmoid():
    loss = BCEWithLogitsLossFlat(thresh=0.3)
    probs = loss.activation(torch.tensor([[-2.0, -0.5, 0.0, 1.0]]))  # .12 .38 .5 .73
    assert torch.allclose(probs, torch.tensor([[-2.0, -0.5, 0.0, 1.0]]).sigmoid())
    assert loss.decodes(probs).tolist() == [[False, True, True, True]]
    assert BCEWithLogitsLossFlat().decodes(probs).tolist() == [[False, False, False, True]]


# ---- MSELossFlat and L1LossFlat ------------------------------------------------------------------
@pytest.mark.parametrize(("loss_cls", "func"), [(MSELossFlat, F.mse_loss), (L1LossFlat, F.l1_loss)])
def test_regression_losses_flatten_a_column_of_outputs_instead_of_broadcasting(loss_cls, func):
    g = seeded()
    inp, targ = torch.randn(5, 1, generator=g), torch.randn(5, generator=g)  # (bs, 1) vs (bs,)
    loss = loss_cls()(inp, targ)
    assert close(loss, func(inp.view(-1), targ))
    assert not close(loss, func(*torch.broadcast_tensors(inp, targ)))  # the (bs, bs) mistake
    assert close(loss_cls(reduction="none")(inp, targ), func(inp.view(-1), targ, reduction="none"))
    assert close(loss_cls(reduction="sum")(inp, targ), func(inp.view(-1), targ, reduction="sum"))


def test_mse_flat_on_points_and_integer_targets():
    g = seeded()
    inp, targ = torch.randn(2, 3, 2, generator=g), torch.randint(-2, 3, (2, 3, 2), generator=g)  # (bs, n, 2)
    assert close(MSELossFlat()(inp, targ), F.mse_loss(inp, targ.float()))
    assert MSELossFlat(reduction="none")(inp, targ).shape == (12,)


def test_regression_losses_have_identity_activation_and_decodes():
    x = torch.randn(3, 1)
    for loss in (MSELossFlat(), L1LossFlat()):
        assert torch.equal(loss.activation(x), x) and torch.equal(loss.decodes(x), x)


def test_a_shape_mismatch_names_the_loss_and_both_shapes():
    with pytest.raises(ValueError, match=r"MSELossFlat.*\(4, 2\).*\(4,\)"):
        MSELossFlat()(torch.randn(4, 2), torch.randn(4))
    with pytest.raises(ValueError, match="BCEWithLogitsLossFlat"):
        BCEWithLogitsLossFlat()(torch.randn(4, 2), torch.ones(4))


# ---- LabelSmoothingCrossEntropy ------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_cross_entropy_matches_torch_label_smoothing(eps, reduction):
    # (1-eps)*nll + eps*mean_c(-log p_c) is torch's loss against (1-eps)*onehot + eps/c
    g = seeded()
    inp, targ = torch.randn(6, 5, generator=g), torch.randint(0, 5, (6,), generator=g)
    loss = LabelSmoothingCrossEntropy(eps=eps, reduction=reduction)(inp, targ)
    assert close(loss, F.cross_entropy(inp, targ, label_smoothing=eps, reduction=reduction))


def test_label_smoothing_changes_the_loss_and_works_per_pixel():
    g = seeded()
    inp, targ = torch.randn(2, 4, 3, 3, generator=g), torch.randint(0, 4, (2, 3, 3), generator=g)
    smoothed = LabelSmoothingCrossEntropy(eps=0.2, reduction="none")(inp, targ)
    assert close(smoothed, F.cross_entropy(inp, targ, label_smoothing=0.2, reduction="none"))  # (bs, h, w)
    assert not close(smoothed, F.cross_entropy(inp, targ, reduction="none"))


def test_label_smoothing_weight_scales_only_the_nll_term():
    g = seeded()
    inp, targ, w = torch.randn(6, 3, generator=g), torch.randint(0, 3, (6,), generator=g), torch.rand(3)
    log_p = inp.log_softmax(1)
    expected = 0.9 * F.nll_loss(log_p, targ, weight=w) + 0.1 * (-log_p.mean(1)).mean()
    assert close(LabelSmoothingCrossEntropy(eps=0.1, weight=w)(inp, targ), expected)


def test_label_smoothing_activation_is_softmax_and_decodes_is_argmax():
    loss, x = LabelSmoothingCrossEntropy(), torch.randn(4, 3, generator=seeded())
    assert torch.allclose(loss.activation(x), x.softmax(1))
    assert torch.equal(loss.decodes(x), x.argmax(1))


# ---- shared behaviour ----------------------------------------------------------------------------
LOSSES = [
    CrossEntropyLossFlat,
    BCEWithLogitsLossFlat,
    MSELossFlat,
    L1LossFlat,
    LabelSmoothingCrossEntropy,
]


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_an_unknown_reduction_is_refused_when_the_loss_is_made(loss_cls):
    with pytest.raises(ValueError, match=rf"{loss_cls.__name__}.*'batchmean'"):
        loss_cls(reduction="batchmean")


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_every_loss_gives_one_value_per_item_to_get_preds(loss_cls):
    g = seeded()
    inp = torch.randn(4, 3, generator=g)
    targ = torch.randint(0, 2, (4, 3), generator=g) if loss_cls is BCEWithLogitsLossFlat else None
    targ = torch.randn(4, 3, generator=g) if loss_cls in (MSELossFlat, L1LossFlat) else targ
    targ = torch.randint(0, 3, (4,), generator=g) if targ is None else targ
    loss = loss_cls()
    per_item = loss_per_item(loss, inp, targ)
    assert per_item.shape == (4,) and loss.reduction == "mean"
    assert torch.allclose(per_item.mean(), loss(inp, targ), atol=1e-6)


def test_the_module_exports_exactly_the_losses():
    assert sorted(ember.losses.__all__) == sorted(cls.__name__ for cls in LOSSES)
