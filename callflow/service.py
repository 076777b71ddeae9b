"""The whole product in one process: store, core, FastAGI, AMI and the API, wired.

``callflow run`` starts this next to an Asterisk it manages; the integration tests
start the same object against the test Asterisk, so what is tested is what runs.
Start order matters: the store and the core first (so no event finds them
missing), then the FastAGI server (so Asterisk's first AGI call is answered), then
AMI (whose resync needs the core), then the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from fastapi import FastAPI

from callflow.agents.roster import Roster
from callflow.ami.client import AmiClient
from callflow.ami.pbx import AmiPbx
from callflow.api.accounts import Logins, login_router
from callflow.api.app import ApiDeps, create_app, server_config
from callflow.api.language import default_language, language_router
from callflow.demo.pidfile import demo_running
from callflow.dialplan.inbound import FlowContext, run_inbound, run_outbound_survey
from callflow.dialplan.server import FastAgiServer
from callflow.engine.clock import Clock, RealClock, epoch_of
from callflow.engine.effects import (
    Alarm,
    DomainEvent,
    ListChannels,
    ListContacts,
    ListEndpoints,
)
from callflow.engine.policy import Policy
from callflow.errors import CallflowError, StoreError
from callflow.feature import AgiRoute, Feature, FeatureServices
from callflow.gc_tuning import tune_after_startup
from callflow.pbx.demo_carrier import DemoCarrier
from callflow.pbx.process import AsteriskProcess
from callflow.pbx.prompts import LanguagePack, PromptLibrary
from callflow.pbx.render import AMI_HOST, INBOUND_FLOW_CONTEXT, RESUME_CONTEXT
from callflow.pbx.supervisor import PbxSupervisor, SupervisionRules
from callflow.recovery import CallRecovery
from callflow.runtime.core import Adapters, PbxPort, Runtime
from callflow.runtime.trunk_watch import TrunkWatch
from callflow.settings import Settings
from callflow.store import customers, records, repo
from callflow.store.applied import StoreSink
from callflow.store.db import Store, open_store
from callflow.store.journal import Journal
from callflow.store.rows import rows
from callflow.store.watch import StoreWatcher
from callflow.store.writer import PersistQueue
from callflow.stream.frames import frames
from callflow.stream.hub import EventHub
from callflow.trunks import with_trunk_dids

log = logging.getLogger(__name__)

@dataclass
class ServiceOptions:
    agi_max_sessions: int = 500
    serve_api: bool = True
    features: list[Feature] = field(default_factory=list)
    # the Asterisk this engine runs (``callflow run``): supervised, started again if it dies
    pbx: AsteriskProcess | None = None
    # the demo carrier is wired (no outbound trunk): every page says DEMO (api/demo_marker.py)
    demo_carrier: DemoCarrier | None = None
    # ``callflow run``: freeze start-up's objects out of the collector's reach once started
    # (callflow/gc_tuning.py, settings.gc); off for services started inside test processes
    tune_gc: bool = False


class Service:
    def __init__(self, settings: Settings, policy: Policy, roster: Roster,
                 options: ServiceOptions | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.policy = with_trunk_dids(policy, settings.trunks)  # the carriers' DIDs routed too
        self.roster = roster
        self.options = options or ServiceOptions()
        self.clock = clock or RealClock()
        self.hub = EventHub()
        self.store: Store | None = None
        self.writer: PersistQueue | None = None
        self.runtime: Runtime | None = None
        self.agi: FastAgiServer | None = None
        self.ami: AmiClient | None = None
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self.supervisor: PbxSupervisor | None = None
        self._supervising: asyncio.Task[None] | None = None
        self._pbx_started = ""  # Asterisk's own start time, as AMI last reported it
        self.logins: Logins | None = None  # sessions need the store: made in start()
        self.store_watch: StoreWatcher | None = None
        self._store_watch_task: asyncio.Task[None] | None = None
        self.prompts = PromptLibrary(
            LanguagePack.load(policy.greetings.language), settings.state_dir / "prompts",
            {"centre": policy.greetings.centre_name})

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        store = await asyncio.to_thread(open_store, self.settings.database_url)
        self.store = store
        logins = Logins(store, self.policy.security, self.clock, self.settings.api_token,
                        default_language(self.settings.ui_language,
                                         self.policy.greetings.language))
        self.logins = logins
        await asyncio.to_thread(records.sync_roster, store, self.roster)
        self.writer = await self._start_journal(store)
        await asyncio.to_thread(self.prompts.build_all, self.policy,
                                [(a.agent_id, a.name) for a in self.roster.agents], self.today())
        self.ami = AmiClient(AMI_HOST, self.settings.ports.ami,
                             self.settings.ami_username, self.settings.ami_secret)
        self.runtime = Runtime(self.policy, self.clock, self.roster, edge_adapters(
            self.clock, persist=self.writer.put, publish=self.hub.publish,
            pbx=AmiPbx(self.ami)))
        self.hub.snapshot_provider(self.runtime.snapshot)
        self._start_store_watch(self.runtime)
        self.trunk_watch = TrunkWatch(self.runtime, self.settings.trunks)
        services = FeatureServices(
            settings=self.settings, policy=self.policy, roster=self.roster, clock=self.clock,
            store=store, writer=self.writer, runtime=self.runtime, hub=self.hub,
            prompts=self.prompts, auth=logins.auth, today=self.today)
        for feature in self.options.features:
            await feature.start(services)
        ctx = FlowContext(runtime=self.runtime, policy=self.policy, prompts=self.prompts,
                          clock=self.clock, today=self.today, history=self.caller_history,
                          customer=self.customer_for_number)
        routes: dict[str, AgiRoute] = {
            "inbound": lambda session: run_inbound(session, ctx),
            "outbound_survey": lambda session: run_outbound_survey(session, ctx)}
        for feature in self.options.features:
            routes.update(feature.agi_routes())
        self.agi = FastAgiServer(self.settings.bind_host, self.settings.ports.agi, routes,
                                 max_sessions=self.options.agi_max_sessions,
                                 refused_routes={INBOUND_FLOW_CONTEXT: "inbound",
                                                 RESUME_CONTEXT: "inbound"})
        await self.agi.start()
        self.ami.subscribe(self.runtime.on_ami_batch)
        self.ami.only_events(self.runtime.ami_event_names)  # issue 20: nothing nobody reads
        self.ami.on_connected(self._resync)
        # issue 14: then calls that ended out of sight, from Asterisk's records (CEL)
        self.recovery = CallRecovery(self.runtime, store, self.writer, self.settings,
                                     self.policy)
        self.ami.on_connected(self.recovery.after_resync)
        await self.ami.start()
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="reconcile")
        if self.options.pbx is not None:
            self._supervise(self.options.pbx)
        if self.options.serve_api:
            await self._start_api()
        if self.options.tune_gc:
            log.info("garbage collector set up after start-up: %s",
                     tune_after_startup(self.settings.gc))

    async def stop(self) -> None:
        for task in (self._store_watch_task, self._supervising, self._reconciler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._api_server is not None:
            self._api_server.should_exit = True
            if self._api_task is not None:
                await asyncio.wait([self._api_task], timeout=5)
        if self.ami is not None:
            await self.ami.stop()
        if self.agi is not None:
            await self.agi.stop()
        for feature in reversed(self.options.features):
            await feature.stop()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
        if self.store is not None:
            self.store.close()

    # --- the store journal and its watch (issue 14) ----------------------------------------

    async def _start_journal(self, store: Store) -> PersistQueue:
        """The writer over the journal; what a previous run left in the journal goes to the
        database first, and the start waits for it (up to ``store.replay_wait_s``): the
        features read the store as they start."""
        rules = self.policy.store
        journal = Journal(self.settings.state_dir / "store-journal",
                          segment_bytes=rules.journal_segment_bytes)
        writer = await asyncio.to_thread(
            PersistQueue, StoreSink(store, journal.journal_id), journal,
            self.settings.state_dir / "dead-letter-records.jsonl", rules)
        if writer.stats.replayed:
            if await asyncio.to_thread(writer.flush, rules.replay_wait_s):
                log.warning("journal replayed: %d records written to the store",
                            writer.stats.replayed)
            else:
                log.error("journal replay unfinished after %.0f s (%s): %d records still "
                          "waiting, written before anything new", rules.replay_wait_s,
                          writer.stats.last_error or "slow store", writer.stats.pending)
        return writer

    def _start_store_watch(self, runtime: Runtime) -> None:
        """Store outages alarmed through the runtime (the board sees them live)."""
        assert self.writer is not None and self.store is not None
        sink = StoreSink(self.store, self.writer.journal.journal_id)
        self.store_watch = StoreWatcher(self.writer, sink.probe, self.policy.store,
                                        lambda alarm: runtime.execute([alarm]))
        self._store_watch_task = asyncio.create_task(self.store_watch.run(), name="store-watch")

    def demo_status(self) -> str | None:
        """Why this deployment runs as a demo (the pages' DEMO marker), None if it does not."""
        reasons = []
        if self.options.demo_carrier is not None:
            reasons.append("demo carrier: outbound calls reach test numbers "
                           + ", ".join(self.options.demo_carrier.numbers_in_order()))
        if demo_running(self.settings.state_dir):
            reasons.append("callflow demo is placing simulated calls")
        return "; ".join(reasons) or None

    def build_app(self) -> FastAPI:
        """The API of the started service: the app, the logins and every feature's routes
        (served by ``_start_api``; the tests call it in-process)."""
        assert self.logins is not None, "start() first"
        app = create_app(ApiDeps(hub=self.hub, health=self.health,
                                 api_token=self.settings.api_token, auth=self.logins.auth,
                                 demo=self.demo_status))
        app.include_router(login_router(self.logins))
        app.include_router(language_router(self.logins.default_language))
        for feature in self.options.features:
            for router in feature.routers():
                app.include_router(router)
        return app

    async def _start_api(self) -> None:
        config = server_config(self.build_app(), self.settings.bind_host,
                               self.settings.ports.api)
        self._api_server = uvicorn.Server(config)
        self._api_task = asyncio.create_task(self._api_server.serve())
        for _ in range(200):
            if self._api_server.started or self._api_task.done():
                break
            await asyncio.sleep(0.025)
        if self._api_task.done():
            self._api_task.result()

    # --- edges --------------------------------------------------------------------------

    def _supervise(self, pbx: AsteriskProcess) -> None:
        rules = self.policy.supervision
        self.supervisor = PbxSupervisor(
            pbx, on_down=self._pbx_down, on_up=self._pbx_up, on_gave_up=self._pbx_gave_up,
            rules=SupervisionRules(check_s=rules.pbx_check_interval_s,
                                   backoff_max_s=rules.pbx_restart_backoff_max_s,
                                   max_restarts=rules.pbx_max_restarts,
                                   window_s=rules.pbx_restart_window_s))
        self._supervising = asyncio.create_task(self.supervisor.run(), name="pbx-supervisor")

    def _pbx_alarm(self, kind: str, **detail: Any) -> None:
        assert self.runtime is not None
        self.runtime.execute([Alarm(kind, detail, std="STD-147")])

    def _pbx_down(self, reason: str) -> None:
        assert self.runtime is not None
        lost = self.runtime.pbx_lost(reason)
        self._pbx_alarm("pbx_down", reason=reason, corrections=lost)

    def _pbx_up(self, down_s: float) -> None:
        assert self.supervisor is not None
        self._pbx_alarm("pbx_restarted", down_s=round(down_s, 2), pid=self.supervisor.process.pid,
                        restarts=self.supervisor.restarts)

    def _pbx_gave_up(self, why: str) -> None:
        self._pbx_alarm("pbx_gave_up", reason=why)

    async def _check_pbx_restart(self) -> None:
        """An Asterisk that restarted while AMI was away (not ours to supervise, or faster
        than the supervisor's check) took its calls with it: they are lost to a PBX
        failure, not ended by anyone. Asterisk's own start time tells."""
        assert self.ami is not None and self.runtime is not None
        try:
            status = await self.ami.send("CoreStatus", {})
        except CallflowError as exc:
            log.warning("CoreStatus failed: %s", exc)
            return
        started = f"{status.get('CoreStartupDate', '')} {status.get('CoreStartupTime', '')}"
        before, self._pbx_started = self._pbx_started, started
        if before and started != before:
            reason = f"Asterisk restarted (started {before.strip()}, now {started.strip()})"
            lost = self.runtime.pbx_lost(reason)  # nothing left to do if the supervisor saw it
            log.log(logging.ERROR if lost else logging.INFO, "%s", reason)
            if lost:
                self._pbx_alarm("pbx_down", reason=reason, corrections=lost)

    async def _resync(self) -> None:
        """After every AMI (re)login: learn what happened while we could not see."""
        assert self.runtime is not None
        await self._check_pbx_restart()
        channels = await self.runtime.query(ListChannels())
        endpoints = await self.runtime.query(ListEndpoints())
        contacts = await self.runtime.query(ListContacts())
        self.runtime.apply_resync(channels, contacts, endpoints)
        log.info("AMI resync: %d channels, %d endpoints, %d registered contacts",
                 len(channels), len(endpoints), len(contacts))

    async def _reconcile_forever(self) -> None:
        """Every ``supervision.reconcile_interval_s``: the engine against Asterisk's listing
        (runtime/reconcile.py); a failed round is logged and retried next time."""
        assert self.runtime is not None
        while True:
            await asyncio.sleep(self.policy.supervision.reconcile_interval_s)
            try:
                await self.runtime.reconcile_now()
            except CallflowError as exc:
                log.warning("reconciliation skipped: %s", exc)
            except Exception:
                log.exception("reconciliation failed")

    def today(self) -> date:
        """The centre's local date (holiday greetings, STD-017)."""
        return self.clock.wall().astimezone(ZoneInfo(self.policy.calendar.timezone)).date()

    def customer_for_number(self, number: str) -> tuple[dict[str, Any], str | None] | None:
        """The customer calling from ``number`` and their PIN hash (STD-077); runs in a
        worker thread. With the store down the caller is treated as unknown (no PIN step)."""
        assert self.store is not None
        try:
            return self.store.read(customers.customer_for_number, number)
        except StoreError as exc:
            log.warning("customer unknown, the store is unavailable: %s", exc)
            return None

    def caller_history(self, number: str) -> tuple[dict[str, Any], ...]:
        """The caller's recent contacts (STD-073); runs in a worker thread. With the store
        down the call goes on without them (measured on PostgreSQL: the failed read ended
        our flow and the call fell back to the dialplan's plain queue)."""
        assert self.store is not None
        since = self.clock.wall() - timedelta(days=self.policy.routing.repeat_caller_lookback_days)
        try:
            rows = self.store.read(repo.recent_contacts, number, since=since, limit=5)
        except StoreError as exc:
            log.warning("caller history unknown, the store is unavailable: %s", exc)
            return ()
        return tuple({"uniqueid": c.uniqueid, "entered_at": c.entered_at.isoformat()
                      if c.entered_at else None, "outcome": c.outcome, "agent_id": c.agent_id}
                     for c in rows)

    async def health(self) -> dict[str, dict[str, Any]]:
        ami_stats = self.ami.stats if self.ami is not None else {}
        agi_stats = self.agi.stats if self.agi is not None else {}
        return {
            **self._pbx_health(),
            "ami": {"ok": bool(self.ami and self.ami.up), **_scalars(ami_stats)},
            "agi": {"ok": self.agi is not None, **_scalars(agi_stats)},
            "store": (self.store_watch.component() if self.store_watch is not None
                      else {"ok": False, "detail": "not started"}),
        }


    def _pbx_health(self) -> dict[str, dict[str, Any]]:
        """The Asterisk this engine runs (none with ``--no-pbx``: AMI's health tells)."""
        sup = self.supervisor
        if sup is None:
            return {}
        return {"pbx": {"ok": sup.state == "up", "state": sup.state, "pid": sup.process.pid or 0,
                        "restarts": sup.restarts, "adopted": sup.process.adopted,
                        **({"detail": sup.last_error} if sup.last_error else {})}}


def edge_adapters(clock: Clock, *, persist: Callable[[str, dict[str, Any]], None],
                  publish: Callable[[str, dict[str, Any]], object],
                  pbx: PbxPort | None = None) -> Adapters:
    """The runtime's adapters over a store writer (``persist``) and the live stream
    (``publish``): the core's typed events become rows and wire frames here, with wall
    time from ``clock``. Tests build their runtimes with this too, so what they capture
    is what the store and the clients get."""
    def wall(monotonic: float) -> float:
        return epoch_of(clock, monotonic)

    def record(event: DomainEvent) -> None:
        for kind, data in rows(event, wall):
            persist(kind, data)

    def show(event: DomainEvent) -> None:
        for topic, payload in frames(event, wall):
            publish(topic, payload)

    return Adapters(record=record, show=show, persist=persist, publish=publish, pbx=pbx)


def _scalars(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str | bool)}


def describe_urls(settings: Settings) -> dict[str, str]:
    base = f"http://{settings.bind_host}:{settings.ports.api}"
    return {"api docs": f"{base}/docs", "health": f"{base}/healthz",
            "events websocket": f"ws://{settings.bind_host}:{settings.ports.api}/ws/events",
            "board": f"{base}/board", "agent desktop": f"{base}/desktop",
            "recordings (supervisors, QA)": f"{base}/recordings", "metrics": f"{base}/metrics"}
