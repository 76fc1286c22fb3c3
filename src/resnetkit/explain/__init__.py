"""Seeing what a network sees: Grad-CAM maps (more explanations build on this package)."""

from .gradcam import class_activation_maps, grad_cam

__all__ = ["class_activation_maps", "grad_cam"]
