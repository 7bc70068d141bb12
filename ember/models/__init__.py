"""ember.models: layers, hooks, the architecture registry, pretrained ResNets, EfficientNet-Lite0 and VGG16's
features."""

from ember.models.conv import (
    ConvLayer,
    MergeLayer,
    NormType,
    PixelShuffle_ICNR,
    ResBlock,
    SelfAttention,
    icnr_,
    simple_cnn,
)
from ember.models.efficientnet import EfficientNetLite, efficientnet_lite0
from ember.models.hooks import (
    Hook,
    Hooks,
    dummy_eval,
    hook_output,
    hook_outputs,
    model_sizes,
    num_features_model,
)
from ember.models.layers import Embedding, Module, SigmoidRange, sigmoid_range
from ember.models.registry import create_model, list_models, load_pretrained, model_spec, register_model
from ember.models.resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from ember.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, UnknownModelError
from ember.models.surgery import adapt_first_conv, cut_body, num_features, replace_classifier
from ember.models.vgg import vgg16_features
from ember.models.weights import WeightsNotFoundError, WeightSource, read_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConvLayer",
    "Hook",
    "Hooks",
    "MergeLayer",
    "NormType",
    "PixelShuffle_ICNR",
    "ResBlock",
    "SelfAttention",
    "dummy_eval",
    "hook_output",
    "hook_outputs",
    "icnr_",
    "model_sizes",
    "num_features_model",
    "simple_cnn",
    "EfficientNetLite",
    "Embedding",
    "Module",
    "ModelSpec",
    "SigmoidRange",
    "UnknownModelError",
    "WeightSource",
    "WeightsNotFoundError",
    "adapt_first_conv",
    "create_model",
    "cut_body",
    "efficientnet_lite0",
    "list_models",
    "load_pretrained",
    "model_spec",
    "num_features",
    "read_state_dict",
    "register_model",
    "replace_classifier",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "sigmoid_range",
    "vgg16_features",
]
