"""The outbound feature: the dialer (``outbound/dialer.py``) and the tasks API
(``outbound/routes.py``) plugged into the service (STD-081..096)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from callflow.agents.changes import WrapupSubmitted
from callflow.engine import outbound
from callflow.engine.effects import DomainEvent
from callflow.engine.numbers import DEFAULT_COUNTRY, PLANS
from callflow.outbound.dialer import (
    FAILED_TICK_PAUSE_S,
    TICK_S,
    Dialer,
    LegAttempt,
    create_callback,
)
from callflow.outbound.store_access import customer_number_of
from callflow.trunks import outbound_trunk

if TYPE_CHECKING:
    from fastapi import APIRouter

    from callflow.feature import AgiRoute, FeatureServices
    from callflow.store.models import CallbackTask

log = logging.getLogger(__name__)


class OutboundFeature:
    """Plugs the dialer and the task API into the service (``ServiceOptions.features``)."""

    name = "outbound"

    def __init__(self, *, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.service: FeatureServices | None = None
        self.dialer: Dialer | None = None
        self.route = outbound.OutboundRoute()  # the outbound trunk's, once started
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self, service: FeatureServices) -> None:
        self.service = service
        trunk = outbound_trunk(service.settings.trunks)
        # no trunk: numbers are read in the deployment's country (CALLFLOW_COUNTRY)
        home = service.settings.country if service.settings.country in PLANS \
            else DEFAULT_COUNTRY
        self.route = trunk.route() if trunk is not None else outbound.OutboundRoute(
            country=home)
        self.dialer = Dialer(service.store, service.runtime, service.policy, service.clock,
                             route=self.route)
        service.runtime.hold_agents(self.dialer.holds_agent)  # own callbacks first (STD-069)
        service.runtime.on_event(self._on_event)  # "follow-up needed" wrap-ups (issue 18)
        self._follow_ups: set[asyncio.Task[None]] = set()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())
        log.info("outbound dialer started (%s mode, customer rings %gs, agent rings %gs)",
                 service.policy.outbound.dial_mode,
                 outbound.customer_ring_seconds(service.policy),
                 outbound.agent_ring_seconds(service.policy))

    async def _run(self) -> None:
        assert self.dialer is not None
        while True:
            pause = self.tick_s
            try:
                await self.dialer.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick must not stop outbound calling for good
                log.exception("dialer tick failed; next try in %gs", FAILED_TICK_PAUSE_S)
                pause = max(pause, FAILED_TICK_PAUSE_S)  # e.g. the database is down
            await asyncio.sleep(pause)

    def _on_event(self, event: DomainEvent) -> None:
        """A wrap-up form whose disposition asks for a follow-up makes the follow-up task
        (issue 18), owned by the agent, for the call's customer number."""
        if not isinstance(event, WrapupSubmitted) or self.service is None:
            return
        reason = outbound.follow_up_of(event.disposition, self.service.policy)
        if reason is None:
            return
        task = asyncio.get_running_loop().create_task(self._follow_up(event, reason))
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    async def _follow_up(self, event: WrapupSubmitted,
                         reason: outbound.FollowUpReason) -> None:
        assert self.service is not None
        call = self.service.runtime.calls.get(event.call_id)
        number = call.caller if call is not None else ""
        try:
            if not number:  # gone from memory, or an outbound attempt: the store knows
                await asyncio.to_thread(self.service.writer.flush)
                number = await asyncio.to_thread(
                    self.service.store.read, customer_number_of, event.call_id)
            if not number:
                log.warning("call %s: follow-up wanted but the customer's number is unknown",
                            event.call_id)
                return
            task, created = await self.add_task(
                "follow_up", number, owner_agent_id=event.agent_id,
                created_from_call_id=event.call_id, note=event.notes[:500], follow_up=reason)
            log.info("call %s: follow-up task #%d (%s, due %s)%s", event.call_id, task.id,
                     reason, task.due_at, "" if created else " already open")
        except Exception:  # a task not made must not stop the engine; the log says which
            log.exception("call %s: follow-up task not created", event.call_id)

    async def stop(self) -> None:
        for pending in list(getattr(self, "_follow_ups", ())):
            with contextlib.suppress(Exception):
                await pending
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self.dialer is not None:
            await self.dialer.drain()

    def routers(self) -> list[APIRouter]:
        from callflow.outbound.campaign_routes import campaigns_router
        from callflow.outbound.routes import tasks_router
        return [tasks_router(self), campaigns_router(self)]

    def agi_routes(self) -> dict[str, AgiRoute]:
        return {}

    def attempt_for_leg(self, uid: str) -> LegAttempt | None:
        """The live attempt one of whose legs (agent or customer) has uniqueid ``uid``:
        the recordings feature records an outbound call on its agent leg (STD-114)."""
        return self.dialer.attempt_for_leg(uid) if self.dialer is not None else None

    async def add_task(self, kind: str, number: str, *, owner_agent_id: str | None = None,
                       due: datetime | None = None, created_from_call_id: str | None = None,
                       note: str = "", follow_up: outbound.FollowUpReason = "general",
                       max_attempts: int | None = None) -> tuple[CallbackTask, bool]:
        """``create_callback`` off the loop, then the desktops are told at once."""
        assert self.service is not None
        service, store = self.service, self.service.store
        task, created = await asyncio.to_thread(
            create_callback, store, kind, number, owner_agent_id, due,
            created_from_call_id, policy=service.policy, now=service.clock.wall(), note=note,
            follow_up=follow_up, max_attempts=max_attempts, country=self.route.country)
        if self.dialer is not None:
            self.dialer.tell(task)
        return task, created
