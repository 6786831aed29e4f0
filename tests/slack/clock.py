"""The fake Slack's clock: epoch seconds that tests can advance or speed up.

Everything time-dependent in the fake (rate-limit windows, trigger_id and response_url expiry,
message ``ts`` values) reads this clock, never the wall clock, so a test can jump a minute ahead
with ``advance(60)`` instead of sleeping. What the bot sees over HTTP (latency, its own
``asyncio.timeout`` deadlines) and Bolt's signature check (``time.time()``) stay on real time.
"""

from __future__ import annotations

import time

#: Where a fresh clock starts: a fixed epoch, so message ``ts`` values look like
#: ``"1700000000.000123"`` and differ only by what the test did.
DEFAULT_START = 1_700_000_000.0


class FakeClock:
    """``now()`` = start + real elapsed time x ``speed`` + everything ``advance``-d.

    ``speed=1`` (default) follows real time, ``speed=60`` makes a real second a fake minute,
    ``speed=0`` freezes the clock so that only ``advance`` moves it (fully deterministic).
    Changing ``speed`` never makes ``now()`` jump.
    """

    def __init__(self, *, start: float = DEFAULT_START, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self._base = start
        self._real_base = time.monotonic()
        self._speed = speed

    def now(self) -> float:
        """Fake epoch seconds."""
        return self._base + (time.monotonic() - self._real_base) * self._speed

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never backwards: Slack's clock does not run backwards)."""
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative amount ({seconds} s)")
        self._base += seconds

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"speed must be >= 0, got {value}")
        self._base = self.now()
        self._real_base = time.monotonic()
        self._speed = value
