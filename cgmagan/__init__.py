"""cgmagan: explain CNN predictions with conditional GANs conditioned on cumulative Grad-CAM averages.

``cgmagan.explain(model, images, gan=...)`` explains a batch inside your own code
(:mod:`cgmagan.explanation`); ``python run.py`` runs the experiments, ``cgmagan-explain`` explains a
folder of images with a finished run.
"""

__version__ = "0.1.0"
__all__ = ["Explanation", "explain", "load_classifier", "load_gan"]
_WHERE = {"Explanation": "cgmagan.explanation", "explain": "cgmagan.explanation",
          "load_classifier": "cgmagan.models.classifier_module", "load_gan": "cgmagan.stages.gan"}  # fmt: skip


def __getattr__(name: str):
    # imported on first use: ``import cgmagan`` (Hydra does it to find the configs) stays light
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'cgmagan' has no attribute {name!r}")
