"""The case that travels with a transferred caller to the receiving desk (STD-049).

003:79 asks the agent who hands a caller on to tell the next person the caller's
situation "so the caller need not repeat it". The receiving agent's desktop gets one
``case`` message when the transferred call rings there: the caller, the call so far
(each agent's part and the waits), the first agent's note and the caller's identity
status. Built here from the core's call record alone, so the same call always gives
the same case; the desktop feature only decides when and to whom it goes.

The caller's number is under the key ``caller``: the stream's per-connection
redaction (api/privacy.py, STD-078) masks it for every role that may not see it, as
for every other frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callflow.engine.calls import InboundCall
from callflow.engine.rules import enforces

CASE_KIND = "case"  # the wire type of the message (docs/agent-protocol.md)
#: The identity status until the identity gate says otherwise (STD-077).
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class CaseNote:
    """What the transferring agent handed on with the caller."""

    call_id: str
    from_agent: str
    note: str
    destination: str  # "<kind>:<value>" (agents/transfers.py desktop_target)
    mode: str  # blind | warm
    asked_at: float  # epoch


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@enforces("STD-049")
def case_payload(call: InboundCall, note: CaseNote, to_agent: str,
                 epoch_of: Callable[[float], float] = lambda t: t,
                 identity_status: str = UNVERIFIED) -> dict[str, Any]:
    """The ``case`` message for ``to_agent``: who calls, what happened so far, the note.

    ``legs`` lists each offer of the call in order (who rang, for how long, the result,
    each answered agent's talk so far); ``waited_s`` is the caller's wait before the
    first answer. Times in the call record are epoch seconds already; ``epoch_of`` is
    there for records kept in another clock.
    """
    legs = []
    for offer in call.offers:
        talk = None
        if offer.result is not None and offer.result.value == "answered" \
                and offer.ended_at is not None and offer.left_at is not None:
            talk = offer.left_at - offer.ended_at
        legs.append({"agent_id": offer.agent_id,
                     "rang_at": round(epoch_of(offer.started_at), 3),
                     "ring_s": _seconds(offer.ring_s),
                     "result": None if offer.result is None else offer.result.value,
                     "talk_s": _seconds(talk)})
    waited = None if call.answered_at is None else call.answered_at - call.t_in
    return {
        "call_id": call.call_id,
        "to_agent": to_agent,
        "caller": call.caller,
        "did": call.did,
        "queue": call.queue,
        "entered_at": round(epoch_of(call.entered_at), 3),
        "waited_s": _seconds(waited),
        "transfer_count": call.transfer_count,
        "legs": legs,
        "history": list(call.history),
        "from_agent": note.from_agent,
        "note": note.note,
        "mode": note.mode,
        "destination": note.destination,
        "identity_status": identity_status,
    }
