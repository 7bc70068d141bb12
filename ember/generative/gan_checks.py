"""The check a `GANLearner` makes before training: one batch's first items through the generator and the
critic, so that a network built for other images fails at once, naming both shapes, rather than as a
convolution's error in the first batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.utils import eval_mode
from ember.generative.gan_models import GANModule

__all__ = ["check_gan_shapes"]


def check_gan_shapes(
    dls: Any, model: GANModule, noise_input: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check that the generator takes the data's inputs and makes images of the data's shape, which the
    critic takes; returns `(input shape, image shape)` per item, e.g. `((100,), (1, 32, 32))`."""
    batch = dls.one_batch()
    inp, real = batch[0][:2], batch[1][:2]
    inp_shape, img_shape = tuple(inp.shape[1:]), tuple(real.shape[1:])
    gen, critic = model.generator, model.critic
    in_sz = getattr(gen, "in_sz", None)
    if noise_input and in_sz is not None and inp_shape != (in_sz,):
        raise ValueError(
            f"GANLearner: the data's noise is {inp_shape} per item, but the generator takes ({in_sz},): use "
            f"get_x=partial(generate_noise, size={in_sz}) in the DataBlock, or build the generator with "
            f"in_sz={inp.shape[-1]}"
        )
    with torch.no_grad(), eval_mode(model):
        fake = _run(gen, inp, "the generator", f"the data's inputs of shape {inp_shape}")
        want = _critic_input(critic)
        if tuple(fake.shape[1:]) != img_shape or (want is not None and want != img_shape):
            raise ValueError(_mismatch(tuple(fake.shape[1:]), img_shape, want))
        _run(critic, fake, "the critic", f"the generator's images of shape {tuple(fake.shape[1:])}")
    return inp_shape, img_shape


def _critic_input(critic: nn.Module) -> tuple[int, int, int] | None:
    """The image shape a DCGAN critic was built for, `(n_channels, in_size, in_size)`; None for others."""
    size, c = getattr(critic, "in_size", None), getattr(critic, "n_channels", None)
    return (c, size, size) if size is not None and c is not None else None


def _mismatch(fake: tuple, real: tuple, critic: tuple | None) -> str:
    said = f"; the critic was built for {critic}" if critic is not None else ""
    return (
        f"GANLearner: the generator makes images of shape {fake} (channels, height, width) and the data's "
        f"real images, which the critic compares them with, are {real}{said}. Build both networks for the "
        f"data (basic_generator(out_size={real[-1]}, n_channels={real[0]}), basic_critic(in_size={real[-1]}, "
        f"n_channels={real[0]})) or resize the data to the networks' size (item_tfms=Resize({fake[-1]}))"
    )


def _run(net: Callable[[Tensor], Tensor], x: Tensor, name: str, what: str) -> Tensor:
    try:
        return net(x)
    except Exception as e:
        e.add_note(f"(GANLearner: while running {name} on {what}, before training)")
        raise
