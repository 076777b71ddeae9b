"""Asterisk's facts, as AMI reports them, made into the core's events.

The engine's picture of calls and agents comes from what Asterisk says happened
(issue 13), not from the paths our flows scripted. Every AMI event the core uses is
read here: it updates the picture of channels and bridges (``engine/channels.py``),
then becomes call events (``engine/calls.py``) and agent events (``agents/state.py``).
What the facts mean, measured on Asterisk 22 (tests/fixtures/ami/endings/README.md):

* **Who hung up first** is the first far-end ``HangupRequest`` on a party's leg (a
  BYE, a CANCEL, a rejection), within milliseconds of the SIP message. Asterisk's own
  hang-ups are ``SoftHangupRequest`` with a flag for a cause; flag 4 means Asterisk is
  shutting down: such an ending is a ``pbx_failure``, blamed on nobody.
* **A call ends** at that first request: the caller's (abandoned, or released by the
  caller), or the talking agent's (released by the agent: the flow then releases the
  caller). The caller's ``Hangup`` comes only when our AGI flow is done with it, and
  ends the call only if nothing ended it before.
* **The answer** is the agent leg going ``Up`` (``Newstate``); ``DialEnd ANSWER``
  comes only after the opening, and not at all when a party hangs up during it.
* **An offer's result** is ``DialEnd``'s status read with the agent leg's own
  hang-up cause: 486 busy (17), 603 declined (21), 480 unavailable (19); a ring
  limit that ran out has no request at all (only that is a ring-no-answer, STD-008);
  ``Forward`` is a 302 Asterisk followed.
* **Legs of a call** are the agent channels Asterisk links to the caller's
  (``Linkedid``): our own Dial, a 302 forward followed through a Local channel, a
  blind transfer's target dialled from the caller's channel. ``BlindTransfer`` and
  ``AttendedTransfer`` move the caller from one agent to another.
* **A desk in use** is any live channel on its PJSIP endpoint; a channel of a call we
  do not track (a personal call, the fallback queue while the engine was away, an
  attended transfer's consultation) bridged with someone makes the agent on-call
  too, without an ACW after it. A desktop warm transfer's consultation (AMI Atxfer,
  ``Runtime.consults``) shares the caller's ``Linkedid`` but is no offer of the call:
  the consulted agent is on it as on an untracked call until ``AttendedTransfer``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from callflow.agents import state as agent_state
from callflow.agents.events import IN_CALL, AgentState
from callflow.engine import calls
from callflow.engine import channels as ch
from callflow.engine.calls import OfferResult, Phase

if TYPE_CHECKING:
    from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

#: The prefix of an untracked call's id on an agent (a call the engine does not route).
UNTRACKED = "pbx:"
#: How long a channel's end is remembered (longer than any listing takes to arrive).
DEATH_MEMORY_S = 60.0


class AmiFrame(Protocol):
    """What the runtime needs of an AMI message (``callflow.ami.frames.AmiMessage`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def received_at(self) -> float: ...

    @property
    def suspect(self) -> str:
        """Why the frame is not shaped as Asterisk writes it ("" if it is): not applied."""
        ...

    def get(self, key: str, default: str = "") -> str: ...


@dataclass
class ChannelLink:
    """An agent leg of a tracked call."""

    call_id: str
    agent_id: str


def stamp(frame: AmiFrame) -> float:
    """Asterisk's own event time (manager.conf timestampevents=yes), else our receipt."""
    raw = frame.get("Timestamp")
    try:
        return float(raw) if raw else time.time()
    except ValueError:
        return time.time()


def _int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


class AsteriskFacts:
    """Reads AMI events into the channel picture and the call and agent machines."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.view = ch.PbxView()
        # monotonic times channels came and went, so a reconciliation can tell a lost
        # event from one that crossed its listing (runtime/reconcile.py)
        self.born: dict[str, float] = {}
        self.died: dict[str, float] = {}
        self._handlers: Mapping[str, Callable[[AmiFrame], None]] = {
            "Newchannel": self._new_channel, "Newstate": self._new_state,
            "Rename": self._renamed, "DialBegin": self._dial_begin, "DialEnd": self._dial_end,
            "HangupRequest": self._hangup_request, "SoftHangupRequest": self._hangup_request,
            "Hangup": self._hangup, "BridgeEnter": self._bridge_enter,
            "BridgeLeave": self._bridge_leave, "BlindTransfer": self._blind_transfer,
            "AttendedTransfer": self._attended_transfer,
        }

    @property
    def reads(self) -> frozenset[str]:
        """The AMI events this reads (Runtime.ami_event_names)."""
        return frozenset(self._handlers)

    def handles(self, name: str) -> bool:
        return name in self._handlers

    def on_frame(self, frame: AmiFrame) -> None:
        handler = self._handlers.get(frame.name)
        if handler is not None:
            handler(frame)

    # --- the picture ---------------------------------------------------------------------

    def _apply(self, fact: ch.PbxFact) -> None:
        self.view = ch.apply(self.view, fact)

    def replace_view(self, view: ch.PbxView) -> None:
        """A full listing from Asterisk replaced the picture (resync, reconciliation)."""
        self.view = view
        for agent_id in list(self.rt.agents):
            self.desk_changed(agent_id)

    def desk_changed(self, agent_id: str) -> None:
        """The agent's desk is in use while Asterisk has any channel on it."""
        agent = self.rt.agents.get(agent_id)
        if agent is not None and agent.extension:
            busy = self.view.endpoint_busy(agent.extension)
            self.rt.agent_fact(agent_id, agent_state.PhoneInUse(busy))

    def _agent_of(self, channel: str) -> str | None:
        return self.rt.agent_for_channel(channel)

    def _live_call(self, call_id: str) -> calls.InboundCall | None:
        call = self.rt.calls.get(call_id)
        return call if call is not None and call.phase is not Phase.ENDED else None

    def _link(self, uid: str, linkedid: str, channel: str) -> ChannelLink | None:
        """The tracked call an agent leg belongs to (ours, a forward's, a transfer's)."""
        link = self.rt.agent_links.get(uid)
        if link is not None:
            return link
        agent_id = self._agent_of(channel)
        if agent_id is None or linkedid == uid or self._live_call(linkedid) is None \
                or self.rt.consults.get(agent_id) == linkedid:
            return None
        link = ChannelLink(linkedid, agent_id)
        self.rt.agent_links[uid] = link
        return link

    # --- channels ------------------------------------------------------------------------

    def _new_channel(self, frame: AmiFrame) -> None:
        uid, name, linkedid = frame.get("Uniqueid"), frame.get("Channel"), frame.get("Linkedid")
        self._apply(ch.ChannelNew(uid, name, linkedid, frame.get("ChannelStateDesc") == "Up"))
        self.born[uid] = time.monotonic()
        agent_id = self._agent_of(name)
        if agent_id is None:
            return
        link = self._link(uid, linkedid, name)
        if link is not None:  # a leg Asterisk rings for one of our calls: an offer
            self.rt.call_event(calls.OfferStarted(link.call_id, link.agent_id, name,
                                                  stamp(frame)))
            self._ringing(link)
        elif self.rt.consults.get(agent_id) == linkedid:
            self._consulted(agent_id, linkedid)
        self.desk_changed(agent_id)

    def _consulted(self, agent_id: str, call_id: str) -> None:
        """The agent's phone rings for a desktop warm transfer's consultation: they are on
        it as on a call we do not route (no offer of the caller's call, no ACW if it ends
        without the join), so nothing else is offered to them meanwhile."""
        agent = self.rt.agents.get(agent_id)
        if agent is not None and agent.state not in IN_CALL:
            self.rt.agent_fact(agent_id, agent_state.CallJoined(UNTRACKED + call_id,
                                                                tracked=False))

    def _ringing(self, link: ChannelLink) -> None:
        """An agent's phone rings for one of our calls the router did not offer them (a
        forward's or a transfer's target): they are ringing for it, like any offer."""
        agent = self.rt.agents.get(link.agent_id)
        if agent is not None and agent.state is AgentState.READY and agent.call_id == "":
            self.rt.agent_fact(link.agent_id, agent_state.CallOffered(link.call_id))

    def _renamed(self, frame: AmiFrame) -> None:
        self._apply(ch.ChannelRenamed(frame.get("Uniqueid"), frame.get("Newname")))

    def _new_state(self, frame: AmiFrame) -> None:
        if frame.get("ChannelStateDesc") != "Up":
            return
        uid = frame.get("Uniqueid")
        self._apply(ch.ChannelUp(uid, stamp(frame)))
        link = self._link(uid, frame.get("Linkedid"), frame.get("Channel"))
        if link is not None:
            self._answered(link, frame.get("Channel"), stamp(frame))

    def _answered(self, link: ChannelLink, channel: str, at: float) -> None:
        """The agent leg went up: that agent answered (the first answer is t_ans)."""
        call = self._live_call(link.call_id)
        if call is None:
            return
        current = call.current_offer
        if current is None or current.agent_id != link.agent_id:
            self.rt.call_event(calls.OfferStarted(link.call_id, link.agent_id, channel, at))
        self.rt.call_event(calls.OfferEnded(link.call_id, link.agent_id, "ANSWER", at))
        self.rt.offer_outcome(link.agent_id, link.call_id, OfferResult.ANSWERED)

    def _hangup_request(self, frame: AmiFrame) -> None:
        uid = frame.get("Uniqueid")
        soft = frame.name == "SoftHangupRequest"
        cause = _int(frame.get("Cause"))
        at = stamp(frame)
        self._apply(ch.HangupRequested(uid, cause, soft, at))
        call = self._live_call(uid)
        if call is not None:  # the caller's channel
            if not soft:
                self.rt.first_release.setdefault(uid, "caller")
                self.rt.call_event(calls.CallReleased(uid, at, cause=cause or 16, by="caller"))
            elif cause == ch.SOFT_SHUTDOWN:
                self.rt.call_event(calls.CallReleased(uid, at, cause=16, by="pbx"))
            return
        link = self.rt.agent_links.get(uid)
        if link is None:
            return
        if self._left_conference(link, at) or soft:
            return
        call = self._live_call(link.call_id)
        talking = call.talking_offer if call is not None else None
        if call is not None and talking is not None and talking.agent_id == link.agent_id \
                and call.phase is Phase.CONNECTED:
            # the agent hung up first (STD-110): the conversation is over now
            self.rt.first_release.setdefault(link.call_id, "agent")
            self.rt.call_event(calls.CallReleased(link.call_id, at, cause=cause or 16,
                                                  by="agent"))

    def _left_conference(self, link: ChannelLink, at: float) -> bool:
        """An agent's leg of a three-way conference is ending: that agent leaves it, the
        other (an agent, or the number in a conference with one) keeps the caller and the
        call goes on (``PartyLeft``)."""
        call = self._live_call(link.call_id)
        if call is None or (len(call.in_conference) < 2 and not call.outside_party) \
                or all(o.agent_id != link.agent_id for o in call.in_conference):
            return False
        self.rt.call_event(calls.PartyLeft(link.call_id, link.agent_id, at))
        return True

    def _hangup(self, frame: AmiFrame) -> None:
        uid = frame.get("Uniqueid")
        gone = self.view.channels.get(uid)
        link = self.rt.agent_links.get(uid)
        if link is not None:  # AMI's Hangup action makes no request event: the end it is
            self._left_conference(link, stamp(frame))
        self._apply(ch.ChannelGone(uid, _int(frame.get("Cause")), stamp(frame)))
        self.born.pop(uid, None)
        self._forget_deaths_before(time.monotonic() - DEATH_MEMORY_S)
        self.died[uid] = time.monotonic()
        call = self._live_call(uid)
        if call is not None:
            self._caller_gone(call, gone, frame)
        link = self.rt.agent_links.pop(uid, None)
        agent_id = link.agent_id if link is not None else self._agent_of(frame.get("Channel"))
        if agent_id is None:
            return
        self.desk_changed(agent_id)
        agent = self.rt.agents.get(agent_id)
        if agent is None or agent.state not in IN_CALL:
            return
        if link is not None and agent.call_id == link.call_id:
            self.rt.agent_fact(agent_id, agent_state.CallEnded(link.call_id))
        elif agent.call_id.startswith(UNTRACKED) and not self.view.endpoint_busy(
                agent.extension):
            self.rt.agent_fact(agent_id, agent_state.CallEnded(agent.call_id))

    def _caller_gone(self, call: calls.InboundCall, gone: ch.Channel | None,
                     frame: AmiFrame) -> None:
        """The caller's channel is destroyed and nothing ended the call before: who did,
        and when, from the requests seen on it."""
        cause = _int(frame.get("Cause")) or 16
        at, by = stamp(frame), "caller"
        if gone is not None and gone.far_end_hangup is not None:
            at = gone.far_end_hangup.at
        elif gone is not None and gone.soft_hangup is not None:
            at = gone.soft_hangup.at
            by = "pbx" if gone.soft_hangup.cause == ch.SOFT_SHUTDOWN \
                else self.rt.first_release.get(call.call_id, "system")
        elif self.view.shutting_down:
            by = "pbx"
        self.rt.call_event(calls.CallReleased(call.call_id, at, cause=cause, by=by))

    # --- dialling ------------------------------------------------------------------------

    def _dial_begin(self, frame: AmiFrame) -> None:
        dest, dest_uid = frame.get("DestChannel"), frame.get("DestUniqueid")
        agent_id = self._agent_of(dest)
        if agent_id is None:
            return
        caller_uid = frame.get("Uniqueid")
        call_id = caller_uid if self._live_call(caller_uid) is not None \
            else frame.get("DestLinkedid")
        if self._live_call(call_id) is None or self.rt.consults.get(agent_id) == call_id:
            return
        link = ChannelLink(call_id, agent_id)
        self.rt.agent_links[dest_uid] = link
        self.rt.call_event(calls.OfferStarted(call_id, agent_id, dest, stamp(frame)))
        self._ringing(link)

    def _dial_end(self, frame: AmiFrame) -> None:
        dest_uid, status = frame.get("DestUniqueid"), frame.get("DialStatus")
        link = self.rt.agent_links.get(dest_uid)
        if link is None:
            agent_id = self._agent_of(frame.get("DestChannel"))
            call_id = frame.get("Uniqueid")
            if agent_id is None or self._live_call(call_id) is None:
                return
            link = ChannelLink(call_id, agent_id)
        if status.upper() == "ANSWER":  # the leg's Newstate Up said so, unless it was missed
            call = self._live_call(link.call_id)
            current = call.current_offer if call is not None else None
            if current is not None and current.agent_id == link.agent_id:
                self._answered(link, frame.get("DestChannel"), stamp(frame))
            return
        leg = self.view.channels.get(dest_uid)
        asked = leg.far_end_hangup if leg is not None else None
        event = calls.OfferEnded(link.call_id, link.agent_id, status, stamp(frame),
                                 leg_cause=asked.cause if asked is not None else None,
                                 forward=frame.get("Forward"),
                                 pbx_failure=self.view.shutting_down)
        self.rt.call_event(event)
        result = OfferResult.PBX_FAILURE if event.pbx_failure else calls.offer_result(
            status, event.leg_cause, event.forward)
        self.rt.offer_outcome(link.agent_id, link.call_id, result)

    # --- bridges and transfers ---------------------------------------------------------

    def _bridge_enter(self, frame: AmiFrame) -> None:
        bridge = frame.get("BridgeUniqueid")
        self._apply(ch.BridgeJoined(bridge, frame.get("Uniqueid")))
        for uid in sorted(self.view.bridges.get(bridge, frozenset())):
            self._seat_if_talking(uid)

    def _seat_if_talking(self, uid: str) -> None:
        """An agent channel bridged with someone, on a call we do not route (a personal
        call, a consultation, the fallback queue): the agent is on that call."""
        channel = self.view.channels.get(uid)
        if channel is None or uid in self.rt.agent_links or not self.view.peers(uid):
            return
        agent_id = self._agent_of(channel.name)
        agent = self.rt.agents.get(agent_id) if agent_id is not None else None
        if agent_id is None or agent is None or agent.state in IN_CALL \
                or (self._live_call(channel.linkedid) is not None
                    and self.rt.consults.get(agent_id) != channel.linkedid):
            return
        self.rt.agent_fact(agent_id, agent_state.CallJoined(UNTRACKED + channel.linkedid,
                                                            tracked=False))

    def _bridge_leave(self, frame: AmiFrame) -> None:
        self._apply(ch.BridgeLeft(frame.get("BridgeUniqueid"), frame.get("Uniqueid")))

    def _blind_transfer(self, frame: AmiFrame) -> None:
        """The agent sent the caller elsewhere from the phone (REFER): their part ends;
        the target is dialled from the caller's channel once our flow lets go of it."""
        call = self._live_call(frame.get("TransfereeUniqueid"))
        link = self.rt.agent_links.get(frame.get("TransfererUniqueid"))
        if call is None or link is None or link.call_id != call.call_id \
                or frame.get("Result") != "Success":
            return
        at = stamp(frame)
        self.rt.call_event(calls.TransferStarted(call.call_id, link.agent_id,
                                                 frame.get("Extension"), at))
        self.rt.agent_fact(link.agent_id, agent_state.CallEnded(call.call_id))

    def _attended_transfer(self, frame: AmiFrame) -> None:
        """The agent consulted a colleague, then joined the caller to them: the colleague
        has the caller now (their leg belonged to the consultation until this moment)."""
        call = self._live_call(frame.get("TransfereeUniqueid"))
        target_uid = frame.get("TransferTargetUniqueid")
        target = frame.get("TransferTargetChannel")
        agent_id = self._agent_of(target)
        if call is not None and agent_id is None:
            target_uid, target, agent_id = self._consulted_leg(call.call_id)
        if call is None or agent_id is None or frame.get("Result") != "Success":
            return
        talking = call.talking_offer
        conference = frame.get("DestType") == "Threeway"
        self.rt.agent_links[target_uid] = ChannelLink(call.call_id, agent_id)
        self.rt.consults.pop(agent_id, None)
        self.rt.call_event(calls.Transferred(call.call_id, agent_id, target, stamp(frame),
                                             conference=conference))
        self.rt.agent_fact(agent_id, agent_state.CallJoined(call.call_id))
        if talking is not None and talking.agent_id != agent_id and not conference:
            self.rt.agent_fact(talking.agent_id, agent_state.CallEnded(call.call_id))

    def _consulted_leg(self, call_id: str) -> tuple[str, str, str | None]:
        """A desktop warm transfer's target: Asterisk's Atxfer dialled the consulted agent
        through a Local channel, so ``AttendedTransfer`` names ``Local/<ext>@agents;1``
        (measured on Asterisk 22: it joins the caller's bridge and the pair is not
        optimised away at once); the agent's own leg is their channel of this call."""
        agent_id = next((a for a, c in self.rt.consults.items() if c == call_id), None)
        agent = self.rt.agents.get(agent_id) if agent_id is not None else None
        if agent is None:
            return "", "", None
        for uid, channel in self.view.channels.items():
            if channel.linkedid == call_id and self._agent_of(channel.name) == agent_id:
                return uid, channel.name, agent_id
        return "", "", None

    def _forget_deaths_before(self, limit: float) -> None:
        if self.died and next(iter(self.died.values())) < limit:
            self.died = {uid: at for uid, at in self.died.items() if at >= limit}

    # --- checks --------------------------------------------------------------------------

    def caller_alive(self, call_id: str) -> bool:
        """Asterisk still has the call's own channel (its caller)."""
        return call_id in self.view.channels
