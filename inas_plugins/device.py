"""Where networks run and in which numeric mode: one place for the device rules.

``"auto"`` picks CUDA when available, else CPU; asking for CUDA without it is an error, never a
silent fallback. On CUDA the forward pass runs under autocast (bfloat16 where supported, else
float16 with a gradient scaler) on channels_last tensors; on CPU everything is float32. The trainer,
the inference code and the baal wrapper all ask this module, so training and prediction agree.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU. Asking for an unavailable CUDA device is a ValueError."""
    if isinstance(device, torch.device):
        resolved = device
    elif not isinstance(device, str):
        raise ValueError(f"device must be a string or torch.device, got {device!r}; choose one of {DEVICE_CHOICES}")
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"unsupported device {str(resolved)!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(resolved)!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(resolved)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on ``device``: bfloat16 where the GPU supports it, else float16; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> AbstractContextManager:
    """Mixed precision on CUDA, a no-op on CPU."""
    dtype = amp_dtype(device)
    if dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (faster convolutions with tensor cores), the default layout on CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def device_of(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
