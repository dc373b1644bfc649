"""Style-based generator and residual discriminator (StyleGAN2, StyleGAN2-ADA), in plain PyTorch.

The generator is StyleGAN2's (Karras et al. 2020): a mapping network turns a latent ``z`` (and
a class label) into a style vector ``w``; a synthesis network grows a learned 4x4 constant to
the output size with *modulated* 3x3 convolutions (the style scales the weights per image, then
demodulation brings each output channel back to unit variance), adds per-pixel noise, and sums
the upsampled outputs of a 1x1 "to image" layer at every resolution (the "skip" architecture).
The discriminator is StyleGAN2's residual one, with a minibatch standard-deviation feature and
class conditioning by projection (as :class:`medisynth.nets.dcgan.DCGANDiscriminator`).

Everything is ordinary PyTorch, on CPU and GPU alike (no custom CUDA operators): up- and
down-sampling are bilinear interpolation and 2x2 average pooling instead of StyleGAN2's FIR
filters, and the per-image convolutions run as one grouped convolution. Every weight uses the
equalised learning rate (stored N(0, 1), scaled by ``gain / sqrt(fan_in)`` when used).

Sizes: the networks work at powers of two from 8 to 256 pixels; any other size from 5 to 256
is padded to the next power of two (28 -> 32) and cropped back (:func:`synthesis_resolution`,
:func:`pad_to_size`, :func:`crop_to_size`): the generator synthesises 32x32 and returns the
central 28x28, the discriminator pads its 28x28 input (edge values repeated) to 32x32. Outputs
are not squashed (no ``tanh``): they are near [-1, 1] and clipped where images are written.

>>> import torch
>>> g = StyleGenerator(z_dim=8, w_dim=8, num_classes=2, resolution=28, channel_base=64,
...                    channel_max=8)
>>> d = StyleDiscriminator(resolution=28, num_classes=2, channel_base=64, channel_max=8)
>>> labels = torch.tensor([0, 1, 1])
>>> images = g(torch.randn(3, 8), labels)
>>> images.shape, d(images, labels).shape
(torch.Size([3, 1, 28, 28]), torch.Size([3]))
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import ConfigError

NoiseMode = Literal["random", "const", "none"]
NOISE_MODES: tuple[str, ...] = ("random", "const", "none")
MIN_RESOLUTION = 8
MAX_RESOLUTION = 256
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' scale through a leaky ReLU
SKIP_GAIN = math.sqrt(0.5)  # residual + skip, each scaled so their sum keeps unit variance


# --------------------------------------------------------------------------------------- sizes
def synthesis_resolution(size: int) -> int:
    """The power of two (8..256) the networks work at for images of ``size`` pixels per side.

    >>> synthesis_resolution(28), synthesis_resolution(32), synthesis_resolution(5)
    (32, 32, 8)
    """
    if not MIN_RESOLUTION // 2 < size <= MAX_RESOLUTION:
        raise ConfigError(
            f"image size {size} is not supported by the style networks: use 5 to 256 pixels "
            "(8, 16, ..., 256 as they are; other sizes are padded to the next power of two, "
            "e.g. 28 -> 32); set data.image_size to resize"
        )
    return max(MIN_RESOLUTION, 1 << (size - 1).bit_length())


def _margins(size: int, target: int) -> tuple[int, int]:
    before = (target - size) // 2
    return before, target - size - before


def pad_to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad the last two axes of ``x`` to ``size`` pixels, the image centred, edge values repeated
    (no artificial border appears in the padding). :func:`crop_to_size` undoes it exactly.

    >>> import torch
    >>> x = torch.arange(4.0).view(1, 1, 2, 2)
    >>> pad_to_size(x, 3)[0, 0]
    tensor([[0., 1., 1.],
            [2., 3., 3.],
            [2., 3., 3.]])
    """
    (top, bottom), (left, right) = _margins(x.shape[-2], size), _margins(x.shape[-1], size)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} images to the smaller size {size}")
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), mode="replicate")


def crop_to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` pixels of ``x`` (the inverse of :func:`pad_to_size`)."""
    (top, _), (left, _) = _margins(size, x.shape[-2]), _margins(size, x.shape[-1])
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} images to the larger size {size}")
    return x[..., top : top + size, left : left + size]


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature channels at a resolution: ``channel_base / resolution``, at most ``channel_max``
    and at least 1 (StyleGAN2's rule: wide at low resolution, narrow at high resolution)."""
    return max(1, min(channel_base // resolution, channel_max))


def _check_power_of_two(resolution: int) -> None:
    if resolution not in [2**i for i in range(3, 9)]:
        raise ConfigError(
            f"resolution {resolution} is not a power of two from {MIN_RESOLUTION} to "
            f"{MAX_RESOLUTION}; use StyleGenerator / StyleDiscriminator for other sizes"
        )


# ------------------------------------------------------------------------------ basic layers
def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that the mean of its squares along ``dim`` is 1.

    >>> import torch
    >>> normalize_2nd_moment(torch.tensor([[3.0, 4.0]])).square().mean().item()
    1.0
    """
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def leaky_relu(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times ``sqrt(2) * gain``."""
    return F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)


class EqualLinear(nn.Module):
    """Fully connected layer with an equalised learning rate.

    The weight is stored N(0, 1) / ``lr_multiplier`` and used times ``lr_multiplier /
    sqrt(in_features)``, so every layer learns at the same pace whatever its fan-in (and the
    mapping network ``lr_multiplier`` times slower).

    Args:
        in_features: input length.
        out_features: output length.
        bias: add a learned bias.
        lr_multiplier: learning-rate multiplier of this layer.
        bias_init: initial bias (1 for the style affines: styles start at 1).
        activation: ``"linear"`` or ``"lrelu"``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        activation: Literal["linear", "lrelu"] = "linear",
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        x = F.linear(x, weight, bias)
        return leaky_relu(x) if self.activation == "lrelu" else x


class EqualConv2d(nn.Module):
    """2D convolution with an equalised learning rate, ``same`` padding, optionally halving the
    size first (2x2 average pooling), output times ``gain`` (after the activation).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        bias: add a learned bias.
        activation: ``"linear"`` or ``"lrelu"``.
        down: halve the height and width before the convolution.
        gain: output scale (``sqrt(0.5)`` for the two branches of a residual block).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: Literal["linear", "lrelu"] = "linear",
        down: bool = False,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.gain = gain
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2)
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = None if self.bias is None else self.bias.to(x.dtype)
        x = F.conv2d(x, weight, bias, padding=self.padding)
        if self.activation == "lrelu":
            return leaky_relu(x, self.gain)
        return x * self.gain if self.gain != 1.0 else x


# ------------------------------------------------------------------------ modulated convolution
def fused_modconv_default(x: torch.Tensor) -> bool:
    """Whether :func:`modulated_conv2d` folds the styles into the weights (``fused``) for ``x``.

    Off on the CPU: there one convolution with the shared weight on style-scaled inputs is
    several times faster than a grouped convolution with a weight per image (measured: see
    docs/results.md, "Style family: CPU step time"). On accelerators the grouped form is kept.
    """
    return x.device.type != "cpu"


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: image ``n`` convolved with ``weight * styles[n]``.

    Image ``n``'s weight is ``weight * styles[n]`` (each input channel scaled by its style);
    with ``demodulate`` every output filter is then divided by its L2 norm, so unit-variance
    inputs give unit-variance outputs. Two equivalent ways to compute it (StyleGAN2's
    ``fused_modconv``):

    - ``fused=True``: one weight per image, the batch folded into the channels and convolved
      with ``groups=N`` (one call whatever the batch size);
    - ``fused=False``: the *inputs* are scaled by the styles, convolved with the shared weight,
      and the outputs multiplied by the demodulation coefficients (computed from
      ``styles^2 @ sum_k weight^2``, without building the per-image weights): much faster on a
      CPU.

    Args:
        x: ``(N, C_in, H, W)`` input.
        weight: ``(C_out, C_in, k, k)`` shared weight.
        styles: ``(N, C_in)`` per-image input-channel scales.
        demodulate: normalise every output filter of every image.
        padding: zero padding of the convolution.
        eps: added to the squared norm before the division.
        fused: the grouped form (``True``), the input-scaling form (``False``), or ``None``:
            :func:`fused_modconv_default` (unfused on the CPU).

    >>> import torch
    >>> out = modulated_conv2d(torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3), torch.ones(2, 3),
    ...                        padding=1)
    >>> out.shape
    torch.Size([2, 4, 5, 5])
    """
    n, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if weight.shape[1] != in_channels or tuple(styles.shape) != (n, in_channels):
        raise ValueError(
            f"modulated_conv2d: input {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
            f"{tuple(styles.shape)} do not fit ((N, C_in, H, W), (C_out, C_in, k, k), (N, C_in))"
        )
    if x.dtype == torch.float16 and demodulate:  # pre-scale so float16 products do not overflow
        weight = (
            weight
            * (1.0 / math.sqrt(in_channels * kh * kw))
            / weight.abs().amax(dim=(1, 2, 3), keepdim=True)
        )
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    if fused is None:
        fused = fused_modconv_default(x)
    if not fused:
        out = F.conv2d(
            x * styles.to(x.dtype).reshape(n, in_channels, 1, 1),
            weight.to(x.dtype),
            padding=padding,
        )
        if demodulate:
            # ||weight * styles[n]||^2 per output filter = styles[n]^2 . sum_k weight^2: (N, C_out)
            norms = styles.float().square() @ weight.float().square().sum(dim=(2, 3)).t()
            out = out * (norms + eps).rsqrt().to(out.dtype).reshape(n, out_channels, 1, 1)
        return out
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_channels, 1, 1)  # (N, C_out, C_in, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + eps).rsqrt()
    out = F.conv2d(
        x.reshape(1, n * in_channels, height, width),
        w.reshape(n * out_channels, in_channels, kh, kw).to(x.dtype),
        padding=padding,
        groups=n,
    )
    return out.reshape(n, out_channels, *out.shape[2:])


# ----------------------------------------------------------------------------------- mapping
class MappingNetwork(nn.Module):
    """Latent ``z`` (and class label) -> style vector ``w``, with the running mean of ``w``.

    ``z`` is normalised to unit second moment; a class-conditional network (``num_classes >
    1``) concatenates a learned, normalised class embedding. Then ``layers`` fully connected
    layers with leaky ReLU, learning ``lr_multiplier`` times slower than the rest.

    While training, the buffer ``w_avg`` (one row per class, or one row) follows the mean ``w``
    of each class seen in a batch (``w_avg = beta * w_avg + (1 - beta) * batch mean``), for the
    truncation trick (:meth:`truncate`).

    Args:
        z_dim: latent length.
        w_dim: style length (also the class embedding's).
        num_classes: ``> 1`` for a class-conditional network.
        layers: fully connected layers (StyleGAN2 uses 8; 2 suits small data sets, as
            StyleGAN2-ADA's automatic configuration).
        lr_multiplier: learning-rate multiplier of the layers.
        w_avg_beta: decay of the running mean of ``w``.

    >>> import torch
    >>> mapping = MappingNetwork(z_dim=4, w_dim=6, num_classes=3, layers=2)
    >>> mapping(torch.randn(5, 4), torch.tensor([0, 1, 2, 2, 0])).shape, mapping.w_avg.shape
    (torch.Size([5, 6]), torch.Size([3, 6]))
    """

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_classes: int = 0,
        layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"the mapping network needs at least 1 layer, got {layers}")
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_classes = num_classes
        self.w_avg_beta = w_avg_beta
        conditional = num_classes > 1
        self.embed = EqualLinear(num_classes, w_dim) if conditional else None
        features = [z_dim + (w_dim if conditional else 0)] + [w_dim] * layers
        self.net = nn.Sequential(
            *(
                EqualLinear(a, b, activation="lrelu", lr_multiplier=lr_multiplier)
                for a, b in zip(features[:-1], features[1:], strict=True)
            )
        )
        self.register_buffer("w_avg", torch.zeros(num_classes if conditional else 1, w_dim))

    def _rows(self, labels: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
        if self.embed is None:
            return torch.zeros(n, dtype=torch.long, device=device)
        if labels is None:
            raise ValueError("this class-conditional mapping network needs class labels")
        return labels

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, update_w_avg: bool = True
    ) -> torch.Tensor:
        """``(N, w_dim)`` styles; in training mode (and ``update_w_avg``) ``w_avg`` moves too."""
        x = normalize_2nd_moment(z.float())
        rows = self._rows(labels, z.shape[0], z.device)
        if self.embed is not None:
            one_hot = F.one_hot(rows, self.num_classes).to(x.dtype)
            x = torch.cat([x, normalize_2nd_moment(self.embed(one_hot))], dim=1)
        w = self.net(x)
        if self.training and update_w_avg:
            self._update_w_avg(w.detach(), rows)
        return w

    @torch.no_grad()
    def _update_w_avg(self, w: torch.Tensor, rows: torch.Tensor) -> None:
        sums = torch.zeros_like(self.w_avg).index_add_(0, rows, w.to(self.w_avg.dtype))
        counts = torch.bincount(rows, minlength=self.w_avg.shape[0]).unsqueeze(1)
        means = sums / counts.clamp(min=1).to(sums.dtype)
        moved = means.lerp(self.w_avg, self.w_avg_beta)  # beta * w_avg + (1 - beta) * mean
        self.w_avg.copy_(torch.where(counts > 0, moved, self.w_avg))

    def truncate(
        self, w: torch.Tensor, psi: float, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The truncation trick: ``w_avg[label] + psi * (w - w_avg[label])``; ``w`` is
        ``(N, w_dim)`` or ``(N, num_ws, w_dim)``. ``psi < 1`` trades diversity for typicality;
        ``psi = 0`` gives the class's mean style."""
        avg = self.w_avg[self._rows(labels, w.shape[0], w.device)].to(w.dtype)
        if w.ndim == 3:
            avg = avg.unsqueeze(1)
        return avg.lerp(w, psi)


# --------------------------------------------------------------------------------- synthesis
class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + per-pixel noise (learned strength) + bias + leaky ReLU,
    optionally doubling the size first (bilinear interpolation).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        w_dim: style length.
        resolution: output size (for the fixed noise map).
        up: double the height and width before the convolution.
        use_noise: add noise (off: a deterministic generator).
    """

    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "random",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        styles = self.affine(w)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = modulated_conv2d(x, self.weight, styles, padding=1)
        if self.use_noise and noise_mode == "random":
            shape = (x.shape[0], 1, x.shape[2], x.shape[3])
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1))


class ToImage(nn.Module):
    """Features -> image channels: a 1x1 modulated convolution without demodulation + bias."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        out = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return out + self.bias.to(out.dtype).view(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (the learned 4x4 constant | an upsampling
    layer), a layer, and the image output added to the upsampled image of the block before.

    It takes ``num_conv + 1`` styles: one per layer, and one for its image output (shared with
    the next block's first layer, as in StyleGAN2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.const: nn.Parameter | None = None
        self.conv0: SynthesisLayer | None = None
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, True, use_noise
            )
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, False, use_noise)
        self.to_image = ToImage(out_channels, img_channels, w_dim)
        self.num_conv = 1 if self.conv0 is None else 2

    def forward(
        self,
        x: torch.Tensor | None,
        image: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "random",
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.conv0 is None:
            assert self.const is not None
            x = self.const.to(ws.dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            index = 0
        else:
            assert x is not None
            x = self.conv0(x, ws[:, 0], noise_mode, generator)
            index = 1
        x = self.conv1(x, ws[:, index], noise_mode, generator)
        out = self.to_image(x, ws[:, index + 1])
        if image is not None:
            out = out + F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
        return x, out


class SynthesisNetwork(nn.Module):
    """Styles ``(N, num_ws, w_dim)`` -> images ``(N, img_channels, resolution, resolution)``.

    From a learned 4x4 constant, one :class:`SynthesisBlock` per doubling up to ``resolution``
    (a power of two, 8..256); the image is the sum of every block's output, upsampled
    (StyleGAN2's "skip" generator). Channels per resolution: :func:`channels_at`.

    Args:
        w_dim: style length.
        resolution: output size, a power of two from 8 to 256.
        img_channels: 1 (grey) or 3.
        channel_base: channels at resolution r are ``channel_base // r`` ...
        channel_max: ... at most this many.
        use_noise: per-pixel noise inputs.
    """

    def __init__(
        self,
        w_dim: int,
        resolution: int,
        img_channels: int = 1,
        channel_base: int = 1024,
        channel_max: int = 128,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        _check_power_of_two(resolution)
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        blocks: list[SynthesisBlock] = []
        in_channels, res = 0, 4
        while res <= resolution:
            out_channels = channels_at(res, channel_base, channel_max)
            blocks.append(
                SynthesisBlock(in_channels, out_channels, w_dim, res, img_channels, use_noise)
            )
            in_channels, res = out_channels, res * 2
        self.blocks = nn.ModuleList(blocks)
        self.block_convs = [block.num_conv for block in blocks]
        self.num_ws = sum(self.block_convs) + 1

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "random",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"the synthesis network takes styles (N, {self.num_ws}, {self.w_dim}), "
                f"got {tuple(ws.shape)}"
            )
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"unknown noise mode {noise_mode!r}; known: {', '.join(NOISE_MODES)}")
        x: torch.Tensor | None = None
        image: torch.Tensor | None = None
        start = 0
        for block, convs in zip(self.blocks, self.block_convs, strict=True):
            x, image = block(x, image, ws[:, start : start + convs + 1], noise_mode, generator)
            start += convs
        assert image is not None
        return image


class StyleGenerator(nn.Module):
    """Latent ``z`` (and class label) -> image: mapping network + synthesis network.

    Sizes that are not a power of two are synthesised at the next one and cropped to the
    centre (28 -> 32 -> 28; see :func:`synthesis_resolution`).

    Args:
        z_dim: latent length.
        w_dim: style length.
        num_classes: ``> 1`` for a class-conditional generator (through the mapping network).
        resolution: output pixels per side (5..256).
        img_channels: 1 (grey) or 3.
        mapping_layers: layers of the mapping network.
        channel_base: synthesis channels at resolution r are ``channel_base // r`` ...
        channel_max: ... at most this many (the defaults are small, for a CPU).
        mapping_lr_multiplier: learning-rate multiplier of the mapping network.
        use_noise: per-pixel noise inputs.
    """

    def __init__(
        self,
        z_dim: int = 128,
        w_dim: int = 128,
        num_classes: int = 0,
        resolution: int = 32,
        img_channels: int = 1,
        mapping_layers: int = 2,
        channel_base: int = 1024,
        channel_max: int = 128,
        mapping_lr_multiplier: float = 0.01,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.resolution = resolution
        self.img_channels = img_channels
        self.mapping = MappingNetwork(
            z_dim, w_dim, num_classes, layers=mapping_layers, lr_multiplier=mapping_lr_multiplier
        )
        self.synthesis = SynthesisNetwork(
            w_dim,
            synthesis_resolution(resolution),
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            use_noise=use_noise,
        )
        self.num_ws = self.synthesis.num_ws

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "random",
        mix_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images ``(N, img_channels, resolution, resolution)``.

        Args:
            z: ``(N, z_dim)`` latents.
            labels: ``(N,)`` class indices (class-conditional generators only).
            truncation_psi: ``< 1`` pulls every style towards its class's mean style.
            noise_mode: ``"random"`` fresh noise, ``"const"`` the fixed noise maps (a
                deterministic generator), ``"none"`` no noise.
            mix_prob: probability of style mixing (a regulariser while training): the styles
                of a second latent replace the first one's from a random layer on, batch-wide.
            generator: random source for the noise and the mixing draws (on ``z``'s device).
        """
        w = self.mapping(z, labels)
        if truncation_psi != 1.0:
            w = self.mapping.truncate(w, truncation_psi, labels)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if mix_prob > 0.0 and self.num_ws > 1:
            device = z.device if generator is None else generator.device
            draw = torch.rand((), generator=generator, device=device)
            if float(draw) < mix_prob:
                cutoff = int(torch.randint(1, self.num_ws, (), generator=generator, device=device))
                z2 = torch.randn(z.shape, generator=generator, device=device).to(z)
                w2 = self.mapping(z2, labels, update_w_avg=False)
                if truncation_psi != 1.0:
                    w2 = self.mapping.truncate(w2, truncation_psi, labels)
                tail = w2.unsqueeze(1).expand(-1, self.num_ws - cutoff, -1)
                ws = torch.cat([ws[:, :cutoff], tail.to(ws.dtype)], dim=1)
        images = self.synthesis(ws, noise_mode, generator)
        return crop_to_size(images, self.resolution)


# ----------------------------------------------------------------------------- discriminator
class MinibatchStd(nn.Module):
    """Append the standard deviation across a group of images as extra feature maps.

    Images are split into groups of ``group_size`` (image ``i`` in group ``i mod (N / G)``);
    for each group the per-feature standard deviation over its images, averaged over the
    features and positions, becomes ``num_channels`` constant maps for each of its images.
    A batch not divisible by ``group_size`` (or smaller) forms one group: the whole batch.
    This lets the discriminator see a generator that makes too-similar images.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.group_size if n % self.group_size == 0 else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (N / G, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convolutions (the second halving the size) plus a 1x1
    downsampling skip, each branch scaled by ``1/sqrt(2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(
            in_channels, out_channels, 3, activation="lrelu", down=True, gain=SKIP_GAIN
        )
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True, gain=SKIP_GAIN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv1(self.conv0(x))


class StyleDiscriminator(nn.Module):
    """Image (and class label) -> one realness logit per image (StyleGAN2's residual D).

    A 1x1 convolution from the image, residual blocks halving the size down to 4x4, the
    minibatch standard deviation, a 3x3 convolution, a fully connected layer to features ``h``;
    the logit is ``out(h) + <embed(label), h> / sqrt(len(h))`` (projection conditioning).
    Inputs that are not a power of two are padded (:func:`pad_to_size`).

    Args:
        resolution: input pixels per side (5..256).
        img_channels: 1 or 3.
        num_classes: ``> 1`` for a projection discriminator.
        channel_base: channels at resolution r are ``channel_base // r`` ...
        channel_max: ... at most this many.
        mbstd_group_size: images per minibatch standard-deviation group.
        mbstd_channels: feature maps the minibatch standard deviation adds.
    """

    def __init__(
        self,
        resolution: int = 32,
        img_channels: int = 1,
        num_classes: int = 0,
        channel_base: int = 1024,
        channel_max: int = 128,
        mbstd_group_size: int = 4,
        mbstd_channels: int = 1,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.num_classes = num_classes
        self.padded = synthesis_resolution(resolution)

        def width(res: int) -> int:
            return channels_at(res, channel_base, channel_max)

        self.from_image = EqualConv2d(img_channels, width(self.padded), 1, activation="lrelu")
        blocks: list[nn.Module] = []
        res = self.padded
        while res > 4:
            blocks.append(DiscriminatorBlock(width(res), width(res // 2)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        features = width(4)
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_channels)
        self.conv = EqualConv2d(features + mbstd_channels, features, 3, activation="lrelu")
        self.fc = EqualLinear(features * 16, features, activation="lrelu")
        self.out = EqualLinear(features, 1)
        self.embed = EqualLinear(num_classes, features, bias=False) if num_classes > 1 else None
        self.projection_gain = 1.0 / math.sqrt(features)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        if size == (self.resolution, self.resolution):
            x = pad_to_size(x, self.padded)
        elif size != (self.padded, self.padded):
            raise ValueError(
                f"this discriminator takes {self.resolution}x{self.resolution} images, "
                f"got {size[0]}x{size[1]}"
            )
        h = self.blocks(self.from_image(x))
        h = self.conv(self.mbstd(h))
        h = self.fc(h.flatten(1))
        score = self.out(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this projection discriminator needs class labels")
            one_hot = F.one_hot(labels, self.num_classes).to(h.dtype)
            score = score + (self.embed(one_hot) * h).sum(dim=1) * self.projection_gain
        return score
