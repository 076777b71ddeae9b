"""What the agent machine says happened: typed domain events, one per kind of fact.

``agents/state.py`` returns these among its effects. The store keeps them
(``callflow.store.rows``), the live stream shows them (``callflow.stream.frames``),
and features read them as they are (the board's live figures, queue_log, the
desktop's hold reminders). Times are monotonic seconds, as the machine keeps them;
the edges add wall time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callflow.engine.effects import DomainEvent

if TYPE_CHECKING:
    from callflow.agents.events import AgentState
    from callflow.agents.state import AgentSnapshot


@dataclass(frozen=True)
class AgentChanged(DomainEvent):
    """The agent's snapshot changed. ``prev_state`` is set when the agent entered a new
    state (a row in the state log); an update within the state (ACW extended, approval,
    softphone reachability, restore) leaves it None."""

    agent: AgentSnapshot
    by: str
    cause: str
    prev_state: AgentState | None = None
    prev_reason: str = ""

    @property
    def entered(self) -> bool:
        return self.prev_state is not None


@dataclass(frozen=True)
class RequestRejected(DomainEvent):
    """A request was refused (the agent's desktop is told why); nothing changed."""

    agent: AgentSnapshot
    event: str  # the request's type name
    reason: str
    detail: str


@dataclass(frozen=True)
class AgentAlert(DomainEvent):
    """Something the agent must be told now (e.g. a busy reason past its limit)."""

    agent_id: str
    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentLoggedIn(DomainEvent):
    """The desk the agent sits at, so a restart puts them back there (hot-desking)."""

    agent_id: str
    extension: str
    by: str
    at: float


@dataclass(frozen=True)
class BusyAwaitingApproval(DomainEvent):
    """A busy that needs a supervisor's approval began (STD-106); a restart must know."""

    agent_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class BusyApproved(DomainEvent):
    """A supervisor approved the agent's absence (STD-106)."""

    agent_id: str
    reason: str
    at: float


@dataclass(frozen=True)
class AcwFinished(DomainEvent):
    """One after-call work period ended (STD-100): how long, and how it ended."""

    agent_id: str
    call_id: str
    seconds: float
    ended_by: str
    overrun: bool
    extended: bool
    at: float
    limit_s: float = 0.0  # the limit this ACW had (acw_limit_s, or as a supervisor extended it)


@dataclass(frozen=True)
class WrapupOwed(DomainEvent):
    """A call ended that owes the wrap-up form (STD-092): in the event log, so an engine
    restart knows the form is still owed (store/agent_log.py), and whether, missing, it
    only flags the call (issue 18) or holds the agent in ACW."""

    agent_id: str
    call_id: str
    at: float
    flag_only: bool = False


@dataclass(frozen=True)
class WrapupMissing(DomainEvent):
    """The ACW of a call ended without its wrap-up form, and the Policy lets the agent go on
    (``outbound.wrapup_missing_inbound`` / ``_outbound`` = flag): the call is flagged
    (``calls.wrapup_missing``), issue 18."""

    agent_id: str
    call_id: str
    at: float


@dataclass(frozen=True)
class WrapupSubmitted(DomainEvent):
    """The agent submitted the wrap-up form of a call (STD-092): stored with the call."""

    agent_id: str
    call_id: str
    disposition: str
    notes: str
    by: str
    at: float


@dataclass(frozen=True)
class AcwExtended(DomainEvent):
    """A supervisor extended the agent's ACW for the current call."""

    agent_id: str
    call_id: str
    seconds: float
    deadline: float
    at: float


@dataclass(frozen=True)
class AgentDayClosed(DomainEvent):
    """The agent's day totals at the centre's midnight (STD-103)."""

    agent_id: str
    totals: Mapping[str, float]
    calls_handled: int
    ring_no_answer_count: int
    acw_overruns: int
    at: float
