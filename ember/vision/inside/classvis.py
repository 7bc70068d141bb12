"""Activation maximisation: the image that most excites a class or a channel, found by gradient ascent
on the input with the regularisations that keep it readable (as in Lucid, Olah et al. 2017):

- a Fourier parameterisation in decorrelated colours (the image's spectrum, scaled by 1/f, mapped
  through the data's colour covariance measured on a validation batch), or plain pixels;
- transformation robustness: each step sees several copies of the image, each randomly shifted
  (`jitter` pixels), zoomed and rotated, so that a pattern must work wherever it lands;
- an L2 decay pulling every pixel towards the data's mean colour, and a periodic Gaussian blur.

>>> img = visualize_class(learn, 7)  # (c, h, w) in [0, 1], for the class index 7  # doctest: +SKIP
>>> show_image(img)  # doctest: +SKIP
>>> fig = show_class_visualizations(learn)  # every class, with its probability  # doctest: +SKIP

The images are drawn in the learner's input space: its channels (1 for grey digits, 3 for RGB), the
size of its validation images, and normalised by the `Normalize` of its batch pipeline before the
model sees them. Everything random draws from a generator seeded by `seed`, so a call gives the same
image again (on the CPU; a GPU's kernels may differ in their last bits). Several images made in one
call are optimised together, as one batch, each independently of the others. The model's weights,
and their `.grad`, are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.utils import eval_mode
from ember.models.hooks import hook_output
from ember.vision.inside._layers import LayerSpec, find_layer, model_device
from ember.vision.inside._param import Param, ParamImage, random_views
from ember.vision.inside._plot import grid
from ember.vision.inside._space import ImageSpace, find_normalize, image_space, normalize

__all__ = [
    "Regularise",
    "class_probs",
    "show_class_visualizations",
    "visualize_channel",
    "visualize_channels",
    "visualize_class",
    "visualize_classes",
]


@dataclass(frozen=True)
class Regularise:
    """What keeps the pictures readable; its fields are keyword arguments of every `visualize_*`."""

    param: Param = "fourier"
    jitter: int = 2  # pixels of random shift
    scale: float = 0.1  # random zoom in [1 - scale, 1 + scale]
    degrees: float = 10.0  # random rotation in [-degrees, degrees]
    l2: float = 0.03  # per pixel: l2 * (pixel - data mean)^2, summed, is taken off the score (channels: 1e-3)
    blur_every: int = 4  # steps between blurs; 0 never blurs
    blur_sigma: float = 0.5  # pixels
    n_views: int = 4  # randomly transformed copies of each image in each step


def visualize_class(learn: Any, cls: int | str, steps: int = 256, size: int | tuple[int, int] | None = None,
                    seed: int = 0, lr: float = 0.05, **settings: Any) -> Tensor:  # fmt: skip
    """The image (c, h, w) in [0, 1] that the model scores highest for class `cls` (an index, or a
    label of `learn.dls.vocab`): gradient ascent on the class's logit. `size` defaults to the size of
    the validation images; `settings` are `Regularise`'s fields (`param="pixels"`, `jitter=0`, ...)
    and `dl` (see `visualize_classes`).

    >>> img = visualize_class(learn, "7", steps=200)  # doctest: +SKIP
    """
    return visualize_classes(learn, [cls], steps, size, seed, lr, **settings)[0]


def visualize_classes(learn: Any, classes: Sequence[int | str] | None = None, steps: int = 256,
                      size: int | tuple[int, int] | None = None, seed: int = 0, lr: float = 0.05,
                      dl: Iterable | None = None, **settings: Any) -> Tensor:  # fmt: skip
    """`visualize_class` for each of `classes` (every class by default), made together: (n, c, h, w).
    The images' channels, size and colours are measured on the first batch of `dl` (default: the
    validation set), which a learner from `load_learner` needs, having none.

    >>> imgs = visualize_classes(learn)  # one image per digit  # doctest: +SKIP
    """
    idx = torch.tensor(_class_indices(learn, classes))

    def score(out: Tensor) -> Tensor:  # (views * n, n_classes) -> (views * n,)
        return _per_image(out, idx).float()

    space = image_space(learn, size, dl)
    return _maximise(learn, score, None, len(idx), steps, space, seed, lr, Regularise(**settings))


def visualize_channel(learn: Any, layer: LayerSpec, channel: int, steps: int = 256,
                      size: int | tuple[int, int] | None = None, seed: int = 0, lr: float = 0.05,
                      **settings: Any) -> Tensor:  # fmt: skip
    """The image (c, h, w) in [0, 1] that most excites channel `channel` of `layer` (an index into the
    conv layers, a dotted module name or a module): gradient ascent on the channel's mean activation.

    >>> img = visualize_channel(learn, "layer3.1.conv2", 12)  # doctest: +SKIP
    """
    return visualize_channels(learn, layer, [channel], steps, size, seed, lr, **settings)[0]


def visualize_channels(learn: Any, layer: LayerSpec, channels: Sequence[int], steps: int = 256,
                       size: int | tuple[int, int] | None = None, seed: int = 0, lr: float = 0.05,
                       dl: Iterable | None = None, **settings: Any) -> Tensor:  # fmt: skip
    """`visualize_channel` for each of `channels` of one layer, made together: (n, c, h, w). `dl` as
    for `visualize_classes`.

    The L2 decay defaults to `l2=1e-3` here, not `Regularise`'s 0.03: a channel's mean activation is a
    much smaller score than a class's logit, and the stronger decay leaves a flat grey image.
    """
    settings = {"l2": 1e-3, **settings}
    name, module = find_layer(learn.model, layer)
    chans = torch.tensor(list(channels))

    def score(act: Tensor) -> Tensor:  # (views * n, channels, ...) -> (views * n,)
        if int(chans.min()) < 0 or int(chans.max()) >= act.shape[1]:
            raise IndexError(
                f"layer {name!r} has {act.shape[1]} channels; asked for channels {chans.tolist()}"
            )
        return _per_image(act, chans).float().flatten(1).mean(1)

    space = image_space(learn, size, dl)
    return _maximise(learn, score, module, len(chans), steps, space, seed, lr, Regularise(**settings))


def show_class_visualizations(
    learn: Any, classes: Sequence[int | str] | None = None, ncols: int = 5, **kwargs: Any
) -> Any:
    """`visualize_classes`, drawn in a grid, each titled with its label and the probability the model
    gives it. Returns the figure; `kwargs` go to `visualize_classes` (`steps=`, `seed=`, ...).

    >>> fig = show_class_visualizations(learn, steps=128)  # doctest: +SKIP
    """
    idxs = _class_indices(learn, classes)
    imgs = visualize_classes(learn, idxs, **kwargs)
    probs = class_probs(learn, imgs)
    labels = [str(v) for v in getattr(learn.dls, "vocab", None) or range(probs.shape[1])]
    fig, axs = grid(len(idxs), ncols, size=1.8)
    for ax, i, img, p in zip(axs, idxs, imgs, probs):
        a = img.permute(1, 2, 0).numpy()
        ax.imshow(a[:, :, 0] if a.shape[2] == 1 else a, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{labels[i]}: p={float(p[i]):.2f}", fontsize=9)
    return fig


def class_probs(learn: Any, imgs: Tensor) -> Tensor:
    """The model's probabilities (n, n_classes) for images (n, c, h, w) in [0, 1], normalised as the
    learner's batches are.

    >>> class_probs(learn, visualize_classes(learn)).diag()  # how sure it is of each  # doctest: +SKIP
    """
    model = learn.model
    with eval_mode(model), torch.no_grad():
        out = model(normalize(imgs.to(model_device(model)), find_normalize(learn.dls)))
    return out.float().softmax(1).cpu()


def _per_image(t: Tensor, which: Tensor) -> Tensor:
    """`t[j, which[j % n]]` for each row j of `t` (views * n, ...): the class or channel of image j % n."""
    rows = torch.arange(len(t), device=t.device)
    return t[rows, which.to(t.device).repeat(len(t) // len(which))]


def _class_indices(learn: Any, classes: Sequence[int | str] | None) -> list[int]:
    """Class indices from indices or labels of the vocabulary; None is every class."""
    vocab = [str(v) for v in (getattr(learn.dls, "vocab", None) or [])]
    if classes is None:
        if not vocab:
            raise ValueError("the learner's data has no vocabulary: say which class indices to draw")
        return list(range(len(vocab)))
    for c in classes:
        if isinstance(c, str) and c not in vocab:
            raise KeyError(f"no class {c!r}; the classes are {vocab}")
    return [c if isinstance(c, int) else vocab.index(c) for c in classes]


def _maximise(learn: Any, score: Callable[[Tensor], Tensor], module: nn.Module | None, n: int, steps: int,
              space: ImageSpace, seed: int, lr: float, reg: Regularise) -> Tensor:  # fmt: skip
    """Gradient ascent on `score` of the model's output (or of `module`'s) for `n` images at once."""
    model = learn.model
    g = torch.Generator().manual_seed(seed)
    img = ParamImage(space, n, reg.param, g).to(model_device(model))
    opt = torch.optim.Adam(img.parameters(), lr=lr)
    hooked = hook_output(module, detach=False) if module is not None else nullcontext()
    with eval_mode(model), hooked as hook:
        for step in range(steps):
            x = img()  # (n, c, h, w) in [0, 1]
            views = random_views(x, reg.n_views, g, reg.jitter, reg.scale, reg.degrees, img.mean)
            out = model(space.to_model(views))
            gain = score(out if hook is None else hook.stored).view(reg.n_views, n).mean(0).sum()
            loss = -gain + reg.l2 * (x - img.mean).pow(2).sum()
            opt.zero_grad()
            (grad,) = torch.autograd.grad(loss, [img.z])  # the image's alone: no weight gets a .grad
            img.z.grad = grad
            opt.step()
            if reg.blur_every and (step + 1) % reg.blur_every == 0 and step + 1 < steps:
                img.blur(reg.blur_sigma)
    return img().detach().cpu()
