"""The Frechet distance against closed forms, the feature classifier's cache, the input checks, and (slow) the
scores of real digits, blurred digits and noise under the classifier trained on the real digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from ember.generative import fid
from ember.generative.fid import (
    FeatureClassifier,
    classifier_confidence,
    feature_classifier,
    fid_score,
    frechet_distance,
)

ROUTES = {"scipy": fid._trace_sqrt_product, "eigh": fid._trace_sqrt_product_eigh}


@pytest.fixture(params=sorted(ROUTES))
def route(request, monkeypatch):
    """Each closed-form test runs with scipy's sqrtm and with the eigen-decomposition that replaces it."""
    monkeypatch.setattr(fid, "_trace_sqrt_product", ROUTES[request.param])
    return request.param


def _with_moments(mu: np.ndarray, var: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose sample mean is exactly `mu` and sample covariance exactly diag(`var`)."""
    a = np.random.default_rng(seed).normal(size=(n, len(mu)))
    q, _ = np.linalg.qr(a - a.mean(0))  # orthonormal columns, each with zero mean
    return q * np.sqrt((n - 1) * var) + mu


def _correlated(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_the_distance_of_two_diagonal_gaussians_is_the_closed_form(route):
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 3.0]), np.array([1.0, 1.0, 0.5, -1.0])
    var1, var2 = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 1.0, 0.5])
    x, y = _with_moments(mu1, var1, 200, seed=0), _with_moments(mu2, var2, 300, seed=1)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(
        expected, rel=1e-5
    )  # float32 tensors are accepted and computed in float64


def test_one_dimension_by_hand():
    # mean 1 and variance 2 against mean 3 and variance 8: (1 - 3)^2 + (sqrt 2 - sqrt 8)^2 = 4 + 2
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(6.0)


def test_the_distance_is_unchanged_when_both_sets_are_rotated_alike(route):
    x, y = _correlated(400, 6, seed=2), _correlated(300, 6, seed=3)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(6, 6)))
    before, after = frechet_distance(x, y), frechet_distance(x @ q, y @ q)
    assert before > 1.0 and after == pytest.approx(before, rel=1e-8)


def test_a_set_is_at_distance_zero_from_itself(route):
    x = _correlated(500, 16, seed=5)
    assert frechet_distance(x, x.copy()) <= 1e-6 * np.trace(np.cov(x, rowvar=False))


def test_shifting_a_set_adds_the_squared_shift(route):
    x, shift = _correlated(300, 5, seed=6), np.array([1.0, -2.0, 0.0, 0.5, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx((shift**2).sum(), rel=1e-6)


def test_scipy_and_the_eigen_route_agree_also_on_singular_covariances():
    x, y = _correlated(300, 8, seed=7), _correlated(200, 8, seed=8)
    x[:, 3] = 0.0  # a dead ReLU unit: a singular covariance, where sqrtm alone is unreliable
    y[:, 5] = y[:, 4]  # two units that always agree
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    by_scipy, by_eigh = fid._trace_sqrt_product(s1, s2), fid._trace_sqrt_product_eigh(s1, s2)
    assert np.isfinite(by_scipy) and by_scipy == pytest.approx(by_eigh, rel=1e-7)
    # and both against the eigenvalues of s1 s2 themselves, real and non-negative for covariances
    assert by_eigh == pytest.approx(
        np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum(), rel=1e-6
    )


def test_mismatched_or_too_few_feature_rows_are_refused():
    with pytest.raises(ValueError, match="same feature extractor"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="n >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((4, 2), np.nan), np.zeros((5, 2)))


# ---- fid_score checks its images before it trains or reads anything ----------------------------------
@pytest.fixture
def no_classifier(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the classifier was asked for before the images were checked")

    monkeypatch.setattr(fid, "feature_classifier", refuse)


@pytest.mark.usefixtures("no_classifier")
def test_images_in_minus_one_to_one_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"min -1 .*\(x \+ 1\) / 2"):
        fid_score(torch.linspace(-1, 1, 8 * 16 * 16).reshape(8, 1, 16, 16))  # a tanh generator's output
    with pytest.raises(ValueError, match="values in"):
        classifier_confidence(torch.full((4, 1, 8, 8), float("nan")))


@pytest.mark.usefixtures("no_classifier")
def test_colour_images_and_unknown_feature_sets_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"\(n, 1, h, w\).*\(8, 3, 16, 16\).*x.mean\(1, keepdim=True\)"):
        fid_score(torch.rand(8, 3, 16, 16))
    with pytest.raises(ValueError, match=r"'inception'.*\['digits', 'fashion'\]"):
        fid_score(torch.rand(8, 1, 16, 16), features="inception")
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_score(torch.rand(1, 1, 16, 16))


# ---- the classifier is trained once, seeded, and cached as safetensors --------------------------------
def _tiny_digits(folder, n_per_class=24):
    """Two 'digits': a vertical bar (0) and a horizontal bar (1), at random places."""
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        for label in range(10):
            (folder / split / str(label)).mkdir(parents=True)
        for k in range(n_per_class * 2):
            img, at = np.zeros((28, 28), np.uint8), int(rng.integers(4, 20))
            if k % 2 == 0:
                img[4:24, at : at + 4] = 255
            else:
                img[at : at + 4, 4:24] = 255
            Image.fromarray(img).save(folder / split / str(k % 2) / f"{k:03d}.png")
    return folder


@pytest.fixture
def tiny_recipe(tmp_path, monkeypatch):
    """The digits recipe for one short epoch on 48 synthetic images, in a fresh data folder."""
    folder = _tiny_digits(tmp_path / "tiny")
    monkeypatch.setattr(fid, "builtin_data", lambda name, data=None: folder)
    monkeypatch.setitem(fid._RECIPES, "digits", fid._Recipe("tiny", tuple("0123456789"), epochs=1, bs=16))
    monkeypatch.setattr(fid, "_LOADED", {})
    return tmp_path / "data"


def test_the_classifier_is_trained_once_then_read_from_its_versioned_safetensors_file(
    tiny_recipe, monkeypatch
):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model = feature_classifier("digits", data=tiny_recipe)
    assert torch.equal(torch.rand(3), expected_next)  # training left the caller's random state alone
    path = tiny_recipe / "feature_classifiers" / f"digits_classifier_v{fid.RECIPE_VERSION}.safetensors"
    stored = load_file(path)  # a safetensors file, not a pickle
    assert torch.equal(stored["head.weight"], model.head.weight) and 0 <= model.valid_accuracy <= 1

    monkeypatch.setattr(fid, "_LOADED", {})
    monkeypatch.setattr(fid, "_train", lambda *a: pytest.fail("trained again although the file was there"))
    again = feature_classifier("digits", data=tiny_recipe)
    assert (
        again is not model
        and not again.training
        and again.valid_accuracy == pytest.approx(model.valid_accuracy)
    )
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_same_recipe_trains_the_same_weights(tiny_recipe):
    folder = fid.builtin_data("tiny")
    x, y = fid._read_split(folder / "train", tuple("0123456789"))
    recipe = fid._RECIPES["digits"]
    a, b = fid._train(recipe, x, y), fid._train(recipe, x, y)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_features_are_the_penultimate_layer_and_images_of_any_size_are_resized_to_28(monkeypatch):
    torch.manual_seed(0)
    model = FeatureClassifier().eval()
    monkeypatch.setattr(fid, "feature_classifier", lambda features="digits", data=None: model)
    x = torch.rand(5, 1, 56, 56)
    small = F.interpolate(x, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    feats = fid.digit_features(x)
    with torch.no_grad():
        assert feats.shape == (5, fid.N_FEATURES)
        torch.testing.assert_close(model.head(feats), model(small))
        expected = model(small).softmax(1).max(1).values.mean().item()
    assert classifier_confidence(x) == pytest.approx(expected, rel=1e-6)


# ---- the real digits: the cached classifier's accuracy and the reference figures ----------------------
@pytest.mark.slow
def test_on_real_digits_noise_scores_far_worse_than_held_out_digits_and_blur_in_between():
    from ember.data.builtin import builtin_data

    model = feature_classifier("digits")  # trains on first use (about 30 s), then read from the cache
    assert model.valid_accuracy >= 0.97
    held_out, _ = fid._read_split(builtin_data("mnist5k") / "valid", tuple("0123456789"))  # (1000, 1, 28, 28)
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blurred = F.avg_pool2d(held_out, 3, stride=1, padding=1, count_include_pad=False)
    real, blur, rand = fid_score(held_out), fid_score(blurred), fid_score(noise)
    assert real < 3 and 3 * real < blur < rand / 3 and rand > 50 * real, (real, blur, rand)
    # a larger image of the same digits scores as the digits do: the resize inside keeps them digits
    assert fid_score(F.interpolate(held_out, size=64, mode="bilinear")) < 3 * max(real, 1.0)
    assert classifier_confidence(held_out) > 0.95 and classifier_confidence(noise) < 0.3
