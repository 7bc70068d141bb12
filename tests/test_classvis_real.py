"""Activation maximisation on real digits: the image drawn for each class of a small MNIST CNN is that
digit to the model, and to a second CNN trained on its own (another seed and architecture, RGB inputs
instead of grey, another normalisation): evidence that the pictures show digits, not patterns that
fool one network only. The drawings are saved as digits.png in the test's folder (printed with -s)."""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from ember.basics import Learner, accuracy, set_seed
from ember.data.builtin import builtin_data
from ember.vision.all import (
    CategoryBlock,
    DataBlock,
    GrandparentSplitter,
    ImageBlock,
    Normalize,
    PILImage,
    PILImageBW,
    get_image_files,
    imagenet_stats,
    parent_label,
)
from ember.vision.inside import class_probs, visualize_classes

pytestmark = pytest.mark.slow


def digits_learner(img_cls: type, stats: tuple, model: nn.Module, epochs: int, lr: float) -> Learner:
    dblock = DataBlock(blocks=(ImageBlock(img_cls), CategoryBlock), get_items=get_image_files,
                       splitter=GrandparentSplitter(), get_y=parent_label,
                       batch_tfms=Normalize.from_stats(*stats))  # fmt: skip
    dls = dblock.dataloaders(builtin_data("mnist5k"), bs=64, num_workers=0, device="cpu")
    learn = Learner(dls, model, metrics=accuracy, quiet=True)
    learn.fit_one_cycle(epochs, lr)
    return learn


def lenet() -> nn.Module:
    """Grey digits in, the class from the flattened 7x7 map: the evidence keeps its place in the image."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def rgb_lenet() -> nn.Module:
    """The judge: RGB in, 3x3 kernels, other widths, dropout; trained with another seed and ImageNet's
    normalisation, on the same digits as RGB images."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def test_class_visualisations_of_an_mnist_cnn_are_digits_to_an_independent_cnn(tmp_path):
    start = time.perf_counter()
    set_seed(0)
    learn = digits_learner(PILImageBW, ([0.13], [0.31]), lenet(), 2, 3e-3)
    set_seed(1)
    judge = digits_learner(PILImage, imagenet_stats, rgb_lenet(), 2, 3e-3)
    trained = time.perf_counter()
    imgs = visualize_classes(learn, steps=128, seed=0)  # (10, 1, 28, 28)
    drawn = time.perf_counter()
    own = class_probs(learn, imgs).diag()
    other = class_probs(judge, imgs.expand(-1, 3, -1, -1))  # the grey digits as RGB
    agree = int((other.argmax(1) == torch.arange(10)).sum())
    fig, axs = plt.subplots(1, 10, figsize=(15, 2))
    for i, ax in enumerate(axs):
        ax.imshow(imgs[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{i}: {own[i]:.2f} / {other[i, i]:.2f}", fontsize=8)
        ax.axis("off")
    fig.savefig(tmp_path / "digits.png", bbox_inches="tight")
    plt.close(fig)
    accs = [f"{x.recorder.value('accuracy'):.3f}" for x in (learn, judge)]
    print(f"accuracy {accs}; p, model {own.numpy().round(2)}, judge {other.diag().numpy().round(2)}")
    print(f"{agree}/10 agree; train {trained - start:.0f} s, draw {drawn - trained:.0f} s; {tmp_path}")
    assert imgs.shape == (10, 1, 28, 28) and imgs.min() >= 0 and imgs.max() <= 1
    assert (own >= 0.9).all(), own
    assert agree >= 8  # by chance: 1 in 10
