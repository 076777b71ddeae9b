"""The identity gate on the agent desktop (issue 18, STD-077, STD-078).

Holds each live call's identity check (engine/identity.py ``IdentityCheck``): the PIN
outcome the inbound flow logged (``identity_pin`` event), or the agent's "verified by
questions". What an agent gets for a call:

* the header (surname, title and whatever the Policy does not hide) as soon as the
  call is offered to them, so they can address the caller (STD-020);
* the personal fields (``identity.personal_fields``) only on a ``reveal`` after the
  caller is verified; every reveal, and every refused one, is written to ``audit_log``
  (``identity.reveal`` / ``identity.reveal_refused``: who, when, call, customer,
  fields), which supervisors read at ``GET /api/v1/identity/reveals``.

Agents act on their own calls only (the call offered to or answered by them, as the
special-call actions check it); supervisors and admins on any. Changes of status go to
the agent's desktop as ``identity`` messages on their topic (never a PIN digit: the
flow drops the digits after the hash comparison).

``identity_status(call_id)`` is the one read other features use (the transfer case
frame carries it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callflow.engine import identity
from callflow.engine.calls import CallChanged, Phase
from callflow.engine.effects import DomainEvent, Logged, Publish
from callflow.errors import StateError
from callflow.store import customers, repo

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

log = logging.getLogger(__name__)

#: Event-log kinds (the flow writes ``identity_pin``; dialplan/inbound.py names it too).
PIN_RECORD = "identity_pin"
QUESTIONS_RECORD = "identity_verified"
#: How long a finished call's check is kept in memory (its status is in the event log).
RETENTION_S = 3600.0


class IdentityGate:
    """One per service, owned by the desktop feature."""

    def __init__(self, services: FeatureServices) -> None:
        self.services = services
        self.checks: dict[str, identity.IdentityCheck] = {}
        self._seen: dict[str, float] = {}  # call_id -> monotonic time of the last change
        self._told: dict[str, str] = {}  # call_id -> the agent last told its status

    def start(self) -> None:
        self.services.runtime.on_event(self._on_event)

    # --- what other features read ------------------------------------------------------

    def identity_status(self, call_id: str) -> str:
        """``unverified`` | ``verified:pin`` | ``verified:questions`` | ``failed``."""
        check = self.checks.get(call_id)
        return identity.UNVERIFIED if check is None else check.status

    # --- facts -------------------------------------------------------------------------

    def _on_event(self, event: DomainEvent) -> None:
        if isinstance(event, Logged) and event.kind == PIN_RECORD:
            status = str(event.detail.get("status", identity.UNVERIFIED))
            attempts = int(event.detail.get("pin_attempts", 0))
            by = "ivr" if status == identity.VERIFIED_PIN else ""
            check = identity.IdentityCheck(event.call_id, status, attempts, by, event.at)
            if self.checks.get(event.call_id) != check:  # the mid-call step told it already
                self._set(check)
        elif isinstance(event, CallChanged):
            if event.call.phase is Phase.ENDED:
                self._told.pop(event.call.call_id, None)
            else:
                self._tell_new_agent(event.call.call_id)

    def _tell_new_agent(self, call_id: str) -> None:
        """An offer or an answer gives the call an agent: their desktop learns the status
        with the ring (a PIN keyed before routing had nobody to tell yet)."""
        agent_id = self._agent_of(call_id)
        if agent_id is None or self._told.get(call_id) == agent_id:
            return
        self._told[call_id] = agent_id
        check = self.checks.get(call_id, identity.IdentityCheck(call_id))
        self.services.runtime.execute([Publish(f"agent:{agent_id}", {
            "type": "identity", **check.as_record()})])

    def pin_outcome(self, check: identity.IdentityCheck) -> None:
        """A mid-call PIN step's outcome, before its record (desktop/identity_pin.py)."""
        self._set(check)

    def _set(self, check: identity.IdentityCheck) -> None:
        self.checks[check.call_id] = check
        now = time.monotonic()
        self._seen[check.call_id] = now
        for call_id, seen in list(self._seen.items()):
            if now - seen > RETENTION_S and call_id not in self.services.runtime.calls:
                self._seen.pop(call_id, None)
                self.checks.pop(call_id, None)
                self._told.pop(call_id, None)
        agent_id = self._agent_of(check.call_id)
        if agent_id:
            self._told[check.call_id] = agent_id
            self.services.runtime.execute([Publish(f"agent:{agent_id}", {
                "type": "identity", **check.as_record()})])

    # --- requests (desktop/identity_routes.py; run on the loop) ------------------------

    def _agent_of(self, call_id: str) -> str | None:
        call = self.services.runtime.calls.get(call_id)
        if call is None:
            return None
        if call.agent_id is not None:
            return call.agent_id
        offer = call.current_offer
        return offer.agent_id if offer is not None else None

    def _own(self, call_id: str, agent_id: str | None) -> Any:
        """The live call, if ``agent_id`` (None: a supervisor) may act on it."""
        call = self.services.runtime.calls.get(call_id)
        if call is None:
            raise StateError("not_found", f"no live call {call_id[:64]!r}")
        if agent_id is not None and self._agent_of(call_id) != agent_id:
            raise StateError("not_your_call", f"call {call_id} is not offered to or "
                                              f"answered by agent {agent_id}")
        return call

    async def view(self, call_id: str, agent_id: str | None) -> dict[str, Any]:
        """The header, the check and the names of the hidden fields (no personal data)."""
        call = self._own(call_id, agent_id)
        policy = self.services.policy
        got = await asyncio.to_thread(self.services.store.read,
                                      customers.customer_for_number, call.caller)
        found = None if got is None else got[0]
        return {"call_id": call_id, "status": self.identity_status(call_id),
                "has_pin": got is not None and got[1] is not None,  # the mid-call ask
                "method": policy.identity.method,
                "pin_attempts": self.checks.get(call_id, identity.IdentityCheck(call_id))
                .pin_attempts,
                "customer": None if found is None else identity.header(found, policy),
                "hidden": list(identity.hidden_fields(policy)) if found else []}

    def verify_by_questions(self, call_id: str, agent_id: str | None,
                            actor: str) -> dict[str, Any]:
        """The agent asked the questions and vouches for the caller (recorded who/when)."""
        self._own(call_id, agent_id)
        before = self.checks.get(call_id, identity.IdentityCheck(call_id))
        try:
            after = identity.questions_verified(before, self.services.policy, actor,
                                                time.time())
        except identity.IdentityError as exc:
            raise StateError(exc.code, str(exc)) from None
        if after is not before:
            self._set(after)
            self.services.runtime.execute([Logged(QUESTIONS_RECORD, call_id, after.at, {
                "status": after.status, "by": actor})])
        return after.as_record()

    async def reveal(self, call_id: str, agent_id: str | None, actor: str,
                     wanted: list[str]) -> dict[str, Any]:
        """The personal fields asked for, once verified; audited whether given or not."""
        call = self._own(call_id, agent_id)
        found = await self._customer(call.caller)
        if found is None:
            raise StateError("no_customer", "the caller's number is no known customer's")
        check = self.checks.get(call_id, identity.IdentityCheck(call_id))
        target = f"call:{call_id}"
        base = {"customer_id": found["customer_id"], "status": check.status}
        try:
            fields = identity.reveal(check, wanted, self.services.policy)
        except identity.IdentityError as exc:
            await self._audit(actor, "identity.reveal_refused", target,
                              {**base, "fields": wanted[:10], "reason": exc.code})
            raise StateError(exc.code, str(exc)) from None
        await self._audit(actor, "identity.reveal", target, {**base, "fields": list(fields)})
        return {"call_id": call_id, "customer_id": found["customer_id"],
                "fields": {f: found[f] for f in fields}}

    async def reveals(self, limit: int) -> list[dict[str, Any]]:
        def read(s: Any) -> list[dict[str, Any]]:
            rows = [*repo.audit_entries(s, action="identity.reveal", limit=limit),
                    *repo.audit_entries(s, action="identity.reveal_refused", limit=limit)]
            rows.sort(key=lambda e: (e.at, e.id), reverse=True)
            return [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                     "call_id": e.target.removeprefix("call:"), **e.detail}
                    for e in rows[:limit]]
        return await asyncio.to_thread(self.services.store.read, read)

    async def _customer(self, number: str) -> dict[str, Any] | None:
        found = await asyncio.to_thread(self.services.store.read,
                                        customers.customer_for_number, number)
        return None if found is None else found[0]

    async def audit_entry(self, actor: str, action: str, target: str,
                          detail: dict[str, Any]) -> None:
        """One audit row, for the mid-call PIN step (desktop/identity_pin.py)."""
        await self._audit(actor, action, target, detail)

    async def _audit(self, actor: str, action: str, target: str,
                     detail: dict[str, Any]) -> None:
        """Written before the answer is sent: no reveal goes unrecorded."""
        await asyncio.to_thread(self.services.store.run, repo.audit, actor, action,
                                datetime.now(UTC), target=target, detail=detail)
