"""Supervisor actions on agents, each audited in ``audit_log`` with who did what.

A supervisor forces an agent's state (STD-097, STD-099), logs out an agent who forgot
to at the end of a shift (STD-103), approves or refuses an absence awaiting approval
(STD-106), grants or refuses an agent's request for more after-call work (STD-100), or
listens to, whispers to or barges into the
agent's call (STD-146). Listening is ChanSpy on the agent's leg, originated to the
supervisor's own phone; whisper and barge are ChanSpy options. A monitor Asterisk
refuses is audited too (``monitor_<mode>_failed``): the trail shows the attempt.

Who may do what (STD-146, STD-148) is checked by the routes before they call here.
A refusal is a ``StateError`` with a machine-readable reason (``unknown_agent``,
``not_on_call``, ``originate_failed``, or the agent machine's own), which the routes
turn into an HTTP answer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from callflow.agents.events import (
    AgentEvent,
    AgentState,
    ApproveBusy,
    ExtendAcw,
    LogOut,
    RefuseAcwExtension,
    RefuseBusy,
    RequestState,
)
from callflow.engine.effects import Originate
from callflow.engine.rules import enforces
from callflow.errors import CallflowError, StateError
from callflow.store import repo

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

#: ChanSpy options per mode: q quiet (no beep or channel name), E end when the spied-on
#: channel hangs up, w whisper to the agent only, B barge: talk to both sides.
CHANSPY_OPTIONS = {"listen": "qE", "whisper": "qEw", "barge": "qEB"}


class SupervisorActions:
    """Force a state, log out, listen / whisper / barge: applied, then audited."""

    def __init__(self, service: FeatureServices) -> None:
        self._service = service

    async def force_state(self, by: str, agent_id: str, state: str,
                          reason: str) -> dict[str, Any]:
        """An agent's state as the supervisor ``by`` sets it (ready, busy, not_ready)."""
        event = RequestState(AgentState(state), reason, by="supervisor")
        return await self._agent_event(by, agent_id, event, "force_state",
                                       {"state": state, "reason": reason})

    @enforces("STD-103")
    async def log_out(self, by: str, agent_id: str) -> dict[str, Any]:
        return await self._agent_event(by, agent_id,
                                       LogOut(by="supervisor", reason="supervisor"), "logout", {})

    @enforces("STD-106")
    async def approve_absence(self, by: str, agent_id: str) -> dict[str, Any]:
        """Approve the agent's absence awaiting approval: no ``unapproved_absence`` flag."""
        return await self._agent_event(by, agent_id, ApproveBusy(by="supervisor"),
                                       "approve_absence", {})

    @enforces("STD-106", policy=("agents.absence_refused_state",))
    async def refuse_absence(self, by: str, agent_id: str) -> dict[str, Any]:
        """Refuse it: the agent is told and sent where the Policy says (agents/state.py)."""
        return await self._agent_event(
            by, agent_id, RefuseBusy(by="supervisor"), "refuse_absence",
            {"sent_to": self._service.policy.agents.absence_refused_state})

    @enforces("STD-100", policy=("agents.acw_extension_s",))
    async def grant_acw(self, by: str, agent_id: str) -> dict[str, Any]:
        """Grant the agent's open request for more ACW: ``agents.acw_extension_s`` more."""
        runtime = self._service.runtime
        assert runtime is not None
        agent = runtime.agents.get(agent_id)
        if agent is None:
            raise StateError("unknown_agent", agent_id)
        if agent.state is not AgentState.ACW or agent.acw_ask != "open":
            raise StateError("nothing_to_grant", f"agent {agent_id} has no open request")
        seconds = self._service.policy.agents.acw_extension_s
        return await self._agent_event(by, agent_id, ExtendAcw(seconds, by="supervisor"),
                                       "grant_acw_extension", {"seconds": seconds})

    async def refuse_acw(self, by: str, agent_id: str) -> dict[str, Any]:
        return await self._agent_event(by, agent_id, RefuseAcwExtension(by="supervisor"),
                                       "refuse_acw_extension", {})

    @enforces("STD-146")
    async def monitor(self, by: str, agent_id: str, mode: str, phone: str) -> dict[str, Any]:
        """Ring the supervisor's ``phone`` (a PJSIP endpoint) into ChanSpy on the agent's call.

        ``mode``: listen, whisper or barge (``CHANSPY_OPTIONS``)."""
        service = self._service
        runtime = service.runtime
        assert runtime is not None
        agent = runtime.agents.get(agent_id)
        member = service.roster.by_id(agent_id)
        if agent is None or member is None:
            raise StateError("unknown_agent", agent_id)
        if agent.state not in (AgentState.ON_CALL, AgentState.ON_HOLD) or not agent.call_id:
            raise StateError("not_on_call", f"agent {agent_id} is {agent.state.value}")
        call = runtime.calls.get(agent.call_id)
        offer = call.answered_offer if call is not None else None
        # the agent's leg by name when known, else every channel of their endpoint
        target = offer.channel if offer is not None and offer.channel \
            else f"PJSIP/{member.endpoint}-"
        phone = phone if phone.startswith("PJSIP/") else f"PJSIP/{phone}"
        options = CHANSPY_OPTIONS[mode]
        spy = Originate(phone, application="ChanSpy", data=f"{target},{options}",
                        caller_id=f'"{mode} {agent_id}" <{agent_id}>', timeout_ms=30000)
        detail = {"mode": mode, "phone": phone, "channel": target, "options": options,
                  "call_id": agent.call_id}
        try:
            reply = await runtime.request(spy)
        except CallflowError as exc:
            await self._audit(by, f"monitor_{mode}_failed", f"agent:{agent_id}",
                              {**detail, "error": str(exc)})
            raise StateError("originate_failed", str(exc)) from None
        await self._audit(by, f"monitor_{mode}", f"agent:{agent_id}", detail)
        return {**detail, "response": reply.get("Message", "")}

    async def _agent_event(self, by: str, agent_id: str, event: AgentEvent,
                           action: str, detail: dict[str, Any]) -> dict[str, Any]:
        """The event through the agent machine (a refusal raises and is not audited)."""
        runtime = self._service.runtime
        assert runtime is not None
        agent = runtime.agent_event(agent_id, event)
        await self._audit(by, action, f"agent:{agent_id}", detail)
        return {"agent_id": agent_id, "state": agent.state.value, "reason": agent.reason,
                "acw_deadline": agent.acw_deadline if agent.state is AgentState.ACW else None,
                "acw_extend_request": agent.acw_ask or None}

    async def _audit(self, by: str, action: str, target: str, detail: dict[str, Any]) -> None:
        store = self._service.store
        assert store is not None
        at = self._service.clock.wall()
        await asyncio.to_thread(store.run, repo.audit, by, action, at,
                                target=target, detail=detail)
