"""Scoring generated images: the Frechet distance of their features to real ones; a classifier's confidence.

`fid_score` fits a Gaussian to the features of real and of generated images and returns the Frechet distance
between the two: 0 when both have the same feature mean and covariance, larger the further apart they are.
The features are the 64 values before the last layer of a small CNN that ember trains once on the real
digits of `mnist5k` (`features="digits"`, 98.3% valid accuracy) or on `fashion_mnist_10k` (`"fashion"`,
90%) and caches as a safetensors file under `~/.ember/data/feature_classifiers/`. Its training batches
also hold noise and blobs taught to give every class the same probability, so noise is not "a sure 8".

What the figures mean: an FID under this small classifier of 28x28 grey images. It is NOT the Inception-v3
FID of papers; the two scales have nothing in common. Compare figures of the same ember version over the
same number of generated images (fewer images bias the estimate upwards). Digits, 1,000 images against
the 4,000 training digits: held-out real digits 0.45, blurred with a 5x5 Gaussian of sigma 1 about 13
(sigma 1.5: 26), digits of one class only about 97, uniform noise 110. Images of another size are shrunk
to 28x28 (bilinear, antialiased): the held-out digits enlarged to 64 px score 2.5.

`classifier_confidence` is the mean top-class probability: held-out digits 0.98, blurred (sigma 1) 0.93,
uniform noise 0.10 (one tenth: no class at all).

>>> fid_score(learn.decode(learn.sample_z(1000, seed=0)))  # doctest: +SKIP
>>> classifier_confidence(fake_digits)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ember.core.utils import atomic_write, eval_mode
from ember.data._store import StrPath, data_dir
from ember.data.builtin import builtin_data
from ember.generative.datasets import FASHION_CLASSES

__all__ = [
    "FeatureClassifier",
    "classifier_confidence",
    "digit_features",
    "fashion_features",
    "feature_classifier",
    "fid_score",
    "frechet_distance",
]

RECIPE_VERSION = 1  # bump when the network or its training changes: the cached file's name changes with it
N_FEATURES = 64
SIDE = 28  # images are resized to 28x28 before the classifier sees them


@dataclass(frozen=True)
class _Recipe:
    data: str  # the built-in data set the classifier trains on (its train split) and checks on (valid)
    classes: tuple[str, ...]  # class folder names, in label order
    epochs: int = 10
    bs: int = 64
    lr: float = 5e-3
    seed: int = 0
    n_outliers: int = 16  # images of no class added to each batch, trained towards the uniform distribution


_RECIPES = {
    "digits": _Recipe("mnist5k", tuple("0123456789")),
    "fashion": _Recipe("fashion_mnist_10k", FASHION_CLASSES),
}


def frechet_distance(real_feats: Tensor | np.ndarray, fake_feats: Tensor | np.ndarray) -> float:
    """The Frechet distance between Gaussians fitted to two sets of feature rows `(n, d)`:
    `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`, computed in float64. In one dimension, means 1 and 3,
    variances 2 and 8: (1 - 3)^2 + (sqrt 2 - sqrt 8)^2 = 6.

    >>> round(frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])), 6)
    6.0
    """
    mu1, s1 = _gaussian(real_feats, "real_feats")
    mu2, s2 = _gaussian(fake_feats, "fake_feats")
    if len(mu1) != len(mu2):
        raise ValueError(
            f"real_feats have {len(mu1)} features per row but fake_feats have {len(mu2)}: compute both with "
            "the same feature extractor"
        )
    return _frechet(mu1, s1, mu2, s2)


def _gaussian(feats: Tensor | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of the rows of `feats`, in float64."""
    x = feats.detach().cpu().double().numpy() if isinstance(feats, Tensor) else np.asarray(feats, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be a (n, d) array of n >= 2 feature rows, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(
            f"{name} holds NaN or infinite values: the images, or the model that made them, diverged"
        )
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2)
    return max(float(fd), 0.0)  # round-off can leave -1e-12 where the two sets are the same


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((s1 s2)^(1/2)) for two covariance matrices: scipy's `sqrtm` when scipy is installed and its root
    squares back to s1 s2, else the eigenvalues of the symmetric s1^(1/2) s2 s1^(1/2), whose square roots
    have the same sum. (ReLU features often have dead units: singular covariances, where sqrtm is poor.)"""
    if importlib.util.find_spec("scipy") is not None:
        from scipy.linalg import sqrtm

        product = s1 @ s2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a singular product: the check below decides
            root = sqrtm(product)
        # s1 s2 has real non-negative eigenvalues, so an imaginary part of the root is round-off
        scale = max(float(np.abs(product).max(initial=0.0)), 1e-30)
        if np.isfinite(root).all() and np.abs(root @ root - product).max(initial=0.0) <= 1e-8 * scale:
            return float(np.trace(np.real(root)))
    return _trace_sqrt_product_eigh(s1, s2)


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # s1^(1/2), symmetric
    m = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrised against round-off
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


class FeatureClassifier(nn.Module):
    """A small CNN for 28x28 grey images in [0, 1]: `features(x)` gives the (n, 64) penultimate layer that
    `fid_score` compares, `forward(x)` the class logits. `valid_accuracy` is its accuracy on the held-out
    split of the data it was trained on.

    >>> feature_classifier("digits").features(torch.rand(2, 1, 28, 28)).shape  # doctest: +SKIP
    torch.Size([2, 64])
    """

    def __init__(self, n_classes: int = 10, n_features: int = N_FEATURES) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))  # the training images' pixel statistics
        self.register_buffer("std", torch.ones(()))
        self.body = nn.Sequential(
            *_conv(1, 16, 2), *_conv(16, 32, 1), *_conv(32, 64, 2), *_conv(64, 64, 2),  # (n, 64, 4, 4)
            nn.Flatten(), nn.Linear(64 * 16, n_features), nn.BatchNorm1d(n_features), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(n_features, n_classes)
        self.valid_accuracy = float("nan")

    def features(self, x: Tensor) -> Tensor:
        return self.body((x - self.mean) / self.std)  # (n, n_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (n, n_classes)


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


_LOADED: dict[tuple[str, Path], FeatureClassifier] = {}  # one trained classifier per file, per process


def feature_classifier(features: str = "digits", data: StrPath | None = None) -> FeatureClassifier:
    """The classifier behind `features` ("digits" or "fashion"), in eval mode: read from its cached file
    under `data` (default `~/.ember/data`), or trained once and written there (30-60 s on two busy cores).

    >>> feature_classifier("digits").valid_accuracy  # doctest: +SKIP
    0.983
    """
    recipe = _recipe(features)
    path = data_dir(data) / "feature_classifiers" / f"{features}_classifier_v{RECIPE_VERSION}.safetensors"
    if (features, path) not in _LOADED:
        model = _read(path) if path.exists() else _train_and_save(recipe, path, data)
        _LOADED[features, path] = model.eval()
    return _LOADED[features, path]


def _recipe(features: str) -> _Recipe:
    if features not in _RECIPES:
        raise ValueError(f"no feature classifier named {features!r}; the built-in ones: {sorted(_RECIPES)}")
    return _RECIPES[features]


def _read(path: Path) -> FeatureClassifier:
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} cannot be read as safetensors ({e}): delete it to train again") from e
    model = FeatureClassifier(n_classes=len(state["head.bias"]))
    model.load_state_dict({k: v for k, v in state.items() if k != "valid_accuracy"})
    model.valid_accuracy = float(state["valid_accuracy"])
    return model


def _train_and_save(recipe: _Recipe, path: Path, data: StrPath | None) -> FeatureClassifier:
    folder = builtin_data(recipe.data, data=data)
    x, y = _read_split(folder / "train", recipe.classes)
    model = _train(recipe, x, y)
    xv, yv = _read_split(folder / "valid", recipe.classes)
    with torch.no_grad(), eval_mode(model):
        model.valid_accuracy = (model(xv).argmax(1) == yv).float().mean().item()  # xv: (n, 1, 28, 28)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors["valid_accuracy"] = torch.tensor(model.valid_accuracy)
    with atomic_write(path) as f:
        f.write(save(tensors, metadata={"recipe": repr(recipe), "version": str(RECIPE_VERSION)}))
    return model


def _read_split(folder: Path, classes: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """Images (n, 1, 28, 28) in [0, 1] and labels (n,) from `folder/<class>/*.png`."""
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).glob("*.png"))]
    if not files:
        raise ValueError(f"no images found under {folder}/<class>/ for the classes {list(classes)}")
    pixels = np.stack([np.asarray(Image.open(f).convert("L")) for f, _ in files])  # (n, 28, 28) uint8
    return torch.from_numpy(pixels)[:, None].float() / 255, torch.tensor([i for _, i in files])


def _train(recipe: _Recipe, x: Tensor, y: Tensor) -> FeatureClassifier:
    """One-cycle AdamW on random 2-pixel shifts of `x`, seeded: the same recipe gives the same weights."""
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state as it was
        torch.manual_seed(recipe.seed)
        model = FeatureClassifier(n_classes=len(recipe.classes))
        model.mean.fill_(x.mean().item())
        model.std.fill_(x.std().item())
        steps_per_epoch = len(x) // recipe.bs
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, recipe.epochs * steps_per_epoch)
        for _ in range(recipe.epochs):
            perm = torch.randperm(len(x))
            for i in range(steps_per_epoch):
                idx = perm[i * recipe.bs : (i + 1) * recipe.bs]
                loss = _loss(model, _shift(x[idx]), y[idx], recipe.n_outliers)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return model


def _loss(model: FeatureClassifier, xb: Tensor, yb: Tensor, n_outliers: int) -> Tensor:
    """Cross-entropy on the batch, plus cross-entropy to the uniform distribution on `n_outliers` images
    that are no class at all (outlier exposure, Hendrycks et al. 2019): without it the classifier is
    sure of itself on noise, and `classifier_confidence` of noise comes out near 1."""
    logits = model(torch.cat([xb, _outliers(n_outliers, xb.shape[-1])]))  # (bs + n_outliers, n_classes)
    uniform_ce = -logits[len(xb) :].log_softmax(1).mean(1)  # (n_outliers,)
    return F.cross_entropy(logits[: len(xb)], yb) + 0.5 * uniform_ce.mean()


def _outliers(n: int, side: int) -> Tensor:
    """`n` images (n, 1, side, side) in [0, 1] that look like no class: half uniform noise, half smooth
    blobs (4x4 noise upsampled), each at a random contrast."""
    noise = torch.rand(n, 1, side, side)
    blobs = F.interpolate(torch.rand(n, 1, 4, 4), size=(side, side), mode="bicubic", align_corners=False)
    mixed = torch.where(torch.rand(n, 1, 1, 1) < 0.5, blobs, noise)
    return (mixed * torch.rand(n, 1, 1, 1)).clamp(0, 1)


def _shift(xb: Tensor, max_px: int = 2) -> Tensor:
    """The batch (bs, 1, 28, 28) moved by up to `max_px` pixels each way, the same shift for the batch."""
    dy, dx = torch.randint(0, 2 * max_px + 1, (2,)).tolist()
    padded = F.pad(xb, (max_px,) * 4)
    return padded[..., dy : dy + xb.shape[-2], dx : dx + xb.shape[-1]]


def _prepare(images: Tensor, name: str = "images") -> Tensor:
    """`images` (n, 1, h, w) in [0, 1] as (n, 1, 28, 28) floats on the CPU, or an error saying what is off."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1 or len(images) < 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a tensor (n, 1, h, w) of grey images in [0, 1], got {shape}. For colour images "
            "take their grey level, x.mean(1, keepdim=True)"
        )
    x = images.detach().float().cpu()
    lo, hi = x.min().item(), x.max().item()
    if not (lo >= -0.01 and hi <= 1.01):  # also catches NaN
        raise ValueError(
            f"{name} must hold values in [0, 1], got min {lo:.3g} and max {hi:.3g}. Images normalised to "
            "[-1, 1] (a tanh generator) come back with (x + 1) / 2; learn.decode already returns [0, 1]"
        )
    x = x.clamp(0, 1)
    if x.shape[-2:] != (SIDE, SIDE):
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.no_grad()
def _features(images: Tensor, features: str, name: str = "images", head: bool = False) -> Tensor:
    """(n, 64) features of `images`, or with `head` the (n, n_classes) class probabilities."""
    x, model = _prepare(images, name), feature_classifier(features)
    run = (lambda xb: model(xb).softmax(1)) if head else model.features
    return torch.cat([run(x[i : i + 500]) for i in range(0, len(x), 500)])  # 500 at a time: bounded memory


def digit_features(images: Tensor) -> Tensor:
    """The (n, 64) features of grey images `images` (n, 1, h, w) in [0, 1] under the digit classifier.

    >>> digit_features(torch.rand(10, 1, 28, 28)).shape  # doctest: +SKIP
    torch.Size([10, 64])
    """
    return _features(images, "digits")


def fashion_features(images: Tensor) -> Tensor:
    """`digit_features` under the Fashion-MNIST classifier (trained once on `fashion_mnist_10k`)."""
    return _features(images, "fashion")


_REFERENCE: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # features -> (mu, cov) of its train split


def _reference_stats(features: str) -> tuple[np.ndarray, np.ndarray]:
    if features not in _REFERENCE:
        recipe = _recipe(features)
        x, _ = _read_split(builtin_data(recipe.data) / "train", recipe.classes)
        _REFERENCE[features] = _gaussian(_features(x, features), "the reference images' features")
    return _REFERENCE[features]


def fid_score(fake_images: Tensor, real_images: Tensor | None = None, features: str = "digits") -> float:
    """The Frechet distance between `fake_images` and `real_images` (n, 1, h, w) in [0, 1] under the
    `features` classifier ("digits" or "fashion"). Without `real_images`, the reference is the training
    split the classifier learnt from (`mnist5k`'s 4,000 digits, or `fashion_mnist_10k`'s 8,000 images).
    Lower is better; see this module's notes for what the figures mean.

    >>> fid_score(fake, features="digits")  # doctest: +SKIP
    3.2
    """
    _recipe(features)
    fake = _prepare(fake_images, "fake_images")  # checked before any training or reading of files
    if len(fake) < 2:
        raise ValueError("fake_images must hold at least 2 images for a covariance (1,000 is usual)")
    if real_images is None:
        mu1, s1 = _reference_stats(features)
    else:
        mu1, s1 = _gaussian(_features(real_images, features, "real_images"), "real features")
    mu2, s2 = _gaussian(_features(fake, features), "fake features")
    return _frechet(mu1, s1, mu2, s2)


def classifier_confidence(images: Tensor, features: str = "digits") -> float:
    """The mean top-class probability the `features` classifier gives `images` (n, 1, h, w) in [0, 1]: near 1
    for sharp, recognisable digits (or garments), low for blurs and noise.

    >>> classifier_confidence(learn.decode(learn.sample_z(500, seed=0)))  # doctest: +SKIP
    0.93
    """
    _recipe(features)
    return _features(images, features, head=True).max(1).values.mean().item()
