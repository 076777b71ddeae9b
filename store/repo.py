"""Repository functions: the only writes and reads the runtime makes.

Every function takes an open ``Session`` first, so several of them can share one
transaction; ``Store.run(fn, ...)`` is the one-call form. They never commit (the
session's owner does) and take every business instant as an argument: the Clock
is the only source of time (design.md). Objects returned stay readable after
the session closes (``expire_on_commit=False``); they carry no lazy relationships.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Table,
    bindparam,
    exists,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from callflow.engine.rules import enforces
from callflow.errors import StateError, StoreError

from .models import (
    Agent,
    AgentCurrent,
    AgentState,
    Alarm,
    AuditEntry,
    Call,
    CallbackTask,
    CallEvent,
    CallHold,
    CallOffer,
    DoNotCall,
    LoginSession,
    QaReview,
    Recording,
    SurveyAnswer,
    TaskAttempt,
    User,
    Wrapup,
    utcnow,
)
from .prepared import Executor, Prepared

logger = logging.getLogger(__name__)

#: Columns ``upsert_call`` may set; the key and bookkeeping columns are the store's.
CALL_FIELDS = frozenset(c.key for c in Call.__table__.columns) - {
    "id", "uniqueid", "created_at", "updated_at"}
AGENT_FIELDS = frozenset(c.key for c in Agent.__table__.columns) - {
    "agent_id", "created_at", "updated_at"}


def _check_fields(what: str, fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise StoreError(f"unknown {what} field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(allowed))}")


def _upsert(s: Session, model: Any, key: str, values: dict[str, Any]) -> Any:
    """Update the row whose ``key`` is ``values[key]`` with the other values, or insert it.

    UPDATE first, so a partial update of an existing row never trips the NOT NULL
    checks an INSERT makes; then INSERT ... ON CONFLICT DO NOTHING in a savepoint.
    If another writer created the row in between (PostgreSQL; SQLite writers are
    serialised), the UPDATE is simply run again.
    """
    column = getattr(model, key)
    options = {"populate_existing": True}
    changes = {k: v for k, v in values.items() if k != key}
    update_row = update(model).where(column == values[key]).values(**changes).returning(model)
    row = s.scalars(update_row, execution_options=options).one_or_none()
    if row is not None:
        return row
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    insert_row = (insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
                  .returning(model))
    try:
        with s.begin_nested():
            row = s.scalars(insert_row, execution_options=options).one_or_none()
    except IntegrityError:
        row = s.scalars(update_row, execution_options=options).one_or_none()
        if row is None:
            raise
        return row
    if row is None:
        row = s.scalars(update_row, execution_options=options).one()
    return row


_CALLS: Table = cast(Table, Call.__table__)


def _call_id(uniqueid: str) -> ScalarSelect[int]:
    return select(Call.id).where(Call.uniqueid == uniqueid).scalar_subquery()


def _required_call_id(s: Session, uniqueid: str) -> int:
    call_id = s.scalar(select(Call.id).where(Call.uniqueid == uniqueid))
    if call_id is None:
        raise StoreError(f"no call with uniqueid {uniqueid!r}: upsert_call it first")
    return call_id


def _get(s: Session, model: Any, key: Any, what: str) -> Any:
    row = s.get(model, key, populate_existing=True)
    if row is None:
        raise StateError("not_found", f"{what} {key!r}")
    return row


# --- agents ------------------------------------------------------------------------


def upsert_agent(s: Session, agent_id: str, **fields: Any) -> Agent:
    """Create or update an agent by work number; only the given fields change."""
    _check_fields("agent", fields, AGENT_FIELDS)
    values = {"agent_id": agent_id, **fields, "updated_at": utcnow()}
    agent: Agent = _upsert(s, Agent, "agent_id", values)
    return agent


def list_agents(s: Session, *, active_only: bool = True) -> list[Agent]:
    query = select(Agent).order_by(Agent.agent_id)
    if active_only:
        query = query.where(Agent.active.is_(True))
    return list(s.scalars(query))


# --- calls -------------------------------------------------------------------------


def upsert_call(s: Session, uniqueid: str, **fields: Any) -> Call:
    """Create the call (``direction`` is then required) or change only the given fields.

    The runtime calls this at each time point of a call (t_in, answer, end); the
    unique uniqueid makes two writers racing on a new call end with one row.
    """
    _check_fields("call", fields, CALL_FIELDS)
    values = {"uniqueid": uniqueid, **fields, "updated_at": utcnow()}
    call: Call = _upsert(s, Call, "uniqueid", values)
    return call


# the writer's flags on a call row, prepared once (store/prepared.py; issue 20)
_SET_DISPOSITION = Prepared(update(_CALLS).where(_CALLS.c.uniqueid == bindparam("k_uniqueid"))
                            .values(disposition=bindparam("v_disposition"),
                                    updated_at=bindparam("v_updated_at")))
_SET_WRAPUP_MISSING = Prepared(update(_CALLS).where(_CALLS.c.uniqueid == bindparam("k_uniqueid"))
                               .values(wrapup_missing=bindparam("v_wrapup_missing"),
                                       updated_at=bindparam("v_updated_at")))


def set_call_disposition(s: Executor, uniqueid: str, disposition: str) -> None:
    """The wrap-up form's disposition on the call row (problem-resolution rate); a call the
    store does not know (an outbound attempt's own row may come later) is left alone."""
    _SET_DISPOSITION.execute(s, {"k_uniqueid": uniqueid, "v_disposition": disposition,
                                 "v_updated_at": utcnow()})


def set_call_wrapup_missing(s: Executor, uniqueid: str) -> None:
    """Flag the call whose ACW ended without the wrap-up form (issue 18); a call the store
    does not know (an outbound attempt's id) is left alone, the event log has the fact."""
    _SET_WRAPUP_MISSING.execute(s, {"k_uniqueid": uniqueid, "v_wrapup_missing": True,
                                    "v_updated_at": utcnow()})


def survey_answers(s: Session, *, call_uniqueid: str | None = None,
                   since: datetime | None = None,
                   until: datetime | None = None) -> list[SurveyAnswer]:
    """Survey answers of one call, or of a period (KPIs, reports), oldest first."""
    query = select(SurveyAnswer)
    if call_uniqueid is not None:
        query = query.where(SurveyAnswer.call_uniqueid == call_uniqueid)
    if since is not None:
        query = query.where(SurveyAnswer.at >= since)
    if until is not None:
        query = query.where(SurveyAnswer.at < until)
    return list(s.scalars(query.order_by(SurveyAnswer.id)))


def call_aftercare(s: Session, uniqueid: str) -> dict[str, Any]:
    """What came after one call (issue 18): its wrap-up forms, whether its ACW ended without
    one (``wrapup_missing``), and its survey answers; for the call record API and QA."""
    call = get_call(s, uniqueid)
    forms = s.scalars(select(Wrapup).where(Wrapup.call_uniqueid == uniqueid)
                      .order_by(Wrapup.id))
    return {
        "uniqueid": uniqueid, "known": call is not None,
        "disposition": call.disposition if call is not None else None,
        "wrapup_missing": bool(call.wrapup_missing) if call is not None else False,
        "wrapups": [{"agent_id": w.agent_id, "disposition": w.disposition, "notes": w.notes,
                     "by": w.submitted_by, "at": w.submitted_at.isoformat()} for w in forms],
        "survey": [{"agent_id": a.agent_id, "queue": a.queue, "question": a.question,
                    "score": a.score, "how": a.how, "at": a.at.isoformat()}
                   for a in survey_answers(s, call_uniqueid=uniqueid)],
    }


def get_call(s: Session, uniqueid: str) -> Call | None:
    """The call as the database has it now: the writer changes call rows with Core
    statements (store/call_rows.py), which an object already in the session would not see."""
    return s.scalar(select(Call).where(Call.uniqueid == uniqueid),
                    execution_options={"populate_existing": True})


def open_calls(s: Session, *, direction: str = "inbound") -> list[Call]:
    """Calls with no end yet, oldest first: after an engine restart or an AMI outage,
    each is checked against Asterisk (callflow/recovery.py)."""
    query = (select(Call).where(Call.ended_at.is_(None), Call.direction == direction)
             .order_by(Call.entered_at, Call.id))
    return list(s.scalars(query))


@enforces("STD-004", "STD-073", policy=("routing.repeat_caller_lookback_days",))
def calls_from_number(s: Session, number: str, *, since: datetime, limit: int = 20) -> list[Call]:
    """Earlier contacts of a caller, newest first (STD-073 repeat callers, STD-114)."""
    query = (select(Call).where(Call.caller_number == number, Call.entered_at >= since)
             .order_by(Call.entered_at.desc(), Call.id.desc()).limit(limit))
    return list(s.scalars(query))


_RECENT_CONTACTS = (select(_CALLS.c.uniqueid, _CALLS.c.entered_at, _CALLS.c.outcome,
                           _CALLS.c.agent_id)
                    .where(_CALLS.c.caller_number == bindparam("number"),
                           _CALLS.c.entered_at >= bindparam("since"))
                    .order_by(_CALLS.c.entered_at.desc(), _CALLS.c.id.desc())
                    .limit(bindparam("limit")))


@enforces("STD-004", "STD-073", policy=("routing.repeat_caller_lookback_days",))
def recent_contacts(s: Session, number: str, *, since: datetime, limit: int) -> list[Any]:
    """``calls_from_number`` reduced to what the flow shows the agent (STD-073): asked for
    every inbound call, so one prepared statement and four columns (issue 20)."""
    return list(s.connection().execute(_RECENT_CONTACTS, {"number": number, "since": since,
                                                          "limit": limit}))


def add_offer(s: Session, uniqueid: str, agent_id: str, started_at: datetime, *,
              ended_at: datetime | None = None, result: str | None = None) -> CallOffer:
    """Record an offer of a call to an agent (STD-008); may be written finished at once."""
    offer = CallOffer(call_id=_required_call_id(s, uniqueid), agent_id=agent_id,
                      started_at=started_at)
    s.add(offer)
    if ended_at is not None or result is not None:
        _finish(offer, ended_at, result)
    s.flush()
    return offer


def finish_offer(s: Session, offer_id: int, ended_at: datetime, result: str) -> CallOffer:
    offer: CallOffer = _get(s, CallOffer, offer_id, "offer")
    _finish(offer, ended_at, result)
    s.flush()
    return offer


def retime_offer(s: Session, offer: CallOffer, started_at: datetime) -> None:
    """The offer's ringing began at ``started_at`` (Asterisk's stamp of the agent leg,
    which replaces the flow's own time taken just before its Dial)."""
    offer.started_at = started_at
    if offer.ended_at is not None:
        offer.ring_s = (offer.ended_at - started_at).total_seconds()
    s.flush()


def leave_offer(s: Session, offer: CallOffer, left_at: datetime) -> None:
    """An answered offer's agent left the call (hang-up, transfer): their part ends."""
    if offer.left_at is None:
        offer.left_at = left_at
        s.flush()


def _finish(offer: CallOffer, ended_at: datetime | None, result: str | None) -> None:
    if ended_at is None or result is None:
        raise StoreError("a finished offer needs both ended_at and result")
    offer.ended_at = ended_at
    offer.result = result
    offer.ring_s = (ended_at - offer.started_at).total_seconds()


def offers_for_call(s: Session, uniqueid: str) -> list[CallOffer]:
    query = (select(CallOffer).join(Call, Call.id == CallOffer.call_id)
             .where(Call.uniqueid == uniqueid).order_by(CallOffer.started_at, CallOffer.id))
    return list(s.scalars(query))


def add_hold(s: Session, uniqueid: str, started_at: datetime, *,
             agent_id: str | None = None) -> CallHold:
    """Open a hold episode (STD-040/STD-041); ``finish_hold`` stores its length."""
    hold = CallHold(call_id=_required_call_id(s, uniqueid), agent_id=agent_id,
                    started_at=started_at)
    s.add(hold)
    s.flush()
    return hold


def finish_hold(s: Session, hold_id: int, ended_at: datetime) -> CallHold:
    hold: CallHold = _get(s, CallHold, hold_id, "hold")
    hold.ended_at = ended_at
    hold.hold_s = (ended_at - hold.started_at).total_seconds()
    s.flush()
    return hold


def holds_for_call(s: Session, uniqueid: str) -> list[CallHold]:
    query = (select(CallHold).join(Call, Call.id == CallHold.call_id)
             .where(Call.uniqueid == uniqueid).order_by(CallHold.started_at, CallHold.id))
    return list(s.scalars(query))


# --- event log ---------------------------------------------------------------------


_EVENTS: Table = cast(Table, CallEvent.__table__)
_ADD_EVENT = Prepared(_EVENTS.insert().values(
    kind=bindparam("v_kind"), at=bindparam("v_at"), payload=bindparam("v_payload"),
    uniqueid=bindparam("v_uniqueid"),
    call_id=select(_CALLS.c.id)
    .where(_CALLS.c.uniqueid == bindparam("v_uniqueid")).scalar_subquery())
    .returning(_EVENTS.c.id))


def append_event(s: Executor, kind: str, at: datetime, payload: dict[str, Any] | None = None,
                 *, uniqueid: str | None = None) -> int:
    """Append to the replayable log, linked to the call row if it already exists; the
    event's id.

    One prepared insert on the DBAPI cursor (store/prepared.py; issue 20: the writer
    appends a couple a call; the ORM's flush-and-refresh of each was a large part of the
    writer's time)."""
    row = _ADD_EVENT.one(s, {"v_kind": kind, "v_at": at, "v_payload": payload or {},
                             "v_uniqueid": uniqueid})
    return int(row[0])


def read_events(s: Session, *, uniqueid: str | None = None, after_id: int = 0,
                limit: int = 1000) -> list[CallEvent]:
    """Events in the order they were appended, for replay; page with ``after_id``."""
    query = select(CallEvent).where(CallEvent.id > after_id).order_by(CallEvent.id).limit(limit)
    if uniqueid is not None:
        query = query.where(CallEvent.uniqueid == uniqueid)
    return list(s.scalars(query))


def latest_event(s: Session, kind: str) -> CallEvent | None:
    """The last event of ``kind`` appended to the log (a checkpoint, for instance)."""
    return s.scalar(select(CallEvent).where(CallEvent.kind == kind)
                    .order_by(CallEvent.id.desc()).limit(1))


# --- agent states ------------------------------------------------------------------


def record_agent_state(s: Session, agent_id: str, state: str, at: datetime, *,
                       reason: str | None = None, call_uniqueid: str | None = None,
                       acw_extended: bool = False) -> AgentState:
    """Close the agent's open state row at ``at``, open the new one, update the snapshot.

    One transaction for all three, so after a crash the log and the snapshot agree.
    """
    open_row = s.scalar(select(AgentState).where(
        AgentState.agent_id == agent_id, AgentState.ended_at.is_(None)))
    if open_row is not None:
        if at < open_row.started_at:
            raise StoreError(f"agent {agent_id}: state at {at.isoformat()} is before the "
                             f"current one started ({open_row.started_at.isoformat()})")
        open_row.ended_at = at
        s.flush()
    row = AgentState(agent_id=agent_id, state=state, reason=reason, started_at=at,
                     call_uniqueid=call_uniqueid)
    s.add(row)
    s.flush()
    save_agent_snapshot(s, agent_id, state, at, reason=reason, call_uniqueid=call_uniqueid,
                        acw_extended=acw_extended, updated_at=at)
    return row


def agent_state_log(s: Session, agent_id: str, *, since: datetime) -> list[AgentState]:
    """State rows overlapping ``[since, now)``, oldest first (busy/ACW/online time reports)."""
    query = (select(AgentState)
             .where(AgentState.agent_id == agent_id,
                    (AgentState.ended_at.is_(None)) | (AgentState.ended_at > since))
             .order_by(AgentState.started_at, AgentState.id))
    return list(s.scalars(query))


def save_agent_snapshot(s: Session, agent_id: str, state: str, since: datetime, *,
                        reason: str | None = None, call_uniqueid: str | None = None,
                        acw_extended: bool = False,
                        updated_at: datetime | None = None) -> AgentCurrent:
    """Write the agent's state now, so an engine restart resumes it."""
    values = {"agent_id": agent_id, "state": state, "since": since, "reason": reason,
              "call_uniqueid": call_uniqueid, "acw_extended": acw_extended,
              "updated_at": updated_at or utcnow()}
    snapshot: AgentCurrent = _upsert(s, AgentCurrent, "agent_id", values)
    return snapshot


def load_agent_snapshots(s: Session) -> list[AgentCurrent]:
    return list(s.scalars(select(AgentCurrent).order_by(AgentCurrent.agent_id)))


# --- callback and follow-up tasks -------------------------------------------------


def add_task(s: Session, kind: str, number: str, due_at: datetime, *,
             owner_agent_id: str | None = None, max_attempts: int = 3,
             deadline_at: datetime | None = None, note: str = "",
             created_from_uniqueid: str | None = None) -> tuple[CallbackTask, bool]:
    """Create a task, or return the open one for the same number and kind (created=False).

    The existing task is returned unchanged: the first request's owner and due
    time stand (STD-090: one number is not dialled over and over). The partial
    unique index decides, so two engines racing still end with one task.
    """
    existing = _open_task(s, number, kind)
    if existing is not None:
        return existing, False
    task = CallbackTask(
        kind=kind, number=number, due_at=due_at, owner_agent_id=owner_agent_id,
        max_attempts=max_attempts, deadline_at=deadline_at, note=note, status="pending",
        attempts=0,
        created_from_call_id=(_call_id(created_from_uniqueid)
                              if created_from_uniqueid is not None else None))
    try:
        with s.begin_nested():
            s.add(task)
            s.flush()
    except IntegrityError:
        existing = _open_task(s, number, kind)
        if existing is None:
            raise
        logger.info("store: task for %s/%s was created concurrently; using #%d",
                    number, kind, existing.id)
        return existing, False
    s.refresh(task)
    return task, True


def _open_task(s: Session, number: str, kind: str) -> CallbackTask | None:
    return s.scalar(select(CallbackTask).where(
        CallbackTask.number == number, CallbackTask.kind == kind,
        CallbackTask.status.in_(("pending", "dialing"))))


def get_task(s: Session, task_id: int) -> CallbackTask | None:
    return s.get(CallbackTask, task_id, populate_existing=True)


def list_open_tasks(s: Session, *, owner_agent_id: str | None = None,
                    number: str | None = None) -> list[CallbackTask]:
    """Pending and dialing tasks, soonest first (the desktop's list, STD-072)."""
    query = (select(CallbackTask).where(CallbackTask.status.in_(("pending", "dialing")))
             .order_by(CallbackTask.due_at, CallbackTask.id))
    if owner_agent_id is not None:
        query = query.where(CallbackTask.owner_agent_id == owner_agent_id)
    if number is not None:
        query = query.where(CallbackTask.number == number)
    return list(s.scalars(query))


def claim_due_tasks(s: Session, now: datetime, limit: int, *, claimed_by: str = "",
                    owner_agent_id: str | None = None) -> list[CallbackTask]:
    """Atomically move up to ``limit`` due pending tasks to ``dialing`` and return them.

    ``owner_agent_id=None`` claims pool tasks (no owner); an id claims only that
    agent's own tasks, for when they become ready (STD-069, STD-072).

    Never hands one task to two claimers: the candidates are selected with
    ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: concurrent claimers lock disjoint rows
    and never wait for each other; SQLite: the transaction already holds the write
    lock, ``BEGIN IMMEDIATE``), then updated by id with a ``status = 'pending'``
    guard. Two statements on purpose: PostgreSQL may re-run a locking sub-select
    inside an UPDATE and take more than ``limit`` rows.
    """
    if limit <= 0:
        return []
    owner: ColumnElement[bool] = (CallbackTask.owner_agent_id.is_(None) if owner_agent_id is None
                                  else CallbackTask.owner_agent_id == owner_agent_id)
    due = (select(CallbackTask.id)
           .where(CallbackTask.status == "pending", CallbackTask.due_at <= now, owner)
           .order_by(CallbackTask.due_at, CallbackTask.id)
           .limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(s.scalars(due))
    if not ids:
        return []
    claim = (update(CallbackTask)
             .where(CallbackTask.id.in_(ids), CallbackTask.status == "pending")
             .values(status="dialing", attempts=CallbackTask.attempts + 1, claimed_at=now,
                     claimed_by=claimed_by, updated_at=utcnow())
             .returning(CallbackTask))
    tasks = list(s.scalars(claim, execution_options={"populate_existing": True,
                                                     "synchronize_session": False}))
    tasks.sort(key=lambda t: (t.due_at, t.id))
    if tasks:
        logger.debug("store: %s claimed tasks %s", claimed_by or "engine", [t.id for t in tasks])
    return tasks


def finish_attempt(s: Session, task_id: int, at: datetime, outcome: str, *, reached: bool,
                   retry_at: datetime | None = None, hangup_cause: int | None = None,
                   call_uniqueid: str | None = None,
                   agent_id: str | None = None) -> CallbackTask:
    """Record how a claimed task's dial ended and decide its next status.

    reached → ``done``; not reached with a ``retry_at`` and attempts left →
    ``pending`` again at ``retry_at`` (the retry rule is the core's, STD-081);
    otherwise ``unreachable``.
    """
    task: CallbackTask = _get(s, CallbackTask, task_id, "task")
    if task.status != "dialing":
        raise StateError("task_not_dialing", f"task {task_id} is {task.status}")
    s.add(TaskAttempt(task_id=task_id, at=at, outcome=outcome, hangup_cause=hangup_cause,
                      call_uniqueid=call_uniqueid, agent_id=agent_id))
    task.last_outcome = outcome
    task.claimed_at = None
    task.claimed_by = None
    if reached:
        task.status = "done"
    elif retry_at is not None and task.attempts < task.max_attempts:
        task.status = "pending"
        task.due_at = retry_at
    else:
        task.status = "unreachable"
    s.flush()
    return task


def task_attempts(s: Session, task_id: int) -> list[TaskAttempt]:
    query = select(TaskAttempt).where(TaskAttempt.task_id == task_id).order_by(
        TaskAttempt.at, TaskAttempt.id)
    return list(s.scalars(query))


def cancel_task(s: Session, task_id: int) -> CallbackTask:
    """Cancel an open task (a supervisor's decision, or the customer called in again)."""
    task: CallbackTask = _get(s, CallbackTask, task_id, "task")
    if task.status not in ("pending", "dialing"):
        raise StateError("task_closed", f"task {task_id} is already {task.status}")
    task.status = "cancelled"
    s.flush()
    return task


def release_stale_claims(s: Session, claimed_before: datetime) -> int:
    """Return to ``pending`` the tasks a crashed engine claimed and never finished."""
    result = s.execute(
        update(CallbackTask)
        .where(CallbackTask.status == "dialing", CallbackTask.claimed_at < claimed_before)
        .values(status="pending", claimed_at=None, claimed_by=None, updated_at=utcnow()),
        execution_options={"synchronize_session": False})
    count: int = getattr(result, "rowcount", 0)
    if count:
        logger.warning("store: released %d stale task claim(s) from before %s",
                       count, claimed_before.isoformat())
    return count


# --- the outbound dialer's task queries (callflow.outbound.dialer) ------------------------------

#: Columns ``update_task`` may change; the rest follow the task's life (claims, attempts).
TASK_EDIT_FIELDS = frozenset({"due_at", "owner_agent_id", "note", "max_attempts",
                              "deadline_at", "number"})


def _number_dialing(number: ColumnElement[str] | InstrumentedAttribute[str] | str,
                    ) -> ColumnElement[bool]:
    """EXISTS a task of ``number`` being dialled now (STD-090: never twice at once)."""
    other = aliased(CallbackTask)
    return exists().where(other.number == number, other.status == "dialing")


def _lock_number(s: Session, number: str) -> None:
    """PostgreSQL: serialise claimers of one number for this transaction, so the
    'not already dialling' check of a second engine sees the first one's claim.
    SQLite needs nothing: a write transaction already holds the database lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(func.hashtext(number))))


def claim_next_task(s: Session, now: datetime, *, claimed_by: str = "",
                    owner_agent_id: str | None = None,
                    skip_campaigns: frozenset[int] = frozenset()) -> CallbackTask | None:
    """Claim the most due pending task whose number is not being dialled (STD-090).

    Like ``claim_due_tasks`` (pool tasks for ``owner_agent_id=None``, else that
    agent's own), one task at a time and never a number that another task is
    already dialling, even when two engines claim at the same moment. Never a number
    on the do-not-call list, nor a task of a campaign in ``skip_campaigns`` (paused,
    outside its contact window, or not this agent's: ``engine/campaigns.py``).
    """
    owner: ColumnElement[bool] = (CallbackTask.owner_agent_id.is_(None) if owner_agent_id is None
                                  else CallbackTask.owner_agent_id == owner_agent_id)
    campaign: ColumnElement[bool] = true()
    if skip_campaigns:
        campaign = (CallbackTask.campaign_id.is_(None)
                    | CallbackTask.campaign_id.not_in(sorted(skip_campaigns)))
    candidates = (select(CallbackTask.id, CallbackTask.number)
                  .where(CallbackTask.status == "pending", CallbackTask.due_at <= now, owner,
                         campaign, ~_number_dialing(CallbackTask.number),
                         ~exists().where(DoNotCall.number == CallbackTask.number))
                  .order_by(CallbackTask.due_at, CallbackTask.id)
                  .limit(5)
                  .with_for_update(skip_locked=True, of=CallbackTask))
    for task_id, number in s.execute(candidates).all():
        task = _claim_one(s, task_id, number, now, claimed_by)
        if task is not None:
            return task
    return None


def _claim_one(s: Session, task_id: int, number: str, now: datetime,
               claimed_by: str) -> CallbackTask | None:
    _lock_number(s, number)
    claim = (update(CallbackTask)
             .where(CallbackTask.id == task_id, CallbackTask.status == "pending",
                    ~_number_dialing(number))
             .values(status="dialing", attempts=CallbackTask.attempts + 1, claimed_at=now,
                     claimed_by=claimed_by, updated_at=utcnow())
             .returning(CallbackTask))
    task: CallbackTask | None = s.scalars(claim, execution_options={
        "populate_existing": True, "synchronize_session": False}).one_or_none()
    if task is not None:
        logger.debug("store: %s claimed task %d", claimed_by or "engine", task.id)
    return task


def claim_task(s: Session, task_id: int, now: datetime, *, claimed_by: str = "") -> CallbackTask:
    """Claim one task by id (an agent pressed dial in preview mode, STD-082).

    Raises ``StateError``: ``not_found``, ``task_not_pending`` (done, cancelled,
    or being dialled) or ``number_dialing`` (another task of the number is).
    """
    task: CallbackTask = _get(s, CallbackTask, task_id, "task")
    if task.status != "pending":
        raise StateError("task_not_pending", f"task {task_id} is {task.status}")
    if s.get(DoNotCall, task.number) is not None:
        raise StateError("do_not_call", f"{task.number} is on the do-not-call list")
    claimed = _claim_one(s, task_id, task.number, now, claimed_by)
    if claimed is None:
        raise StateError("number_dialing", f"{task.number} is being dialled by another task")
    return claimed


def release_claim(s: Session, task_id: int, at: datetime, outcome: str, *, due_at: datetime,
                  hangup_cause: int | None = None, call_uniqueid: str | None = None,
                  agent_id: str | None = None) -> CallbackTask:
    """Give a claim back when the dial never reached the customer's line.

    The attempt is kept in the history with its ``outcome`` (refused Originate,
    AMI down, the agent's own phone not picked up) but not counted: ``attempts`` is
    refunded and the task is pending again at ``due_at``. Nothing is lost.
    """
    task: CallbackTask = _get(s, CallbackTask, task_id, "task")
    if task.status != "dialing":
        raise StateError("task_not_dialing", f"task {task_id} is {task.status}")
    s.add(TaskAttempt(task_id=task_id, at=at, outcome=outcome, hangup_cause=hangup_cause,
                      call_uniqueid=call_uniqueid, agent_id=agent_id))
    task.attempts = max(0, task.attempts - 1)
    task.status = "pending"
    task.due_at = due_at
    task.claimed_at = None
    task.claimed_by = None
    s.flush()
    return task


def update_task(s: Session, task_id: int, **fields: Any) -> CallbackTask:
    """Edit a pending task (due time, owner, note, attempts allowed, number).

    A task being dialled or closed is not edited (``task_not_pending``); a number
    and kind that already have another open task give ``duplicate_task``.
    """
    _check_fields("task", fields, TASK_EDIT_FIELDS)
    task: CallbackTask = _get(s, CallbackTask, task_id, "task")
    if task.status != "pending":
        raise StateError("task_not_pending", f"task {task_id} is {task.status}")
    try:
        with s.begin_nested():  # the changes inside: a refused flush undoes only them
            for key, value in fields.items():
                setattr(task, key, value)
            s.flush()
    except IntegrityError as exc:
        if "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower():
            raise StateError("duplicate_task", f"{fields.get('number', task.number)} already has "
                             f"an open {task.kind} task") from None
        raise StateError("invalid_task", str(exc.orig)) from None
    return task


def list_tasks(s: Session, *, statuses: tuple[str, ...] | None = None,
               owner_agent_id: str | None = None, pool_only: bool = False,
               number: str | None = None, due_by: datetime | None = None,
               limit: int = 500, skip_campaigns: frozenset[int] = frozenset(),
               dialable_only: bool = False) -> list[CallbackTask]:
    """Tasks for the API, soonest due first; ``statuses=None`` means every status.
    ``skip_campaigns`` leaves out those campaigns' tasks, ``dialable_only`` the numbers
    on the do-not-call list (the dialer's preview, like its claim)."""
    query = select(CallbackTask).order_by(CallbackTask.due_at, CallbackTask.id).limit(limit)
    if skip_campaigns:
        query = query.where(CallbackTask.campaign_id.is_(None)
                            | CallbackTask.campaign_id.not_in(sorted(skip_campaigns)))
    if dialable_only:
        query = query.where(~exists().where(DoNotCall.number == CallbackTask.number))
    if due_by is not None:
        query = query.where(CallbackTask.due_at <= due_by)
    if statuses is not None:
        query = query.where(CallbackTask.status.in_(statuses))
    if owner_agent_id is not None:
        query = query.where(CallbackTask.owner_agent_id == owner_agent_id)
    if pool_only:
        query = query.where(CallbackTask.owner_agent_id.is_(None))
    if number is not None:
        query = query.where(CallbackTask.number == number)
    return list(s.scalars(query))


def due_task_owners(s: Session, now: datetime) -> tuple[set[str], int]:
    """Who has own tasks due now, and how many pool tasks are due (one cheap read a tick)."""
    rows = s.execute(select(CallbackTask.owner_agent_id, func.count())
                     .where(CallbackTask.status == "pending", CallbackTask.due_at <= now)
                     .group_by(CallbackTask.owner_agent_id)).all()
    owners = {owner for owner, _ in rows if owner is not None}
    pool = sum(count for owner, count in rows if owner is None)
    return owners, pool


def due_tasks_of_absent(s: Session, present: set[str], due_before: datetime
                        ) -> list[CallbackTask]:
    """Pending tasks owned by anyone not in ``present`` (logged-in agents) that fell due
    before ``due_before``: their owners are away (or gone from the roster)."""
    query = (select(CallbackTask)
             .where(CallbackTask.status == "pending", CallbackTask.due_at < due_before,
                    CallbackTask.owner_agent_id.is_not(None),
                    CallbackTask.owner_agent_id.not_in(sorted(present)))
             .order_by(CallbackTask.due_at, CallbackTask.id))
    return list(s.scalars(query))


def tasks_changed_since(s: Session, since: datetime, *, limit: int = 1000
                        ) -> list[CallbackTask]:
    """Tasks written after ``since`` (bookkeeping time), oldest change first: the feed
    that tells desktops about tasks whoever changed them."""
    query = (select(CallbackTask).where(CallbackTask.updated_at > since)
             .order_by(CallbackTask.updated_at, CallbackTask.id).limit(limit))
    return list(s.scalars(query))


_TASKS: Table = cast(Table, CallbackTask.__table__)
#: the columns the desktops' feed compares (outbound/dialer.py ``_version``)
TASK_VERSION_COLUMNS = ("status", "due_at", "owner_agent_id", "attempts", "note",
                        "max_attempts", "number", "last_outcome")
_TASK_CHANGES = (select(_TASKS.c.id, _TASKS.c.updated_at,
                        *(_TASKS.c[name] for name in TASK_VERSION_COLUMNS))
                 .where(_TASKS.c.updated_at > bindparam("since"))
                 .order_by(_TASKS.c.updated_at, _TASKS.c.id).limit(bindparam("limit")))


def task_changes_since(s: Session, since: datetime, *, limit: int = 1000) -> list[Any]:
    """``tasks_changed_since`` as plain rows of the id, ``updated_at`` and the columns the
    feed compares: the dialer reads this every round (issue 20: loading whole task
    objects each second, again for the overlap, was a tenth of a busy engine's Python
    time) and loads only the tasks that are news (``tasks_by_id``)."""
    return list(s.connection().execute(_TASK_CHANGES, {"since": since, "limit": limit}))


def tasks_by_id(s: Session, ids: list[int]) -> list[CallbackTask]:
    """These tasks, oldest change first."""
    return list(s.scalars(select(CallbackTask).where(CallbackTask.id.in_(ids))
                          .order_by(CallbackTask.updated_at, CallbackTask.id)))


# --- alarms and audit ----------------------------------------------------------------


def raise_alarm(s: Session, kind: str, at: datetime, *, std: str = "",
                detail: dict[str, Any] | None = None) -> Alarm:
    alarm = Alarm(kind=kind, std=std, detail=detail or {}, raised_at=at)
    s.add(alarm)
    s.flush()
    return alarm


def ack_alarm(s: Session, alarm_id: int, by: str, at: datetime) -> Alarm:
    """Acknowledge once; a second acknowledgement keeps the first one's name and time."""
    alarm: Alarm = _get(s, Alarm, alarm_id, "alarm")
    if alarm.acknowledged_at is None:
        alarm.acknowledged_at = at
        alarm.acknowledged_by = by
        s.flush()
    return alarm


def open_alarms(s: Session) -> list[Alarm]:
    query = select(Alarm).where(Alarm.acknowledged_at.is_(None)).order_by(
        Alarm.raised_at, Alarm.id)
    return list(s.scalars(query))


@enforces("STD-078")
def audit(s: Session, actor: str, action: str, at: datetime, *, target: str = "",
          detail: dict[str, Any] | None = None) -> AuditEntry:
    """Who did what to whom: every recording playback (STD-114) and supervisor action."""
    entry = AuditEntry(actor=actor, action=action, at=at, target=target, detail=detail or {})
    s.add(entry)
    s.flush()
    return entry



# --- users (logins for the API, the board and the agent desktop) ------------------------


def get_user(s: Session, username: str) -> User | None:
    return s.scalar(select(User).where(User.username == username, User.active.is_(True)))


def set_user(s: Session, username: str, role: str, password_hash: str, *,
             agent_id: str | None = None, team: str | None = None) -> User:
    """Create the login or replace its role, password, agent and (a shift lead's) team
    (STD-148 roles)."""
    values = {"username": username, "role": role, "password_hash": password_hash,
              "agent_id": agent_id, "team": team, "active": True}
    user: User = _upsert(s, User, "username", values)
    return user


def set_password(s: Session, username: str, password_hash: str) -> bool:
    """Replace an active login's password hash; False when there is no such login."""
    done = s.execute(update(User).where(User.username == username, User.active.is_(True))
                     .values(password_hash=password_hash))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def set_language(s: Session, username: str, language: str | None) -> bool:
    """Store the pages' language an active login chose; False when there is no such login."""
    done = s.execute(update(User).where(User.username == username, User.active.is_(True))
                     .values(language=language))
    return bool(done.rowcount)  # type: ignore[attr-defined]


# --- sessions (api/sessions.py): revocable, idle and hard ends ---------------------------


def add_session(s: Session, user_id: int, token_hash: str, *, at: datetime,
                expires_at: datetime, ends_at: datetime, address: str = "") -> LoginSession:
    row = LoginSession(user_id=user_id, token_hash=token_hash, address=address[:64],
                       created_at=at, expires_at=expires_at, ends_at=ends_at)
    s.add(row)
    s.flush()
    return row


def live_session(s: Session, token_hash: str, at: datetime
                 ) -> tuple[LoginSession, User] | None:
    """The session with this token hash and its active user, unless revoked or ended."""
    row = s.execute(select(LoginSession, User).join(User, User.id == LoginSession.user_id)
                    .where(LoginSession.token_hash == token_hash,
                           LoginSession.revoked_at.is_(None), LoginSession.expires_at > at,
                           LoginSession.ends_at > at, User.active.is_(True))).one_or_none()
    return None if row is None else (row[0], row[1])


def renew_session(s: Session, session_id: int, expires_at: datetime) -> None:
    s.execute(update(LoginSession).where(LoginSession.id == session_id)
              .values(expires_at=expires_at))


def revoke_session(s: Session, token_hash: str, at: datetime, reason: str) -> bool:
    """End one session now; False when it was already ended or never existed."""
    done = s.execute(update(LoginSession).where(LoginSession.token_hash == token_hash,
                                                LoginSession.revoked_at.is_(None))
                     .values(revoked_at=at, revoked_reason=reason))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def revoke_user_sessions(s: Session, username: str, at: datetime, reason: str) -> int:
    """End every live session of a login (password change, admin revoke); how many."""
    user_id = select(User.id).where(User.username == username).scalar_subquery()
    done = s.execute(update(LoginSession).where(LoginSession.user_id == user_id,
                                                LoginSession.revoked_at.is_(None),
                                                LoginSession.ends_at > at)
                     .values(revoked_at=at, revoked_reason=reason))
    return int(done.rowcount)  # type: ignore[attr-defined]


# --- KPIs, the board and reports (callflow.engine.kpi, callflow.board.feature) ---

#: Rows per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 500


def calls_entered_between(s: Session, start: datetime, end: datetime, *,
                          direction: str = "inbound") -> list[Call]:
    """Calls that reached routing (t_in) in ``[start, end)``: a KPI period's calls."""
    query = (select(Call).where(Call.direction == direction, Call.entered_at >= start,
                                Call.entered_at < end)
             .order_by(Call.entered_at, Call.id))
    return list(s.scalars(query))


def offers_for_calls(s: Session, call_ids: list[int]) -> list[CallOffer]:
    """Every offer of these calls (by calls.id), in ringing order."""
    out: list[CallOffer] = []
    for i in range(0, len(call_ids), _IN_CHUNK):
        chunk = call_ids[i:i + _IN_CHUNK]
        out += s.scalars(select(CallOffer).where(CallOffer.call_id.in_(chunk))
                         .order_by(CallOffer.started_at, CallOffer.id))
    return out


def holds_for_calls(s: Session, call_ids: list[int]) -> list[CallHold]:
    """Every hold episode of these calls (by calls.id)."""
    out: list[CallHold] = []
    for i in range(0, len(call_ids), _IN_CHUNK):
        chunk = call_ids[i:i + _IN_CHUNK]
        out += s.scalars(select(CallHold).where(CallHold.call_id.in_(chunk))
                         .order_by(CallHold.started_at, CallHold.id))
    return out


def agent_states_between(s: Session, start: datetime, end: datetime) -> list[AgentState]:
    """State rows of every agent overlapping ``[start, end)``, oldest first."""
    query = (select(AgentState)
             .where(AgentState.started_at < end,
                    (AgentState.ended_at.is_(None)) | (AgentState.ended_at > start))
             .order_by(AgentState.agent_id, AgentState.started_at, AgentState.id))
    return list(s.scalars(query))


def open_callbacks_by_queue(s: Session) -> dict[str, int]:
    """Open callback tasks per queue of the call that asked for them ("" = not from a call)."""
    query = (select(Call.queue)
             .select_from(CallbackTask)
             .outerjoin(Call, Call.id == CallbackTask.created_from_call_id)
             .where(CallbackTask.status.in_(("pending", "dialing")),
                    CallbackTask.kind == "callback"))
    counts: dict[str, int] = {}
    for queue in s.scalars(query):
        counts[queue or ""] = counts.get(queue or "", 0) + 1
    return counts


def find_alarm(s: Session, kind: str, raised_at: datetime) -> Alarm | None:
    """The alarm raised as ``kind`` at exactly ``raised_at`` (the board's alarm key)."""
    return s.scalar(select(Alarm).where(Alarm.kind == kind, Alarm.raised_at == raised_at)
                    .order_by(Alarm.id).limit(1))


def recent_alarms(s: Session, *, since: datetime | None = None, open_only: bool = False,
                  limit: int = 200) -> list[Alarm]:
    """Alarms newest first (the board's and the API's list)."""
    query = select(Alarm).order_by(Alarm.raised_at.desc(), Alarm.id.desc()).limit(limit)
    if since is not None:
        query = query.where(Alarm.raised_at >= since)
    if open_only:
        query = query.where(Alarm.acknowledged_at.is_(None))
    return list(s.scalars(query))


def audit_entries(s: Session, *, target: str | None = None, action: str | None = None,
                  limit: int = 100) -> list[AuditEntry]:
    """Audit log, newest first (who acknowledged, forced, listened)."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    return list(s.scalars(query))


# --- recordings and QA reviews (callflow.recordings, STD-114..119) ---------------------

RECORDING_FIELDS = frozenset(c.key for c in Recording.__table__.columns) - {
    "id", "created_at"}


def add_recording(s: Session, call_uniqueid: str, **fields: Any) -> Recording:
    """Store a finished recording and point its call at the file (calls.recording_path).

    One row per call: a second report of the same call (a retried write) updates it."""
    _check_fields("recording", fields, RECORDING_FIELDS)
    row = s.scalar(select(Recording).where(Recording.call_uniqueid == call_uniqueid)
                   .order_by(Recording.id).limit(1))
    if row is None:
        row = Recording(call_uniqueid=call_uniqueid, **fields)
        s.add(row)
    else:
        for key, value in fields.items():
            setattr(row, key, value)
    if "path" in fields:
        s.execute(update(Call).where(Call.uniqueid == call_uniqueid)
                  .values(recording_path=fields["path"]))
    s.flush()
    return row


def get_recording(s: Session, recording_id: int) -> Recording | None:
    return s.get(Recording, recording_id)


def recording_for_call(s: Session, call_uniqueid: str) -> Recording | None:
    return s.scalar(select(Recording).where(Recording.call_uniqueid == call_uniqueid)
                    .order_by(Recording.id).limit(1))


def list_recordings(s: Session, *, agent_id: str | None = None, number: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    qa: str = "all", limit: int = 100) -> list[Recording]:
    """Newest first; ``qa`` = all | selected (in the QA sample) | reviewed (has a review)."""
    query = select(Recording)
    if agent_id is not None:
        query = query.where(Recording.agent_id == agent_id)
    if number is not None:
        query = query.where(Recording.number == number)
    if since is not None:
        query = query.where(Recording.started_at >= since)
    if until is not None:
        query = query.where(Recording.started_at < until)
    if qa == "selected":
        query = query.where(Recording.qa_selected.is_(True))
    elif qa == "reviewed":
        query = query.where(exists().where(QaReview.recording_id == Recording.id))
    elif qa != "all":
        raise StoreError(f"unknown qa filter {qa!r}")
    query = query.order_by(Recording.started_at.desc(), Recording.id.desc()).limit(limit)
    return list(s.scalars(query))


def recordings_between(s: Session, start: datetime, end: datetime) -> list[Recording]:
    """Recordings started in ``[start, end)`` (a QA month), oldest first."""
    query = (select(Recording).where(Recording.started_at >= start, Recording.started_at < end)
             .order_by(Recording.started_at, Recording.id))
    return list(s.scalars(query))


def select_for_qa(s: Session, picks: dict[int, str]) -> int:
    """Mark recordings as in the QA sample with their reason; already selected ones keep
    their first reason. Returns how many were newly selected."""
    changed = 0
    for recording_id, reason in picks.items():
        result = s.execute(update(Recording).where(Recording.id == recording_id,
                                                   Recording.qa_selected.is_(False))
                           .values(qa_selected=True, qa_reason=reason[:255]))
        changed += result.rowcount or 0  # type: ignore[attr-defined]
    return changed


def recordings_to_purge(s: Session, older_than: datetime, *, limit: int = 500
                        ) -> list[Recording]:
    """Retention: recordings started before ``older_than`` whose file is still kept."""
    query = (select(Recording).where(Recording.started_at < older_than,
                                     Recording.purged_at.is_(None))
             .order_by(Recording.started_at, Recording.id).limit(limit))
    return list(s.scalars(query))


def mark_purged(s: Session, recording_id: int, at: datetime) -> None:
    s.execute(update(Recording).where(Recording.id == recording_id).values(purged_at=at))


def add_review(s: Session, recording_id: int, reviewer: str, at: datetime, *,
               scores: dict[str, int], penalties: list[dict[str, Any]], total: int,
               unqualified: bool, notes: str = "") -> QaReview:
    _get(s, Recording, recording_id, "recording")
    review = QaReview(recording_id=recording_id, reviewer=reviewer, at=at, scores=scores,
                      penalties=penalties, total=total, unqualified=unqualified, notes=notes)
    s.add(review)
    s.flush()
    return review


def reviews_for(s: Session, recording_ids: list[int]) -> dict[int, list[QaReview]]:
    """Reviews of these recordings, oldest first, by recording id."""
    out: dict[int, list[QaReview]] = {rid: [] for rid in recording_ids}
    for i in range(0, len(recording_ids), _IN_CHUNK):
        chunk = recording_ids[i:i + _IN_CHUNK]
        query = (select(QaReview).where(QaReview.recording_id.in_(chunk))
                 .order_by(QaReview.at, QaReview.id))
        for review in s.scalars(query):
            out[review.recording_id].append(review)
    return out


def calls_by_uniqueid(s: Session, uniqueids: list[str]) -> dict[str, Call]:
    out: dict[str, Call] = {}
    for i in range(0, len(uniqueids), _IN_CHUNK):
        chunk = uniqueids[i:i + _IN_CHUNK]
        for call in s.scalars(select(Call).where(Call.uniqueid.in_(chunk))):
            out[call.uniqueid] = call
    return out


def reviews_of_recordings_between(s: Session, start: datetime, end: datetime
                                  ) -> list[tuple[QaReview, Recording]]:
    """Reviews of the recordings started in ``[start, end)`` (a QA month, STD-117),
    whenever written, with their recording; by recording, then oldest review first."""
    query = (select(QaReview, Recording).join(Recording, QaReview.recording_id == Recording.id)
             .where(Recording.started_at >= start, Recording.started_at < end)
             .order_by(Recording.started_at, Recording.id, QaReview.at, QaReview.id))
    return [(review, rec) for review, rec in s.execute(query)]


def reviews_written_between(s: Session, start: datetime, end: datetime
                            ) -> list[tuple[QaReview, Recording]]:
    """Reviews written in ``[start, end)`` (a digest's day, STD-121) with their recording,
    oldest first."""
    query = (select(QaReview, Recording).join(Recording, QaReview.recording_id == Recording.id)
             .where(QaReview.at >= start, QaReview.at < end)
             .order_by(QaReview.at, QaReview.id))
    return [(review, rec) for review, rec in s.execute(query)]
