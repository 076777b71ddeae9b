"""The agent's "ask for the PIN" in the middle of a call (issue 18, STD-077).

The desktop sends ``{"type": "identity_pin"}``; ``ask`` checks it against the call, the
customer record and the identity check (engine/identity.py ``pin_ask_refusal``: one
clear refusal, nothing changed) and presses the PIN feature code on the agent's leg
(desktop/keypad.py: AMI PlayDTMF ``Receive: true``, key by key). Asterisk then runs the
``identity-pin`` AGI on the caller's channel (callflow/pbx/midcall_pin.py says how;
dialplan/midcall_pin.py is the AGI), which takes the ask (``take``), collects the PIN
while the agent hears hold music, and reports (``done``): the outcome goes to the event
log as an ``identity_pin`` record (the gate tells the agent's desktop with an
``identity`` frame), and to the audit (``identity.pin_midcall``: who asked, when, the
outcome, the interval). An ask Asterisk never took up lapses after
``identity.pin_ask_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from callflow.desktop.identity import PIN_RECORD
from callflow.dialplan.midcall_pin import MidcallPinContext, PinAsk, PinStepDone
from callflow.engine import identity
from callflow.engine.calls import Phase
from callflow.engine.effects import Logged
from callflow.errors import StateError
from callflow.store import customers

if TYPE_CHECKING:
    from callflow.desktop.identity import IdentityGate
    from callflow.desktop.keypad import KeyPad

log = logging.getLogger(__name__)

AUDIT_ACTION = "identity.pin_midcall"


class MidcallPin:
    """One per service, beside the identity gate it reports to."""

    def __init__(self, gate: IdentityGate, feature_code: str, keypad: KeyPad) -> None:
        self.gate = gate
        self.services = gate.services
        self.feature_code = feature_code
        self.keypad = keypad
        self.asks: dict[str, PinAsk] = {}  # call id -> the ask not yet taken up
        self.running: dict[str, PinAsk] = {}  # call id -> the ask whose AGI runs

    def _policy(self, call_id: str) -> Any:
        call = self.services.runtime.calls.get(call_id)
        policy = self.services.policy
        return policy.for_queue(call.queue) if call is not None else policy

    def _pending(self, call_id: str) -> bool:
        ask = self.asks.get(call_id)
        if ask is not None and time.monotonic() - ask.asked_at > \
                self._policy(call_id).identity.pin_ask_timeout_s:
            log.warning("call %s: the PIN step asked by agent %s never started; the ask "
                        "lapsed", call_id, ask.agent_id)
            del self.asks[call_id]
            ask = None
        return ask is not None or call_id in self.running

    async def ask(self, agent_id: str, actor: str) -> dict[str, Any]:
        """The agent's request; ``StateError`` with the refusal's code, nothing changed."""
        runtime = self.services.runtime
        agent = runtime.agents.get(agent_id)
        call = runtime.calls.get(agent.call_id) if agent is not None and agent.call_id \
            else None
        found = None
        if call is not None:
            found = await asyncio.to_thread(self.services.store.read,
                                            customers.customer_for_number, call.caller)
        # read again after the lookup: the call may have moved on meanwhile
        call = runtime.calls.get(call.call_id) if call is not None else None
        talking = call.talking_offer if call is not None else None
        on_call = call is not None and call.phase is Phase.CONNECTED and \
            call.agent_id == agent_id and talking is not None and bool(talking.channel)
        if on_call and call is not None and talking is not None:
            # in the caller's bridge with the agent's leg (AMI's view): the feature hooks
            # exist only there; during the opening (Dial's A()) the code would be lost
            peers = runtime.asterisk.view.peers(call.call_id)
            on_call = any(p.name == talking.channel for p in peers)
        call_id = call.call_id if call is not None else ""
        check = self.gate.checks.get(call_id, identity.IdentityCheck(call_id))
        refused = identity.pin_ask_refusal(
            check, self._policy(call_id), on_call=on_call,
            has_pin=found is not None and found[1] is not None,
            asking=on_call and self._pending(call_id))
        if refused is not None:
            raise StateError(refused.code, str(refused))
        assert call is not None and talking is not None and found is not None
        ask = PinAsk(call_id, agent_id, actor, talking.channel,
                     str(found[0]["customer_id"]), str(found[1]), time.monotonic())
        for other in [c for c in self.asks if c not in runtime.calls]:
            del self.asks[other]  # asks of calls that ended before Asterisk took them up
        self.asks[call_id] = ask
        self.keypad.press(talking.channel, self.feature_code, f"call {call_id}'s PIN step")
        log.info("call %s: agent %s asks for the caller's PIN (feature code pressed on %s)",
                 call_id, agent_id, talking.channel)
        return {"type": "identity_pin", "state": "asking", "call_id": call_id,
                "pin_attempts": check.pin_attempts}

    # --- the AGI's side (dialplan/midcall_pin.py) -----------------------------------------

    def context(self) -> MidcallPinContext:
        return MidcallPinContext(
            prompts=self.services.prompts, policy_for=self._policy, take_ask=self.take,
            check_of=lambda call_id: self.gate.checks.get(call_id,
                                                          identity.IdentityCheck(call_id)),
            told=self.told, done=self.done)

    def take(self, call_id: str) -> PinAsk | None:
        if call_id in self.running or not self._pending(call_id):
            return None
        ask = self.asks.pop(call_id)
        self.running[call_id] = ask
        return ask

    def told(self, ask: PinAsk, check: identity.IdentityCheck) -> None:
        """The outcome, at once: the agent's desktop gets its ``identity`` frame."""
        self.gate.pin_outcome(check)

    async def done(self, result: PinStepDone) -> None:
        ask, check = result.ask, result.check
        self.running.pop(ask.call_id, None)
        detail: dict[str, Any] = {
            **check.as_record(), "customer_id": ask.customer_id, "midcall": True,
            "asked_by": ask.actor, "pin_started": result.started,
            "pin_s": round(result.ended - result.started, 3), "hung_up": result.hung_up}
        self.services.runtime.execute([Logged(PIN_RECORD, ask.call_id,
                                              check.at or result.ended, detail)])
        await self.gate.audit_entry(ask.actor, AUDIT_ACTION, f"call:{ask.call_id}", detail)
