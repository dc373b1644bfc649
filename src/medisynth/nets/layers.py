"""Building blocks shared by the networks, generic in ``spatial_dims`` (2 or 3).

>>> import torch
>>> norm = ConditionalBatchNorm(8, num_classes=3)
>>> norm(torch.randn(4, 8, 5, 5), torch.tensor([0, 1, 2, 0])).shape
torch.Size([4, 8, 5, 5])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from medisynth.errors import ConfigError


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def conv_type(spatial_dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    _check_dims(spatial_dims)
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def conv_transpose_type(spatial_dims: int) -> type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    _check_dims(spatial_dims)
    return nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d


def batch_norm_type(spatial_dims: int) -> type[nn.BatchNorm2d] | type[nn.BatchNorm3d]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    _check_dims(spatial_dims)
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module``'s weight in spectral normalisation (Miyato et al. 2018) when enabled."""
    return parametrizations.spectral_norm(module) if enabled else module


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al. 2017).

    With ``num_classes <= 1`` it is a plain affine BatchNorm and ``labels`` is ignored.

    Args:
        num_features: channels.
        num_classes: number of classes (embeddings start at scale 1, shift 0).
        spatial_dims: 2 or 3.
    """

    def __init__(self, num_features: int, num_classes: int = 0, spatial_dims: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        conditional = num_classes > 1
        self.norm = batch_norm_type(spatial_dims)(num_features, affine=not conditional)
        self.scale: nn.Embedding | None = None
        self.shift: nn.Embedding | None = None
        if conditional:
            self.scale = nn.Embedding(num_classes, num_features)
            self.shift = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.scale.weight)
            nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.norm(x)
        if self.scale is None or self.shift is None:
            return out
        if labels is None:
            raise ValueError("this conditional BatchNorm needs class labels")
        view = (labels.shape[0], -1) + (1,) * (x.ndim - 2)
        gamma = self.scale(labels).view(view).to(out.dtype)
        beta = self.shift(labels).view(view).to(out.dtype)
        return out * gamma + beta


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            weight = getattr(layer, "parametrizations", None)
            target = weight.weight.original if weight is not None else layer.weight
            nn.init.normal_(target, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d | nn.BatchNorm3d) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
