"""Where the models run: the device a setting names, and the dtype half precision gives."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu; cuda without a GPU is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available "
                         f"(use 'auto' or 'cpu')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {device!r}")
    return device


def check_half(half: bool, device: torch.device) -> torch.dtype:
    """The models' dtype: float16 when ``half`` (CUDA only: CPUs gain nothing from it and
    some of their kernels lack float16), else float32."""
    if not half:
        return torch.float32
    if device.type != "cuda":
        raise ValueError(f"half precision needs a CUDA device, not {device.type!r} "
                         f"(set half_precision false)")
    return torch.float16
