"""Turning the user's device setting (auto|cpu|cuda|cuda:N) into a concrete torch device string."""

from __future__ import annotations

import re

from spanqa.errors import ConfigError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(device: str) -> str:
    """Validate a device setting without touching torch; returns it unchanged."""
    if not isinstance(device, str) or _DEVICE_PATTERN.match(device) is None:
        raise ConfigError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda:0' when torch sees a GPU, else 'cpu'; asking for CUDA without one is an error."""
    import torch

    check_device(device)
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU: use 'auto' or 'cpu'")
        index = 0 if device == "cuda" else int(device.split(":")[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} asked for, but torch sees only {torch.cuda.device_count()} GPU(s)"
            )
        return f"cuda:{index}"
    return "cpu"

