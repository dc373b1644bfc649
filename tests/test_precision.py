"""Inference precision: auto follows the hardware, unknown names are refused."""

from __future__ import annotations

import pytest
import torch

from medisynth.errors import ConfigError
from medisynth.precision import (
    cpu_has_native_bf16,
    precision_context,
    resolve_inference_precision,
)


def test_auto_is_bf16_exactly_where_the_cpu_has_it() -> None:
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_inference_precision("auto") == expected
    assert resolve_inference_precision("auto", "cuda") == "bf16"


def test_bf16_context_autocasts_convolutions_channels_last() -> None:
    autocast, channels_last = precision_context("bf16")
    conv = torch.nn.Conv2d(1, 2, 3)
    with torch.inference_mode(), autocast():
        out = conv(torch.rand(1, 1, 8, 8))
    assert channels_last and out.dtype == torch.bfloat16
    autocast, channels_last = precision_context("fp32")
    with torch.inference_mode(), autocast():
        assert conv(torch.rand(1, 1, 8, 8)).dtype == torch.float32
    assert not channels_last


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fp8"):
        resolve_inference_precision("fp8")
