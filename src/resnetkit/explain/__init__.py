"""Seeing what a network sees: Grad-CAM maps, overlay pictures and pages."""

from .features import StageChannels, features_figure, strongest_channels
from .gradcam import class_activation_maps, grad_cam
from .images import ExplainError, explain_features, explain_images
from .render import heat_overlay

__all__ = [
    "ExplainError",
    "StageChannels",
    "class_activation_maps",
    "explain_features",
    "explain_images",
    "features_figure",
    "grad_cam",
    "heat_overlay",
    "strongest_channels",
]
