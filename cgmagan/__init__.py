"""cgmagan: explain CNN predictions with conditional GANs conditioned on cumulative Grad-CAM averages."""

__version__ = "0.1.0"
