"""Reusable network architectures, generic in ``spatial_dims`` where sensible."""

from medisynth.nets.dcgan import DCGANDiscriminator, DCGANGenerator, resolution_ladder
from medisynth.nets.layers import ConditionalBatchNorm

__all__ = ["ConditionalBatchNorm", "DCGANDiscriminator", "DCGANGenerator", "resolution_ladder"]
