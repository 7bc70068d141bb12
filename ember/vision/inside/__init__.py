"""Seeing inside a vision network: image kernels, a model's filters and feature maps, activation
maximisation (the image a class or a channel likes best), and a microscope page to browse them all.

>>> fig = show_kernel_effect("cat.jpg", "top_edge")  # doctest: +SKIP
>>> fig = show_conv_filters(learn)  # doctest: +SKIP
>>> fig = show_feature_maps(learn, "cat.jpg", layer=[0, -1])  # doctest: +SKIP
>>> img = visualize_class(learn, "cat")  # doctest: +SKIP
>>> microscope_page(learn, "microscope.html")  # doctest: +SKIP
"""

from ember.vision.inside.classvis import (
    Regularise,
    class_probs,
    show_class_visualizations,
    visualize_channel,
    visualize_channels,
    visualize_class,
    visualize_classes,
)
from ember.vision.inside.features import feature_maps, show_conv_filters, show_feature_maps
from ember.vision.inside.kernels import KERNELS, apply_kernel, as_kernel, show_kernel_effect
from ember.vision.inside.microscope import (
    TopImages,
    channel_counts,
    default_layers,
    microscope_page,
    top_images,
)

__all__ = [
    "KERNELS",
    "Regularise",
    "TopImages",
    "apply_kernel",
    "as_kernel",
    "channel_counts",
    "class_probs",
    "default_layers",
    "feature_maps",
    "microscope_page",
    "show_class_visualizations",
    "show_conv_filters",
    "show_feature_maps",
    "show_kernel_effect",
    "top_images",
    "visualize_channel",
    "visualize_channels",
    "visualize_class",
    "visualize_classes",
]
