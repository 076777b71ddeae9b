"""The core's domain events as the store's records: ``rows(event, epoch_of)``.

Each typed event the core emits (``callflow.engine.effects.DomainEvent``) becomes
zero or more ``(kind, data)`` records for the writer (``store/records.py`` writes
each kind; kinds without a table of their own go to the event log). This is the one
place that knows both shapes: a new event type is registered here, or emitting it
fails loudly. Monotonic times become epoch seconds (``epoch_of``).
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
from callflow.engine.calls import CallChanged, TaskRequested
from callflow.engine.effects import Alarm, DomainEvent, Logged, Notice
from callflow.engine.hold import HoldChanged, hold_record
from callflow.engine.outbound import AttemptChanged, OutboundCallEnded, TaskChanged
from callflow.engine.special_calls import ReleaseJudged
from callflow.engine.survey import SurveyAnswered
from callflow.engine.verdicts import CallJudged
from callflow.errors import CallflowError

Rows = list[tuple[str, dict[str, Any]]]
EpochOf = Callable[[float], float]

#: Event-log kind of a call that owes the wrap-up form (STD-092); a restart reads it back.
WRAPUP_OWED_RECORD = "wrapup_owed"
#: Record kind of one post-call survey question's answer (STD-120).
SURVEY_RECORD = "survey_answer"
#: Record kind of a call whose ACW ended without its wrap-up form (issue 18): flags the call.
WRAPUP_MISSING_RECORD = "wrapup_missing"
#: Event-log kinds a restart reads back (store/agent_log.py): a busy awaiting a
#: supervisor's approval (STD-106), and its approval.
BUSY_PENDING_RECORD = "busy_pending"
BUSY_APPROVED_RECORD = "busy_approved"


@singledispatch
def rows(event: DomainEvent, epoch_of: EpochOf) -> Rows:
    raise CallflowError(f"no store records for {type(event).__name__}")


@rows.register
def _call(event: CallChanged, epoch_of: EpochOf) -> Rows:
    return [("call", event.record)]


@rows.register
def _task(event: TaskRequested, epoch_of: EpochOf) -> Rows:
    return [("task", event.as_task())]


@rows.register
def _alarm(event: Alarm, epoch_of: EpochOf) -> Rows:
    return [("alarm", alarm_record(event))]


def alarm_record(event: Alarm) -> dict[str, Any]:
    """The alarm as stored and as the board is told (the runtime stamped ``raised_at``)."""
    return {"kind": event.kind, "std": event.std, "detail": event.detail,
            "raised_at": event.raised_at}


@rows.register
def _agent(event: AgentChanged, epoch_of: EpochOf) -> Rows:
    if not event.entered:
        return []
    agent = event.agent
    return [("agent_state", {
        "agent_id": agent.agent_id, "state": agent.state.value, "reason": agent.reason or None,
        "call_uniqueid": agent.call_id or None, "acw_extended": agent.acw_extended,
        "by": event.by, "cause": event.cause or None, "at": epoch_of(agent.since)})]


@rows.register
def _login(event: AgentLoggedIn, epoch_of: EpochOf) -> Rows:
    return [("agent_login", {"agent_id": event.agent_id, "extension": event.extension,
                             "by": event.by, "at": epoch_of(event.at)})]


@rows.register
def _pending(event: BusyAwaitingApproval, epoch_of: EpochOf) -> Rows:
    return [(BUSY_PENDING_RECORD, {"agent_id": event.agent_id, "reason": event.reason,
                                   "at": epoch_of(event.at)})]


@rows.register
def _approved(event: BusyApproved, epoch_of: EpochOf) -> Rows:
    return [(BUSY_APPROVED_RECORD, {"agent_id": event.agent_id, "reason": event.reason,
                                    "at": epoch_of(event.at)})]


@rows.register
def _acw(event: AcwFinished, epoch_of: EpochOf) -> Rows:
    return [("acw", {"agent_id": event.agent_id, "call_uniqueid": event.call_id or None,
                     "seconds": event.seconds, "ended_by": event.ended_by,
                     "overrun": event.overrun, "extended": event.extended,
                     "at": epoch_of(event.at)})]


@rows.register
def _wrapup(event: WrapupSubmitted, epoch_of: EpochOf) -> Rows:
    return [("wrapup", {"agent_id": event.agent_id, "call_uniqueid": event.call_id,
                        "disposition": event.disposition, "notes": event.notes,
                        "by": event.by, "at": epoch_of(event.at)})]


@rows.register
def _wrapup_missing(event: WrapupMissing, epoch_of: EpochOf) -> Rows:
    return [(WRAPUP_MISSING_RECORD, {"agent_id": event.agent_id,
                                     "call_uniqueid": event.call_id,
                                     "at": epoch_of(event.at)})]


@rows.register
def _survey(event: SurveyAnswered, epoch_of: EpochOf) -> Rows:
    return [(SURVEY_RECORD, event.as_record())]  # ``at`` is already epoch seconds


@rows.register
def _wrapup_owed(event: WrapupOwed, epoch_of: EpochOf) -> Rows:
    return [(WRAPUP_OWED_RECORD, {"agent_id": event.agent_id, "call_uniqueid": event.call_id,
                                  "flag_only": event.flag_only, "at": epoch_of(event.at)})]


@rows.register
def _acw_extended(event: AcwExtended, epoch_of: EpochOf) -> Rows:
    return [("acw_extended", {"agent_id": event.agent_id,
                              "call_uniqueid": event.call_id or None, "seconds": event.seconds,
                              "deadline_monotonic": event.deadline, "at": epoch_of(event.at)})]


@rows.register
def _day(event: AgentDayClosed, epoch_of: EpochOf) -> Rows:
    return [("agent_day", {"agent_id": event.agent_id, "totals": dict(event.totals),
                           "calls_handled": event.calls_handled,
                           "ring_no_answer_count": event.ring_no_answer_count,
                           "acw_overruns": event.acw_overruns, "at": epoch_of(event.at)})]


@rows.register
def _logged(event: Logged, epoch_of: EpochOf) -> Rows:
    return [(event.kind, {"call_uniqueid": event.call_id, "at": event.at, **event.detail})]


@rows.register
def _hold(event: HoldChanged, epoch_of: EpochOf) -> Rows:
    return [("hold", hold_record(event))]


@rows.register
def _release(event: ReleaseJudged, epoch_of: EpochOf) -> Rows:
    return [("call_release", event.as_record())]


@rows.register
def _judged(event: CallJudged, epoch_of: EpochOf) -> Rows:
    return [("verdict", v.as_record()) for v in event.verdicts]


@rows.register
def _outbound_call(event: OutboundCallEnded, epoch_of: EpochOf) -> Rows:
    return [("call", dict(event.record))]


def _none(event: DomainEvent, epoch_of: EpochOf) -> Rows:
    """Facts for the live view only: the store has them already, or needs none."""
    return []


for _live_only in (AgentAlert, RequestRejected, Notice, TaskChanged, AttemptChanged):
    rows.register(_live_only, _none)
