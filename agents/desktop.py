"""The agent side of callflow as one Feature: desktop, softphone feature codes, restore.

Plugged into the Service (callflow/service.py ``Feature``), it adds:

* the agent desktop: the websocket protocol (docs/agent-protocol.md, served by
  api/desktop.py) and the page at ``/desktop``;
* feature codes dialled from the softphone (``agi://.../feature``, the dialplan's
  ``agents`` context; dialplan/feature_codes.py);
* agent holds seen by AMI (``Hold``/``Unhold`` on an agent's leg) and the desktop's
  hold reminders: "update the caller" at ``hold.reminder_s`` and every
  ``hold.reminder_repeat_s`` after (STD-041), and the hold limit (STD-040);
* each agent's current call in every snapshot (``state.desks``), so a desktop that
  reconnects mid-call shows the caller, the history and the greeting again;
* restore after an engine restart (agents/restore.py) before AGI and AMI start.

Nothing here holds agent state: the runtime's agent machine is the one owner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from callflow.agents.events import AgentState, HoldEnded, HoldStarted
from callflow.agents.restore import load_stored_agents, restored
from callflow.engine import calls
from callflow.engine.effects import CancelTimer, Effect, Publish, StartTimer
from callflow.errors import CallflowError, StateError

if TYPE_CHECKING:
    from callflow.dialplan.agi import AgiSession
    from callflow.engine.runtime import AmiFrame, Runtime
    from callflow.service import AgiRoute, Service

log = logging.getLogger(__name__)

TIMER_PREFIX = "desk"
HOLD_REMINDER = "hold_update_caller"  # STD-041
HOLD_LIMIT = "hold_limit"  # STD-040


class AgentDesktop:
    """``ServiceOptions(features=[AgentDesktop()])``; ``callflow run`` lists it by default."""

    name = "agent_desktop"

    def __init__(self) -> None:
        self._service: Service | None = None
        self._hold_timers: dict[str, list[str]] = {}  # agent_id -> desk timer keys

    # --- Feature -------------------------------------------------------------------

    async def start(self, service: Service) -> None:
        self._service = service
        runtime = self.runtime
        await self._restore(service)
        runtime.on_ami("Hold", self._on_hold)
        runtime.on_ami("Unhold", self._on_hold)
        runtime.on_publish(self._on_publish)
        runtime.own_timers(TIMER_PREFIX, self._on_timer)
        runtime.extend_snapshot("desks", self.desks)

    async def stop(self) -> None:
        if self._service is not None and self._service.runtime is not None:
            self.runtime.execute([CancelTimer(k) for keys in self._hold_timers.values()
                                  for k in keys])
        self._hold_timers.clear()

    def routers(self) -> list[APIRouter]:
        from callflow.api.desktop import desktop_router
        return [desktop_router(self)]

    def agi_routes(self) -> dict[str, AgiRoute]:
        from callflow.dialplan.feature_codes import FeatureCodeContext, run_feature_code
        service = self.service
        ctx = FeatureCodeContext(self.runtime, service.policy, service.prompts)

        async def feature(session: AgiSession) -> None:
            await run_feature_code(session, ctx)

        return {"feature": feature}

    # --- access ----------------------------------------------------------------------

    @property
    def service(self) -> Service:
        if self._service is None:
            raise CallflowError("the agent desktop is not started")
        return self._service

    @property
    def runtime(self) -> Runtime:
        runtime = self.service.runtime
        if runtime is None:
            raise CallflowError("the service has no runtime yet")
        return runtime

    # --- restore ------------------------------------------------------------------------

    async def _restore(self, service: Service) -> None:
        """Agents as the store last saw them (issue 5: restored after an engine restart)."""
        store = service.store
        if store is None:
            return
        stored = await asyncio.to_thread(store.read, load_stored_agents)
        runtime = self.runtime
        now, wall = runtime.clock.now(), runtime.clock.wall()
        steps = []
        for row in stored:
            member = service.roster.by_id(row.agent_id)
            if member is None:
                continue
            steps.append(restored(row, member.endpoint, now, wall, service.policy))
        runtime.restore_agents(steps)
        active = [a.agent_id for a, _ in steps if a.state is not AgentState.LOGGED_OUT]
        log.info("restored %d agents from the store (%d logged in)", len(steps), len(active))

    # --- holds (AMI) ----------------------------------------------------------------------

    def _on_hold(self, frame: AmiFrame) -> None:
        """The agent's softphone put the caller on hold (or took them off)."""
        runtime = self.runtime
        link = runtime.agent_links.get(frame.get("Uniqueid"))
        if link is None:
            return
        event = HoldStarted(link.call_id) if frame.name == "Hold" else HoldEnded(link.call_id)
        try:
            runtime.agent_event(link.agent_id, event)
        except StateError as exc:
            log.info("agent %s: %s ignored (%s)", link.agent_id, frame.name, exc)

    # --- hold reminders ----------------------------------------------------------------

    def _on_publish(self, topic: str, payload: dict[str, Any]) -> None:
        if payload.get("type") != "agent_state" or not topic.startswith("agent:"):
            return
        agent_id = str(payload.get("agent_id"))
        on_hold = payload.get("state") == AgentState.ON_HOLD.value
        if on_hold and agent_id not in self._hold_timers:
            self._arm_hold(agent_id)
        elif not on_hold and agent_id in self._hold_timers:
            self.runtime.execute([CancelTimer(k) for k in self._hold_timers.pop(agent_id)])

    def _arm_hold(self, agent_id: str) -> None:
        agent = self.runtime.agents[agent_id]
        hold = self.service.policy.hold
        base = f"{TIMER_PREFIX}:{agent_id}:{agent.seq}"
        timers: list[Effect] = [StartTimer(f"{base}:{HOLD_REMINDER}:1",
                                           agent.since + hold.reminder_s)]
        if hold.limit_s > 0:
            timers.append(StartTimer(f"{base}:{HOLD_LIMIT}:1", agent.since + hold.limit_s))
        self._hold_timers[agent_id] = [t.key for t in timers if isinstance(t, StartTimer)]
        self.runtime.execute(timers)

    def _on_timer(self, key: str) -> None:
        """``desk:<agent>:<seq>:<kind>:<n>``: a hold reminder is due, if that hold goes on."""
        _, agent_id, seq, kind, count = key.split(":")
        runtime = self.runtime
        agent = runtime.agents.get(agent_id)
        keys = self._hold_timers.get(agent_id, [])
        if key in keys:
            keys.remove(key)
        if agent is None or agent.state is not AgentState.ON_HOLD or str(agent.seq) != seq:
            return
        hold = self.service.policy.hold
        held = runtime.clock.now() - agent.since
        effects: list[Effect] = [Publish(f"agent:{agent_id}", {
            "type": "reminder", "agent_id": agent_id, "kind": kind, "call_id": agent.call_id,
            "std": "STD-041" if kind == HOLD_REMINDER else "STD-040",
            "held_s": round(held, 1), "count": int(count)})]
        if kind == HOLD_REMINDER and hold.reminder_repeat_s > 0:
            n = int(count) + 1
            at = agent.since + hold.reminder_s + (n - 1) * hold.reminder_repeat_s
            next_key = f"{TIMER_PREFIX}:{agent_id}:{seq}:{kind}:{n}"
            keys.append(next_key)
            effects.append(StartTimer(next_key, at))
        runtime.execute(effects)

    # --- views -------------------------------------------------------------------------

    def desks(self, may_see: Any) -> dict[str, Any]:
        """Snapshot part: each visible agent's current call (caller, history, greeting)."""
        runtime = self.runtime
        out: dict[str, Any] = {}
        for agent in runtime.agents.values():
            if not may_see(f"agent:{agent.agent_id}"):
                continue
            call = runtime.calls.get(agent.call_id) if agent.call_id else None
            out[agent.agent_id] = {"call": None if call is None else {
                **calls.call_record(call, runtime.timings), "history": list(call.history)}}
        return out
