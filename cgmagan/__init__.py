"""cgmagan: explain CNN predictions with conditional GANs conditioned on cumulative Grad-CAM averages.

``cgmagan.explain(model, images, gan=...)`` explains a batch inside your own code
(:mod:`cgmagan.explanation`); ``python run.py`` runs the experiments, ``cgmagan-explain`` explains a
folder of images with a finished run.
"""

__version__ = "0.1.0"
__all__ = ["Explanation", "explain"]


def __getattr__(name: str):
    # imported on first use: ``import cgmagan`` (Hydra does it to find the configs) stays light
    if name in __all__:
        from cgmagan import explanation

        return getattr(explanation, name)
    raise AttributeError(f"module 'cgmagan' has no attribute {name!r}")
