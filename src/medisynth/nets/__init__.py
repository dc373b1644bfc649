"""Reusable network architectures, generic in ``spatial_dims`` where sensible."""

from medisynth.nets.dcgan import DCGANDiscriminator, DCGANGenerator, resolution_ladder
from medisynth.nets.layers import ConditionalBatchNorm
from medisynth.nets.style import MappingNetwork, StyleDiscriminator, StyleGenerator

__all__ = [
    "ConditionalBatchNorm",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MappingNetwork",
    "StyleDiscriminator",
    "StyleGenerator",
    "resolution_ladder",
]
