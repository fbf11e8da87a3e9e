"""The checks a setting's value passes: each takes (name, value) and returns the value, or raises a
ConfigError naming both and what the setting takes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from spanqa.errors import ConfigError


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: object) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a whole number >= 1")
    return value


def at_least(minimum: int, why: str) -> Callable[[str, Any], int]:
    """A whole number >= `minimum`; `why` says what needs that much, for the message."""

    def check_at_least(name: str, value: object) -> int:
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"{name}={value!r} must be a whole number >= {minimum} ({why})")
        return value

    return check_at_least


def non_negative_int(name: str, value: object) -> int:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name}={value!r} must be a whole number >= 0")
    return value


def positive_number(name: str, value: object) -> float:
    if not _is_number(value) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a number > 0")
    return value


def non_negative_number(name: str, value: object) -> float:
    if not _is_number(value) or not value >= 0:
        raise ConfigError(f"{name}={value!r} must be a number >= 0")
    return value


def share(name: str, value: object) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value!r} must be a number from 0 to 1")
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")
    return value


def text(name: str, value: object) -> str:
    if not isinstance(value, str) or value.strip() == "":
        raise ConfigError(f"{name}={value!r} must be a non-empty string")
    return value


def optional(check: Callable[[str, Any], Any], hint: str = "None") -> Callable[[str, Any], Any]:
    """`check`, or None allowed (`hint` says what None means, for the message)."""

    def check_optional(name: str, value: object) -> Any:
        if value is None:
            return None
        try:
            return check(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc}, or {hint}") from None

    return check_optional


def one_of(*choices: object) -> Callable[[str, Any], Any]:
    def check_choice(name: str, value: object) -> Any:
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(repr(c) for c in choices)}")
        return value

    return check_choice


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device(name: str, value: object) -> str:
    """A device setting, checked without torch: auto, cpu, cuda or cuda:N."""
    if not isinstance(value, str) or DEVICE_PATTERN.match(value) is None:
        raise ConfigError(f"{name}={value!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return value


AUTO_THRESHOLD = "auto"


def threshold(name: str, value: object) -> float | str | None:
    """An answer score threshold: a number from 0 to 1, "auto" (the index's answer calibration's) or None."""
    if value is None or value == AUTO_THRESHOLD:
        return value
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{name}={value!r} must be a number from 0 to 1, 'auto' (the answer calibration's threshold), "
            "or None to keep every answer"
        )
    return value
