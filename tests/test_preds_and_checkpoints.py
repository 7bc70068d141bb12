"""get_preds / validate, and saving and loading state safely."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from torch import nn

from ember.basics import CrossEntropyLossFlat, DataLoaders, Learner, MSELossFlat, accuracy


@pytest.fixture(scope="module")
def trained():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True)
    learn.fit_one_cycle(2, 1e-2)
    return learn


def test_get_preds_applies_softmax_and_returns_targets_in_order(trained):
    probs, targs = trained.get_preds()
    assert probs.shape == (200, 3)
    assert torch.allclose(probs.sum(1), torch.ones(200), atol=1e-5) and (probs >= 0).all()
    assert torch.equal(targs, trained.dls.valid_ds.tensors[1])
    raw, _ = trained.get_preds(act=lambda x: x)
    assert torch.allclose(raw.softmax(1), probs, atol=1e-6)


def test_get_preds_extras_come_in_the_documented_order(trained):
    inputs, probs, targs, decoded, losses = trained.get_preds(
        with_input=True, with_decoded=True, with_loss=True
    )
    assert torch.equal(inputs, trained.dls.valid_ds.tensors[0])
    assert torch.equal(decoded, probs.argmax(1))
    ref = nn.functional.cross_entropy(trained.get_preds(act=lambda x: x)[0], targs, reduction="none")
    assert torch.allclose(losses, ref, atol=1e-5)


def test_get_preds_does_not_keep_inputs_unless_asked(trained):
    from ember.learner.preds import GatherPreds

    g = GatherPreds()
    with trained.added_cbs(g):
        trained._do_validate(trained.dls.valid)
    assert g.inputs is None and g.preds is not None


def test_get_preds_on_a_loader_without_targets(trained):
    x = torch.randn(10, 2)
    probs, targs = trained.get_preds(dl=[(x,)])
    assert probs.shape == (10, 3) and targs is None


def test_validate_returns_loss_and_metrics_matching_get_preds(trained):
    loss, acc = trained.validate()
    probs, targs = trained.get_preds()
    assert acc == pytest.approx((probs.argmax(1) == targs).float().mean().item())
    assert loss == pytest.approx(nn.functional.nll_loss(probs.log(), targs).item(), rel=1e-4)


def test_save_then_load_restores_model_and_optimizer(tmp_path):
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), path=tmp_path, quiet=True)
    learn.fit(1)
    path = learn.save("stage-1")
    assert path == tmp_path / "models" / "stage-1.safetensors"
    other = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), path=tmp_path, quiet=True)
    other.load("stage-1")
    for (k, v), (_, w) in zip(learn.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(v, w), k
    a, b = learn.opt.state_dict(), other.opt.state_dict()
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])
    assert a["param_groups"][0]["betas"] == b["param_groups"][0]["betas"]


def test_saved_files_contain_no_pickle_and_loading_one_runs_no_code(tmp_path):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    path = learn.save("m")
    assert b"\x80\x04" not in path.read_bytes()[:16]  # not a pickle stream
    (tmp_path / "models" / "evil.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not an ember checkpoint"):
        learn.load("evil")


def test_loading_a_missing_state_names_the_file_and_what_is_there(tmp_path):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    learn.save("one")
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors.*one"):
        learn.load("nope")


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    path = learn.save("m")
    good = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        learn.save("m")
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]


def test_tied_weights_can_be_saved_and_loaded(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2, bias=False)
            self.b = nn.Linear(2, 2, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    dls = DataLoaders.from_dsets(*[torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 2))] * 2)
    learn = Learner(dls, Tied(), MSELossFlat(), path=tmp_path, quiet=True)
    learn.save("tied")  # before any fit: no optimizer yet, so only the model is saved
    before = learn.model.a.weight.detach().clone()
    with torch.no_grad():
        learn.model.a.weight.zero_()
    with pytest.warns(UserWarning, match="no optimizer state"):
        learn.load("tied")
    assert torch.equal(learn.model.a.weight, before) and learn.model.b.weight is learn.model.a.weight
