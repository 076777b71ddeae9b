"""The agent side of callflow as one Feature: desktop, softphone feature codes, restore.

A Feature (callflow/feature.py), it adds:

* the agent desktop: the websocket protocol (docs/agent-protocol.md, served by
  desktop/routes.py) and the page at ``/desktop``;
* feature codes dialled from the softphone (``agi://.../feature``, the dialplan's
  ``agents`` context; dialplan/feature_codes.py);
* agent holds seen by AMI (``Hold``/``Unhold`` on an agent's leg) -> the agent's
  on_hold state, and the desktop's hold reminders in the shapes of the call's hold
  machine (engine/hold.py): ``hold_reminder`` at ``hold.reminder_s`` and every
  ``hold.reminder_repeat_s`` after (STD-041), ``hold_limit`` at ``hold.limit_s``
  (STD-040) -- unless ``hold_reminders=False`` because the special-calls feature,
  which runs that machine, sends them itself (``default_features`` decides, so the
  desktop gets one of each);
* each agent's current call in every snapshot (``state.desks``), so a desktop that
  reconnects mid-call shows the caller, the history and the greeting again;
* after every AMI resync, every desk's softphone status from ``PJSIPShowEndpoints``
  (``DeviceState: Unavailable`` = no reachable contact): PJSIPShowContacts lists only
  registered contacts, and ContactStatus events come only on a change, so a static
  or unregistered softphone would otherwise keep whatever was assumed;
* restore after an engine restart (agents/restore.py) before AGI and AMI start,
  today's accumulators rebuilt from the state log;
* the centre's midnight (``calendar.timezone``): every agent's day totals close
  (``DayRollover``, recorded as ``agent_day``) and start again from zero.

Nothing here holds agent state: the runtime's agent machine is the one owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from callflow.agents import transfers
from callflow.agents.changes import AgentChanged
from callflow.agents.escalation import escalation_alarm
from callflow.agents.events import (
    AgentState,
    CallEnded,
    DayRollover,
    HoldEnded,
    HoldStarted,
)
from callflow.agents.restore import restored
from callflow.agents.state import AgentSnapshot
from callflow.api.privacy import mask_number
from callflow.desktop.case import CASE_KIND, UNVERIFIED, CaseNote, case_payload
from callflow.desktop.identity import IdentityGate
from callflow.desktop.identity_pin import MidcallPin
from callflow.desktop.inactivity import InactivityWatch
from callflow.desktop.keypad import KeyPad
from callflow.dialplan.inbound import OUTBOUND_CONTEXT
from callflow.dialplan.midcall_pin import run_midcall_pin
from callflow.engine import calls
from callflow.engine.effects import (
    Atxfer,
    CancelAtxfer,
    CancelTimer,
    DomainEvent,
    Effect,
    Hangup,
    ListEndpoints,
    Notice,
    ShowEndpoint,
    StartTimer,
)
from callflow.errors import CallflowError, StateError
from callflow.feature import FeatureBase
from callflow.pbx.midcall_pin import PIN_AGI_SCRIPT
from callflow.pbx.render import AGENTS_CONTEXT
from callflow.runtime.asterisk import stamp
from callflow.store.agent_log import load_day_totals, load_stored_agents

if TYPE_CHECKING:
    from callflow.dialplan.agi import AgiSession
    from callflow.feature import AgiRoute, FeatureServices
    from callflow.runtime.asterisk import AmiFrame

log = logging.getLogger(__name__)

TIMER_PREFIX = "desk"
DAY_TIMER_PREFIX = "agentday"  # agentday:<the new day's date>
HOLD_REMINDER = "hold_reminder"  # STD-041 (payload type as engine/hold.py sends it)
HOLD_LIMIT = "hold_limit"  # STD-040


class AgentDesktop(FeatureBase):
    """``ServiceOptions(features=[AgentDesktop()])``; ``callflow run`` lists it by default."""

    name = "agent_desktop"

    def __init__(self, *, hold_reminders: bool = True) -> None:
        """``hold_reminders``: False when another feature sends the desktop the hold
        reminders (the special-calls feature with ``desktop_hold_reminders``)."""
        self._service: FeatureServices | None = None
        self.hold_reminders = hold_reminders
        self._hold_timers: dict[str, list[str]] = {}  # agent_id -> desk timer keys
        self._tasks: set[asyncio.Task[None]] = set()
        self._cases: dict[str, CaseNote] = {}  # call_id -> the note of its last transfer
        self._case_sent: set[tuple[str, str]] = set()  # (call_id, agent_id) given the case
        self.identity: IdentityGate | None = None  # made at start (STD-077)
        self.identity_pin: MidcallPin | None = None  # the PIN step mid-call (STD-077)
        self._inactivity: InactivityWatch | None = None
        self._keypad: KeyPad | None = None  # feature codes typed on agents' legs
        self._consults: dict[str, transfers.Consult] = {}  # consulting agent -> warm transfer
        self._consult_legs: dict[str, str] = {}  # consulted leg uniqueid -> consulting agent

    # --- Feature -------------------------------------------------------------------

    async def start(self, services: FeatureServices) -> None:
        self._service = services
        runtime = self.runtime
        await self._restore(services)
        self.identity = IdentityGate(services)
        self.identity.start()
        self._keypad = KeyPad(runtime)
        self.identity_pin = MidcallPin(self.identity, services.settings.pin_feature_code,
                                       self._keypad)
        runtime.on_ami("Hold", self._on_hold)
        runtime.on_ami("Unhold", self._on_hold)
        if self.hold_reminders:
            runtime.on_event(self._on_event)
            runtime.own_timers(TIMER_PREFIX, self._on_timer)
        runtime.on_event(self._follow_cases)
        runtime.on_ami("Newchannel", self._consult_rings)
        runtime.on_ami("Newstate", self._consult_answered)
        runtime.on_ami("Hangup", self._consult_gone)
        runtime.on_ami("AttendedTransfer", self._consult_joined)
        runtime.extend_snapshot("desks", self.desks)
        runtime.on_resync(self._after_resync)
        runtime.own_timers(DAY_TIMER_PREFIX, self._on_midnight)
        self._arm_midnight()
        self._inactivity = InactivityWatch(runtime, services.policy)
        self._inactivity.start()

    @property
    def inactivity(self) -> InactivityWatch:
        """The STD-102 watch (desktop/inactivity.py); the websocket reports into it."""
        if self._inactivity is None:
            raise CallflowError("the desktop feature is not started")
        return self._inactivity

    @property
    def keypad(self) -> KeyPad:
        """The keys the desktop types on agents' legs (desktop/keypad.py)."""
        if self._keypad is None:
            raise CallflowError("the desktop feature is not started")
        return self._keypad

    def escalate(self, agent_id: str, reason: str) -> AgentSnapshot:
        """The agent pressed "escalate" (STD-066): the board's alarm carries the live call
        (agents/escalation.py); StateError when the agent is on no live call."""
        runtime = self.runtime
        agent = runtime.agents.get(agent_id)
        if agent is None:
            raise StateError("unknown_agent", agent_id)
        call = runtime.calls.get(agent.call_id) if agent.call_id else None
        offer = call.answered_offer if call is not None else None
        member = self.service.roster.by_id(agent_id)
        channel = offer.channel if offer is not None and offer.channel else (
            f"PJSIP/{member.endpoint}-" if member is not None else "")
        # the call's times are epoch (Asterisk's); the agent's are monotonic
        if call is not None and call.answered_at is not None:
            duration = runtime.clock.wall().timestamp() - call.answered_at
        else:
            duration = runtime.clock.now() - agent.since
        alarm = escalation_alarm(
            agent, reason, caller=mask_number(call.caller) if call is not None else "",
            channel=channel, duration_s=duration)
        runtime.execute([alarm])
        return agent

    async def stop(self) -> None:
        if self._inactivity is not None:
            self._inactivity.stop()
        if self._keypad is not None:
            await self._keypad.stop()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._service is not None:
            self.runtime.execute([CancelTimer(k) for keys in self._hold_timers.values()
                                  for k in keys])
        self._hold_timers.clear()

    def routers(self) -> list[APIRouter]:
        from callflow.api.pages import page_router
        from callflow.desktop.identity_routes import identity_router
        from callflow.desktop.routes import PAGE_PATH, STATIC_DIR, desktop_router
        return [page_router(PAGE_PATH, STATIC_DIR, "desktop"), desktop_router(self),
                identity_router(self)]

    async def ask_identity_pin(self, agent_id: str, actor: str) -> dict[str, Any]:
        """The desktop's ``identity_pin`` (desktop/identity_pin.py); StateError refuses."""
        if self.identity_pin is None:
            raise StateError("not_started", "the desktop feature is not started")
        return await self.identity_pin.ask(agent_id, actor)

    def identity_status(self, call_id: str) -> str:
        """The call's identity status for other features (the transfer case frame):
        ``unverified`` | ``verified:pin`` | ``verified:questions`` | ``failed``."""
        return UNVERIFIED if self.identity is None else self.identity.identity_status(call_id)

    def agi_routes(self) -> dict[str, AgiRoute]:
        from callflow.dialplan.feature_codes import FeatureCodeContext, run_feature_code
        service = self.service
        ctx = FeatureCodeContext(self.runtime, service.policy, service.prompts)

        async def feature(session: AgiSession) -> None:
            await run_feature_code(session, ctx)

        async def identity_pin(session: AgiSession) -> None:
            if self.identity_pin is None:
                raise CallflowError("the desktop feature is not started")
            await run_midcall_pin(session, self.identity_pin.context())

        return {"feature": feature, PIN_AGI_SCRIPT: identity_pin}


    # --- restore ------------------------------------------------------------------------

    async def _restore(self, service: FeatureServices) -> None:
        """Agents as the store last saw them (issue 5: restored after an engine restart)."""
        store = service.store
        stored = await asyncio.to_thread(store.read, load_stored_agents)
        runtime = self.runtime
        now, wall = runtime.clock.now(), runtime.clock.wall()
        day_start = _midnight(wall, service.policy.calendar.timezone)
        days = await asyncio.to_thread(store.read, load_day_totals, day_start, wall)
        steps = []
        for row in stored:
            member = service.roster.by_id(row.agent_id)
            if member is None:
                continue
            steps.append(restored(row, member.endpoint, now, wall, service.policy,
                                  days.get(row.agent_id)))
        runtime.restore_agents(steps)
        active = [a.agent_id for a, _ in steps if a.state is not AgentState.LOGGED_OUT]
        log.info("restored %d agents from the store (%d logged in)", len(steps), len(active))

    # --- the centre's day -----------------------------------------------------------------

    def _arm_midnight(self) -> None:
        runtime = self.runtime
        wall = runtime.clock.wall()
        next_day = _midnight(wall, self.service.policy.calendar.timezone, days=1)
        at = runtime.clock.now() + (next_day - wall).total_seconds()
        zone = ZoneInfo(self.service.policy.calendar.timezone)
        key = f"{DAY_TIMER_PREFIX}:{next_day.astimezone(zone).date().isoformat()}"
        runtime.execute([StartTimer(key, at)])

    def _on_midnight(self, key: str) -> None:
        """Every agent's day closes at once, so today's figures never mix two days."""
        runtime = self.runtime
        for agent_id in list(runtime.agents):
            try:
                runtime.agent_event(agent_id, DayRollover())
            except StateError as exc:
                log.warning("agent %s: day rollover refused (%s)", agent_id, exc)
        log.info("agents: a new day (%s)", key.split(":", 1)[1])
        self._arm_midnight()

    # --- softphones (AMI) ---------------------------------------------------------------

    def _after_resync(self) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh_softphones())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_softphones(self) -> None:
        """Every desk's softphone as Asterisk sees it now (STD-099 needs the truth).

        An endpoint listed ``Unavailable`` is looked at closer: right after Asterisk
        (re)started, its qualified contacts are not qualified yet (``NonQualified``,
        measured for ~0.3 s after ``FullyBooted``) and the endpoint shows Unavailable
        though nothing was found wrong. That is no word on the phone yet (the first
        qualify's ``ContactStatus`` will say), not an unreachable one: taken for one, it
        put every ready agent not-ready at each Asterisk restart."""
        runtime = self.runtime
        asked = time.monotonic()  # ContactStatus events newer than this win
        try:
            listing = await runtime.query(ListEndpoints())
        except CallflowError as exc:
            log.warning("softphone states not refreshed: %s", exc)
            return
        for item in listing:
            endpoint = item.get("ObjectName")
            if self.service.roster.by_endpoint(endpoint) is None:
                continue
            reachable = item.get("DeviceState") != "Unavailable"
            if not reachable and not await self._found_unreachable(endpoint):
                continue  # no word yet: the contact's first ContactStatus will say
            runtime.softphone_status(endpoint, reachable, asked)

    async def _found_unreachable(self, endpoint: str) -> bool:
        """PJSIP found the endpoint's softphone gone: every contact it has is judged
        Unreachable (or it has none: a softphone that is not registered)."""
        try:
            detail = await self.runtime.query(ShowEndpoint(endpoint))
        except CallflowError as exc:
            log.warning("softphone %s: contacts not read (%s)", endpoint, exc)
            return True  # the listing's word stands
        return all(item.get("Status") in ("Unreachable", "Removed")
                   for item in detail if item.name == "ContactStatusDetail")

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

    def _on_event(self, event: DomainEvent) -> None:
        if not isinstance(event, AgentChanged):
            return
        agent_id = event.agent.agent_id
        on_hold = event.agent.state is AgentState.ON_HOLD
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
        detail = {"call_id": agent.call_id, "agent_id": agent_id, "held_s": round(held, 3)}
        if kind == HOLD_REMINDER:
            notice = Notice(HOLD_REMINDER, agent_id, {"count": int(count), **detail},
                            std="STD-041")
        else:
            notice = Notice(HOLD_LIMIT, agent_id, {"limit_s": hold.limit_s, **detail},
                            std="STD-040")
        effects: list[Effect] = [notice]
        if kind == HOLD_REMINDER and hold.reminder_repeat_s > 0:
            n = int(count) + 1
            at = agent.since + hold.reminder_s + (n - 1) * hold.reminder_repeat_s
            next_key = f"{TIMER_PREFIX}:{agent_id}:{seq}:{kind}:{n}"
            keys.append(next_key)
            effects.append(StartTimer(next_key, at))
        runtime.execute(effects)

    # --- transfers (STD-049) ------------------------------------------------------------

    def _centre(self) -> transfers.Colleagues:
        runtime, policy = self.runtime, self.service.policy
        roster = self.service.roster
        queues = {q for a in roster.agents for q in a.queues}
        queues |= {policy.routing.default_queue, *policy.routing.did_queues.values(),
                   *policy.queues}
        return transfers.Colleagues(
            known_agents={a.agent_id for a in roster.agents},
            states={a.agent_id: a.state for a in runtime.agents.values()}, queues=queues)

    def transfer(self, agent_id: str, ask: Any) -> transfers.Refusal | transfers.Destination:
        """The agent asks to send the caller on (``protocol.TransferAsk``). Refused: the
        call stays as it is. Else the agent's part ends now (``TransferStarted`` with a
        ``<kind>:<value>`` target, their leg hung up); the inbound flow, whose Dial
        returns, tells the caller where they go and takes them there; the note waits
        for the desk the call rings next (``case`` message)."""
        runtime = self.runtime
        agent = runtime.agents.get(agent_id)
        call = runtime.calls.get(agent.call_id) if agent is not None and agent.call_id else None
        result = transfers.check_transfer(call, agent_id, ask.target, self._centre(),
                                          self.service.policy)
        if isinstance(result, transfers.Refusal) or call is None:
            return result
        talking = call.talking_offer
        if talking is None or not talking.channel:
            return transfers.Refusal("not_on_call", "the agent's leg is not known")
        if ask.mode == "warm":
            return self._consult(call, agent_id, talking.channel, ask, result)
        target = transfers.desktop_target(result)
        now = time.time()
        self._cases[call.call_id] = CaseNote(call.call_id, agent_id, ask.note, target,
                                             ask.mode, now)
        runtime.call_event(calls.TransferStarted(
            call.call_id, agent_id, target, now,
            queue=result.value if result.kind == "queue" else ""))
        runtime.agent_fact(agent_id, CallEnded(call.call_id))
        runtime.execute([Hangup(talking.channel)])
        log.info("call %s: agent %s transfers it (%s) to %s", call.call_id, agent_id,
                 ask.mode, target)
        return result

    # --- warm transfers: the consultation (AMI Atxfer) -----------------------------------

    def _consult(self, call: calls.InboundCall, agent_id: str, channel: str, ask: Any,
                 result: transfers.Destination) -> transfers.Refusal | transfers.Destination:
        """Warm transfer: Asterisk holds the caller (music on hold) and rings the colleague
        from the agents' context (Atxfer); the agent keeps the call until they complete
        (their leg hangs up: Asterisk joins the caller to the colleague, AMI
        ``AttendedTransfer``, the core's ``Transferred``) or cancel (``CancelAtxfer``)."""
        runtime = self.runtime
        peers = runtime.asterisk.view.peers(call.call_id)
        bridged = any(p.name == channel for p in peers)
        consulting = self._consults.get(agent_id)
        target = transfers.desktop_target(result)  # the case says "queue:<id>" for a queue
        if result.kind == "queue":  # consult the agent the queue's routing picks
            early = transfers.check_warm(replace(result, kind="agent"), consulting, bridged)
            if early is not None:
                return early
            chosen = transfers.queue_consultee(
                call, result.value, waiting=runtime.waiting_calls(),
                agents=runtime.agents.values(), roster=self.service.roster,
                held=runtime.routing_held)
            if isinstance(chosen, transfers.Refusal):
                return chosen
            result = transfers.Destination("agent", chosen, result.name)
        refused = transfers.check_warm(result, consulting, bridged)
        if refused is not None:
            return refused
        self._consults[agent_id] = transfers.Consult(call.call_id, agent_id, result.value,
                                                     channel, kind=result.kind)
        self._cases[call.call_id] = CaseNote(call.call_id, agent_id, ask.note, target,
                                             ask.mode, time.time())
        if result.kind == "agent":
            runtime.consults[result.value] = call.call_id
            runtime.execute([Atxfer(channel, result.value, AGENTS_CONTEXT)])
        else:  # dialled out the way a blind transfer to a number goes
            runtime.execute([Atxfer(channel, result.value, OUTBOUND_CONTEXT)])
        log.info("call %s: agent %s consults %s (warm transfer)", call.call_id, agent_id,
                 result.value)
        return result

    def consult_step(self, agent_id: str, step: transfers.ConsultStep) -> transfers.Refusal | None:
        """``transfer_complete``: the agent's leg hangs up and Asterisk joins the caller to
        the colleague. ``transfer_cancel``: the colleague's leg is hung up and the agent
        has the caller again. Refused: nothing changes.

        ``transfer_conference`` types features.conf's ``atxferthreeway`` on the agent's
        leg (desktop/keypad.py). Why this way to a three-way conference: AMI has no
        action for it, but Asterisk's attended transfer (main/bridge_basic.c) listens on
        the transferer's leg for that code in every consultation state and then merges
        the consultation's bridge into the caller's (``AttendedTransfer`` with
        ``DestType: Threeway``); ``PlayDTMF`` with ``Receive`` (app_senddtmf.c) queues
        the keys on the leg as received, where that hook reads them. A ConfBridge would
        need the caller and both agents redirected out of their bridges, and the
        caller's hold and the transfer's record would be ours to rebuild."""
        consulting = self._consults.get(agent_id)
        refused = transfers.check_consult_step(consulting, step)
        if refused is not None or consulting is None:
            return refused
        if step == "conference":
            self.keypad.press(consulting.channel, self.service.settings.feature_codes.threeway,
                              "the three-way conference")
        elif step == "complete":
            self.runtime.execute([Hangup(consulting.channel)])
        elif consulting.conference and consulting.leg:
            self.runtime.execute([Hangup(consulting.leg)])  # the colleague's leg leaves
        else:
            self._end_consult(agent_id)
            self.runtime.execute([CancelAtxfer(consulting.channel)])
        log.info("call %s: agent %s %ss the warm transfer to %s", consulting.call_id,
                 agent_id, step, consulting.to_agent)
        return None

    def _end_consult(self, agent_id: str) -> transfers.Consult | None:
        consulting = self._consults.pop(agent_id, None)
        if consulting is not None:
            if self.runtime.consults.get(consulting.to_agent) == consulting.call_id:
                del self.runtime.consults[consulting.to_agent]
            self._consult_legs = {u: a for u, a in self._consult_legs.items() if a != agent_id}
        return consulting

    def _consulted(self, frame: AmiFrame) -> transfers.Consult | None:
        """The consultation a consulted agent's leg belongs to (same Linkedid as the call)."""
        channel = frame.get("Channel")
        agent_id = self.runtime.agent_for_channel(channel)
        linkedid = frame.get("Linkedid")
        return next((c for c in self._consults.values() if c.call_id == linkedid and (
            c.to_agent == agent_id if c.kind == "agent" else _dials_out(channel, c.to_agent))),
            None)

    def _consult_rings(self, frame: AmiFrame) -> None:
        """The colleague's phone rings for the consultation: their desk gets the case."""
        consulting = self._consulted(frame)
        if consulting is None:
            return
        self._consult_legs[frame.get("Uniqueid")] = consulting.from_agent
        self._consults[consulting.from_agent] = replace(consulting, leg=frame.get("Channel"))
        if consulting.kind == "agent":
            self._send_case(consulting.call_id, consulting.to_agent)

    def _consult_answered(self, frame: AmiFrame) -> None:
        agent_id = self._consult_legs.get(frame.get("Uniqueid"))
        consulting = self._consults.get(agent_id or "")
        if consulting is None or frame.get("ChannelStateDesc") != "Up":
            return
        self._consults[consulting.from_agent] = replace(consulting, answered=True)
        self.runtime.execute([Notice("consult_answered", consulting.from_agent,
                                     {"call_id": consulting.call_id,
                                      "agent_id": consulting.to_agent}, std="STD-049")])

    def _consult_gone(self, frame: AmiFrame) -> None:
        """The colleague's consult leg ended before any join (no answer, refused, hung
        up), or left the conference: the caller is the first agent's again; their desk
        is told. The first agent's own leg ending in a conference ends the consultation
        (the caller stays with the colleague)."""
        mine = next((a for a, c in self._consults.items()
                     if c.conference and c.channel == frame.get("Channel")), None)
        if mine is not None:
            self._end_consult(mine)  # the core's PartyLeft hands the caller on
            return
        agent_id = self._consult_legs.pop(frame.get("Uniqueid"), None)
        if agent_id is not None and self._outside_stays(agent_id, frame.get("Uniqueid")):
            return
        consulting = self._end_consult(agent_id) if agent_id is not None else None
        if consulting is None:
            return
        if consulting.conference and consulting.kind != "agent":  # the number left it
            self.runtime.call_event(calls.OutsideParty(consulting.call_id, "",
                                                       stamp(frame)))
        self.runtime.execute([Notice("consult_ended", consulting.from_agent,
                                     {"call_id": consulting.call_id,
                                      "agent_id": consulting.to_agent,
                                      "cause": frame.get("Cause")}, std="STD-049")])

    def _hold_over(self, agent_id: str, call_id: str) -> None:
        """The consultation held the caller (AMI Hold on the agent's leg); in the
        conference all three talk, and Asterisk sends no Unhold for it: the agent is on
        the call again, not on hold (no hold reminders, no hold limit)."""
        agent = self.runtime.agents.get(agent_id)
        if agent is None or agent.state is not AgentState.ON_HOLD or agent.call_id != call_id:
            return
        try:
            self.runtime.agent_event(agent_id, HoldEnded(call_id))
        except StateError as exc:
            log.info("agent %s: the hold's end ignored (%s)", agent_id, exc)

    def _outside_stays(self, agent_id: str, gone: str) -> bool:
        """In a conference with a number, the Local pair Atxfer dialled it by is
        optimised away once all three share the caller's bridge: Asterisk swaps the far
        end's own channel in, then hangs the pair up. That ``Hangup`` is not the number
        leaving. The far end's channel (the caller's peer that is nobody's desk) is the
        leg from then on."""
        consulting = self._consults.get(agent_id)
        if consulting is None or not consulting.conference or consulting.kind == "agent":
            return False
        view = self.runtime.asterisk.view
        outside = [c for c in view.peers(consulting.call_id) if c.uid != gone
                   and self.runtime.agent_for_channel(c.name) is None]
        if not outside:
            return False
        self._consult_legs[outside[0].uid] = agent_id
        self._consults[agent_id] = replace(consulting, leg=outside[0].name)
        return True

    def _consult_joined(self, frame: AmiFrame) -> None:
        """Asterisk joined the caller to the colleague: the warm transfer is done; or
        all three are in the caller's bridge (``DestType: Threeway``): the conference."""
        for agent_id, consulting in list(self._consults.items()):
            if consulting.call_id == frame.get("TransfereeLinkedid") \
                    or consulting.call_id == frame.get("TransfereeUniqueid"):
                if frame.get("DestType") != "Threeway" or frame.get("Result") != "Success":
                    self._end_consult(agent_id)
                    if consulting.kind != "agent" and frame.get("Result") == "Success":
                        self._handed_out(consulting, frame)
                    continue
                self._consults[agent_id] = replace(consulting, conference=True)
                self._hold_over(agent_id, consulting.call_id)
                if consulting.kind != "agent":  # nobody's desk: the core keeps it apart
                    self.runtime.call_event(calls.OutsideParty(
                        consulting.call_id, f"{consulting.kind}:{consulting.to_agent}",
                        stamp(frame)))
                self.runtime.execute([Notice("conference_started", agent_id, {
                    "call_id": consulting.call_id, "agent_id": consulting.to_agent},
                    std="STD-049")])

    def _handed_out(self, consulting: transfers.Consult, frame: AmiFrame) -> None:
        """The caller was joined to the number consulted (back office, external): the
        agent's part ends at Asterisk's ``AttendedTransfer``; the call goes on with the
        far end, an outside leg on the record (``transfer_target`` ``<kind>:<number>``,
        no agent's talk), until the caller or the far end hangs up."""
        target = f"{consulting.kind}:{consulting.to_agent}"
        self.runtime.call_event(calls.TransferStarted(consulting.call_id,
                                                      consulting.from_agent, target,
                                                      stamp(frame)))
        agent = self.runtime.agents.get(consulting.from_agent)
        if agent is not None and agent.call_id == consulting.call_id \
                and agent.state in (AgentState.ON_CALL, AgentState.ON_HOLD):
            self.runtime.agent_fact(consulting.from_agent, CallEnded(consulting.call_id))

    def _send_case(self, call_id: str, agent_id: str) -> None:
        note = self._cases.get(call_id)
        call = self.runtime.calls.get(call_id)
        if note is None or call is None or (call_id, agent_id) in self._case_sent:
            return
        self._case_sent.add((call_id, agent_id))
        payload = case_payload(call, note, agent_id,
                               identity_status=self.identity_status(call_id))
        self.runtime.execute([Notice(CASE_KIND, agent_id, payload, std="STD-049")])

    def _follow_cases(self, event: DomainEvent) -> None:
        """The case goes to each agent whose phone rings for a transferred call, once."""
        if isinstance(event, calls.CallChanged):
            if event.call.phase is calls.Phase.ENDED:
                self._cases.pop(event.call.call_id, None)
                self._case_sent = {k for k in self._case_sent if k[0] != event.call.call_id}
            return
        if not isinstance(event, AgentChanged):
            return
        agent = event.agent
        note = self._cases.get(agent.call_id or "")
        if note is None or agent.state not in (AgentState.RINGING, AgentState.ON_CALL) \
                or agent.agent_id == note.from_agent \
                or (note.call_id, agent.agent_id) in self._case_sent:
            return
        self._send_case(note.call_id, agent.agent_id)

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



def _dials_out(channel: str, number: str) -> bool:
    """``channel`` is the consultation Atxfer dialled out to ``number``: the caller's side
    of its Local pair (``Local/<number>@callflow-outbound-...;1``), which is up when the
    far end answers and gone when it hangs up or does not answer."""
    return channel.startswith(f"Local/{number}@{OUTBOUND_CONTEXT}-") and channel.endswith(";1")


def _midnight(wall: datetime, timezone: str, days: int = 0) -> datetime:
    """The centre's midnight starting the day of ``wall`` (plus ``days``), in UTC."""
    zone = ZoneInfo(timezone)
    local = wall.astimezone(zone).date() + timedelta(days=days)
    return datetime.combine(local, dtime(0), zone).astimezone(UTC)
