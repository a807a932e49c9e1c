"""GAN networks: one small module per network."""

from cgmagan.archs.discriminator_arch import PatchDiscriminator
from cgmagan.archs.gsft_arch import GSFTGenerator
from cgmagan.archs.lsft_arch import LSFTGenerator

__all__ = ["GSFTGenerator", "LSFTGenerator", "PatchDiscriminator"]
