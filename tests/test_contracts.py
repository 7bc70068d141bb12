"""The Learner's contracts: loaders of your own, plain and several torch optimizers, losses without
targets and models that return tuples."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from conftest import linear_dls
from torch import nn
from torch.utils.data import TensorDataset

import ember.callbacks.recorder
from ember.basics import Callback, DataLoaders, Learner, MSELossFlat
from ember.callbacks.schedule import combined_cos
from ember.core.optimizer import get_hyper
from ember.learner.contracts import LoadersLike, MissingContract


class TwoLoaders:
    """Only what `LoadersLike` asks for: train, valid, device, len and indexing."""

    def __init__(self, train: list, valid: list) -> None:
        self.train, self.valid, self.device = train, valid, torch.device("cpu")

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> list:
        return (self.train, self.valid)[i]


def line_batches(n_batches: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(16, 1, generator=g) for _ in range(n_batches)]
    return [(x, 3 * x - 2) for x in xs]


def test_a_hand_written_loaders_class_trains_and_predict_names_what_is_missing():
    torch.manual_seed(0)
    dls: LoadersLike = TwoLoaders(line_batches(16, 0), line_batches(4, 1))
    learn = Learner(dls, nn.Linear(1, 1), loss_func=MSELossFlat(), quiet=True)
    learn.fit(8, lr=0.1)
    assert learn.recorder.values[-1][1] < 0.05
    with pytest.raises(
        MissingContract, match=r"learn.predict needs loaders that are CanMakeTestLoader.*test_dl"
    ):
        learn.predict(torch.tensor([0.5]))
    with pytest.raises(MissingContract, match=r"learn.tta needs loaders that are CanAugment.*tta_dl"):
        learn.tta()


def test_loaders_without_a_training_loader_fail_at_the_learner_naming_the_protocol():
    with pytest.raises(MissingContract, match=r"LoadersLike.*no train"):
        Learner([line_batches(2, 0)], nn.Linear(1, 1), loss_func=MSELossFlat())


def test_a_plain_torch_optimizer_from_opt_func_gets_its_momentum_scheduled():
    learn = Learner(
        linear_dls(n=512),
        nn.Linear(1, 1),
        loss_func=MSELossFlat(),
        opt_func=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        quiet=True,
    )
    learn.fit_one_cycle(1, 0.1, moms=(0.95, 0.8, 0.95))
    assert isinstance(learn.opt, torch.optim.SGD)
    n = len(learn.recorder.lrs)
    lr, mom = combined_cos(0.25, 0.1 / 25, 0.1, 0.1 / 1e5), combined_cos(0.25, 0.95, 0.8, 0.95)
    assert learn.recorder.lrs == pytest.approx([lr(i / n) for i in range(n)])
    assert learn.recorder.moms == pytest.approx([mom(i / n) for i in range(n)])  # SGD's `momentum`


def test_an_optimizer_set_by_the_user_with_its_own_groups_is_scheduled_saved_and_loaded(tmp_path):
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    learn = Learner(linear_dls(n=128), model, loss_func=MSELossFlat(), path=tmp_path, quiet=True)
    body, head = list(model[0].parameters()), list(model[2].parameters())
    learn.opt = torch.optim.SGD([{"params": body}, {"params": head}], lr=0.1, momentum=0.9)
    learn.fit_one_cycle(1, slice(1e-3, 1e-2), pct_start=0.5)
    body_lr, head_lr = get_hyper(learn.opt, "lr")  # one lr per plain group, spread by the slice
    assert head_lr == pytest.approx(10 * body_lr) and head_lr < 1e-2
    learn.save("plain")
    other = Learner(linear_dls(n=128), model, loss_func=MSELossFlat(), path=tmp_path, quiet=True)
    other.opt = torch.optim.SGD([{"params": body}, {"params": head}], lr=0.5, momentum=0.9)
    other.load("plain")
    assert other.opt.state_dict()["param_groups"] == learn.opt.state_dict()["param_groups"]


class TwoParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(1, 1), nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


class Alternating(Learner):
    """Part A learns on even batches, part B on odd ones, each with its own optimizer."""

    def create_opt(self) -> None:
        self.opts = [
            torch.optim.SGD(self.model.a.parameters(), lr=0.1, momentum=0.9),
            torch.optim.SGD(self.model.b.parameters(), lr=0.1, momentum=0.9),
        ]

    def step(self) -> None:
        self.step_opts([self.opts[self.iter % 2]])


class WhoChanged(Callback):
    """Per training batch: which part's weights the step changed, and each optimizer's lr."""

    def __init__(self) -> None:
        self.changed: list[tuple[int, bool, bool]] = []
        self.lrs: list[list[float]] = []

    def before_batch(self) -> None:
        if self.learn.training:
            m = self.learn.model
            self._a, self._b = m.a.weight.detach().clone(), m.b.weight.detach().clone()

    def after_step(self) -> None:
        m = self.learn.model
        self.lrs.append([opt.param_groups[0]["lr"] for opt in self.learn.opts])  # what this step used
        moved = (not torch.equal(m.a.weight, self._a), not torch.equal(m.b.weight, self._b))
        self.changed.append((self.learn.iter, *moved))


def test_two_plain_optimizers_stepped_alternately_train_schedule_and_round_trip(tmp_path):
    torch.manual_seed(0)
    watch = WhoChanged()
    learn = Alternating(linear_dls(n=256), TwoParts(), loss_func=MSELossFlat(), path=tmp_path, quiet=True)
    before = learn.validate()[0]
    learn.fit_one_cycle(4, 0.1, cbs=watch)
    assert all(a == (i % 2 == 0) and b == (i % 2 == 1) for i, a, b in watch.changed)
    assert learn.recorder.values[-1][1] < before / 100
    first, peak = watch.lrs[0], max(watch.lrs, key=lambda lrs: lrs[0])
    assert first == pytest.approx([0.1 / 25] * 2) and peak == pytest.approx([0.1] * 2, rel=0.01)
    learn.save("two")
    other = Alternating(linear_dls(n=256), TwoParts(), loss_func=MSELossFlat(), path=tmp_path, quiet=True)
    other.create_opt()
    other.load("two")
    for mine, theirs in zip(learn.opts, other.opts):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a["param_groups"] == b["param_groups"]
        assert all(
            torch.equal(a["state"][k]["momentum_buffer"], b["state"][k]["momentum_buffer"])
            for k in a["state"]
        )


def test_lr_find_with_two_optimizers_restores_the_model_and_both():
    learn = Alternating(linear_dls(n=256), TwoParts(), loss_func=MSELossFlat(), quiet=True)
    learn.fit(1)  # the optimizers now hold momentum buffers
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    buffers = [
        [s["momentum_buffer"].clone() for s in opt.state_dict()["state"].values()] for opt in learn.opts
    ]
    learn.lr_find(num_it=10, show_plot=False)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k, v in weights.items())
    for opt, saved in zip(learn.opts, buffers):
        now = [s["momentum_buffer"] for s in opt.state_dict()["state"].values()]
        assert all(torch.equal(a, b) for a, b in zip(now, saved))


def noisy_points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) @ torch.tensor([[1.0, 2.0], [0.0, 0.1]])  # (n, 2), near a line


def autoencoder_dls() -> DataLoaders:
    train, valid = TensorDataset(noisy_points(256, 0)), TensorDataset(noisy_points(64, 1))
    return DataLoaders.from_dsets(train, valid, bs=32, device="cpu", has_targets=False)


def test_an_autoencoder_trains_on_a_loss_that_takes_no_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 2))  # through a 1-d bottleneck

    def reconstruction(pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, x)

    learn = Learner(autoencoder_dls(), model, loss_func=reconstruction, quiet=True)
    before = learn.validate()[0]
    learn.fit_one_cycle(6, 0.1)
    assert learn.recorder.values[-1][1] < before / 10


class TinyVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(2, 2), nn.Linear(1, 2)  # enc: (mu, logvar) of a 1-d latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)  # (bs, 1) each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.dec(z), mu, logvar


def vae_loss(pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    recon, mu, logvar = pred
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1).mean()
    return F.mse_loss(recon, x, reduction="none").sum(1).mean() + 0.01 * kl


def test_a_vae_returning_a_tuple_trains_and_get_preds_returns_a_tuple_of_concatenated_tensors():
    torch.manual_seed(0)
    learn = Learner(autoencoder_dls(), TinyVAE(), loss_func=vae_loss, quiet=True)
    before = learn.validate()[0]
    learn.fit_one_cycle(6, 0.1)
    assert learn.recorder.values[-1][1] < before / 2
    preds, targs = learn.get_preds()
    recon, mu, logvar = preds
    assert recon.shape == (64, 2) and mu.shape == (64, 1) and logvar.shape == (64, 1)
    assert torch.equal(targs, learn.dls.valid.dataset.tensors[0])  # without targets: the inputs


def test_a_test_loader_without_targets_still_gets_no_loss():
    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), loss_func=MSELossFlat(), quiet=True)
    test = [(torch.rand(8, 1),) for _ in range(2)]
    preds, targs = learn.get_preds(dl=DataLoaders(test, device="cpu").train)
    assert preds.shape == (16, 1) and targs is None


def test_the_recorder_knows_nothing_of_the_lr_finder():
    assert "lr_finder" not in inspect.getsource(ember.callbacks.recorder)


def test_the_recorders_state_round_trips_through_state_dict():
    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), loss_func=MSELossFlat(), quiet=True)
    learn.fit(2)
    state = learn.recorder.state_dict()
    other = Learner(linear_dls(n=64), nn.Linear(1, 1), loss_func=MSELossFlat(), quiet=True)
    other.recorder.load_state_dict(state)
    assert other.recorder.history == learn.recorder.history and other.recorder.losses == learn.recorder.losses
