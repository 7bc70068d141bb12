"""The course's U-Net: an encoder (a pretrained body) whose forward returns its skip features, and a
decoder of `UnetBlock`s that upsamples back to the input's size.

The skips are passed explicitly: `UnetEncoder.forward(x)` returns `(out, [skip, ...])` and
`DynamicUnet.forward` hands each skip to its block. No forward hooks, nothing attached to tensors.

>>> body = cut_body(create_model("resnet34"), model_spec("resnet34"))  # doctest: +SKIP
>>> DynamicUnet(body, n_out=5, img_size=(128, 96))(torch.randn(2, 3, 100, 37)).shape  # doctest: +SKIP
torch.Size([2, 5, 100, 37])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.models.conv import ConvLayer, NormType, PixelShuffle_ICNR, ResBlock, SelfAttention
from ember.models.layers import SigmoidRange
from ember.models.surgery import first_conv

__all__ = ["DynamicUnet", "EncoderCutError", "InputTooSmallError", "UnetBlock", "UnetEncoder"]

# The encoder is sized once with a square input of this side: large enough that each of up to 8
# halvings still shows, whatever `img_size` the model is then used with.
_PROBE = 256


class EncoderCutError(ValueError):
    """The encoder cannot be cut into stages of decreasing size for a U-Net."""


class InputTooSmallError(ValueError):
    """An input smaller than the encoder's total downsampling."""


def _stages(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's stages: its children, with plain `nn.Sequential` containers opened (recursively) so
    that a downsampling inside one (a ResNet layer's first block, an EfficientNet stage) is its own stage."""
    out: list[nn.Module] = []
    for child in encoder.children():
        out += _stages(child) if type(child) is nn.Sequential else [child]
    return out


class UnetEncoder(nn.Module):
    """Runs `stages` in order and returns the last output and, explicitly, the outputs of the stages at
    `skip_idxs` (shallowest first): `(bs, c, h, w) -> (out, [skip, ...])`.

    >>> enc = UnetEncoder([nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 8, 3, 2, 1)], skip_idxs=[0])
    >>> out, skips = enc(torch.zeros(1, 3, 8, 8)); out.shape, skips[0].shape
    (torch.Size([1, 8, 2, 2]), torch.Size([1, 4, 4, 4]))
    """

    def __init__(self, stages: Sequence[nn.Module], skip_idxs: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.skip_idxs = tuple(skip_idxs)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.skip_idxs:
                skips.append(x)
        return x, skips


def _probe_shapes(stages: Sequence[nn.Module], n_in: int) -> list[torch.Size]:
    """Each stage's output shape for one `_PROBE`-sided image of zeros (eval mode, no gradients)."""
    p = next(p for s in stages for p in s.parameters())
    x = torch.zeros(1, n_in, _PROBE, _PROBE, device=p.device, dtype=p.dtype)
    modes = [s.training for s in stages]
    shapes = []
    try:
        with torch.no_grad():
            for i, s in enumerate(stages):
                try:
                    x = s.eval()(x)
                except RuntimeError as e:
                    raise EncoderCutError(
                        f"DynamicUnet: the encoder's stage {i} ({type(s).__name__}) fails on a feature map "
                        f"of shape {tuple(x.shape)}: {e}. Is it a classifier? Cut the network before its "
                        "pooling and classifier, e.g. cut_body(model, model_spec(arch))"
                    ) from e
                if x.dim() != 4:
                    raise EncoderCutError(
                        f"DynamicUnet: the encoder's stage {i} ({type(s).__name__}) puts out shape "
                        f"{tuple(x.shape)}, not a feature map (bs, c, h, w). Cut the network before its "
                        "pooling and classifier, e.g. cut_body(model, model_spec(arch))"
                    )
                shapes.append(x.shape)
    finally:
        for s, mode in zip(stages, modes):
            s.train(mode)
    return shapes


def _skip_idxs(shapes: Sequence[torch.Size], encoder: nn.Module) -> list[int]:
    """The stages just before each change of spatial size: their outputs are the skip features."""
    sizes = [(_PROBE, _PROBE), *[tuple(s[-2:]) for s in shapes]]
    changes = [i for i in range(len(shapes)) if sizes[i + 1] != sizes[i]]
    if not changes or len(shapes) < 2:
        raise EncoderCutError(
            f"DynamicUnet: the encoder ({type(encoder).__name__}) never changes the size of a "
            f"{_PROBE}x{_PROBE} input across {len(shapes)} stage(s), so there is nowhere to take skip "
            "features from. Pass an nn.Sequential of downsampling stages, e.g. a CNN body from "
            "cut_body(model, model_spec(arch))"
        )
    return [i - 1 for i in changes if i > 0]


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class UnetBlock(nn.Module):
    """One decoder step: upsample the deeper features `up_in` (pixel shuffle, half the channels),
    normalise the skip, concatenate both, and two `ConvLayer`s.

    When the upsampled map and the skip differ by a pixel (odd sizes), the upsampled one is resized to
    the skip's size. `final_div=False` halves the channels of the output.

    >>> UnetBlock(64, 32)(torch.randn(1, 64, 4, 3), torch.randn(1, 32, 7, 5)).shape  # doctest: +SKIP
    torch.Size([1, 64, 7, 5])
    """

    def __init__(
        self,
        up_in_c: int,
        x_in_c: int,
        final_div: bool = True,
        blur: bool = False,
        act_cls: type[nn.Module] = nn.ReLU,
        self_attention: bool = False,
        norm_type: NormType | None = None,
    ) -> None:
        super().__init__()
        self.shuf = PixelShuffle_ICNR(up_in_c, up_in_c // 2, blur=blur, act_cls=act_cls, norm_type=norm_type)
        self.bn = nn.BatchNorm2d(x_in_c)
        ni = up_in_c // 2 + x_in_c
        nf = ni if final_div else ni // 2
        self.act = act_cls()
        self.conv1 = ConvLayer(ni, nf, act_cls=act_cls, norm_type=norm_type)
        xtra = SelfAttention(nf) if self_attention else None
        self.conv2 = ConvLayer(nf, nf, act_cls=act_cls, norm_type=norm_type, xtra=xtra)
        self.nf = nf

    def forward(self, up_in: Tensor, skip: Tensor) -> Tensor:
        up = self.shuf(up_in)  # (bs, up_in_c // 2, 2h, 2w)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        x = self.act(torch.cat([up, self.bn(skip)], dim=1))  # (bs, up_in_c // 2 + x_in_c, H, W)
        return self.conv2(self.conv1(x))


class DynamicUnet(nn.Module):
    """A U-Net built around `encoder` (an `nn.Sequential` body, e.g. a cut ResNet).

    At construction one image of zeros goes through the encoder's stages to find where the spatial size
    changes; the stage before each change gives a skip feature. The decoder is a middle conv block, one
    `UnetBlock` per skip (deepest first; `self_attention` adds attention to the third from last), a final
    pixel shuffle back to full size, with `last_cross` the input concatenated and a `ResBlock` (halving
    its channels with `bottle`), a 1x1 conv to `n_out`, and `SigmoidRange(*y_range)` when given.

    Any input of at least `min_size` works, odd and non-square included; the output is
    `(bs, n_out, H, W)` for an input `(bs, c, H, W)`. `img_size` is only checked against `min_size`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_out: int,
        img_size: int | Sequence[int],
        blur: bool = False,
        blur_final: bool = True,
        self_attention: bool = False,
        y_range: Sequence[float] | None = None,
        last_cross: bool = True,
        bottle: bool = False,
        act_cls: type[nn.Module] = nn.ReLU,
        norm_type: NormType | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Sequential):
            raise EncoderCutError(
                f"DynamicUnet: the encoder is a {type(encoder).__name__}; it must be an nn.Sequential of "
                "stages whose forward is running them in order, e.g. cut_body(model, model_spec(arch))"
            )
        stages = _stages(encoder)
        n_in = first_conv(encoder).in_channels
        shapes = _probe_shapes(stages, n_in)
        skip_idxs = _skip_idxs(shapes, encoder)
        self.encoder = UnetEncoder(stages, skip_idxs)
        # the total downsampling: an input smaller than this would shrink below one pixel
        self.min_size = (_PROBE // shapes[-1][-2], _PROBE // shapes[-1][-1])
        self._check_size(_as_hw(img_size), "img_size")
        ni = shapes[-1][1]
        self.middle = nn.Sequential(
            nn.BatchNorm2d(ni),
            act_cls(),
            ConvLayer(ni, ni * 2, act_cls=act_cls, norm_type=norm_type),
            ConvLayer(ni * 2, ni, act_cls=act_cls, norm_type=norm_type),
        )
        blocks, up_c = [], ni
        for j, i in enumerate(reversed(skip_idxs)):
            not_final = j != len(skip_idxs) - 1
            block = UnetBlock(
                up_c, shapes[i][1], final_div=not_final, blur=blur and (not_final or blur_final),
                act_cls=act_cls, self_attention=self_attention and j == len(skip_idxs) - 3,
                norm_type=norm_type,
            )  # fmt: skip
            blocks.append(block)
            up_c = block.nf
        self.blocks = nn.ModuleList(blocks)
        shallowest = shapes[skip_idxs[0]][-2:]
        full = shallowest == (_PROBE, _PROBE)
        self.final_up = (
            nn.Identity() if full else PixelShuffle_ICNR(up_c, act_cls=act_cls, norm_type=norm_type)
        )
        self.last_cross = last_cross
        self.cross = nn.Identity()
        if last_cross:
            nf = (up_c + n_in) // 2 if bottle else up_c + n_in
            self.cross = ResBlock(1, up_c + n_in, nf, act_cls=act_cls, norm_type=norm_type)
            up_c = nf
        head: list[nn.Module] = [ConvLayer(up_c, n_out, ks=1, act_cls=None, norm_type=norm_type)]
        if y_range is not None:
            head.append(SigmoidRange(float(y_range[0]), float(y_range[1])))
        self.head = nn.Sequential(*head)

    def _check_size(self, hw: tuple[int, int], what: str) -> None:
        if hw[0] < self.min_size[0] or hw[1] < self.min_size[1]:
            h, w = self.min_size
            raise InputTooSmallError(
                f"DynamicUnet: {what} {hw[0]}x{hw[1]} is smaller than {h}x{w}, the minimum for this encoder "
                f"(it downsamples {h}x{w} times); resize the images to at least {h}x{w}, e.g. "
                f"item_tfms=Resize({max(h, w)})"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_size((x.shape[-2], x.shape[-1]), "the input")
        out, skips = self.encoder(x)  # (bs, c, H/32, W/32) for a ResNet, skips shallowest first
        out = self.middle(out)
        for block, skip in zip(self.blocks, reversed(skips)):
            out = block(out, skip)
        out = self.final_up(out)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, x.shape[-2:], mode="nearest")  # (bs, c, H, W)
        if self.last_cross:
            out = self.cross(torch.cat([out, x], dim=1))
        return self.head(out)  # (bs, n_out, H, W)
