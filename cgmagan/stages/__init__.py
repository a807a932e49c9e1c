"""The pipeline's stages: classifier, cgma, gan, evaluate."""
