"""The feature (perceptual) loss of the super-resolution lesson: pixels, VGG features and their styles.

>>> loss_func = FeatureLoss(vgg16_features())  # the lesson's layers and weights  # doctest: +SKIP
>>> learn = unet_learner(dls, resnet34, loss_func=loss_func, cbs=LossMetrics())  # doctest: +SKIP

Features come from running the feature model's layers one by one up to the deepest layer asked for, so no
hook is ever registered on it. Inputs and targets are what the feature model expects (ImageNet-normalised
RGB for `vgg16_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.models.vgg import VGG16_FEATURE_LOSS_LAYERS

__all__ = ["FeatureLoss", "gram_matrix"]


def gram_matrix(x: Tensor) -> Tensor:
    """Channel-by-channel correlations of a feature map, the style term: (bs, c, h, w) -> (bs, c, c),
    divided by c*h*w.

    >>> gram_matrix(torch.ones(1, 2, 3, 3))
    tensor([[[1.5000, 1.5000],
             [1.5000, 1.5000]]])
    """
    bs, c, h, w = x.shape
    flat = x.reshape(bs, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class FeatureLoss(nn.Module):
    """base_loss(input, target) + sum_i w_i * base_loss(f_i(input), f_i(target))
    + sum_i w_i**2 * gram_scale * base_loss(gram(f_i(input)), gram(f_i(target))), f_i the output of layer
    `layer_ids[i]` of `m_feat` (an `nn.Sequential`), w_i `layer_wgts[i]`.

    The defaults are the lesson's: the ReLUs before VGG16's last three max-pools, weighted 5, 15 and 2, and
    gram_scale 5e3. Those weights balance the parts for features of about unit size (the lesson's VGG16 has
    BatchNorm); `vgg16_features` holds Keras' weights, whose activations are 20 to 170 on ImageNet-normalised
    photos, which made the gram parts 10^7 times the pixel part. So with `rescale` (the default) each layer's
    features, of input and target alike, are first divided by the target's mean absolute feature there (a
    constant of the batch, no gradient): the loss is then the same whatever the feature model's scale.
    `m_feat` is frozen and put in eval mode; it follows the input to its device. After each
    call, `metrics` holds each part's value (detached) under the names in `metric_names`: "pixel",
    "feat_0", ..., "gram_0", ...; the `LossMetrics` callback shows them in the epoch table.

    >>> fl = FeatureLoss(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), layer_ids=[1], layer_wgts=[1.0])
    >>> fl(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)).item(), fl.metric_names
    (0.0, ['pixel', 'feat_0', 'gram_0'])
    """

    def __init__(
        self,
        m_feat: nn.Sequential,
        layer_ids: Sequence[int] = VGG16_FEATURE_LOSS_LAYERS,
        layer_wgts: Sequence[float] = (5, 15, 2),
        base_loss: Callable[[Tensor, Tensor], Tensor] = F.l1_loss,
        gram_scale: float = 5e3,
        rescale: bool = True,
    ) -> None:
        super().__init__()
        if len(layer_ids) != len(layer_wgts):
            raise ValueError(f"FeatureLoss: {len(layer_ids)} layer_ids but {len(layer_wgts)} layer_wgts")
        if max(layer_ids) >= len(m_feat):
            raise ValueError(f"FeatureLoss: layer id {max(layer_ids)} is past m_feat's {len(m_feat)} layers")
        self.m_feat = m_feat.eval().requires_grad_(False)
        self.layer_ids, self.layer_wgts = list(layer_ids), list(layer_wgts)
        self.base_loss, self.gram_scale, self.rescale = base_loss, gram_scale, rescale
        n = len(self.layer_ids)
        self.metric_names = ["pixel", *(f"feat_{i}" for i in range(n)), *(f"gram_{i}" for i in range(n))]
        self.metrics: dict[str, Tensor] = {}

    def train(self, mode: bool = True) -> FeatureLoss:
        super().train(mode)
        self.m_feat.eval()  # the feature model's BatchNorm or Dropout, if any, never trains
        return self

    def make_features(self, x: Tensor) -> list[Tensor]:
        """The outputs of the layers `layer_ids`, running `m_feat` only as deep as the deepest of them."""
        feats, wanted, layers = [], set(self.layer_ids), list(self.m_feat)
        for i, layer in enumerate(layers[: max(self.layer_ids) + 1]):
            x = layer(x)
            if i in wanted:
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                # the next layer (an inplace ReLU) would overwrite the feature we keep
                feats.append(x.clone() if getattr(nxt, "inplace", False) else x)
        return feats

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        self._follow(input.device)
        with torch.no_grad():
            targ_feats = self.make_features(target)
            scales = [t.abs().mean().clamp_min(1e-8) if self.rescale else 1.0 for t in targ_feats]
            targ_feats = [t / s for t, s in zip(targ_feats, scales)]
        in_feats = [f / s for f, s in zip(self.make_features(input), scales)]
        pixel = self.base_loss(input, target)
        feats = [self.base_loss(f, t) * w for f, t, w in zip(in_feats, targ_feats, self.layer_wgts)]
        grams = [
            self.base_loss(gram_matrix(f), gram_matrix(t)) * w**2 * self.gram_scale
            for f, t, w in zip(in_feats, targ_feats, self.layer_wgts)
        ]
        parts = [pixel, *feats, *grams]
        self.metrics = {n: p.detach() for n, p in zip(self.metric_names, parts)}
        return torch.stack(parts).sum()

    def _follow(self, device: torch.device) -> None:
        p = next(self.m_feat.parameters(), None)
        if p is not None and p.device != device:
            self.m_feat.to(device)
