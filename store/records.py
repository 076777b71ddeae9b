"""Persist effects -> repository calls: one function per record kind the core emits.

The core speaks in plain dicts with ISO or epoch times; the store wants typed
columns. This is the one place that knows both shapes, so a new record kind is one
new function here and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from callflow.agents.roster import Roster
from callflow.store import agent_rows, call_rows, campaigns, repo
from callflow.store import tickets as ticket_rows
from callflow.store import verdicts as verdict_rows
from callflow.store.db import Store
from callflow.store.models import RELEASED_BY, SurveyAnswer
from callflow.store.prepared import Executor
from callflow.store.rows import SURVEY_RECORD, WRAPUP_MISSING_RECORD

log = logging.getLogger(__name__)

CALL_COLUMNS = ("direction", "caller_number", "did", "queue", "agent_id", "entered_at",
                "routed_at", "menu", "ring_started_at", "answered_at", "ended_at",
                "answer_ring", "total_wait_s",
                "late", "outcome", "hangup_cause", "released_by", "greeting", "ending",
                "transfer_count", "incomplete_reason")
TIME_COLUMNS = frozenset({"entered_at", "routed_at", "ring_started_at", "answered_at",
                          "ended_at"})


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


def write_call(s: Executor, data: dict[str, Any]) -> None:
    """The call's row and its offers, with prepared Core statements (store/call_rows.py:
    the record the engine writes most)."""
    fields = {k: (_time(data[k]) if k in TIME_COLUMNS else data[k])
              for k in CALL_COLUMNS if k in data}
    if fields.get("released_by") not in (None, *RELEASED_BY):
        fields["released_by"] = None  # unknown (the link was down when it ended)
    call_id = call_rows.upsert_call(s, data["uniqueid"], fields)
    call_rows.write_offers(s, call_id, [
        {**offer, "started_at": _time(offer.get("started_at")),
         "ended_at": _time(offer.get("ended_at")), "left_at": _time(offer.get("left_at"))}
        for offer in data.get("offers", ())])


def write_agent_state(s: Executor, data: dict[str, Any]) -> None:
    at = _time(data["at"])
    assert at is not None
    agent_rows.record_agent_state(s, data["agent_id"], data["state"], at,
                                  reason=data.get("reason"),
                                  call_uniqueid=data.get("call_uniqueid"),
                                  acw_extended=bool(data.get("acw_extended")))


def write_alarm(s: Session, data: dict[str, Any]) -> None:
    at = _time(data.get("raised_at") or data.get("at"))
    assert at is not None
    repo.raise_alarm(s, data["kind"], at, std=data.get("std", ""), detail=data.get("detail", {}))


def write_task(s: Session, data: dict[str, Any]) -> None:
    """Callback tasks from the call flow (STD-047 callback, STD-055 missed, STD-069 dropped,
    STD-072 named agent); one open task per number and kind (STD-090)."""
    due = _time(data["due_at"])
    assert due is not None
    task, created = repo.add_task(s, data["kind"], data["number"], due,
                                  owner_agent_id=data.get("owner_agent_id"),
                                  note=data.get("note", ""),
                                  created_from_uniqueid=data.get("created_from_uniqueid"))
    if not created:
        log.info("task for %s (%s) already open as #%d", data["number"], data["kind"], task.id)


def write_hold(s: Session, data: dict[str, Any]) -> None:
    """A hold episode (engine/hold.py): opened, then finished; the call keeps its totals
    (STD-040, STD-041). Episodes are matched by their order in the call."""
    started = _time(data["started_at"])
    ended = _time(data.get("ended_at"))
    assert started is not None
    uniqueid = data["call_uniqueid"]
    existing = repo.holds_for_call(s, uniqueid)
    index = int(data["episode"]) - 1
    if index >= len(existing):
        hold = repo.add_hold(s, uniqueid, started, agent_id=data.get("agent_id"))
    else:
        hold = existing[index]
    if ended is not None and hold.ended_at is None:
        repo.finish_hold(s, hold.id, ended)
    call_rows.upsert_call(s, uniqueid, {"hold_count": data["hold_count"],
                                        "hold_total_s": data["hold_total_s"]})


def write_call_release(s: Executor, data: dict[str, Any]) -> None:
    """Who released first and whether that was allowed (STD-110..112, C-6); a special-call
    ending also sets the outcome (silent, noisy_line, nuisance, wrong_number, ...)."""
    fields: dict[str, Any] = {k: data[k] for k in ("release_compliant", "release_procedure")
                              if k in data}
    if data.get("closing_at") is not None:
        fields["closing_at"] = _time(data["closing_at"])
    if data.get("outcome"):
        fields["outcome"] = data["outcome"]
    if data.get("released_by") in ("caller", "agent", "system"):
        fields["released_by"] = data["released_by"]
    call_rows.upsert_call(s, data["uniqueid"], fields)


#: Call outcomes that come from a special-call script (STD-056..067): QA listens to them.
SPECIAL_OUTCOMES = frozenset({"silent", "quiet_line", "noisy_line", "nuisance", "harassing",
                              "wrong_number"})


def recording_flags(s: Session, uniqueid: str, *, hold_limit_s: float | None,
                    hold_scope: str = "episode") -> tuple[list[str], Any]:
    """Why QA should listen to this call, from what the store already knows of it:
    late answer (STD-009), a hold beyond the limit (STD-040, C-5 scope), an agent-first
    release that was not allowed (STD-110), a special-call ending (STD-056..067), a
    transfer. Runs in the writer thread, after the call's own records (same queue)."""
    call = repo.get_call(s, uniqueid)
    if call is None:
        return [], None
    flags = []
    if call.late:
        flags.append("late_answer")
    if hold_limit_s is not None and call.hold_count:
        holds = [h.hold_s or 0.0 for h in repo.holds_for_call(s, uniqueid)]
        longest = sum(holds) if hold_scope == "call" else max(holds, default=0.0)
        if longest > hold_limit_s:
            flags.append("hold_breach")
    if call.release_compliant is False:
        flags.append("release_violation")
    if call.outcome in SPECIAL_OUTCOMES:
        flags.append("special_call")
    if call.transfer_count:
        flags.append("transfer")
    return flags, call


def write_recording(s: Session, data: dict[str, Any]) -> None:
    """A finished recording (recordings/feature.py): its row, its flags, calls.recording_path
    (STD-114: retrievable by contact and by caller number)."""
    uniqueid = data["call_uniqueid"]
    flags, call = recording_flags(s, uniqueid, hold_limit_s=data.get("hold_limit_s"),
                                  hold_scope=data.get("hold_scope", "episode"))
    flags = sorted({*flags, *data.get("flags", ())})
    agent_id = data.get("agent_id") or (call.agent_id if call is not None else None)
    number = data.get("number") or (call.caller_number if call is not None else "") or ""
    started = _time(data["started_at"])
    assert started is not None
    rec = repo.add_recording(s, uniqueid, direction=data.get("direction", "inbound"),
                             agent_id=agent_id, number=number, path=data["path"],
                             started_at=started, ended_at=_time(data.get("ended_at")),
                             duration_s=float(data.get("duration_s", 0.0)),
                             bytes=int(data.get("bytes", 0)), flags=flags)
    # issue 19: a ticket opened from this call (during it) links its recording now
    ticket_rows.link_recording(s, uniqueid, rec.id)


#: The record kind that marks a call as served by the dialplan's fallback queue.
FALLBACK_SERVED_RECORD = "call_fallback_served"


def write_fallback_served(s: Executor, data: dict[str, Any]) -> None:
    """The fallback queue routed this call while the engine was away (issue 14)."""
    call_rows.upsert_call(s, data["uniqueid"], {"fallback_served": True})


def write_wrapup(s: Executor, data: dict[str, Any]) -> None:
    """The agent's wrap-up form of one call (STD-092), tied to its task attempt."""
    at = _time(data["at"])
    assert at is not None
    campaigns.add_wrapup(s, data["call_uniqueid"], data["agent_id"], data["disposition"],
                         notes=data.get("notes", ""), by=data.get("by", ""), at=at)
    # the call's outcome for the customer: the problem-resolution rate reads it (the
    # latest form of the call stands; a call the store does not have gets no row here)
    repo.set_call_disposition(s, data["call_uniqueid"], data["disposition"])


def write_wrapup_missing(s: Executor, data: dict[str, Any]) -> None:
    """The call's ACW ended without its form (issue 18): the flag on the call row, and the
    fact in the event log (who, when) like every agent fact."""
    repo.set_call_wrapup_missing(s, data["call_uniqueid"])
    at = _time(data.get("at")) or datetime.now(UTC)
    repo.append_event(s, WRAPUP_MISSING_RECORD, at, {k: v for k, v in data.items() if k != "at"},
                      uniqueid=data["call_uniqueid"])


def write_survey_answer(s: Session, data: dict[str, Any]) -> None:
    """One survey question of a call (STD-120): a score 1-5 or no response."""
    at = _time(data["at"])
    assert at is not None
    s.add(SurveyAnswer(call_uniqueid=data["call_uniqueid"], agent_id=data["agent_id"],
                       queue=data.get("queue", ""), question=data["question"],
                       score=data.get("score"), how=data["how"], at=at))


#: The kinds whose writers run prepared statements only (store/prepared.py), on a
#: Session or a bare Connection: a batch of only these (and of event-log kinds) is
#: written without a Session (store/applied.py; issue 20: most of a call's records).
PREPARED_WRITERS: dict[str, Callable[[Executor, dict[str, Any]], None]] = {
    verdict_rows.VERDICT_RECORD: verdict_rows.write_verdict,
    "wrapup": write_wrapup,
    WRAPUP_MISSING_RECORD: write_wrapup_missing,
    FALLBACK_SERVED_RECORD: write_fallback_served,
    "call_release": write_call_release,
    "call": write_call,
    "agent_state": write_agent_state,
}
#: The kinds whose writers need the ORM (a Session).
ORM_WRITERS: dict[str, Callable[[Session, dict[str, Any]], None]] = {
    SURVEY_RECORD: write_survey_answer,
    "recording": write_recording,
    "hold": write_hold,
    "task": write_task,
    "alarm": write_alarm,
}
WRITERS: dict[str, Callable[[Session, dict[str, Any]], None]] = {
    **PREPARED_WRITERS, **ORM_WRITERS}


def is_prepared(kind: str) -> bool:
    """Is this kind written by prepared statements only (``apply_prepared`` takes it)?"""
    return kind in PREPARED_WRITERS or kind not in ORM_WRITERS


def apply(s: Session, kind: str, data: dict[str, Any]) -> None:
    """Write one record in the session's transaction; kinds without a table of their own
    go to the event log."""
    writer = WRITERS.get(kind)
    if writer is not None:
        writer(s, data)
    else:
        write_event(s, kind, data)


def apply_prepared(s: Executor, kind: str, data: dict[str, Any]) -> None:
    """``apply`` for a kind ``is_prepared`` accepts, on a Connection as well."""
    writer = PREPARED_WRITERS.get(kind)
    if writer is not None:
        writer(s, data)
    elif kind in ORM_WRITERS:
        raise ValueError(f"a {kind} record needs a Session")
    else:
        write_event(s, kind, data)


def write_event(s: Executor, kind: str, data: dict[str, Any]) -> None:
    """A record without a table of its own: the event log."""
    at = _time(data.get("at")) or datetime.now(UTC)
    payload = {k: v for k, v in data.items() if k != "at"}
    repo.append_event(s, kind, at, payload, uniqueid=data.get("call_uniqueid"))


def write(store: Store, kind: str, data: dict[str, Any]) -> None:
    """Write one record in a transaction of its own (tests, tools; the service's writer
    goes through the journal: store/applied.py ``apply_batch``)."""
    with store.session() as s:
        apply(s, kind, data)


def sync_roster(store: Store, roster: Roster) -> None:
    """The agents table follows the roster (records reference agents by work number)."""
    with store.session() as s:
        for agent in roster.agents:
            repo.upsert_agent(s, agent.agent_id, name=agent.name, extension=agent.endpoint,
                              **({"team": agent.team} if agent.team is not None else {}))
