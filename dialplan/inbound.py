"""The inbound call flow: what a caller meets from our AGI to the agent's hello.

Short on purpose (design.md): ask the core where the call goes, dial that agent
with the core's ring limit, report the outcome, ask again; while nobody is free,
play what the waiting plan says.

How the conversation ends decides what the flow does next, and Asterisk says which
(runtime/asterisk.py reads it off AMI): Dial runs with ``g``, so when the agent hangs
up first Dial returns 0 on the caller's live channel (-1 with ``DIALSTATUS`` ANSWER when
it happens during the opening, which ``g`` does not cover) and the flow releases the
caller itself (after the standard goodbye, per Policy) — never the dialplan's fallback
queue, never a second offer. How an offer ended is AMI's word too: the flow waits for
it before its own ``DIALSTATUS`` stands in. A blind transfer made on the phone kicks the caller out
of the flow (``HANGUP`` on a live channel): the flow lets go at once and records
nothing. Only a caller who really hung up is the caller's ending; the core learns it
from AMI at the caller's BYE, whatever step the flow is in.

The rules — which agent (longest idle, by queue, first come first served), how many
rings (STD-008), which opening (STD-014, STD-017), when to announce and offer a
callback (STD-047) — live in the core and the Policy; this module only speaks AGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from callflow.agents import transfers
from callflow.agents.roster import RosterAgent
from callflow.dialplan.agi import AgiSession
from callflow.dialplan.pin_step import collect_pin
from callflow.dialplan.survey_step import SurveyOf, run_survey
from callflow.engine import identity, survey, waiting
from callflow.engine.calls import Outcome, Phase
from callflow.engine.clock import Clock
from callflow.engine.effects import Alarm, Logged
from callflow.engine.policy import Policy, ring_limit_seconds
from callflow.engine.rules import enforces
from callflow.errors import AgiCommandError, CallerHungUp
from callflow.pbx.midcall_pin import AGENT_LEG_DIAL_OPTION
from callflow.pbx.prompts import PromptLibrary, spell_digits
from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

PHONE_NUMBER = re.compile(r"\d{3,20}")
DIGIT_WAIT_MS = 5000


@dataclass
class FlowContext:
    runtime: Runtime
    policy: Policy
    prompts: PromptLibrary
    clock: Clock
    today: Callable[[], date]  # the centre's local date (holidays)
    history: Callable[[str], tuple[dict[str, Any], ...]]  # recent contacts of a number
    # the customer calling from a number and their PIN hash (STD-077), or None
    customer: Callable[[str], tuple[dict[str, Any], str | None] | None] = \
        lambda number: None


#: Event-log kind of a PIN check's outcome (the desktop's identity gate follows it).
IDENTITY_PIN_RECORD = "identity_pin"
#: Event-log kind of a desktop transfer's outside leg (back office, external number):
#: the number dialled, Asterisk's DIALSTATUS, the seconds it talked (STD-049).
TRANSFER_OUT_RECORD = "transfer_out"


def dial_timeout_arg(seconds: float) -> str:
    """Dial()'s timeout argument; Asterisk then enforces the ring limit to the millisecond."""
    return f"{seconds:g}"


class CallGone(Exception):
    """The core saw the call end (AMI Hangup) while the flow was waiting."""


class FlowDone(Exception):
    """The flow ended the call on purpose (a callback was taken)."""


class FlowLetGo(Exception):
    """The caller left our flow alive (a blind transfer made on the phone): stop, say
    nothing to Asterisk, record nothing."""


#: The dialplan context numbers are dialled out through (asterisk-conf extensions.conf):
#: a desktop transfer to the back office or an external number leaves the way the
#: dialer's calls do, through the configured trunk.
OUTBOUND_CONTEXT = "callflow-outbound"

#: How long the flow waits, after Dial returned, for AMI to say how the conversation ended
#: (the events arrive within milliseconds; this bounds a slow or absent link).
SETTLE_S = 1.0


class InboundFlow:
    @enforces("STD-002", policy=("routing.did_queues", "routing.default_queue"))
    def __init__(self, session: AgiSession, ctx: FlowContext) -> None:
        self.session = session
        self.ctx = ctx
        self.rt = ctx.runtime
        env = session.env
        self.call_id = env.get("agi_uniqueid", "")
        self.caller = env.get("agi_callerid", "")
        self.did = env.get("agi_arg_1") or env.get("agi_extension", "")
        routing = ctx.policy.routing
        self.queue = routing.did_queues.get(self.did, routing.default_queue)
        if routing.did_queues and self.did not in routing.did_queues:
            log.warning("call %s: DID %r is not configured; routed to queue %r",
                        self.call_id, self.did, self.queue)
        self.policy = ctx.policy.for_queue(self.queue)
        self.day = ctx.today()
        self.music_on = False
        self.offering: str | None = None  # the agent being dialled
        self.answered_by = ""  # the agent who took the call (the survey rates them)
        self.done = False  # CALLFLOW_DONE was set
        self.transfer_to: str | None = None  # a desktop transfer's agent, offered next

    async def run(self) -> None:
        history = await asyncio.to_thread(self.ctx.history, self.caller) \
            if PHONE_NUMBER.fullmatch(self.caller) else ()
        holiday = self.policy.greetings.holiday_greeting(self.day) is not None
        menu = self.did in self.policy.routing.named_agent_dids
        pin = await self._pin_due()
        # the PIN step is a menu too: the caller's wait (t_in) starts after it
        ivr = menu or pin is not None
        self.rt.call_entered(self.call_id, self.session.env.get("agi_channel", ""), self.caller,
                             self.did, self.queue, greeting="holiday" if holiday else "normal",
                             history=history, menu=ivr)
        try:
            await self.session.answer()
            if pin is not None:
                await self._identity_pin(*pin)
            named = None
            if menu:
                named = await self._ask_named_agent()
            if ivr:
                self.rt.call_routed(self.call_id)  # the wait (t_in) starts here
            await self._route(named)
            await self._done()
        except FlowDone:
            await self._done()
        except FlowLetGo:
            pass
        except (CallerHungUp, CallGone):
            log.info("call %s: caller hung up", self.call_id)
            self.rt.caller_gone(self.call_id, await self._facts_after_hangup())
        finally:
            self.rt.stop_waiting(self.call_id)

    # --- routing ---------------------------------------------------------------------

    async def _route(self, named: RosterAgent | None) -> None:
        plan: waiting.WaitState | None = None
        woken: asyncio.Event | None = None
        while True:
            self._check_alive()
            only = self.transfer_to or (named.agent_id if named else None)
            member = self.rt.choose_agent(self.call_id, only=only)
            if member is None and self.transfer_to is not None:
                # the agent the caller was sent to is no longer free: the caller waits in
                # the call's queue like any caller (never lost)
                log.info("call %s: agent %s not free for the transfer; queued", self.call_id,
                         self.transfer_to)
                self.transfer_to = None
                continue
            if member is not None:
                await self._music(False)
                status = await self._offer(member)
                self.transfer_to = None  # answered or not, the transfer's offer is made
                if status == "ANSWER":
                    self.answered_by = member.agent_id
                    moved = await self._conversation_over()
                    if moved is None:
                        return
                    plan = woken = None  # a new wait, under the transfer's queue
                    await self._transferred(moved)
                    continue
                if named is not None:  # the named agent did not take it: ask the caller again
                    named = await self._named_agent_busy(named)
                continue
            if named is not None and plan is None:
                named = await self._named_agent_busy(named)
                if named is None:
                    continue
            if plan is None or woken is None:
                plan = waiting.start_waiting(self.ctx.clock.now(), self.ctx.clock.now())
                woken = self.rt.start_waiting(self.call_id)
            await self._music(True)
            step = waiting.next_step(plan, self.policy)
            if await _wait(woken, step.at - self.ctx.clock.now()):
                woken.clear()  # an agent freed up (or the call ended): ask again
                continue
            await self._music(False)
            if step.action is waiting.WaitAction.ANNOUNCE:
                await self._announce_progress()
            elif await self._offer_callback(owner=None):
                return
            plan = waiting.heard(plan, step, self.ctx.clock.now())

    @enforces("STD-008", policy=("answering.ring_limit_rings",))
    async def _offer(self, member: RosterAgent) -> str:
        """Ring one agent for the ring limit (STD-008); the opening plays when they answer."""
        opening, _kind = await asyncio.to_thread(
            self.ctx.prompts.opening, self.policy, member.agent_id, member.name, self.day)
        ring_limit = ring_limit_seconds(self.policy)
        hear = "r" if self.policy.waiting.caller_hears_while_ringing == "ringback" \
            else f"m({self.policy.waiting.moh_class})"
        log.info("call %s: offering to agent %s for %gs", self.call_id, member.agent_id,
                 ring_limit)
        self.offering = member.agent_id
        self.rt.offer_dialling(self.call_id, member.agent_id)
        # g: when the agent hangs up, Dial returns 0 and the caller stays with the flow
        status: str | None = None
        try:
            # b(): the agent's leg carries the mid-call PIN feature (pbx/midcall_pin.py)
            await self.session.exec("Dial", f"PJSIP/{member.endpoint}",
                                    dial_timeout_arg(ring_limit),
                                    f"A(:{opening}){hear}gt{AGENT_LEG_DIAL_OPTION}")
        except AgiCommandError:
            # -1 on the caller's live channel: the agent hung up during the opening. Option
            # g does not cover it (apps/app_dial.c, 22: a hang-up during the A()
            # announcement jumps to ``done``, past the OPT_GO_ON test); DIALSTATUS says
            # ANSWER, and the conversation is over as when Dial returns 0
            status = await self.session.get_variable("DIALSTATUS")
            if status != "ANSWER":
                raise
        status = status or await self.session.get_variable("DIALSTATUS") or "FAILED"
        talked = await self.session.get_variable("ANSWEREDTIME") if status == "ANSWER" else None
        await self._offer_settled(member.agent_id)
        self.offering = None
        self.rt.offer_reported(self.call_id, member.agent_id, status,
                               float(talked) if talked and talked.isdigit() else 0.0)
        return status

    async def _conversation_over(self) -> tuple[str, str] | None:
        """Dial returned on an answered call: the agent hung up first (STD-110: released
        by the agent; the caller is released within a second, after the goodbye if the
        Policy says so), or a blind transfer took the caller away (nothing to do), or the
        agent transferred the caller from the desktop: ``(kind, value)`` of where to."""
        call = await self._settled()
        if call is not None and call.phase is Phase.TRANSFERRING:
            moved = transfers.parse_desktop_target(call.transfer_target)
            if moved is not None:
                return moved
            log.info("call %s: transferred on the phone; the flow lets go", self.call_id)
            raise FlowLetGo
        if call is not None and call.phase is not Phase.ENDED:
            self.rt.agent_released(self.call_id)  # the AMI link is down: the flow's word
        surveyed = survey.survey_due(self.policy, agent_released=True,
                                     agent_id=self.answered_by)
        if surveyed:
            await self._done()  # the survey is a deliberate continuation: never the fallback
            if not await self._survey():
                return None  # the caller hung up during it: nothing more to say
        if self.policy.answering.agent_release_closing and not surveyed:  # thanks said bye
            with contextlib.suppress(CallerHungUp):
                await self._play("goodbye")
        await self._done()
        with contextlib.suppress(CallerHungUp):
            await self.session.hangup()
        return None

    @enforces("STD-049", "STD-053")
    async def _transferred(self, moved: tuple[str, str]) -> None:
        """The desktop sent the caller on: say where (004:126, 002:683), then take them
        there. An agent is offered the call next (then the queue, if they do not take
        it); a queue is waited in with its waiting rules (STD-047); a number (back office,
        external) is dialled out the way the dialer's calls go: answered, the flow is
        done; busy, refused or unanswered, the caller is told, offered a callback, and
        otherwise waits in the call's queue (STD-053, 004:432: never dropped silently)."""
        kind, value = moved
        call = self.rt.calls.get(self.call_id)
        name = value
        if kind == "queue":
            self.queue = value
            self.policy = self.ctx.policy.for_queue(value)
            name = self.policy.transfers.queue_names.get(value, value)
        elif kind == "backoffice":
            name = self.policy.transfers.backoffice_name
        destination = transfers.Destination(kind, value, name)  # type: ignore[arg-type]
        for prompt, params in transfers.announcement(destination):
            await self._play(prompt, **params)
        log.info("call %s: desktop transfer to %s %s (transfers so far: %s)", self.call_id,
                 kind, value, call.transfer_count if call else "?")
        if kind == "agent":
            self.transfer_to = value
        elif kind in ("backoffice", "external"):
            if await self._dial_out(kind, value):
                raise FlowDone
            # the far end did not take the caller: never dropped in silence (STD-053,
            # 004:432): told so, then offered a callback or the call's queue
            await self._play("transfer_failed")
            if await self._offer_callback(owner=None):
                raise FlowDone

    @enforces("STD-049", policy=("answering.ring_limit_rings",))
    async def _dial_out(self, kind: str, number: str) -> bool:
        """Dial the back office or an external number the way the dialer's calls leave
        (``[callflow-outbound]``: the trunk, or the test harness's ``customer``), for the
        ring limit. True when the far end answered (the caller talked to it, and the
        flow is done with the call); the leg's facts go in the call's event log either
        way (``TRANSFER_OUT_RECORD``). The ``_`` prefix makes the ring limit reach the
        Local channel's dialplan half (an unprefixed variable stays on the caller's), and
        so does the presented number (``transfers.presented_number``)."""
        ring = dial_timeout_arg(ring_limit_seconds(self.policy))
        await self.session.set_variable("_CALLFLOW_RING_S", ring)
        # the number the far end sees (the dialer's CALLFLOW_CLI of [callflow-outbound])
        await self.session.set_variable(
            "_CALLFLOW_CLI", transfers.presented_number(kind, self.caller, self.policy))
        started, status = time.time(), "FAILED"
        try:
            # g: when the far end hangs up after answering, the caller comes back here
            await self.session.exec("Dial", f"Local/{number}@{OUTBOUND_CONTEXT}", ring, "g")
        finally:  # the caller hanging up ends the leg too: its facts are read all the same
            with contextlib.suppress(Exception):  # (GET VARIABLE answers on a dead channel)
                status = await self.session.get_variable("DIALSTATUS") or "FAILED"
                talked = await self.session.get_variable("ANSWEREDTIME")
                log.info("call %s: %s transfer to %s: %s", self.call_id, kind, number, status)
                self.rt.execute([Logged(TRANSFER_OUT_RECORD, self.call_id, started, {
                    "kind": kind, "number": number, "dial_status": status,
                    "answered_s": float(talked) if talked and talked.isdigit() else None})])
        return status == "ANSWER"

    @enforces("STD-120", policy=("survey.questions", "survey.answer_timeout_s",
                                 "survey.inter_digit_s"))
    async def _survey(self) -> bool:
        """The post-call survey (dialplan/survey_step.py); False: the caller hung up."""
        return await run_survey(self.session, self.ctx.prompts, self.policy,
                                SurveyOf(self.call_id, self.answered_by, self.queue),
                                self.rt.execute)

    async def _offer_settled(self, agent_id: str) -> None:
        """Wait until AMI has closed the offer (or ``SETTLE_S`` passed): its ``DialEnd``,
        read with the phone's own hang-up cause, says what happened; the flow's DIALSTATUS
        cannot (a 480 and a ring limit that ran out are both NOANSWER, a 603 is
        CHANUNAVAIL). Dial returns after its ``DialEnd``, but AMI's events reach the loop
        on their own path: when the flow's report came first, a 480 was recorded as a
        ring-no-answer (a RONA the phone never earned)."""
        deadline = self.ctx.clock.now() + SETTLE_S
        while self.rt.pbx_up and self.ctx.clock.now() < deadline:
            call = self.rt.calls.get(self.call_id)
            offer = call.current_offer if call is not None else None
            if offer is None or offer.agent_id != agent_id:
                return
            await asyncio.sleep(0.01)

    async def _settled(self) -> Any:
        """The call once AMI has said how the conversation ended (or ``SETTLE_S`` passed)."""
        deadline = self.ctx.clock.now() + SETTLE_S
        while True:
            call = self.rt.calls.get(self.call_id)
            if call is None or call.phase in (Phase.ENDED, Phase.TRANSFERRING) \
                    or not self.rt.pbx_up or self.ctx.clock.now() >= deadline:
                return call
            await asyncio.sleep(0.01)

    # --- waiting ---------------------------------------------------------------------

    async def _music(self, on: bool) -> None:
        if on != self.music_on:
            if on:
                await self.session.command("SET", "MUSIC", "ON", self.policy.waiting.moh_class)
            else:
                await self.session.command("SET", "MUSIC", "OFF")
            self.music_on = on

    async def _play(self, name: str, **params: str) -> None:
        path = await asyncio.to_thread(self.ctx.prompts.path, name, **params)
        await self.session.stream_file(str(path))

    async def _ask(self, name: str, max_digits: int, timeout_ms: int = DIGIT_WAIT_MS,
                   secret: bool = False, **params: str) -> str:
        path = await asyncio.to_thread(self.ctx.prompts.path, name, **params)
        return (await self.session.get_data(str(path), timeout_ms, max_digits,
                                            secret=secret)).strip()

    @enforces("STD-044")
    async def _announce_progress(self) -> None:
        """STD-047: sorry for the wait, and where the caller stands."""
        await self._play("wait_progress")
        ahead = self.rt.queue_position(self.call_id) - 1
        if ahead > 0:
            await self._play("queue_position", ahead=str(ahead))

    async def _offer_callback(self, owner: RosterAgent | None) -> bool:
        """STD-042/STD-047: 1 keep waiting, 2 be called back. True when the call is done."""
        choice = await self._ask("callback_offer", 1)
        if choice != "2":
            return False
        return await self._take_callback("callback", owner)

    async def _take_callback(self, kind: str, owner: RosterAgent | None) -> bool:
        """Confirm the number by DTMF, store the task, reassure, end the call politely."""
        number = self.caller if PHONE_NUMBER.fullmatch(self.caller) else ""
        for _ in range(4):
            if not number:
                typed = (await self._ask("callback_enter_number", 20, 10000)).rstrip("#")
                number = typed if PHONE_NUMBER.fullmatch(typed) else ""
                continue
            if await self._ask("callback_confirm", 1, number=spell_digits(number)) == "1":
                break
            number = ""  # 2, a wrong key or silence: let the caller key in the number
        else:
            return False  # never confirmed: the caller keeps waiting
        due_min = self.policy.routing.named_agent_callback_due_min if owner else 0
        self.rt.request_callback(self.call_id, number, kind,
                                 owner.agent_id if owner else None, time.time() + due_min * 60)
        await self._play("callback_done")
        # an answered call (a transfer out failed) stays answered: the callback is a task
        self.rt.end_call(self.call_id, None if self.answered_by else Outcome.CALLBACK)
        await self._done()
        await self.session.hangup()
        return True

    # --- identity by PIN (STD-077) -----------------------------------------------------

    async def _pin_due(self) -> tuple[dict[str, Any], str] | None:
        """The customer calling and their PIN hash when the Policy asks this caller for a
        PIN before routing (STD-077); None for anyone else."""
        if not PHONE_NUMBER.fullmatch(self.caller):
            return None
        found = await asyncio.to_thread(self.ctx.customer, self.caller)
        if found is None or found[1] is None or not identity.pin_offered(self.policy, True):
            return None
        return found[0], found[1]

    async def _identity_pin(self, record: dict[str, Any], pin_hash: str) -> None:
        """A known customer with a PIN keys it in before routing, unheard by any agent
        (dialplan/pin_step.py: the digits are compared and dropped, never logged). After
        the limit the caller is routed unverified-as-failed; the agent sees the outcome,
        never the PIN (and may ask for the PIN again mid-call only while attempts are
        left: dialplan/midcall_pin.py)."""
        check = await collect_pin(self.session, self.ctx.prompts, self.policy,
                                  identity.IdentityCheck(self.call_id), pin_hash)
        log.info("call %s: identity %s after %d PIN entries", self.call_id, check.status,
                 check.pin_attempts)
        self.rt.execute([Logged(IDENTITY_PIN_RECORD, self.call_id, check.at, {
            **check.as_record(), "customer_id": record["customer_id"]})])
        await self._play("identity_pin_ok" if check.verified else "identity_pin_failed")

    # --- named agent (STD-071, STD-072) ------------------------------------------------

    async def _ask_named_agent(self) -> RosterAgent | None:
        for _ in range(2):
            digits = (await self._ask("named_agent_ask", 8)).rstrip("#")
            member = self.rt.roster.by_id(digits) if digits.isdigit() else None
            if member is not None:
                return member
            log.info("call %s: no agent with work number %r", self.call_id, digits)
        return None

    @enforces("STD-053", "STD-072", policy=("routing.named_agent_callback_due_min",))
    async def _named_agent_busy(self, named: RosterAgent) -> RosterAgent | None:
        """STD-072's script, then: 1 wait for them, 2 anyone, 3 leave a callback for them."""
        await self._play("named_agent_busy")
        choice = await self._ask("named_agent_choice", 1)
        if choice == "3" and await self._take_callback("named_agent", named):
            raise FlowDone
        if choice in ("1", "3"):
            return named
        return None

    # --- endings --------------------------------------------------------------------------

    async def _done(self) -> None:
        """Tell the dialplan the call was handled: without this it falls back to Queue()."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(CallerHungUp):
            await self.session.set_variable("CALLFLOW_DONE", "1")

    def _check_alive(self) -> None:
        call = self.rt.calls.get(self.call_id)
        if call is None or call.phase is Phase.ENDED:
            raise CallGone

    async def _facts_after_hangup(self) -> int:
        """The dial's outcome and the hang-up cause, read back from the dead channel
        (Asterisk still answers GET VARIABLE there); a backup for the AMI events."""
        try:
            if self.offering is not None:
                status = await self.session.get_variable("DIALSTATUS")
                if status:
                    self.rt.offer_reported(self.call_id, self.offering, status)
            cause = await self.session.get_variable("HANGUPCAUSE")
        except Exception:  # the session may already be closed
            return 16
        return int(cause) if cause and cause.isdigit() else 16


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """True if ``event`` was set within ``seconds`` (it may already be set)."""
    if seconds <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def run_inbound(session: AgiSession, ctx: FlowContext) -> None:
    if session.refused is not None:
        alarm_refused_environment(ctx.runtime, session)
    await InboundFlow(session, ctx).run()


#: What an outbound survey's inherited variables may hold (they reach us from a channel).
_SURVEY_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


async def run_outbound_survey(session: AgiSession, ctx: FlowContext) -> None:
    """The customer of an outbound call whose agent hung up first (``[callflow-survey]``,
    reached by Dial's ``F()``): the same questions as an inbound caller
    (dialplan/survey_step.py), the answers stored with the attempt (its agent leg's
    Uniqueid, the call id of the attempt's records) and its agent; an outbound call is
    in no inbound queue, its answers' queue is ``outbound:<kind>``. Variables that are
    missing or malformed, or a call kind the Policy no longer surveys: no survey, the
    customer is hung up (nothing is stored that cannot be tied to a call)."""
    facts: dict[str, str] = {}
    for name in ("CALL", "AGENT", "KIND"):
        value = await session.get_variable(f"CALLFLOW_SURVEY_{name}") or ""
        facts[name] = value if _SURVEY_VALUE.fullmatch(value) else ""
    if not facts["CALL"] or not survey.survey_due(
            ctx.policy, agent_released=True, agent_id=facts["AGENT"], kind=facts["KIND"]):
        log.warning("outbound survey on %s: not due or no call (%s)", session.uniqueid, facts)
    else:
        await run_survey(session, ctx.prompts, ctx.policy,
                         SurveyOf(facts["CALL"], facts["AGENT"], f"outbound:{facts['KIND']}"),
                         ctx.runtime.execute)
    with contextlib.suppress(CallerHungUp):
        await session.hangup()


def alarm_refused_environment(runtime: Runtime, session: AgiSession) -> None:
    """A refused environment (dialplan/agi.py ``check_env``: a caller's value carried a
    newline, issue 15) reaches the flow with only Asterisk's word for the channel: the
    call is routed as an unknown caller on no DID (no named agent, the default queue),
    and supervisors see why."""
    runtime.execute([Alarm("agi_environment_refused", {
        "call_id": session.uniqueid, "channel": session.channel,
        "reason": session.refused or ""}, std="STD-147")])
