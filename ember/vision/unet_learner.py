"""`unet_learner`: a U-Net around a pretrained body, for segmentation and image-to-image tasks.

>>> dls = SegmentationDataLoaders.from_label_func(path, fnames, label_func, codes=codes)  # doctest: +SKIP
>>> learn = unet_learner(dls, resnet34)  # doctest: +SKIP
>>> learn.fine_tune(8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ember.callbacks.core import Callback
from ember.core.optimizer import Adam, OptFunc
from ember.core.serial import register_config_type
from ember.learner.learner import Learner
from ember.losses import MSELossFlat
from ember.metrics import Metric
from ember.models.registry import create_model, model_spec
from ember.models.surgery import cut_body
from ember.vision.blocks import ImageBlock
from ember.vision.learner import _add_normalize
from ember.vision.unet import DynamicUnet

__all__ = ["create_unet_model", "unet_learner", "unet_split"]


def create_unet_model(
    arch: Any,
    n_out: int,
    img_size: int | Sequence[int],
    pretrained: bool = True,
    weights: str | None = None,
    cut: int | None = None,
    n_in: int = 3,
    **unet_kwargs: Any,
) -> DynamicUnet:
    """A `DynamicUnet` whose encoder is `arch`'s first `cut` children, pretrained or not. By default that
    is its body (cut before its pooling), or where its spec's `encoder_cut` says (EfficientNet: before
    its 1x1 head conv, which widens the features without adding resolution).

    >>> create_unet_model("resnet18", n_out=2, img_size=64, pretrained=False)(torch.zeros(1, 3, 50, 40)).shape
    torch.Size([1, 2, 50, 40])
    """
    spec = model_spec(arch)
    model = create_model(spec.name, pretrained=pretrained, n_in=n_in, weights=weights)
    body = cut_body(model, spec, cut if cut is not None else spec.encoder_cut)
    return DynamicUnet(body, n_out, img_size, **unet_kwargs)


def unet_split(model: DynamicUnet) -> list[list[nn.Parameter]]:
    """Two parameter groups: the encoder, then everything else (the decoder)."""
    encoder = {id(p) for p in model.encoder.parameters()}
    return [list(model.encoder.parameters()), [p for p in model.parameters() if id(p) not in encoder]]


def _target_n_out(dls: Any, xb_yb: tuple) -> int:
    """Outputs per pixel: the mask's number of codes (`dls.c`), or a target image's channels."""
    if getattr(dls, "c", None):
        return dls.c
    yb = xb_yb[-1]
    if yb.dim() == 4:  # an image as target: (bs, c, h, w)
        return yb.shape[1]
    raise ValueError(
        f"unet_learner: the number of outputs is not known from the data (targets of shape "
        f"{tuple(yb.shape)} and no codes); give the MaskBlock its codes (MaskBlock(codes)) or pass n_out=..."
    )


def _default_loss(dls: Any) -> Callable | None:
    """The target block's loss; MSE for an image as target, which has no default of its own."""
    if getattr(dls, "loss_func", None) is not None:
        return None  # Learner takes it from the loaders
    blocks = getattr(getattr(dls, "datasets", None), "blocks", None)
    return MSELossFlat() if blocks and isinstance(blocks[-1], ImageBlock) else None


def unet_learner(
    dls: Any,
    arch: Any,
    normalize: bool = True,
    n_out: int | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    loss_func: Callable | None = None,
    opt_func: OptFunc = Adam,
    lr: float | slice = 1e-3,
    splitter: Callable[[nn.Module], list[list[nn.Parameter]]] | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
    metrics: Metric | Callable | Sequence[Metric | Callable] | None = None,
    path: Any = None,
    model_dir: str = "models",
    wd: float | None = None,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    config: dict | None = None,
    n_in: int = 3,
    quiet: bool = False,
    **unet_kwargs: Any,
) -> Learner:
    """A Learner for a `DynamicUnet` around `arch`'s body, sized from the data.

    `img_size` is one batch's input size; `n_out` defaults to the mask's number of codes (or a target
    image's channels); the loss to the target block's (`CrossEntropyLossFlat(axis=1)` for masks, MSE for
    images). The encoder starts frozen (only the decoder and BatchNorm layers train; `fine_tune`
    unfreezes it); the parameter groups are [encoder, decoder]. `config` is a dict of extra `DynamicUnet`
    arguments (as `unet_kwargs`, which win over it), e.g. `dict(self_attention=True, y_range=(0, 1))`.
    """
    spec = model_spec(arch)
    batch = dls.one_batch()
    img_size = tuple(batch[0].shape[-2:])
    n_out = n_out if n_out is not None else _target_n_out(dls, batch)
    kwargs = {**(config or {}), **unet_kwargs}
    model = create_unet_model(spec.name, n_out, img_size, pretrained, weights, n_in=n_in, **kwargs)
    if normalize and (pretrained or weights is not None):
        _add_normalize(dls, spec.mean, spec.std)
    learn = Learner(
        dls, model, loss_func=loss_func if loss_func is not None else _default_loss(dls), opt_func=opt_func,
        lr=lr, splitter=splitter if splitter is not None else unet_split, cbs=cbs, metrics=metrics, path=path,
        model_dir=model_dir, wd=wd, moms=moms, quiet=quiet,
    )  # fmt: skip
    learn.model_config = _model_config(spec.name, n_out, img_size, n_in, kwargs)
    if pretrained or weights is not None:
        learn.freeze()
    return learn


def _model_config(arch: str, n_out: int, img_size: tuple, n_in: int, kwargs: dict) -> dict | None:
    """What an export needs to rebuild the U-Net (its weights come from the file, so not pretrained);
    None, so that `export` says why, when an argument is not plain data (an `act_cls`, a `norm_type`)."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    if not all(v is None or isinstance(v, bool | int | float | str | list) for v in plain.values()):
        return None
    return dict(
        type="create_unet_model", arch=arch, n_out=n_out, img_size=list(img_size), pretrained=False,
        n_in=n_in, **plain,
    )  # fmt: skip


register_config_type(create_unet_model)
