"""Hold limits and the special-call scripts on a live Asterisk (issue 6), as a Feature.

The pure machines decide (engine/hold.py, engine/special_calls.py); this module only
feeds them Asterisk's facts and carries out what only Asterisk can do:

* ``Hold``/``Unhold`` on an agent's leg (the softphone's re-INVITE sendonly/sendrecv)
  -> hold episodes (STD-040, STD-041, C-5).
* The desktop's hold button: the system holds the caller itself, whatever the softphone
  can do. AMI ``MuteAudio`` (res_mutestream) mutes what each party sends into the
  bridge, so neither hears the other, and music on hold is whispered to the caller by
  a Local channel (below) running ``MusicOnHold``. Retrieve undoes both (unmute first,
  so the music's spy can let go at once, below); the Policy's optional auto-retrieve
  can therefore really take back a hold the system made (a softphone's own hold can
  only be asked back, on the desktop). On Asterisk 22.10.1 the mute leaves nothing for
  a whisper to ride on: the caller hears neither the music nor a prompt whispered
  during the hold (measured: no RTP sent to the caller; issue 13).
* At the hold's ``max_wait_s`` the caller hears "1 keep waiting, 2 be called back"
  (STD-042, STD-043); ``DTMFEnd`` on the caller's channel carries the answer. 2: a
  callback task owned by the agent, the confirmation, the call ended as a callback
  conversion.
* the call's end (its first party's hang-up, the core's ``CallChanged``) -> the hold
  totals close and the release is judged (who hung up first is the call's
  ``released_by``, STD-110..112).
* ``ChannelTalkingStart`` on the caller's channel (TALK_DETECT, set when the call is
  bridged) -> caller speech, which cancels the silent-call procedure (STD-056).
* Prompts to ONE party of a bridged call: AMI Originate of a Local channel whose ;2
  half runs ChanSpy on the target channel (``w`` whisper: only that channel hears;
  ``B`` barge: both sides of the bridge) while the ;1 half plays the prompt
  (asterisk-conf/extensions.conf.j2 ``[callflow-whisper]``). The ;1 channel's Hangup
  says the prompt is over; its Uniqueid is ours (``ChannelId``), so it is recognised.
  ChanSpy mixes the prompt into the frames the target is sent, so only a target that is
  being sent audio hears it.
* The ;2 half ends by itself: the ;1 half's Hangup queues a hangup to it. But ChanSpy,
  leaving, detaches its audiohooks from the target, and Asterisk (22.10.1,
  ``ast_audiohook_detach``) waits until a voice frame has passed through the target. A
  target with no media either way keeps the ;2 half until it hangs up or media flows
  again: a phone that sends no RTP (SIPp in the tests, silence suppression) or the
  parties of a desktop hold, whose frames MuteAudio nulls. With phones that send audio
  all the time it is gone ~30-60 ms after the prompt (issue 13, measured:
  tests/integration/spies.py). Hanging the ;2 half up (``OtherChannelId``) would not
  help: its thread is inside that wait, and Asterisk answers the AMI Hangup but keeps
  the channel; so the feature sends none.
* Releases (AMI Hangup of the caller's channel) and transfers to the automated
  attendant (AMI Redirect), both tagged with their procedure (STD-112, C-2).

Desktop actions are REST endpoints (special_calls/routes.py): start a procedure, one nuisance
statement, the closing, hold, retrieve, "call back instead" (STD-042). An agent may
act only on their own call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from callflow.agents.events import HoldEnded, HoldStarted
from callflow.dialplan.inbound import PHONE_NUMBER
from callflow.engine import calls, hold
from callflow.engine import special_calls as sc
from callflow.engine.effects import (
    DomainEvent,
    Effect,
    Hangup,
    MuteAudio,
    Notice,
    Originate,
    Redirect,
    SetVariable,
)
from callflow.engine.policy import Policy
from callflow.errors import CallflowError, StateError
from callflow.feature import FeatureBase
from callflow.runtime.asterisk import stamp
from callflow.store import repo
from callflow.store.db import Store

if TYPE_CHECKING:
    from callflow.feature import AgiRoute, FeatureServices
    from callflow.runtime.asterisk import AmiFrame

log = logging.getLogger(__name__)

REASSURANCE_PROMPT = "wait_progress"  # STD-044 wording, 002:443
AGENT_BEEP = "beep"  # Asterisk's own sound: a short tone to the agent only (STD-041)
CHOICE_PROMPT = "callback_offer"  # "1 keep waiting, 2 be called back" (STD-042)
CALLBACK_DONE_PROMPT = "callback_done"  # STD-031 reassurance, 002:447
CALLBACK_TOKEN = "hold-callback"  # the confirmation's end releases the caller
MOH_CLASS = "default"  # asterisk-conf/musiconhold.conf.j2


class SpecialCallsFeature(FeatureBase):
    """Feeds the hold and special-call machines; plays, releases and transfers."""

    name = "special_calls"

    def __init__(self, desktop_hold_reminders: bool = True) -> None:
        """``desktop_hold_reminders=False`` leaves the desktop's hold reminder and limit
        messages to desktop/feature.py (AgentDesktop sends its own); the beep, the board,
        the alarm, the reassurance and the records stay here."""
        self.desktop_hold_reminders = desktop_hold_reminders
        self._service: FeatureServices | None = None
        self.holds: dict[str, hold.CallHolds] = {}
        self.specials: dict[str, sc.SpecialCall] = {}
        self.playing: dict[str, tuple[str, str]] = {}  # our Local ;1 uniqueid -> (call, token)
        self.music: dict[str, str] = {}  # call -> our Local ;1 playing music to its caller
        self.plays: list[dict[str, Any]] = []  # what was played when (tests, diagnostics)
        self._ids = itertools.count(1)
        self._prefix = f"cfsc-{int(time.time())}"

    # --- Feature protocol -----------------------------------------------------------

    async def start(self, service: FeatureServices) -> None:
        self._service = service
        runtime = self.runtime
        self.hold_rules = hold.HoldRules.from_policy(service.policy)
        self.special_rules = sc.SpecialRules.from_policy(service.policy)
        runtime.on_ami("Hold", self._on_hold)
        runtime.on_ami("Unhold", self._on_hold)
        runtime.on_ami("Hangup", self._on_hangup)
        runtime.on_event(self._on_event)
        runtime.on_ami("BridgeEnter", self._on_bridge_enter)
        runtime.on_ami("ChannelTalkingStart", self._on_talking)
        runtime.on_ami("DTMFEnd", self._on_key)
        runtime.own_timers(hold.TIMER_PREFIX, self._on_hold_timer)
        runtime.own_timers(sc.TIMER_PREFIX, self._on_special_timer)
        runtime.extend_snapshot("holds", self._snapshot)
        # render every script now (TTS takes ~0.3 s): a call must never wait for espeak
        names = {*sc.SILENT_PROMPTS, sc.SILENT_SHORT, *sc.SCRIPT.values(), REASSURANCE_PROMPT,
                 CHOICE_PROMPT, CALLBACK_DONE_PROMPT}
        await asyncio.to_thread(lambda: [service.prompts.path(n) for n in sorted(names)])

    async def stop(self) -> None:
        self._service = None

    def routers(self) -> list[APIRouter]:
        from callflow.special_calls.routes import calls_router
        return [calls_router(self)]

    def agi_routes(self) -> dict[str, AgiRoute]:
        return {}

    # --- desktop actions (special_calls/routes.py) ------------------------------------------------

    def act(self, call_id: str, agent_id: str | None, action: str,
            procedure: str = "", note: str = "") -> dict[str, Any]:
        """One desktop action on a live call; ``agent_id`` None = a supervisor, acting for
        the call's agent. Raises StateError (not_found, not_your_call, ...), nothing changed."""
        call = self.runtime.calls.get(call_id)
        if call is None:
            raise StateError("not_found", f"no call {call_id!r}")
        if call.phase is not calls.Phase.CONNECTED or call.agent_id is None:
            raise StateError("not_connected", f"call {call_id} is {call.phase.value}")
        actor = call.agent_id if agent_id is None else agent_id
        if action in ("hold", "retrieve", "callback"):
            if actor != call.agent_id:
                raise StateError("not_your_call",
                                 f"call {call_id} is agent {call.agent_id}'s, not {actor}'s")
            if action == "callback":
                return {"task": self._callback_instead(call, note)}
            return self._desk_hold(call, action == "hold")
        machine = self._special(call)
        now, wall = self.runtime.clock.now(), time.time()
        event: sc.SpecialEvent
        if action == "closing":
            event = sc.Closing(call_id, actor, now, wall)
        elif action == "nuisance":
            event = sc.Warn(call_id, actor, now, wall)
        elif action == "start":
            event = sc.Start(call_id, actor, procedure, now, wall)
        else:
            raise StateError("unknown_action", action)
        self._step_special(machine, event)
        return special_view(self.specials[call_id])

    # --- AMI facts ----------------------------------------------------------------------

    def _on_hold(self, frame: AmiFrame) -> None:
        link = self.runtime.agent_links.get(frame.get("Uniqueid"))
        if link is None:
            return  # a caller holding the agent, or a leg we do not track
        call = self.runtime.calls.get(link.call_id)
        if call is None:
            return
        now, wall = self.runtime.clock.now(), stamp(frame)
        machine = self.holds.get(call.call_id) or hold.new(call.call_id, link.agent_id)
        event: hold.HoldEvent = (hold.HoldOn if frame.name == "Hold" else hold.HoldOff)(
            call.call_id, link.agent_id, now, wall)
        if call.phase is calls.Phase.ENDED:
            log.info("call %s: %s after the call ended: ignored", call.call_id, frame.name)
            return
        system_hold = machine.current is not None and machine.current.via == "desktop"
        self._step_hold(machine, event)
        if system_hold and frame.name == "Unhold":  # the agent took it back on the phone
            self._unhold_on_asterisk(call.call_id)

    def _on_hangup(self, frame: AmiFrame) -> None:
        uid = frame.get("Uniqueid")
        played = self.playing.pop(uid, None)
        if played is not None:
            call_id, token = played
            self._note_play(call_id, token, "ended")
            if token == CALLBACK_TOKEN:
                self._release(call_id)
                return
            machine = self.specials.get(call_id)
            if machine is not None:
                self._step_special(machine, sc.PromptPlayed(call_id, token,
                                                            self.runtime.clock.now(), time.time()))
            return
        if uid in self.runtime.calls:
            self.music.pop(uid, None)  # ChanSpy's E option ends it with the caller

    def _on_event(self, event: DomainEvent) -> None:
        """A call is over: its holds close and its release is judged at once, at the first
        party's hang-up (STD-110: an agent who hangs up first is told then, not when the
        caller's line is finally released)."""
        if not isinstance(event, calls.CallChanged) or event.call.phase is not calls.Phase.ENDED:
            return
        call = event.call
        uid = call.call_id
        now = self.runtime.clock.now()
        wall = call.ended_at if call.ended_at is not None else time.time()
        holds = self.holds.pop(uid, None)
        if holds is not None:
            self._step_hold(holds, hold.CallOver(uid, now, wall), keep=False)
        machine = self.specials.get(uid)
        if machine is None and call.answered_at is not None and call.agent_id is not None:
            machine = self._special(call)
        if machine is not None:
            by = call.released_by or "unknown"
            dropped = calls.ending(call, self.runtime.timings) == "network_drop"
            self._step_special(machine, sc.Released(uid, by, now, wall, dropped))
            self.specials.pop(uid, None)

    def _on_bridge_enter(self, frame: AmiFrame) -> None:
        """The caller is talking to an agent: listen for their speech (STD-056)."""
        uid = frame.get("Uniqueid")
        if uid not in self.runtime.calls or frame.get("BridgeNumChannels") == "1":
            return
        self.runtime.execute([SetVariable(frame.get("Channel"), "TALK_DETECT(set)")])
        call = self.runtime.calls.get(uid)
        if call is not None and call.agent_id is not None \
                and call.phase is calls.Phase.CONNECTED:
            self._step_special(self._special(call), sc.Connected(
                uid, self.runtime.clock.now(), stamp(frame)))

    def _on_key(self, frame: AmiFrame) -> None:
        """A key the caller pressed: the answer to the continue-or-callback offer, if open."""
        if frame.get("Direction") != "Received":
            return
        uid = frame.get("Uniqueid")
        machine = self.holds.get(uid)
        if machine is not None:
            self._step_hold(machine, hold.CallerKey(uid, frame.get("Digit") or "",
                                                    self.runtime.clock.now(), stamp(frame)))

    def _on_talking(self, frame: AmiFrame) -> None:
        uid = frame.get("Uniqueid")
        machine = self.specials.get(uid)
        if machine is not None:
            self._step_special(machine, sc.CallerSpeech(uid, self.runtime.clock.now(),
                                                        stamp(frame)))

    # --- timers -------------------------------------------------------------------------

    def _on_hold_timer(self, key: str) -> None:
        call_id = hold.parse_key(key)[0]
        machine = self.holds.get(call_id)
        if machine is not None:
            self._step_hold(machine, hold.HoldTimer(key, self.runtime.clock.now(), time.time()))

    def _on_special_timer(self, key: str) -> None:
        call_id = key.split(":")[1]
        machine = self.specials.get(call_id)
        if machine is not None:
            self._step_special(machine, sc.SpecialTimer(key, self.runtime.clock.now(),
                                                        time.time()))

    # --- machines -----------------------------------------------------------------------

    def _special(self, call: calls.InboundCall) -> sc.SpecialCall:
        machine = self.specials.get(call.call_id)
        if machine is None:
            machine = sc.new(call.call_id, call.agent_id or "", call.caller)
            self.specials[call.call_id] = machine
        return machine

    def _step_hold(self, machine: hold.CallHolds, event: hold.HoldEvent,
                   keep: bool = True) -> None:
        try:
            new, effects = hold.step(machine, event, self.hold_rules)
        except StateError as exc:  # Asterisk said it twice, or out of order: nothing changes
            log.info("call %s: %s rejected (%s)", machine.call_id, type(event).__name__, exc)
            return
        if keep:
            self.holds[machine.call_id] = new
        self._carry_out(effects)

    def _step_special(self, machine: sc.SpecialCall, event: sc.SpecialEvent) -> None:
        """Requests from the desktop raise StateError to the API; nothing is changed."""
        new, effects = sc.step(machine, event, self.special_rules)
        self.specials[machine.call_id] = new
        self._carry_out(effects)

    def _carry_out(self, effects: Iterable[Effect]) -> None:
        core: list[Effect] = []
        for effect in effects:
            if isinstance(effect, hold.Beep):
                self._play_agent(effect.call_id, AGENT_BEEP, "beep")
            elif isinstance(effect, hold.Reassure):
                self._play(effect.call_id, REASSURANCE_PROMPT, "", "whisper", token="")
            elif isinstance(effect, hold.Retrieve) and effect.via == "desktop":
                asyncio.get_running_loop().call_soon(self._auto_retrieve, effect.call_id)
            elif isinstance(effect, hold.Retrieve):  # a softphone's hold: ask for it back
                core.append(Notice("hold_retrieve", effect.agent_id,
                                   {"call_id": effect.call_id}, std="STD-043"))
            elif isinstance(effect, hold.OfferChoice):
                self._play(effect.call_id, CHOICE_PROMPT, "hold_choice", "whisper", token="")
            elif isinstance(effect, hold.CallbackChosen):
                asyncio.get_running_loop().call_soon(self._callback_chosen, effect.call_id)
            elif isinstance(effect, sc.Play):
                self._play(effect.call_id, effect.prompt, effect.token, "barge",
                           token=effect.token)
            elif isinstance(effect, sc.Release):
                self._end_live_call(effect.call_id, effect.procedure)
                self._release(effect.call_id)
            elif isinstance(effect, sc.Transfer):
                self._end_live_call(effect.call_id, "nuisance")
                self._transfer(effect.call_id, effect.target)
            elif isinstance(effect, Notice) and not self.desktop_hold_reminders \
                    and effect.kind in ("hold_reminder", "hold_limit"):
                continue
            else:
                core.append(effect)
        self.runtime.execute(core)

    # --- holds the system makes (the desktop's button) --------------------------------

    def _desk_hold(self, call: calls.InboundCall, on: bool) -> dict[str, Any]:
        """Hold or retrieve for the desktop: both machines agree first (a refusal changes
        nothing), then Asterisk is told."""
        agent_id = call.agent_id or ""
        cid = call.call_id
        machine = self.holds.get(cid) or hold.new(cid, agent_id)
        now, wall = self.runtime.clock.now(), time.time()
        if on:
            event: hold.HoldEvent = hold.HoldOn(cid, agent_id, now, wall, via="desktop")
        else:
            current = machine.current
            if current is not None and current.via == "softphone":
                raise StateError("softphone_hold",
                                 "the softphone holds this call: take it back on the phone")
            event = hold.HoldOff(cid, agent_id, now, wall)
        new, effects = hold.step(machine, event, self.hold_rules)  # StateError: refused
        self.runtime.agent_event(agent_id, HoldStarted(cid) if on else HoldEnded(cid))
        self.holds[cid] = new
        self._carry_out(effects)
        if on:
            self._hold_on_asterisk(cid)
        else:
            self._unhold_on_asterisk(cid)
        return hold_view(new, now) | {"call_id": cid}

    def _auto_retrieve(self, call_id: str) -> None:
        """The Policy's hard limit (``auto_retrieve_s``) takes back a hold the system made."""
        call = self.runtime.calls.get(call_id)
        if call is None or call.phase is not calls.Phase.CONNECTED:
            return
        try:
            self._desk_hold(call, False)
        except StateError as exc:
            log.info("call %s: auto-retrieve not done (%s)", call_id, exc)

    def _hold_on_asterisk(self, call_id: str) -> None:
        """Neither party hears the other; the caller hears music (whispered to them only)."""
        caller = self._caller_channel(call_id)
        if caller is None:
            return
        self._mute(call_id, True)
        uid = f"{self._prefix}-{next(self._ids)}"
        self.music[call_id] = uid
        self.plays.append({"call_id": call_id, "label": "music_on_hold", "mode": "whisper",
                           "channel": caller, "uid": uid, "token": "",
                           "sent": time.monotonic()})
        self.runtime.execute([Originate(
            "Local/whisper@callflow-whisper/n", application="MusicOnHold", data=MOH_CLASS,
            channel_id=uid, other_channel_id=f"{uid}-2",
            variables=(("CALLFLOW_SPY", caller),))])

    def _unhold_on_asterisk(self, call_id: str) -> None:
        self._mute(call_id, False)
        self._stop_music(call_id)

    def _stop_music(self, call_id: str) -> None:
        uid = self.music.pop(call_id, None)
        if uid is not None:  # AMI finds a channel by its uniqueid as well as by its name
            self.runtime.execute([Hangup(uid)])

    def _mute(self, call_id: str, on: bool) -> None:
        """``in`` = what the party's phone sends to Asterisk, i.e. what the other hears."""
        for channel in (self._agent_channel(call_id), self._caller_channel(call_id)):
            if channel is not None:
                self.runtime.execute([MuteAudio(channel, muted=on, direction="in")])

    # --- callbacks (STD-042, STD-043) ---------------------------------------------------

    def _callback_instead(self, call: calls.InboundCall, note: str) -> dict[str, Any]:
        """The agent's "call back instead": a task for this caller, owned by this agent;
        the agent closes the call as usual."""
        number = call.caller if PHONE_NUMBER.fullmatch(call.caller or "") else ""
        if not number:
            raise StateError("no_number", "the caller's number is unknown: take it down")
        return self.runtime.request_callback(call.call_id, number, "callback", call.agent_id,
                                             time.time(), note=note.strip())

    def _callback_chosen(self, call_id: str) -> None:
        """The held caller pressed 2: task, confirmation, polite end (a conversion)."""
        call = self.runtime.calls.get(call_id)
        if call is None or call.phase is not calls.Phase.CONNECTED:
            return
        try:
            self._callback_instead(call, "chosen by the caller at the hold's limit (STD-043)")
        except StateError as exc:
            self.runtime.execute([Notice("hold_choice_failed", call.agent_id, {
                "call_id": call_id, "reason": exc.reason, "message": exc.detail})])
            return
        self._stop_music(call_id)
        self.runtime.end_call(call_id, calls.Outcome.CALLBACK)
        self._play(call_id, CALLBACK_DONE_PROMPT, "callback_done", "whisper",
                   token=CALLBACK_TOKEN)

    # --- Asterisk side ------------------------------------------------------------------

    def _caller_channel(self, call_id: str) -> str | None:
        call = self.runtime.calls.get(call_id)
        return None if call is None else call.channel

    def _agent_channel(self, call_id: str) -> str | None:
        call = self.runtime.calls.get(call_id)
        offer = None if call is None else call.answered_offer
        return None if offer is None else offer.channel

    def _play_agent(self, call_id: str, sound: str, label: str) -> None:
        channel = self._agent_channel(call_id)
        if channel is None:
            return
        self._spy(call_id, channel, "whisper", sound, label, token="")

    def _play(self, call_id: str, prompt: str, label: str, mode: str, token: str) -> None:
        channel = self._caller_channel(call_id)
        if channel is None:
            return
        try:
            path = str(self.service.prompts.path(prompt))
        except CallflowError:
            log.exception("call %s: prompt %s cannot be rendered", call_id, prompt)
            return
        self._spy(call_id, channel, mode, path, label or prompt, token)

    def _spy(self, call_id: str, channel: str, mode: str, sound: str, label: str,
             token: str) -> None:
        """Originate Local/<mode>@callflow-whisper: ;2 spies on ``channel``, ;1 plays."""
        uid = f"{self._prefix}-{next(self._ids)}"
        if token:
            self.playing[uid] = (call_id, token)
        self.plays.append({"call_id": call_id, "label": label, "mode": mode,
                           "channel": channel, "uid": uid, "token": token,
                           "sent": time.monotonic()})
        self.runtime.execute([Originate(
            f"Local/{mode}@callflow-whisper/n", application="Playback", data=sound,
            channel_id=uid, other_channel_id=f"{uid}-2",
            variables=(("CALLFLOW_SPY", channel),))])

    def _note_play(self, call_id: str, token: str, what: str) -> None:
        for play in reversed(self.plays):
            if play["call_id"] == call_id and play["token"] == token:
                play[what] = time.monotonic()
                return

    def _end_live_call(self, call_id: str, procedure: str) -> None:
        """The board's live record shows the procedure's outcome, not a plain answer."""
        try:
            outcome = calls.Outcome(procedure)
        except ValueError:
            return
        self.runtime.end_call(call_id, outcome)

    def _release(self, call_id: str) -> None:
        channel = self._caller_channel(call_id)
        if channel is not None:
            self.runtime.execute([Hangup(channel)])

    def _transfer(self, call_id: str, target: str) -> None:
        channel = self._caller_channel(call_id)
        if channel is None:
            return
        exten, _, context = target.partition("@")
        self.runtime.execute([Redirect(channel, context=context, exten=exten)])

    # --- views --------------------------------------------------------------------------

    def _snapshot(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        now = self.runtime.clock.now()
        return {cid: hold_view(h, now) for cid, h in self.holds.items()
                if may_see("board") or may_see(f"agent:{h.agent_id}")}


def nuisance_route(store: Store, policy: Policy, number: str, now: datetime) -> str | None:
    """The automated attendant (exten@context) for a number whose nuisance calls reached
    ``special_calls.nuisance_route_after`` within the lookback, else None (C-2: "repeated
    nuisance numbers can be routed to the attendant directly"). For the inbound flow, off
    the loop (it reads the store)."""
    sc_policy = policy.special_calls
    if sc_policy.nuisance_route_after <= 0 or not number:
        return None
    since = now - timedelta(days=sc_policy.nuisance_lookback_days)
    earlier = store.read(repo.calls_from_number, number, since=since,
                         limit=max(200, sc_policy.nuisance_route_after))
    count = sum(1 for c in earlier if c.outcome == "nuisance")
    return sc_policy.attendant_target if count >= sc_policy.nuisance_route_after else None


def hold_view(holds: hold.CallHolds, now: float) -> dict[str, Any]:
    current = holds.current
    return {"agent_id": holds.agent_id, "on_hold": current is not None,
            "via": None if current is None else current.via,
            "choice_open": current is not None and current.choice_open,
            "held_s": None if current is None else round(now - current.started_at, 1),
            "hold_count": holds.count, "hold_total_s": round(holds.total_s(now), 1),
            "breaches": holds.breaches}


def special_view(machine: sc.SpecialCall) -> dict[str, Any]:
    return {"call_id": machine.call_id, "agent_id": machine.agent_id,
            "procedure": machine.procedure, "running": machine.running,
            "warnings": machine.warnings, "closing": machine.closing_at is not None,
            "ending": machine.ending}

