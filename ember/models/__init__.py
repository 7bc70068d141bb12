"""ember.models: layers and (later) the architecture registry."""

from ember.models.layers import Embedding, Module, SigmoidRange, sigmoid_range

__all__ = ["Embedding", "Module", "SigmoidRange", "sigmoid_range"]
