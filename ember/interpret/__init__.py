"""ember.interpret: what a trained model looks at. Attribution maps (saliency, SmoothGrad, integrated
gradients, occlusion), Grad-CAM and Grad-CAM++, heatmaps drawn over their inputs, and the layer lookup
the tools that look inside a network share. Application-agnostic: it needs only the core and
ember.models; an input is drawn by its own block.

>>> heat = gradcam(learn, "cat.jpg", show=True)  # doctest: +SKIP
"""

from ember.interpret.attribution import integrated_gradients, occlusion, saliency, smoothgrad
from ember.interpret.errors import LayerNotFoundError, NoConvLayerError, UnknownTargetError
from ember.interpret.gradcam import GradCAM, GradCAMPlusPlus, gradcam, upsample_heatmap
from ember.interpret.landscape import (
    LossLandscape,
    filter_normalized_direction,
    interpolate_loss,
    loss_landscape,
    plot_loss_landscape,
)
from ember.interpret.layers import conv_layers, find_layer, last_conv, last_feature_layer
from ember.interpret.show import overlay_heatmap, show_heatmap

__all__ = [
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerNotFoundError",
    "LossLandscape",
    "NoConvLayerError",
    "UnknownTargetError",
    "conv_layers",
    "filter_normalized_direction",
    "find_layer",
    "gradcam",
    "integrated_gradients",
    "interpolate_loss",
    "last_conv",
    "last_feature_layer",
    "loss_landscape",
    "occlusion",
    "overlay_heatmap",
    "plot_loss_landscape",
    "saliency",
    "show_heatmap",
    "smoothgrad",
    "upsample_heatmap",
]
