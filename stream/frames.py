"""The core's domain events as wire frames: ``frames(event, epoch_of)``.

Each typed event becomes zero or more ``(topic, payload)`` messages for the hub, in
the shapes docs/websocket-protocol.md and docs/agent-protocol.md describe. This is
the only place the core's facts take their wire shape: a new event type is
registered here, or emitting it fails loudly. Monotonic times gain epoch twins
(``epoch_of``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch
from typing import Any

from callflow.agents.changes import (
    AcwExtended,
    AcwFinished,
    AgentAlert,
    AgentChanged,
    AgentDayClosed,
    AgentLoggedIn,
    BusyApproved,
    BusyAwaitingApproval,
    RequestRejected,
    WrapupMissing,
    WrapupOwed,
    WrapupSubmitted,
)
from callflow.agents.state import agent_view
from callflow.engine.calls import CallChanged, TaskRequested
from callflow.engine.effects import Alarm, DomainEvent, Logged, Notice
from callflow.engine.hold import HoldChanged, hold_episode_view
from callflow.engine.outbound import AttemptChanged, OutboundCallEnded, TaskChanged
from callflow.engine.special_calls import ReleaseJudged
from callflow.engine.survey import SurveyAnswered
from callflow.engine.verdicts import CallJudged
from callflow.errors import CallflowError

Frames = list[tuple[str, dict[str, Any]]]
EpochOf = Callable[[float], float]

BOARD = "board"
ALARMS = "alarms"


def agent_topic(agent_id: str) -> str:
    """The topic only that agent's desktop (and the board's supervisors) may see."""
    return f"agent:{agent_id}"


@singledispatch
def frames(event: DomainEvent, epoch_of: EpochOf) -> Frames:
    raise CallflowError(f"no wire frames for {type(event).__name__}")


@frames.register
def _call(event: CallChanged, epoch_of: EpochOf) -> Frames:
    record = event.record
    out: Frames = [(BOARD, {"type": "call", "call": record})]
    if event.to_agent is not None:
        out.append((agent_topic(event.to_agent), {
            "type": "call", "call": {**record, "history": list(event.call.history)}}))
    return out


@frames.register
def _alarm(event: Alarm, epoch_of: EpochOf) -> Frames:
    return [(ALARMS, {"type": "alarm", "kind": event.kind, "std": event.std,
                      "detail": event.detail, "raised_at": event.raised_at})]


@frames.register
def _agent(event: AgentChanged, epoch_of: EpochOf) -> Frames:
    extra: dict[str, Any] = {}
    if event.prev_state is not None:
        extra = {"prev_state": event.prev_state.value, "prev_reason": event.prev_reason}
    payload = agent_view(event.agent, epoch_of, **extra, by=event.by, cause=event.cause)
    return [(agent_topic(event.agent.agent_id), payload), (BOARD, payload)]


@frames.register
def _rejected(event: RequestRejected, epoch_of: EpochOf) -> Frames:
    agent = event.agent
    return [(agent_topic(agent.agent_id), {
        "type": "rejected", "agent_id": agent.agent_id, "event": event.event,
        "reason": event.reason, "detail": event.detail, "state": agent.state.value})]


@frames.register
def _alert(event: AgentAlert, epoch_of: EpochOf) -> Frames:
    return [(agent_topic(event.agent_id), {"type": "alert", "kind": event.kind,
                                           **event.detail})]


@frames.register
def _notice(event: Notice, epoch_of: EpochOf) -> Frames:
    payload: dict[str, Any] = {"type": event.kind}
    if event.std is not None:
        payload["std"] = event.std
    payload.update(event.detail)
    out: Frames = []
    if event.agent_id is not None:
        out.append((agent_topic(event.agent_id), payload))
    if event.to_board:
        out.append((BOARD, payload))
    return out


@frames.register
def _hold(event: HoldChanged, epoch_of: EpochOf) -> Frames:
    return [(BOARD, hold_episode_view(event))]


@frames.register
def _task_changed(event: TaskChanged, epoch_of: EpochOf) -> Frames:
    message = {"type": "task", "change": event.change, "task": dict(event.task)}
    topics = [BOARD] if event.board else []
    return [(topic, message) for topic in [*topics, *map(agent_topic, event.agents)]]


@frames.register
def _attempt(event: AttemptChanged, epoch_of: EpochOf) -> Frames:
    a = event.attempt
    payload = {"type": "task_attempt", "task_id": a.task_id, "attempt_id": a.attempt_id,
               "number": a.number, "agent_id": a.agent_id, "phase": a.phase.value,
               "outcome": a.outcome.value if a.outcome else None, "cause": a.cause}
    return [(agent_topic(a.agent_id), payload), (BOARD, payload)]


@frames.register
def _judged(event: CallJudged, epoch_of: EpochOf) -> Frames:
    """The verdicts of a call, as the board is told (its compliance panel counts them)."""
    return [(BOARD, {"type": "verdicts", "call_id": event.verdicts[0].call_id,
                     "verdicts": [v.as_record() for v in event.verdicts]})]


def _none(event: DomainEvent, epoch_of: EpochOf) -> Frames:
    """Facts for the record only: no client is told."""
    return []


for _quiet in (AgentLoggedIn, BusyAwaitingApproval, BusyApproved, AcwFinished, AcwExtended,
               WrapupOwed, WrapupSubmitted, WrapupMissing, SurveyAnswered,
               AgentDayClosed, Logged, ReleaseJudged, OutboundCallEnded, TaskRequested):
    frames.register(_quiet, _none)
