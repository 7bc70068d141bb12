"""Grad-CAM and Grad-CAM++: where in the image a conv layer's features drove one output.

Grad-CAM (Selvaraju et al. 2017) weighs each channel of the layer's feature maps A (n, k, h, w) by the
spatial mean of the score's gradient over it and keeps the positive part of the weighted sum:
`relu(sum_k mean_ij(dS/dA_kij) * A_k)`. Grad-CAM++ (Chattopadhay et al. 2018) weighs each position's
positive gradient by `g^2 / (2 g^2 + sum_ij A g^3)` instead. The map is upsampled (bilinear) to the
input's size and scaled to [0, 1] per image.

The layer's output is taken with a forward hook inside a `with` block; its gradient comes from
`torch.autograd.grad` on that output, so the backward pass stops at the layer (the layers below it and
every weight's gradient are never computed) and an in-place op after the layer (a `ReLU(inplace=True)`
after a BatchNorm) cannot break it, as it breaks a module backward hook.

>>> heat = gradcam(learn, "cat.jpg")  # (h, w) in [0, 1], the predicted class  # doctest: +SKIP
>>> cams = GradCAM(learn, layer="0.7")(xb, target="dog")  # (n, h, w)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ember.interpret._inputs import (
    Target,
    explaining,
    flat_output,
    input_batch,
    model_of,
    scores,
    target_indices,
)
from ember.interpret.errors import LayerNotFoundError, NoConvLayerError, listing
from ember.interpret.layers import LayerSpec, conv_layers, find_layer
from ember.models.hooks import hook_output

__all__ = ["GradCAM", "GradCAMPlusPlus", "gradcam", "upsample_heatmap"]


class GradCAM:
    """Grad-CAM of `layer` (a dotted name, a conv index, the module; default: the module putting out the
    last conv features, the body of a vision learner). Call it on a batch: `(n, h, w)` in [0, 1].
    `learn` is a Learner (targets may then be labels of its vocabulary) or a bare model.

    >>> cam = GradCAM(learn)  # doctest: +SKIP
    >>> cam(xb).shape, cam.layer_name  # doctest: +SKIP
    (torch.Size([64, 224, 224]), '0')
    """

    def __init__(self, learn: Any, layer: LayerSpec | None = None) -> None:
        self.learn, self.model = learn, model_of(learn)
        self.layer_name, self.layer = find_layer(self.model, layer)

    def __call__(self, xb: Tensor, target: Target = None) -> Tensor:
        acts, grads = self.features_and_grads(xb, target)
        cam = torch.relu((self.channel_weights(acts, grads)[:, :, None, None] * acts).sum(1))  # (n, h, w)
        return upsample_heatmap(cam, xb.shape[-2:])

    def features_and_grads(self, xb: Tensor, target: Target = None) -> tuple[Tensor, Tensor]:
        """The layer's output A and the gradient of the target's score with respect to it, both
        (n, k, h, w)."""
        x = xb.to(next(self.model.parameters()).device).detach().requires_grad_(True)  # so A has a graph
        with explaining(self.model), hook_output(self.layer, detach=False) as hook:
            out = flat_output(self.model(x))
            acts = self._feature_maps(hook.stored)
            (grads,) = torch.autograd.grad(scores(out, target_indices(self.learn, out, target)).sum(), acts)
        return acts.detach(), grads

    @staticmethod
    def channel_weights(acts: Tensor, grads: Tensor) -> Tensor:
        """Each channel's weight (n, k): the spatial mean of its gradient."""
        return grads.mean((2, 3))

    def _feature_maps(self, stored: Any) -> Tensor:
        if isinstance(stored, Tensor) and stored.ndim == 4:
            return stored
        if stored is None:
            raise LayerNotFoundError(
                f"layer {self.layer_name!r} did not run in the model's forward: it has nothing to explain; "
                "pass a layer the forward uses"
            )
        got = f"a tensor {tuple(stored.shape)}" if isinstance(stored, Tensor) else type(stored).__name__
        convs = [n for n, _ in conv_layers(self.model)]
        raise NoConvLayerError(
            f"layer {self.layer_name!r} ({type(self.layer).__name__}) puts out {got}, not conv feature maps "
            f"(n, channels, h, w); pass layer= a conv layer or a block of them, e.g. {listing(convs, 2, 4)}"
        )


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: each position's positive gradient weighted by `alpha = g^2 / (2 g^2 + sum A g^3)`,
    which credits every instance of a class rather than the strongest one.

    >>> cams = GradCAMPlusPlus(learn)(xb)  # doctest: +SKIP
    """

    @staticmethod
    def channel_weights(acts: Tensor, grads: Tensor) -> Tensor:
        g2 = grads.pow(2)
        denom = 2 * g2 + acts.sum((2, 3), keepdim=True) * g2 * grads
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))  # 0 where the gradient is 0
        return (alpha * torch.relu(grads)).sum((2, 3))


def gradcam(
    learn: Any,
    item: Any = None,
    target: Target = None,
    layer: LayerSpec | None = None,
    plusplus: bool = False,
    xb: Tensor | None = None,
    show: bool = False,
) -> Tensor:
    """The Grad-CAM heatmap of `item` (whatever `learn.predict` takes) for `target` (a class index or a
    label of `learn.dls.vocab`; default: the predicted class): (h, w) in [0, 1] at the input's size.
    With a ready batch `xb` (n, c, h, w): (n, h, w). `show` draws it over the input.

    >>> heat = gradcam(learn, "cat.jpg", target="dog", show=True)  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "gradcam")
    cams = (GradCAMPlusPlus if plusplus else GradCAM)(learn, layer)(x, target)
    if show:
        from ember.interpret.show import show_heatmap

        show_heatmap(learn, cams, xb=x)
    return cams[0] if one else cams


def upsample_heatmap(maps: Tensor, size: Any) -> Tensor:
    """(n, h, w) maps resized to `size` (bilinear) and scaled to [0, 1] per map (all zeros stays zeros)."""
    up = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).amin(1)[:, None, None]
    hi = up.flatten(1).amax(1)[:, None, None]
    return ((up - lo) / (hi - lo).clamp_min(1e-12)).detach()
