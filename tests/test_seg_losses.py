"""Losses for imbalanced masks: Dice by hand, focal against torch's cross-entropy, gradients, exports."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ember.core.serial import from_config, to_config
from ember.learner.preds import loss_per_item
from ember.losses_imbalance import CombinedLoss, DiceCELoss, DiceLoss, FocalLoss


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_dice_loss_matches_a_hand_computed_case():
    # uniform logits: p = 0.5 everywhere; targets [0, 1] -> per class Σp·t = 0.5, Σp = 1, Σt = 1
    inp, targ = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]])
    assert DiceLoss(smooth=0)(inp, targ).item() == pytest.approx(1 - 1 / 2)
    # squared: Σp² = 0.5, so the union is 1.5
    assert DiceLoss(smooth=0, square_in_union=True)(inp, targ).item() == pytest.approx(1 - 1 / 1.5)
    sure = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # (1, 2, 1, 2): confident and right
    assert DiceLoss()(sure, targ).item() == pytest.approx(0, abs=1e-6)
    assert DiceLoss()(-sure, targ).item() == pytest.approx(1, abs=1e-6)


def test_dice_loss_weighs_each_item_and_class_then_reduces():
    inp, targ = (
        torch.randn(3, 4, 5, 6, generator=seeded()),
        torch.randint(0, 4, (3, 5, 6), generator=seeded(1)),
    )
    per = DiceLoss(reduction="none")(inp, targ)
    assert per.shape == (3, 4)
    p, t = inp.softmax(1), F.one_hot(targ, 4).permute(0, 3, 1, 2).float()
    i, c = 1, 2  # one item and class, by the formula
    expected = 1 - (2 * (p[i, c] * t[i, c]).sum() + 1e-6) / (p[i, c].sum() + t[i, c].sum() + 1e-6)
    assert per[i, c].item() == pytest.approx(expected.item(), rel=1e-5)
    assert DiceLoss()(inp, targ).item() == pytest.approx(per.mean().item())
    assert DiceLoss(reduction="sum")(inp, targ).item() == pytest.approx(per.sum().item(), rel=1e-5)
    on_last = DiceLoss(axis=-1)(inp.movedim(1, -1), targ)  # classes last: the same loss
    assert on_last.item() == pytest.approx(DiceLoss()(inp, targ).item())


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_gamma_discounts_easy_pixels():
    inp, targ = (
        torch.randn(2, 3, 4, 4, generator=seeded()),
        torch.randint(0, 3, (2, 4, 4), generator=seeded(1)),
    )
    assert torch.allclose(FocalLoss(gamma=0.0)(inp, targ), F.cross_entropy(inp, targ), atol=1e-6)
    w = torch.tensor([0.2, 1.0, 3.0])
    assert torch.allclose(
        FocalLoss(gamma=0.0, weight=w)(inp, targ), F.cross_entropy(inp, targ, weight=w), atol=1e-6
    )
    ce = F.cross_entropy(inp, targ, reduction="none")  # (2, 4, 4)
    pt = (-ce).exp()
    expected = ((1 - pt) ** 2 * ce).mean()
    assert FocalLoss()(inp, targ).item() == pytest.approx(expected.item(), rel=1e-5)
    assert FocalLoss(reduction="none")(inp, targ).shape == (2, 4, 4)
    flat = FocalLoss(gamma=0.0, axis=-1)(inp[:, :, 0, 0], targ[:, 0, 0])  # (bs, c) classification
    assert flat.item() == pytest.approx(F.cross_entropy(inp[:, :, 0, 0], targ[:, 0, 0]).item(), rel=1e-5)


@pytest.mark.parametrize(
    "loss", [DiceLoss(), DiceLoss(square_in_union=True), FocalLoss(), FocalLoss(gamma=1.5)]
)
def test_gradients_match_finite_differences(loss):
    inp = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=seeded(), requires_grad=True)
    targ = torch.randint(0, 3, (2, 2, 2), generator=seeded(1))
    assert torch.autograd.gradcheck(lambda x: loss(x, targ), (inp,))


def test_dice_plus_cross_entropy_and_focal_add_the_terms_item_by_item():
    inp, targ = (
        torch.randn(2, 3, 4, 4, generator=seeded()),
        torch.randint(0, 3, (2, 4, 4), generator=seeded(1)),
    )
    ce, dice = F.cross_entropy(inp, targ), DiceLoss()(inp, targ)
    assert DiceCELoss(alpha=0.5)(inp, targ).item() == pytest.approx((ce + 0.5 * dice).item(), rel=1e-5)
    focal = FocalLoss(gamma=2.0)(inp, targ)
    assert CombinedLoss(alpha=2.0)(inp, targ).item() == pytest.approx((focal + 2 * dice).item(), rel=1e-5)
    per_item = loss_per_item(DiceCELoss(), inp, targ)  # what get_preds(with_loss=True) does
    assert per_item.shape == (2,) and per_item.mean().item() == pytest.approx((ce + dice).item(), rel=1e-5)


@pytest.mark.parametrize("loss", [DiceLoss(axis=1), FocalLoss(), DiceCELoss(), CombinedLoss(gamma=1.0)])
def test_the_losses_give_probabilities_and_class_maps_and_describe_themselves(loss):
    x = torch.randn(2, 3, 4, 4, generator=seeded())
    probs = loss.activation(x)
    assert torch.allclose(probs.sum(1), torch.ones(2, 4, 4))
    assert torch.equal(loss.decodes(probs), x.argmax(1))
    again = from_config(to_config(loss))
    assert type(again) is type(loss) and again.to_config() == loss.to_config()
    with pytest.raises(ValueError, match=rf"{type(loss).__name__}.*\(2, 3, 4, 4\).*\(2, 4, 4\).*\(2, 4\)"):
        loss(x, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction must be"):
        type(loss)(reduction="avg")
