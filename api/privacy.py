"""Callers' numbers are shown only to the roles that may see them (STD-078).

Customer data is never disclosed and access to it follows the roles (STD-078,
ASSUMPTION of the standards: role-based access). Supervisors and admins see the
number of a live call (they may have to call back or escalate); an agent sees it on
their own calls only (their topic carries nothing else); QA reviews calls through
audited recordings and sees live numbers masked. The masking is applied on the
server, per connection, before a frame is encoded: a masked client never receives
the digits, whatever its page does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callflow.api.auth import Principal
from callflow.engine.rules import enforces

#: Roles that see callers' numbers in full on live streams and board data.
NUMBER_ROLES = frozenset({"supervisor", "admin", "agent"})
#: Roles that may list and play recordings (STD-078: agents never); every access goes
#: through the recordings API, which audits it (recordings/routes.py).
RECORDING_ROLES = ("supervisor", "qa", "admin")
#: Keys whose string values are a customer's number wherever they appear in a payload.
NUMBER_KEYS = frozenset({"caller_number", "number", "caller"})

Message = dict[str, Any]


def mask_number(number: str) -> str:
    """``13800001234`` -> ``138****1234``; short numbers keep only their last two digits."""
    if len(number) >= 8:
        return number[:3] + "*" * (len(number) - 7) + number[-4:]
    return "*" * max(0, len(number) - 2) + number[-2:]


def masked(value: Any) -> Any:
    """A copy of ``value`` with every number field masked (the original is shared: the hub's
    messages go to every client and must not change)."""
    if isinstance(value, dict):
        return {k: (mask_number(v) if k in NUMBER_KEYS and isinstance(v, str) else masked(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def may_see_numbers(principal: Principal) -> bool:
    return principal.role in NUMBER_ROLES


@enforces("STD-078")
def redaction_for(principal: Principal) -> Callable[[Message], Message] | None:
    """The view of hub messages this principal gets (None: unchanged)."""
    if may_see_numbers(principal):
        return None
    return masked
