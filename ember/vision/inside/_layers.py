"""The model-side helpers of the views: naming a layer (an index into the conv layers, a dotted name
from `named_modules()`, or the module: `ember.interpret.layers`, shared with Grad-CAM), and the
model's device."""

from __future__ import annotations

import torch
from torch import nn

from ember.interpret.errors import LayerNotFoundError
from ember.interpret.layers import LayerSpec, conv_layers, find_layer

__all__ = ["LayerNotFoundError", "LayerSpec", "conv_layers", "find_layer", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
