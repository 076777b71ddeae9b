"""The only source of time for the core.

Every rule that counts seconds (rings, holds, ACW) reads ``now()`` from a Clock,
so unit tests drive the same code with a FakeClock that a test advances by hand.
``now()`` is monotonic seconds (never jumps back); ``wall()`` is UTC wall time for
records and calendars (holidays, contact hours).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; differences are durations."""
        ...

    def wall(self) -> datetime:
        """Timezone-aware UTC wall time."""
        ...


def epoch_of(clock: Clock, monotonic: float) -> float:
    """Epoch seconds of a monotonic instant: the machines keep monotonic time only;
    records and clients need wall time."""
    return clock.wall().timestamp() - (clock.now() - monotonic)


class RealClock:
    """Production clock: the OS monotonic clock plus UTC wall time."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._wall0 = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._mono0 = monotonic
        self._mono = monotonic

    def now(self) -> float:
        return self._mono

    def wall(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._mono - self._mono0)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._mono += seconds
