"""What a waiting caller hears next, and when (STD-047, STD-043, STD-046).

While no agent is free the caller hears music, a progress announcement every
``waiting.announcement_interval_s`` and, once the wait reaches
``waiting.callback_offer_s``, the choice "keep waiting / be called back". The
offer is itself an announcement, so the caller is never left longer than one
interval without hearing from us. Pure: the flow asks, sleeps until the answer's
``at`` (or until an agent frees up), then does it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces


class WaitAction(StrEnum):
    ANNOUNCE = "announce"  # progress: sorry for the wait, your position
    OFFER_CALLBACK = "offer_callback"  # 1 keep waiting, 2 be called back


@dataclass(frozen=True)
class WaitState:
    entered_at: float
    last_heard_at: float  # the last announcement (or the moment waiting began)
    offered_at: float | None = None  # the last callback offer
    announcements: int = 0
    offers: int = 0


@dataclass(frozen=True)
class WaitStep:
    action: WaitAction
    at: float


def start_waiting(entered_at: float, now: float) -> WaitState:
    return WaitState(entered_at=entered_at, last_heard_at=now)


@enforces("STD-047",
          policy=("waiting.announcement_interval_s", "waiting.callback_offer_s",
                  "waiting.callbacks_enabled"))
def next_step(state: WaitState, policy: Policy) -> WaitStep:
    """The next thing the caller hears if no agent frees up first."""
    announce_at = state.last_heard_at + policy.waiting.announcement_interval_s
    if policy.waiting.callbacks_enabled:
        since = state.offered_at if state.offered_at is not None else state.entered_at
        offer_at = since + policy.waiting.callback_offer_s
        if offer_at <= announce_at:
            return WaitStep(WaitAction.OFFER_CALLBACK, offer_at)
    return WaitStep(WaitAction.ANNOUNCE, announce_at)


def heard(state: WaitState, step: WaitStep, now: float) -> WaitState:
    """The step was played (it ended at ``now``): the interval restarts from here."""
    if step.action is WaitAction.OFFER_CALLBACK:
        return replace(state, last_heard_at=now, offered_at=now, offers=state.offers + 1)
    return replace(state, last_heard_at=now, announcements=state.announcements + 1)
