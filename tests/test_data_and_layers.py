"""DataLoaders, the batch-moving loader, and the course's small layers and helpers."""

from __future__ import annotations

import os
import random
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ember.basics import DataLoader, DataLoaders, Embedding, Module, SigmoidRange, set_seed, sigmoid_range


def ds(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n).float()[:, None], torch.arange(n))


def test_training_loader_shuffles_and_drops_the_last_partial_batch_valid_does_neither():
    dls = DataLoaders.from_dsets(ds(100), ds(50), bs=32, device="cpu")
    train = [yb for _, yb in dls.train]
    assert [len(b) for b in train] == [32, 32, 32] and len(dls.train) == 3
    assert not torch.equal(torch.cat(train), torch.arange(96))  # shuffled
    valid = [yb for _, yb in dls.valid]
    assert [len(b) for b in valid] == [32, 18] and torch.equal(torch.cat(valid), torch.arange(50))


def test_a_training_set_smaller_than_a_batch_still_gives_one_batch():
    dls = DataLoaders.from_dsets(ds(10), ds(5), bs=64, device="cpu")
    assert len(dls.train) == 1 and len(dls.train.one_batch()[0]) == 10


def test_non_tensor_datasets_go_through_torch_collation():
    items = [(torch.tensor([float(i)]), i) for i in range(10)]
    dl = DataLoader(items, bs=4, device="cpu")
    xb, yb = dl.one_batch()
    assert xb.shape == (4, 1) and torch.equal(yb, torch.arange(4))
    assert len(dl) == 3


def test_any_list_of_batches_works_as_a_loader_and_is_moved_to_the_device():
    batches = [(torch.randn(4, 2), torch.randn(4)) for _ in range(3)]
    dls = DataLoaders(batches, batches[:1], device="cpu")
    assert len(dls.train) == 3 and len(dls.valid) == 1
    assert dls.one_batch()[0].device.type == "cpu"
    assert dls.n_inp == 1


def test_batch_transforms_run_on_every_batch():
    dl = DataLoader(ds(8), bs=4, device="cpu", batch_tfms=[lambda b: (b[0] * 10, b[1])])
    xb, _ = dl.one_batch()
    assert torch.equal(xb[:, 0], torch.tensor([0.0, 10, 20, 30]))


def test_dataloaders_know_their_datasets_and_device():
    tr, va = ds(20), ds(10)
    dls = DataLoaders.from_dsets(tr, va, bs=4, device="cpu")
    assert dls.train_ds is tr and dls.valid_ds is va and dls.device == torch.device("cpu")
    assert dls[1] is dls.valid and len(dls) == 2


def test_an_empty_loader_says_so():
    dl = DataLoader(ds(0), bs=4, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        dl.one_batch()


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="bs must be"):
        DataLoader(ds(4), bs=0)


def test_a_dataloaders_without_valid_says_how_to_add_one():
    dls = DataLoaders([(torch.zeros(1), torch.zeros(1))], device="cpu")
    with pytest.raises(AttributeError, match="DataLoaders\\(train, valid\\)"):
        _ = dls.valid


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_reach_the_gpu_from_pinned_memory():
    dl = DataLoader(ds(64), bs=16, device="cuda", shuffle=True)
    raw = next(iter(dl.raw_batches()))
    assert raw[0].is_pinned()
    xb, yb = dl.one_batch()
    assert xb.is_cuda and yb.is_cuda


def test_module_subclasses_need_not_call_super_init():
    class DotProduct(Module):
        def __init__(self, n_users: int, n_items: int, n_factors: int):
            self.u = Embedding(n_users, n_factors)
            self.i = Embedding(n_items, n_factors)

        def forward(self, x):
            return (self.u(x[:, 0]) * self.i(x[:, 1])).sum(1)

    m = DotProduct(5, 7, 3)
    assert sorted(n for n, _ in m.named_parameters()) == ["i.weight", "u.weight"]
    assert m(torch.tensor([[0, 1], [4, 6]])).shape == (2,)


def test_embedding_is_initialised_small_and_truncated():
    torch.manual_seed(0)
    w = Embedding(1000, 50).weight
    assert w.std().item() == pytest.approx(0.01, rel=0.15)
    assert w.abs().max().item() <= 0.02 + 1e-7


def test_sigmoid_range_maps_into_the_open_interval():
    x = torch.tensor([-100.0, 0.0, 100.0])
    assert torch.allclose(sigmoid_range(x, 0, 5.5), torch.tensor([0.0, 2.75, 5.5]))
    assert torch.allclose(SigmoidRange(-1, 1)(torch.zeros(2)), torch.zeros(2))


def test_set_seed_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    set_seed(3)
    a = draw()
    set_seed(3, reproducible=True)
    assert draw() == a
    assert torch.backends.cudnn.deterministic


def test_layers_are_plain_torch_modules():
    assert isinstance(SigmoidRange(0, 1), nn.Module) and isinstance(Embedding(2, 2), nn.Embedding)


class _Items:
    """A plain (non-tensor) dataset, so batches go through torch's loader and its workers."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor([float(i)]), i


def test_worker_loaders_give_every_item_each_pass_and_allow_one_batch_inside_a_pass():
    dl = DataLoader(_Items(40), bs=8, shuffle=True, num_workers=2, device="cpu")
    for _ in range(2):  # the workers persist between passes
        seen = []
        for k, (_, yb) in enumerate(dl):
            seen += yb.tolist()
            if k == 1:
                assert len(dl.one_batch()[0]) == 8  # a pass inside a pass gets workers of its own
        assert sorted(seen) == list(range(40))


class _Pids(_Items):
    """Each item says which process read it."""

    def __getitem__(self, i: int):
        return i, os.getpid()


def _pass(dl) -> tuple[list[int], set[int]]:
    items, pids = [], set()
    for ib, pb in dl:
        items += ib.tolist()
        pids |= set(pb.tolist())
    return sorted(items), pids


def test_an_abandoned_pass_does_not_make_later_passes_start_new_workers():
    dl = DataLoader(_Pids(40), bs=8, num_workers=2, device="cpu")
    held = iter(dl)  # a notebook's traceback (or a debugger) can keep a pass's generator alive like this
    next(held)
    items, first_pids = _pass(dl)
    assert items == list(range(40))
    assert _pass(dl) == (items, first_pids)  # the same persistent workers serve the next pass
    with pytest.raises(RuntimeError, match="another pass over this loader"):
        next(held)  # the abandoned pass cannot silently resume on workers a newer pass took over


def test_a_pass_ended_by_an_exception_in_the_loop_leaves_the_workers_for_the_next_pass():
    dl = DataLoader(_Pids(40), bs=8, num_workers=2, device="cpu")
    it = iter(dl)
    with pytest.raises(ZeroDivisionError):
        for k, _ in enumerate(it):
            if k == 1:
                1 / 0  # noqa: B018
    _, pids = _pass(dl)
    assert _pass(dl)[1] == pids


def test_default_workers_count_the_cpus_this_process_may_use_not_the_machines(monkeypatch):
    from ember.data.block import default_num_workers

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert default_num_workers() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS and Windows have no affinity: count the cores
    assert default_num_workers() == 8  # capped: more processes than that rarely feed a model faster


def _cache_block(seconds: float, threads: set):
    from ember.basics import TransformBlock

    def slow(i):
        threads.add(threading.get_ident())
        time.sleep(seconds)
        return torch.tensor(float(i))

    return TransformBlock(type_tfms=[slow])


@pytest.mark.parametrize("seconds, parallel", [(0.03, True), (0.0, False)])
def test_slow_items_fill_the_cache_in_parallel_fast_ones_serially(monkeypatch, seconds, parallel):
    import ember.data.block
    from ember.basics import DataBlock, RegressionBlock

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    # a threshold far from both cases, so a busy test machine cannot blur them
    monkeypatch.setattr(ember.data.block, "PARALLEL_DECODE_SECONDS", 0.015)
    threads: set = set()
    dblock = DataBlock(blocks=(_cache_block(seconds, threads), RegressionBlock), get_y=float)
    dls = dblock.dataloaders(list(range(40)), bs=4, num_workers=0, cache=True)
    assert len(dls.datasets.cache) == 40 and (len(threads) > 1) == parallel
