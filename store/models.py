"""The tables of callflow, sized for the whole product.

One schema serves SQLite (the zero set-up default) and PostgreSQL (several engines
sharing one database), so only portable types are used: strings with CHECK
constraints instead of native enums, ``sqlalchemy.JSON`` for free-form details,
and :class:`~callflow.store.types.UTCDateTime` for every instant.

The value sets below are public so the core can check its own enums against them;
adding a value is a migration, on purpose: a report that counts outcomes must know
every outcome that can exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    inspect,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import UTCDateTime, big_id

#: Constraint names are fixed so that Alembic can find them again on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DIRECTIONS = ("inbound", "outbound")
#: How a call ended. ``short_abandon`` (caller gone within 5 s of t_in), ``abandoned``
#: and ``callback`` (caller chose a callback, STD-042/STD-047) split the offered calls
#: for the KPI rates; ``ivr_handled`` finished in the IVR and is not offered; the
#: special-call endings (STD-056..STD-067) are tagged so QA and reports can find them.
CALL_OUTCOMES = (
    "answered", "abandoned", "short_abandon", "callback", "ivr_handled", "fallback",
    "no_answer", "busy", "failed", "pbx_failure",
    "silent", "quiet_line", "noisy_line", "nuisance", "harassing", "wrong_number",
)
#: Who released first (STD-110); ``system`` is the engine (timeouts, STD-081, STD-112),
#: ``pbx`` Asterisk stopping (never blamed on a person).
RELEASED_BY = ("caller", "agent", "system", "pbx")
#: The opening the agent was told to use: the late-answer apology is STD-009.
GREETINGS = ("normal", "holiday", "apology")
#: How one offer of a call to one agent ended (STD-008 counts ``no_answer`` only): every
#: result engine/calls.py can give, so no record Asterisk can cause is refused.
OFFER_RESULTS = ("answered", "no_answer", "busy", "declined", "unavailable", "forwarded",
                 "caller_gone", "pbx_failure", "failed")
#: Why a number must be called: STD-042/STD-047 callback, STD-069 dropped call,
#: STD-086/STD-089 follow-up, STD-072 named agent, or a supervisor's manual task.
TASK_KINDS = ("callback", "dropped_call", "follow_up", "manual", "named_agent")
TASK_STATUSES = ("pending", "dialing", "done", "unreachable", "cancelled")
#: A campaign dials (active) or waits (paused by a supervisor).
CAMPAIGN_STATUSES = ("active", "paused")
#: The outcome a task is closed with when its number is on the do-not-call list.
DO_NOT_CALL = "do_not_call"
#: A task in one of these is still going to be dialled: at most one per number and kind.
OPEN_TASK_STATUSES = ("pending", "dialing")
#: ``shift_lead`` and ``department_manager`` are the escalation chain's people (STD-137,
#: STD-148): the names of ``tickets.escalation_chain``, so a step finds its login by role.
USER_ROLES = ("agent", "supervisor", "qa", "admin", "shift_lead", "department_manager")
#: A customer's class picks their ticket deadlines (STD-123; tickets.deadlines_by_class).
DEFAULT_CUSTOMER_CLASS = "standard"
#: A rule judged on a call (engine/verdicts.py).
VERDICT_OUTCOMES = ("pass", "fail", "not_applicable")
#: Why a recording is in the QA sample beyond the spread picks (recordings/feature.py).
RECORDING_FLAGS = ("late_answer", "hold_breach", "release_violation", "special_call",
                   "transfer")


def utcnow() -> datetime:
    """Bookkeeping time (created/updated). Business instants come from the Clock."""
    return datetime.now(UTC)


def one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    """A CHECK that keeps a string column inside a closed set (portable enum)."""
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


def open_task_clause() -> str:
    """SQL for "still open", shared by the partial unique index and its docs."""
    return "status IN ({})".format(", ".join(f"'{s}'" for s in OPEN_TASK_STATUSES))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}

    def __repr__(self) -> str:
        keys = ", ".join(f"{c.key}={getattr(self, str(c.key), None)!r}"
                         for c in inspect(type(self)).primary_key)
        return f"{type(self).__name__}({keys})"


class Agent(Base):
    """An agent by work number (工号), the id scripts and reports show."""

    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), server_default="")
    extension: Mapped[str | None] = mapped_column(String(32), unique=True)
    role: Mapped[str] = mapped_column(String(32), server_default="agent")
    team: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Call(Base):
    """One call with the time points every KPI is computed from (t_in, t_ring, t_ans, t_end)."""

    __tablename__ = "calls"
    __table_args__ = (
        one_of("direction", DIRECTIONS, "direction"),
        one_of("outcome", CALL_OUTCOMES, "outcome"),
        one_of("released_by", RELEASED_BY, "released_by"),
        one_of("greeting", GREETINGS, "greeting"),
        Index("ix_calls_caller_number_entered_at", "caller_number", "entered_at"),
        Index("ix_calls_agent_id_answered_at", "agent_id", "answered_at"),
        Index("ix_calls_entered_at", "entered_at"),
        Index("ix_calls_linkedid", "linkedid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    did: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))
    entered_at: Mapped[datetime | None]
    #: t_in of the KPI definitions: the caller reached agent routing (after the
    #: named-agent menu); NULL with ``menu`` when the caller left in the menu.
    routed_at: Mapped[datetime | None]
    #: The caller met a menu (the named-agent question) before routing.
    menu: Mapped[bool] = mapped_column(Boolean, server_default=false())
    ring_started_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    answer_ring: Mapped[int | None] = mapped_column(Integer)
    total_wait_s: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String(24))
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    released_by: Mapped[str | None] = mapped_column(String(8))
    #: STD-110: False = agent-first release that neither STD-111 nor STD-112 covers.
    release_compliant: Mapped[bool | None] = mapped_column(Boolean)
    #: STD-112: the special-call procedure that ended the call (silent, noisy_line, ...).
    release_procedure: Mapped[str | None] = mapped_column(String(24))
    #: STD-111: when the closing was said; an agent release 2 s later is compliant.
    closing_at: Mapped[datetime | None]
    late: Mapped[bool] = mapped_column(Boolean, server_default=false())
    repeat_caller: Mapped[bool] = mapped_column(Boolean, server_default=false())
    greeting: Mapped[str | None] = mapped_column(String(8))
    hold_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    hold_total_s: Mapped[float] = mapped_column(Float, server_default=text("0"))
    #: One-stop rate (一站式服务) counts calls handled without a transfer.
    transfer_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: How it ended, for people (engine/calls.py ``ending``): caller_released,
    #: agent_released, network_drop, pbx_failure...
    ending: Mapped[str | None] = mapped_column(String(24))
    #: Why Asterisk's facts for the end are missing (the time is when the engine learnt).
    incomplete_reason: Mapped[str | None] = mapped_column(String(200))
    #: The dialplan's fallback queue routed it (the engine was away; entered from
    #: Asterisk's own records, callflow/recovery.py).
    fallback_served: Mapped[bool] = mapped_column(Boolean, server_default=false())
    #: Problem-resolution rate counts the disposition "resolved on the call".
    disposition: Mapped[str | None] = mapped_column(String(32))
    #: The ACW ended without the wrap-up form and the Policy let the agent go on (issue 18).
    wrapup_missing: Mapped[bool] = mapped_column(Boolean, server_default=false())
    recording_path: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallOffer(Base):
    """One offer of a call to one agent: the ringing the 3-ring rule times (STD-008)."""

    __tablename__ = "call_offers"
    __table_args__ = (
        one_of("result", OFFER_RESULTS, "result"),
        Index("ix_call_offers_call_id", "call_id"),
        Index("ix_call_offers_agent_id_started_at", "agent_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(16))
    ring_s: Mapped[float | None] = mapped_column(Float)
    #: An answered offer: when that agent's part of the call ended (hang-up, transfer).
    left_at: Mapped[datetime | None]


class CallHold(Base):
    """One hold episode; breaches (> 30 s, STD-040) are judged against the Policy of the day."""

    __tablename__ = "call_holds"
    __table_args__ = (Index("ix_call_holds_call_id", "call_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    hold_s: Mapped[float | None] = mapped_column(Float)


class CallEvent(Base):
    """The append-only event log the core can be replayed from (design.md).

    ``uniqueid`` is kept even when no call row exists (yet), so the log never
    depends on the order in which the runtime persists things.
    """

    __tablename__ = "call_events"
    __table_args__ = (
        Index("ix_call_events_call_id", "call_id"),
        Index("ix_call_events_uniqueid", "uniqueid"),
        Index("ix_call_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(48))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AgentState(Base):
    """The agent state log: busy per reason (STD-097), ACW (STD-098), not-ready (STD-099).

    At most one open row (``ended_at IS NULL``) per agent, enforced by a partial
    unique index, so time is never counted twice.
    """

    __tablename__ = "agent_states"
    __table_args__ = (
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        Index("ix_agent_states_agent_id_started_at", "agent_id", "started_at"),
        Index(
            "uq_agent_states_open", "agent_id", unique=True,
            sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"))
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    #: Asterisk uniqueid, not a foreign key: the state may change before the call row exists.
    call_uniqueid: Mapped[str | None] = mapped_column(String(64))


class AgentCurrent(Base):
    """Each agent's state now, so an engine restart resumes it instead of guessing."""

    __tablename__ = "agent_current"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(64))
    since: Mapped[datetime]
    call_uniqueid: Mapped[str | None] = mapped_column(String(64))
    acw_extended: Mapped[bool] = mapped_column(Boolean, server_default=false())
    updated_at: Mapped[datetime]


class CallbackTask(Base):
    """A number callflow must dial: callbacks, dropped calls, follow-ups, named-agent tasks.

    One open task per (number, kind): a partial unique index over the open
    statuses. A second request for the same number and purpose is the same
    task (STD-090: the same number is not dialled repeatedly), and the index
    makes that hold even when two engines share PostgreSQL.
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        one_of("kind", TASK_KINDS, "kind"),
        one_of("status", TASK_STATUSES, "status"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint(
            "kind <> 'named_agent' OR owner_agent_id IS NOT NULL", name="named_agent_has_owner"
        ),
        Index(
            "uq_callback_tasks_open_number_kind", "number", "kind", unique=True,
            sqlite_where=text(open_task_clause()), postgresql_where=text(open_task_clause()),
        ),
        Index("ix_callback_tasks_status_due_at", "status", "due_at"),
        Index("ix_callback_tasks_owner_agent_id_status", "owner_agent_id", "status"),
        # the desktops' task feed reads "changed since the last tick" (outbound/feature.py)
        Index("ix_callback_tasks_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    number: Mapped[str] = mapped_column(String(64))
    #: None = the pool: any agent may take it; else only this agent (STD-069, STD-072).
    owner_agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))
    due_at: Mapped[datetime]
    #: Latest acceptable time (STD-086 within 3 days, STD-089 next day) for coverage KPIs.
    deadline_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    last_outcome: Mapped[str | None] = mapped_column(String(24))
    created_from_call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL")
    )
    note: Mapped[str] = mapped_column(Text, server_default="")
    claimed_at: Mapped[datetime | None]
    #: Which engine process claimed it, so a crashed engine's claims can be released.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    #: The campaign list the number came from (campaigns.id); None: not a campaign's.
    #: No foreign key on purpose: migration 0008 adds it with a plain ADD COLUMN on
    #: SQLite and PostgreSQL alike (no table rebuild of the busiest table).
    campaign_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TaskAttempt(Base):
    """One dial of a task (outbound no-answer rate and contact rate, STD-081)."""

    __tablename__ = "task_attempts"
    __table_args__ = (Index("ix_task_attempts_task_id", "task_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(24))
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    call_uniqueid: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))


class Alarm(Base):
    """A broken standard or a fault supervisors must see and acknowledge."""

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_raised_at", "raised_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    std: Mapped[str] = mapped_column(String(16), server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raised_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Who did what to whom: recording playback (STD-114) and supervisor actions."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_target", "target"),
    )

    id: Mapped[int] = mapped_column(big_id(), primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(255), server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    """A login for the API and the board; an agent's login points at their work number."""

    __tablename__ = "users"
    __table_args__ = (one_of("role", USER_ROLES, "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(24))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))
    #: a shift lead's team (``agents.team``): the board opens on it, its tickets are theirs
    team: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the pages' language this person chose ("zh-CN", "en"; api/language.py); none: the
    #: deployment's default
    language: Mapped[str | None] = mapped_column(String(8))


class LoginSession(Base):
    """A person's session: revocable on the server, ending when idle or at its hard limit.

    Only the SHA-256 of the token is stored (a token is 256 random bits, so a fast hash
    is enough): reading the table does not let anyone log in. The role and agent come
    from the user row at every use, so a changed role or a deactivated login takes
    effect at once.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(big_id(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64), server_default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # idle end, moved on by every use
    ends_at: Mapped[datetime]  # hard end (Policy security.session_max_h)
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class Recording(Base):
    """One call's recording (STD-114): retrievable by contact (call) and caller number.

    ``call_uniqueid`` is the calls row's uniqueid (inbound: the caller's channel,
    outbound: the agent leg), kept as a plain string so a recording survives even if the
    call row is written late. ``purged_at`` is set when retention deleted the file; the
    row stays so reviews and the audit trail keep their subject.
    """

    __tablename__ = "recordings"
    __table_args__ = (
        one_of("direction", DIRECTIONS, "direction"),
        Index("ix_recordings_call_uniqueid", "call_uniqueid"),
        Index("ix_recordings_number_started_at", "number", "started_at"),
        Index("ix_recordings_agent_id_started_at", "agent_id", "started_at"),
        Index("ix_recordings_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.agent_id"))
    number: Mapped[str] = mapped_column(String(64), server_default="")
    path: Mapped[str] = mapped_column(String(512))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[float] = mapped_column(Float, server_default=text("0"))
    bytes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: Why QA should listen (RECORDING_FLAGS values): the sampler adds every flagged one.
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    qa_selected: Mapped[bool] = mapped_column(Boolean, server_default=false())
    qa_reason: Mapped[str | None] = mapped_column(String(255))
    purged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QaReview(Base):
    """One QA review of one recording on the scoring sheet (STD-116, STD-117, STD-119)."""

    __tablename__ = "qa_reviews"
    __table_args__ = (
        Index("ix_qa_reviews_recording_id", "recording_id"),
        Index("ix_qa_reviews_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    penalties: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    total: Mapped[int] = mapped_column(Integer)
    unqualified: Mapped[bool] = mapped_column(Boolean, server_default=false())
    notes: Mapped[str] = mapped_column(Text, server_default="")


class JournalApplied(Base):
    """A journal record that is in the database (store/journal.py, store/writer.py).

    The row is written in the same transaction as the record itself, so a record
    replayed from the journal after a crash is applied exactly once, even one that
    inserts (an agent state, an alarm). ``journal`` names the engine's journal (several
    engines may share one PostgreSQL database) and ``segment`` the journal file the
    record was in: once that file is deleted its rows are (``segment`` below the oldest
    file still kept).
    """

    __tablename__ = "journal_applied"
    __table_args__ = (Index("ix_journal_applied_journal_segment", "journal", "segment"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    journal: Mapped[str] = mapped_column(String(32))
    segment: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    """A campaign list (STD-081..096): numbers dialled by the existing dialer as tasks of
    kind ``manual`` with ``campaign_id`` set, within the campaign's own contact window
    (days and hours in the centre's time zone, inside the STD-085 calling window),
    at most ``max_attempts`` counted attempts per number, ``retry_spacing_min`` apart."""

    __tablename__ = "campaigns"
    __table_args__ = (one_of("status", CAMPAIGN_STATUSES, "status"),
                      CheckConstraint("max_attempts >= 1", name="max_attempts_positive"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    #: Agents (work numbers) who dial it; empty: any free agent.
    agents: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue: Mapped[str] = mapped_column(String(64), server_default="")
    #: Contact window: weekdays ("mon".."sun") and local HH:MM bounds.
    days: Mapped[list[str]] = mapped_column(JSON, default=list)
    window_start: Mapped[str] = mapped_column(String(5))
    window_end: Mapped[str] = mapped_column(String(5))
    max_attempts: Mapped[int] = mapped_column(Integer)
    retry_spacing_min: Mapped[float] = mapped_column(Float)
    caller_id_key: Mapped[str] = mapped_column(String(64), server_default="")
    created_by: Mapped[str] = mapped_column(String(64), server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DoNotCall(Base):
    """A number no campaign or task ever dials (normalised digits, as tasks hold them)."""

    __tablename__ = "do_not_call"

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    note: Mapped[str] = mapped_column(Text, server_default="")
    added_by: Mapped[str] = mapped_column(String(64), server_default="")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Wrapup(Base):
    """The wrap-up form of one call (STD-092): disposition and the agent's notes; for an
    outbound attempt ``call_uniqueid`` is the attempt id (task_attempts.call_uniqueid)."""

    __tablename__ = "wrapups"
    __table_args__ = (Index("ix_wrapups_call_uniqueid", "call_uniqueid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"))
    task_id: Mapped[int | None] = mapped_column(Integer)
    disposition: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, server_default="")
    submitted_by: Mapped[str] = mapped_column(String(16), server_default="")
    submitted_at: Mapped[datetime]


class SurveyAnswer(Base):
    """One question of the post-call survey (STD-120, issue 18) for one call and the agent
    who took it: ``score`` 1-5, or None = no response (``how``: hangup, timeout, invalid)."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("ix_survey_answers_call_uniqueid", "call_uniqueid"),
                      Index("ix_survey_answers_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(64), server_default="")
    question: Mapped[str] = mapped_column(String(32))
    score: Mapped[int | None] = mapped_column(Integer)
    how: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]


class CallVerdict(Base):
    """One rule judged on one call (engine/verdicts.py): the measured value against the
    Policy limit it had, so compliance can be counted per rule, agent, queue, hour and day.
    ``key`` tells several verdicts of one rule on one call apart (hold episodes, offers);
    (call, rule, key) is unique, so a replayed journal record writes nothing twice."""

    __tablename__ = "call_verdicts"
    __table_args__ = (
        one_of("outcome", VERDICT_OUTCOMES, "outcome"),
        Index("ix_call_verdicts_call_uniqueid_rule_key", "call_uniqueid", "rule", "key",
              unique=True),
        Index("ix_call_verdicts_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(32), server_default="")
    outcome: Mapped[str] = mapped_column(String(16))
    measured: Mapped[float | None] = mapped_column(Float)
    limit: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16), server_default="")
    agent_id: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(64), server_default="")
    at: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text, server_default="")


class Customer(Base):
    """A customer the centre knows (issue 18, STD-077..STD-079): the header every desktop
    may show (surname, title: the address form of STD-020), personal fields shown only
    after the caller is verified, and the PIN as a salted hash only (engine/identity.py).
    Every create and edit is attributed in ``audit_log`` (STD-079)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    surname: Mapped[str] = mapped_column(String(64))
    given_name: Mapped[str] = mapped_column(String(64), server_default="")
    title: Mapped[str] = mapped_column(String(32), server_default="")
    account: Mapped[str] = mapped_column(String(64), server_default="")
    address: Mapped[str] = mapped_column(String(255), server_default="")
    id_tail: Mapped[str] = mapped_column(String(8), server_default="")
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), server_default="")
    #: the customer class whose deadlines their tickets run (STD-123: VIP, standard...)
    customer_class: Mapped[str] = mapped_column(String(16),
                                                server_default=DEFAULT_CUSTOMER_CLASS)


class CustomerNumber(Base):
    """A phone number a customer calls from; one customer per number (the caller lookup)."""

    __tablename__ = "customer_numbers"
    __table_args__ = (Index("ix_customer_numbers_customer_id", "customer_id"),)

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
#: Ticket types, statuses, priorities and owners (the core's, engine/tickets.py and
#: engine/policy.py TICKET_TYPES; a unit test keeps them equal).
TICKET_TYPES = ("enquiry", "back_office", "complaint_simple", "complaint_complex",
                "suggestion", "fault")
TICKET_STATUSES = ("open", "in_progress", "awaiting_test", "resolved",
                   "awaiting_confirmation", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_OWNER_KINDS = ("agent", "team", "back_office")


class Ticket(Base):
    """What the agent could not solve on the call (issue 19): its facts, its links to the
    call, the caller, the agent and the recording, and the escalation level reached.

    ``version`` is the optimistic lock: every update names the version it read and
    succeeds only if it is still the stored one, so a second writer with a stale copy
    gets a conflict instead of overwriting the first (nothing lost). The escalation
    level is stored, not remembered: a restarted engine derives from it which step
    comes next (engine/tickets.py ``escalations_due``)."""

    __tablename__ = "tickets"
    __table_args__ = (
        one_of("type", TICKET_TYPES, "type"),
        one_of("status", TICKET_STATUSES, "status"),
        one_of("priority", TICKET_PRIORITIES, "priority"),
        one_of("owner_kind", TICKET_OWNER_KINDS, "owner_kind"),
        Index("ix_tickets_status_opened_at", "status", "opened_at"),
        Index("ix_tickets_owner_id", "owner_id"),
        Index("ix_tickets_caller_number", "caller_number"),
        Index("ix_tickets_call_uniqueid", "call_uniqueid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: STD-129: date + owner + serial, set right after the insert (the serial is the id).
    number: Mapped[str] = mapped_column(String(48), unique=True)
    type: Mapped[str] = mapped_column(String(24))
    priority: Mapped[str] = mapped_column(String(8), server_default="normal")
    status: Mapped[str] = mapped_column(String(24), server_default="open")
    owner_kind: Mapped[str] = mapped_column(String(16), server_default="agent")
    owner_id: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    #: Links (STD-130): the call, its caller's number, its agent, its recording.
    call_uniqueid: Mapped[str | None] = mapped_column(String(64))
    caller_number: Mapped[str] = mapped_column(String(64), server_default="")
    agent_id: Mapped[str | None] = mapped_column(String(32))
    recording_id: Mapped[int | None] = mapped_column(Integer)
    customer_name: Mapped[str] = mapped_column(String(100), server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    opened_at: Mapped[datetime]
    replied_at: Mapped[datetime | None]
    handled_at: Mapped[datetime | None]
    followed_up_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    test_since: Mapped[datetime | None]
    promised_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: the login the last escalation step assigned it to (the shift lead, the manager)
    escalated_to: Mapped[str | None] = mapped_column(String(64))
    #: the customer class at logging (its deadlines, STD-123); kept so clocks never move
    customer_class: Mapped[str] = mapped_column(String(16),
                                                server_default=DEFAULT_CUSTOMER_CLASS)
    #: the follow-up call's outbound task (callback_tasks.id) while closing (STD-134)
    followup_task_id: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TicketHistory(Base):
    """Every change of a ticket, with who and when: status moves, notes, replies,
    escalation steps (STD-125: chasing leaves a trace in the system)."""

    __tablename__ = "ticket_history"
    __table_args__ = (Index("ix_ticket_history_ticket_id_at", "ticket_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TicketDailyCheck(Base):
    """The daily check of open tickets (STD-125, STD-136) made for one working day: one
    row per day, inserted once, so the check fires once per day whatever restarts; the
    list it made (overdue, due today, unassigned, open too long) is kept with it."""

    __tablename__ = "ticket_daily_checks"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
