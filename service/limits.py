"""Per-token request rate limits: a token bucket per caller, refilled continuously."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from spanqa.errors import ConfigError


class RateLimiter:
    """Allows each key `burst` requests at once and `per_minute` a minute on average; 0 per minute: no limit.

    `take(key)` returns 0 when the request may go ahead, else the whole seconds to wait (Retry-After).
    """

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if isinstance(per_minute, bool) or not isinstance(per_minute, (int, float)) or per_minute < 0:
            raise ConfigError(f"rate limit {per_minute!r} must be a number of requests per minute >= 0 (0: no limit)")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"burst {burst!r} must be a whole number >= 1")
        self.per_second = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, key: str) -> int:
        if not self.enabled:
            return 0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.per_second))
