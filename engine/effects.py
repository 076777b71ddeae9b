"""Effects: what the pure core asks the edges to do, as plain data.

State machines return ``(new_state, [Effect, ...])`` and never touch a socket, the
database or the loop. The runtime (``callflow.runtime.core``) executes each effect
through an adapter. Keeping them plain frozen dataclasses makes every rule testable
by comparing lists, and lets a replay of the event log reproduce any state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Effect:
    """Base class, so type hints can say ``list[Effect]``."""


@dataclass(frozen=True)
class StartTimer(Effect):
    """Fire ``TimerFired(key)`` at monotonic time ``at``; replaces a timer with that key."""

    key: str
    at: float


@dataclass(frozen=True)
class CancelTimer(Effect):
    key: str


@dataclass(frozen=True)
class Publish(Effect):
    """Push to websocket subscribers of ``topic`` (e.g. ``agent:1001``, ``board``)."""

    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Persist(Effect):
    """Write a record to the store; ``kind`` names the table/repository method."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Alarm(Effect):
    """A broken standard or a fault supervisors must see (STD-147)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    std: str = ""


@dataclass(frozen=True)
class AmiAction(Effect):
    """Send an AMI action (Originate, Redirect, Hangup, QueuePause, ...)."""

    action: str
    fields: dict[str, str] = field(default_factory=dict)
