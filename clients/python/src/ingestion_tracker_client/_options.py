"""Reporter settings and the retry backoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ReporterOptions:
    """Timing and buffer settings of a reporter, with times in seconds."""

    flush_interval: float = 0.5
    max_buffer: int = 1000
    close_timeout: float = 10.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    heartbeat_interval: float | None = 20.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval is not None and self.heartbeat_interval <= 0:
            raise ValueError(
                "heartbeat_interval must be above 0 seconds, or None to send no "
                f"heartbeats, got {self.heartbeat_interval}"
            )
        for name in ("flush_interval", "close_timeout"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be 0 or more seconds, got {value}")
        if self.max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, got {self.max_buffer}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError(
                "backoff_initial must be above 0 and at most backoff_max, got "
                f"{self.backoff_initial} and {self.backoff_max}"
            )


class Backoff:
    """Exponential delays with ±20 % jitter, from ``initial`` up to ``maximum``."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._uniform = uniform
        self.failures = 0

    def next_delay(self, at_least: float | None = None) -> float:
        """Count a failure and return the delay before the next try.

        ``at_least`` is a delay that the server requested with ``Retry-After``, which
        lengthens the delay up to ``maximum``.
        """
        base = min(self._maximum, self._initial * 2.0**self.failures)
        self.failures += 1
        delay = min(self._maximum, base * self._uniform(0.8, 1.2))
        if at_least is not None:
            delay = max(delay, min(at_least, self._maximum))
        return delay

    def reset(self) -> None:
        self.failures = 0
