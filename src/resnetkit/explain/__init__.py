"""Seeing what a network sees: Grad-CAM maps, overlay pictures and pages."""

from .gradcam import class_activation_maps, grad_cam
from .images import ExplainError, explain_images
from .render import heat_overlay

__all__ = ["ExplainError", "class_activation_maps", "explain_images", "grad_cam", "heat_overlay"]
