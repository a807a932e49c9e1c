"""Grad-CAM at many layers and the CGMAs built from them."""

from cgmagan.cam.cgma import cgma, cgma_positions, cgma_settings
from cgmagan.cam.gradcam import (
    conv_layers,
    is_zero_map,
    multilayer_gradcam,
    normalize_maps,
    penultimate_position,
    select_layers,
)

__all__ = [
    "cgma",
    "cgma_positions",
    "cgma_settings",
    "conv_layers",
    "is_zero_map",
    "multilayer_gradcam",
    "normalize_maps",
    "penultimate_position",
    "select_layers",
]
