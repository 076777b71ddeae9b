"""The repeat-caller view (STD-073): what the agent sees of a caller when the call rings.

A caller who has called before must not have to tell it all again (STD-073), so the
desktop shows the caller's open tickets and recent calls. Which of them, how many and how
far back is a rule, decided here from plain facts the adapter read from the store:

* only contacts within ``routing.repeat_caller_lookback_days`` (the same window the
  flow uses to recognise a repeat caller);
* at most ``tickets.repeat_view_tickets`` open tickets (most urgent first: overdue,
  then by priority, then newest) and ``tickets.repeat_view_calls`` calls (newest first),
  never the ringing call itself;
* an agent sees only the tickets of their own and their team's (the REST API's rule);
  supervisors, QA and admins see all;
* a recording link only for the roles that may play recordings (STD-078: agents never;
  the link leads to the recordings API, which audits every access).

The adapter (``tickets/desk.py``) reads the rows, calls ``select_view`` and masks numbers
per connection with the existing rules (``api/privacy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


@dataclass(frozen=True)
class Viewer:
    """Who looks: their role, their work number (agents) and their team."""

    role: str
    agent_id: str | None = None
    team: str | None = None
    sees_all: bool = False  # supervisors, QA, admins
    may_play: bool = False  # roles that may play recordings (STD-078)


@dataclass(frozen=True)
class TicketLine:
    """One of the caller's tickets, as the view needs it."""

    id: int
    number: str
    type: str
    status: str
    priority: str
    opened_at: datetime
    owner_id: str
    agent_id: str | None
    created_by: str
    team: str | None
    due_at: datetime | None
    overdue: bool
    recording_id: int | None = None


@dataclass(frozen=True)
class CallLine:
    """One earlier call of the caller."""

    call_id: str
    entered_at: datetime
    agent_id: str | None
    outcome: str | None
    disposition: str | None
    recording_id: int | None = None


@dataclass(frozen=True)
class View:
    """What the desktop shows, and how much was left out (so the page can say "more")."""

    tickets: tuple[TicketLine, ...]
    calls: tuple[CallLine, ...]
    more_tickets: int = 0
    more_calls: int = 0


CLOSED = frozenset({"closed"})


def may_see(ticket: TicketLine, viewer: Viewer) -> bool:
    """Agents see their own tickets (owned, taken on their call, created by them) and
    their team's; a shift lead (no work number) their team's; the roles that see all
    see all."""
    if viewer.sees_all:
        return True
    mine = viewer.agent_id is not None and viewer.agent_id in (
        ticket.owner_id, ticket.agent_id, ticket.created_by)
    return mine or (viewer.team is not None and ticket.team == viewer.team)


@enforces("STD-073", policy=("routing.repeat_caller_lookback_days",
                             "tickets.repeat_view_tickets", "tickets.repeat_view_calls"))
def select_view(tickets: list[TicketLine], calls: list[CallLine], *, now: datetime,
                current_call: str | None, viewer: Viewer, policy: Policy) -> View:
    """The caller's open tickets and recent calls this viewer may see, bounded by the
    Policy (how many, how far back); recording ids only for those who may play them."""
    since = now - timedelta(days=policy.routing.repeat_caller_lookback_days)
    tp = policy.tickets
    open_ones = [t for t in tickets
                 if t.status not in CLOSED and may_see(t, viewer)]
    open_ones.sort(key=lambda t: (not t.overdue, PRIORITY_RANK.get(t.priority, 9),
                                  -t.opened_at.timestamp(), -t.id))
    recent = [c for c in calls if c.call_id != current_call and c.entered_at >= since]
    recent.sort(key=lambda c: c.entered_at, reverse=True)
    shown_t = open_ones[:tp.repeat_view_tickets]
    shown_c = recent[:tp.repeat_view_calls]
    if not viewer.may_play:
        shown_t = [replace(t, recording_id=None) for t in shown_t]
        shown_c = [replace(c, recording_id=None) for c in shown_c]
    return View(tuple(shown_t), tuple(shown_c), more_tickets=len(open_ones) - len(shown_t),
                more_calls=len(recent) - len(shown_c))
