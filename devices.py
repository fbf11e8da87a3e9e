"""Turning the user's device setting (auto|cpu|cuda|cuda:N) into a concrete torch device string."""

from __future__ import annotations

from spanqa.errors import ConfigError
from spanqa.settings import DeviceSettings


def check_device(device: str) -> str:
    """`device` unchanged when it is a device setting (`DeviceSettings.device`'s check, without torch),
    else a ConfigError saying what it takes."""
    return DeviceSettings(device=device).device


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda:0' when torch sees a GPU, else 'cpu'; asking for CUDA without one is an error."""
    import torch  # here: checking a device setting must not load torch

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

