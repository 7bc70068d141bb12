"""The model-side helpers of the views: naming a layer (an index into the conv layers, a dotted name
from `named_modules()`, or the module: `ember.interpret.layers`, shared with Grad-CAM), eval mode for
a `with` block, and the model's device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ember.interpret.errors import LayerNotFoundError
from ember.interpret.layers import LayerSpec, conv_layers, find_layer

__all__ = ["LayerNotFoundError", "LayerSpec", "conv_layers", "eval_mode", "find_layer", "model_device"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode (BatchNorm's running statistics used and left alone, no dropout) for the
    `with` block; its training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
