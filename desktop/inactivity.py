"""The runtime edge of the inactivity log-out (STD-102): facts in, one timer per agent.

The rule is pure (agents/inactivity.py); here are the facts it reads and the clock:

* the last input of each agent: ``activity`` frames from the desktop, and every state
  change that starts or ends work (``counts_as_input``), from the core's events;
* whether the agent's desktop is on the service page: at least one of the agent's open
  desktop connections last said it is visible (a closed connection is not);
* one timer ``idle:<agent>`` at ``last input + agents.inactivity_logout_min``; re-armed
  at each input (a ``StartTimer`` of the same key replaces the old one). When it fires
  the rule decides with the facts of that moment; an agent then on the service page is
  looked at again when the page reports otherwise or closes.

The log-out is the agent machine's ``LogOut(by="system", reason="inactivity")``; the
desktop and the board see it as the agent's state (cause ``logout``, reason
``inactivity``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callflow.agents.changes import AgentChanged
from callflow.agents.events import LogOut
from callflow.agents.inactivity import (
    INACTIVITY,
    counts_as_input,
    inactivity_logout_due,
    next_check_at,
)
from callflow.engine.effects import CancelTimer, DomainEvent, StartTimer
from callflow.errors import StateError

if TYPE_CHECKING:
    from callflow.engine.policy import Policy
    from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

TIMER_PREFIX = "idle"


class InactivityWatch:
    """Last input and service-page flags per agent; the timer; the log-out."""

    def __init__(self, runtime: Runtime, policy: Policy) -> None:
        self._runtime = runtime
        self._policy = policy
        self._last_input: dict[str, float] = {}
        self._pages: dict[str, dict[int, bool]] = {}  # agent -> connection id -> visible

    def start(self) -> None:
        self._runtime.on_event(self._on_event)
        self._runtime.own_timers(TIMER_PREFIX, self._on_timer)

    def stop(self) -> None:
        self._runtime.execute([CancelTimer(self._key(a)) for a in self._last_input])

    # --- facts ------------------------------------------------------------------------

    def activity(self, agent_id: str, connection: int, service_page: bool) -> None:
        """The desktop reported input (and whether it is on the service page)."""
        self._pages.setdefault(agent_id, {})[connection] = service_page
        self._touch(agent_id)

    def closed(self, agent_id: str, connection: int) -> None:
        """A desktop connection closed: it is no longer on the service page."""
        pages = self._pages.get(agent_id, {})
        pages.pop(connection, None)
        if not pages:
            self._pages.pop(agent_id, None)
        self._arm(agent_id)

    def on_service_page(self, agent_id: str) -> bool:
        return any(self._pages.get(agent_id, {}).values())

    def last_input(self, agent_id: str) -> float | None:
        return self._last_input.get(agent_id)

    def _on_event(self, event: DomainEvent) -> None:
        if isinstance(event, AgentChanged) and (
                event.prev_state is not None and event.prev_state is not event.agent.state
                and counts_as_input(event.agent.state, event.prev_state)):
            self._touch(event.agent.agent_id)

    def _touch(self, agent_id: str) -> None:
        self._last_input[agent_id] = self._runtime.clock.now()
        self._arm(agent_id)

    # --- the timer ----------------------------------------------------------------------

    @staticmethod
    def _key(agent_id: str) -> str:
        return f"{TIMER_PREFIX}:{agent_id}"

    def _arm(self, agent_id: str) -> None:
        last = self._last_input.get(agent_id)
        at = None if last is None else next_check_at(last, self._policy)
        if at is None:
            return
        self._runtime.execute([StartTimer(self._key(agent_id), at)])

    def _on_timer(self, key: str) -> None:
        agent_id = key.split(":", 1)[1]
        agent = self._runtime.agents.get(agent_id)
        last = self._last_input.get(agent_id)
        if agent is None or last is None:
            return
        now = self._runtime.clock.now()
        if not inactivity_logout_due(agent.state, last, self.on_service_page(agent_id), now,
                                     self._policy):
            return
        try:
            self._runtime.agent_event(agent_id, LogOut(by="system", reason=INACTIVITY))
        except StateError as exc:
            log.info("agent %s: inactivity log-out refused (%s)", agent_id, exc)
            return
        log.info("agent %s logged out after %.0f s without input (STD-102)", agent_id,
                 now - last)
