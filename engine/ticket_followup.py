"""Closing a ticket by its follow-up call (STD-134): the outbound agent's wrap-up decides.

A ticket whose type needs the customer's confirmation (``tickets.close_needs_followup``)
waits in ``awaiting_confirmation`` with an outbound ``follow_up`` task to the caller.
When the outbound agent hands in the wrap-up form of that follow-up call, its disposition
is the customer's answer: one of ``tickets.followup_confirm_dispositions`` (default
``resolved``) confirms and closes the ticket; any other (not reached, wrong person, a new
follow-up needed...) keeps it waiting, and the history says which disposition came back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from callflow.engine import tickets as core
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces


@dataclass(frozen=True)
class FollowupAnswer:
    """What the follow-up call's disposition does to the ticket."""

    ticket: core.Ticket
    action: str  # "confirmed" (closed) or "followup_unconfirmed" (kept, history row)
    closed: bool
    note: str


@enforces("STD-134", policy=("tickets.followup_confirm_dispositions",))
def answer_of_followup(ticket: core.Ticket, disposition: str, now: datetime,
                       policy: Policy) -> FollowupAnswer | None:
    """The ticket after its follow-up call ended with ``disposition``; None when the
    ticket no longer waits for the customer's word (closed or re-opened meanwhile)."""
    if ticket.status != "awaiting_confirmation":
        return None
    if disposition in policy.tickets.followup_confirm_dispositions:
        return FollowupAnswer(core.confirmed(ticket, True, now), "confirmed", True,
                              f"the follow-up call confirmed it ({disposition})")
    return FollowupAnswer(ticket, "followup_unconfirmed", False,
                          f"the follow-up call ended {disposition}: still awaiting the "
                          "customer's confirmation")
