"""Exact resume: a run interrupted (killed, even) and resumed from its last checkpoint ends with the weights
and loss curves of the run that was never interrupted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn
from typer.testing import CliRunner

from ember.basics import Callback, CheckpointCallback, set_seed
from ember.cli import app

SCRIPT = Path(__file__).parent / "scripts" / "resumable_train.py"
_spec = importlib.util.spec_from_file_location("resumable_train", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)  # its make_learner: shuffled, augmented (random, numpy, torch), dropout


class Interrupt(Exception):
    """Stands for a crash: nothing the loop catches."""


class CrashAfter(Callback):
    """Raises `Interrupt` once `n` training batches (counted over every fit) are done."""

    order = 99  # after the CheckpointCallback has written whatever it writes for that batch

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0

    def after_batch(self) -> None:
        if self.learn.training:
            self.done += 1
            if self.done == self.n:
                raise Interrupt()


def two_groups(model: nn.Sequential) -> list[list[nn.Parameter]]:
    return [list(model[0].parameters()), list(model[3].parameters())]


def assert_same_run(resumed, full) -> None:
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    r, f = resumed.recorder, full.recorder
    np.testing.assert_allclose(r.losses, f.losses, rtol=1e-6)  # per batch, smoothed
    np.testing.assert_allclose(np.array(r.values, dtype=float), np.array(f.values, dtype=float), rtol=1e-6)
    assert r.lrs == f.lrs and r.moms == f.moms
    assert [(h["fit"], h["epoch"]) for h in r.history] == [(h["fit"], h["epoch"]) for h in f.history]
    assert resumed.epochs_trained == full.epochs_trained


def train(path: Path, fit: str, crash_after: int | None = None, resume: bool = False, seed: int = 0):
    set_seed(seed)
    learn = script.make_learner(str(path), splitter=two_groups)
    cbs = [CheckpointCallback(every_n_batches=3), *([CrashAfter(crash_after)] if crash_after else [])]
    resume_from = "checkpoint" if resume else None
    if fit == "fit_one_cycle":
        learn.fit_one_cycle(3, 1e-2, cbs=cbs, resume=resume_from)
    else:
        learn.fine_tune(2, 1e-2, cbs=cbs, resume=resume_from)
    return learn


@pytest.mark.parametrize(
    "fit, crash_after",
    [
        ("fit_one_cycle", 13),  # epoch 1, batch 5 done: resumes after batch 3 (8 batches an epoch)
        ("fit_one_cycle", 9),  # epoch 1, batch 1 done: resumes from the end of epoch 0
        ("fine_tune", 5),  # in the frozen cycle
        ("fine_tune", 13),  # in the unfrozen cycle, batch 5: the frozen one is not redone
    ],
)
def test_a_fit_resumed_in_a_fresh_learner_ends_exactly_as_the_uninterrupted_one(tmp_path, fit, crash_after):
    full = train(tmp_path / "full", fit)
    with pytest.raises(Interrupt):
        train(tmp_path / "run", fit, crash_after=crash_after)
    resumed = train(tmp_path / "run", fit, resume=True, seed=1)  # another seed: the checkpoint's states rule
    assert_same_run(resumed, full)


def test_learn_load_reads_the_model_of_a_resumable_checkpoint(tmp_path):
    learn = train(tmp_path, "fit_one_cycle")
    other = script.make_learner(str(tmp_path), splitter=two_groups).load("checkpoint")
    for a, b in zip(learn.model.parameters(), other.model.parameters()):
        assert torch.equal(a, b)


# ---- errors ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A folder holding models/checkpoint.safetensors, from a run stopped mid-way through epoch 1."""
    path = tmp_path_factory.mktemp("saved")
    with pytest.raises(Interrupt):
        train(path, "fit_one_cycle", crash_after=13)
    return path


def test_resuming_another_model_names_the_tensor_and_both_shapes(saved):
    learn = script.make_learner(str(saved))
    learn.model[3] = nn.Linear(32, 4)
    with pytest.raises(ValueError, match=r"another model.*3\.weight is \(3, 32\) there and \(4, 32\) here"):
        learn.fit_one_cycle(3, 1e-2, resume="checkpoint")


def test_resuming_with_other_fit_arguments_says_what_differs(saved):
    learn = script.make_learner(str(saved), splitter=two_groups)
    with pytest.raises(ValueError, match="during a fit of 3 epochs; this fit has 4"):
        learn.fit_one_cycle(4, 1e-2, resume="checkpoint")
    with pytest.raises(ValueError, match="lr was .* this fit's schedule gives"):
        learn.fit_one_cycle(3, 3e-2, resume="checkpoint")


def test_resuming_from_a_missing_checkpoint_or_a_plain_save_names_the_file(saved, tmp_path):
    learn = script.make_learner(str(saved), splitter=two_groups)
    with pytest.raises(
        FileNotFoundError, match=r"no checkpoint to resume from at .*models/nothing\.safetensors"
    ):
        learn.fit_one_cycle(3, 1e-2, resume="nothing")
    learn.save("plain")
    with pytest.raises(ValueError, match=r"plain\.safetensors holds a model but no run state"):
        learn.fit_one_cycle(3, 1e-2, resume="plain")


# ---- a real process, killed -------------------------------------------------------------------------
def run_script(path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), str(path), "3", *args], capture_output=True,
                         text=True, check=True, timeout=300)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_killed_training_process_resumes_mid_epoch_and_ends_exactly_as_an_uninterrupted_one(tmp_path):
    set_seed(0)  # the script's run, uninterrupted, in this process
    full = script.make_learner(str(tmp_path / "full"))
    full.fit_one_cycle(3, 1e-2, cbs=CheckpointCallback(every_n_batches=script.EVERY))
    killed = tmp_path / "killed"
    # Batch 5 of epoch 1 done: the last checkpoint is the one after batch 3, which the kill leaves whole.
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "3", "--stop-after", "1", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "trained 1 4", "the run ended before it could be killed"
    finally:
        proc.kill()  # SIGKILL: no clean-up runs, as when a machine dies
        proc.wait()
    with safe_open(str(killed / "models" / "checkpoint.safetensors"), framework="pt") as f:
        run = json.loads(f.metadata()["run"])
    assert (run["epoch"], run["batch"]) == (1, 3)

    resumed = run_script(killed, "--resume")
    assert resumed["epochs"] == [1, 2]
    with safe_open(str(killed / "models" / "final.safetensors"), framework="pt") as f:
        for k, w in full.model.state_dict().items():
            torch.testing.assert_close(f.get_tensor(f"model.{k}"), w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(resumed["losses"], full.recorder.losses, rtol=1e-6)
    np.testing.assert_allclose(resumed["values"], full.recorder.values, rtol=1e-6)


# ---- ember train --resume ---------------------------------------------------------------------------
def _images(root: Path) -> Path:
    for channel, name in ((0, "red"), (2, "blue")):
        (root / name).mkdir(parents=True)
        rng = np.random.default_rng(channel)
        for i in range(12):
            a = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            a[..., channel] = 220
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def test_ember_train_resume_continues_an_interrupted_run_from_its_last_epoch(tmp_path, monkeypatch):
    images, out = _images(tmp_path / "images"), tmp_path / "out"
    args = ["train", str(images), "--no-pretrained", "--arch", "resnet18", "--size", "16", "--bs", "8",
            "--epochs", "2", "--lr", "1e-3", "--seed", "0"]  # fmt: skip
    real_save = CheckpointCallback.save

    def save_then_crash(self, epoch, batch, train_iter):
        real_save(self, epoch, batch, train_iter)
        if epoch == 1:
            raise Interrupt()

    monkeypatch.setattr(CheckpointCallback, "save", save_then_crash)
    runner = CliRunner()
    crashed = runner.invoke(app, [*args, "--out", str(out)])
    assert crashed.exit_code == 1 and not (out / "export.pkl").exists()
    monkeypatch.setattr(CheckpointCallback, "save", real_save)

    result = runner.invoke(app, [*args, "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output and "1 of 2 epochs done" in result.output
    assert (out / "export.pkl").exists()
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        run = json.loads(f.metadata()["run"])
    assert run["epoch"] == 2 and [h["epoch"] for h in run["recorder"]["history"]] == [0, 1]

    missing = runner.invoke(app, [*args, "--resume", str(tmp_path / "elsewhere")])
    assert missing.exit_code == 1 and "no checkpoint to resume from" in missing.stderr


def test_ember_train_resume_with_lr_auto_reuses_the_interrupted_runs_rate(tmp_path):
    from ember.cli.training import _train_lr

    (tmp_path / "train.json").write_text(json.dumps({"lr": 0.0123}))
    assert _train_lr(None, "auto", tmp_path, resuming=True) == 0.0123  # no lr_find: no learner needed
    with pytest.raises(FileNotFoundError, match="give it: --lr RATE"):
        _train_lr(None, "auto", tmp_path / "other", resuming=True)
