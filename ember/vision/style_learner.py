"""Fast style transfer (Johnson et al. 2016): a small image-to-image network trained with the `StyleLoss`
of `ember.vision.style`, so that one forward pass paints any photo in one style.

>>> dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=get_image_files, get_y=lambda x: x,
...                    item_tfms=Resize(128))  # doctest: +SKIP
>>> style = skimage.data.immunohistochemistry()  # doctest: +SKIP
>>> learn = style_learner(dblock.dataloaders(path), style, cbs=LossMetrics())  # doctest: +SKIP
>>> learn.fit_one_cycle(4, 1e-3); learn.export()  # doctest: +SKIP
>>> painted, pixels, _ = load_learner("export.pkl").predict("cat.jpg")  # a PIL image  # doctest: +SKIP

It is an ordinary Learner: the loss function object holds the frozen feature network and the style's gram
matrices, the model is a `StyleNet`, and the export records `StyleNet`'s arguments as its model recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ember.callbacks.core import Callback
from ember.core.optimizer import Adam, OptFunc
from ember.core.serial import register_config_type
from ember.learner.learner import Learner
from ember.metrics import Metric
from ember.models.conv import ConvLayer, NormType, ResBlock
from ember.vision.style import StyleFeatures, StyleLoss, image_tensor, style_features

__all__ = ["StyleNet", "style_learner"]


class StyleNet(nn.Module):
    """Johnson et al.'s transformation network: a 9x9 conv, two stride-2 convs down (to 4 * `width`
    channels at 1/4 size), `n_res` residual blocks, two nearest-neighbour upsamplings each followed by a
    conv, a 9x9 conv to RGB and a sigmoid. InstanceNorm throughout. (bs, 3, h, w) in [0, 1] -> the same
    shape in [0, 1], for any h and w.

    >>> StyleNet(width=8, n_res=1)(torch.rand(2, 3, 30, 41)).shape
    torch.Size([2, 3, 30, 41])
    """

    def __init__(self, width: int = 32, n_res: int = 5) -> None:
        super().__init__()
        self.width, self.n_res = width, n_res
        w, inorm = width, NormType.Instance
        self.down = nn.Sequential(
            ConvLayer(3, w, ks=9, norm_type=inorm),
            ConvLayer(w, 2 * w, stride=2, norm_type=inorm),
            ConvLayer(2 * w, 4 * w, stride=2, norm_type=inorm),
        )
        self.res = nn.Sequential(*[ResBlock(1, 4 * w, 4 * w, norm_type=inorm) for _ in range(n_res)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),  # not a transposed conv: no checkerboard
            ConvLayer(4 * w, 2 * w, norm_type=inorm),
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvLayer(2 * w, w, norm_type=inorm),
        )
        self.out = ConvLayer(w, 3, ks=9, norm_type=None, act_cls=None)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        y = self.out(self.up(self.res(self.down(x))))  # (bs, 3, 4 * ceil(h / 4), 4 * ceil(w / 4))
        return y[..., :h, :w].sigmoid()

    def to_config(self) -> dict[str, int]:
        return {"width": self.width, "n_res": self.n_res}


def _check_not_normalized(dls: Any) -> None:
    tfms = getattr(getattr(dls, "dblock", None), "batch_tfms", [])
    if any(type(t).__name__ == "Normalize" for t in tfms):
        raise ValueError(
            "style_learner: the data is normalised (Normalize in the batch transforms), but StyleNet and "
            "StyleLoss take RGB in [0, 1]; build the DataBlock without Normalize"
        )


def style_learner(
    dls: Any,
    style_img: Any,
    arch: str | StyleFeatures | None = None,
    width: int = 32,
    n_res: int = 5,
    style_size: int | None = None,
    content_layers: Sequence[int] | None = None,
    style_layers: Sequence[int] | None = None,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    opt_func: OptFunc = Adam,
    lr: float = 1e-3,
    cbs: Callback | Sequence[Callback] | None = None,
    metrics: Metric | Callable | Sequence[Metric | Callable] | None = None,
    path: Any = None,
    model_dir: str = "models",
    wd: float | None = None,
    quiet: bool = False,
) -> Learner:
    """A Learner training a `StyleNet(width, n_res)` to paint `dls`' content images (image to image, the
    target the input itself, RGB in [0, 1]: no Normalize) in the style of `style_img`, with `StyleLoss`.

    `arch` is the loss's feature network (`style_features`: None is VGG16, or EfficientNet-Lite0 when VGG16
    is not installed), or one already built. `style_img` (anything `image_tensor` reads) is resized so
    that its longer side is `style_size` (default: a batch's longer side). Layers and weights default to the
    feature network's (see `StyleLoss`). `cbs=LossMetrics()` shows the
    content, style and tv parts in the epoch table. `learn.export()` records the network's arguments.

    >>> learn = style_learner(dls, "starry_night.jpg", cbs=LossMetrics())  # doctest: +SKIP
    >>> learn.fit_one_cycle(4, 1e-3)  # doctest: +SKIP
    """
    _check_not_normalized(dls)
    net = arch if isinstance(arch, StyleFeatures) else style_features(arch)
    size = style_size if style_size is not None else max(dls.one_batch()[0].shape[-2:])
    style = image_tensor(style_img, size)
    loss_func = StyleLoss(net, style, content_layers, style_layers, content_weight, style_weight, tv_weight)
    learn = Learner(
        dls, StyleNet(width, n_res), loss_func=loss_func, opt_func=opt_func, lr=lr, cbs=cbs, metrics=metrics,
        path=path, model_dir=model_dir, wd=wd, quiet=quiet,
    )  # fmt: skip
    learn.model_config = {"type": "StyleNet", **learn.model.to_config()}
    return learn


register_config_type(StyleNet)
