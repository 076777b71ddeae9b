"""Compare the engine with what Asterisk lists, and correct the engine.

The engine follows Asterisk's events; an event can still be lost (the AMI link down
for a while, a bug, a frame Asterisk never sent). So, at every AMI resync and every
``supervision.reconcile_interval_s``, Asterisk's own listing of its channels
(``CoreShowChannels``) is compared with the engine's picture, and the engine is put
right where they disagree:

* a channel the picture holds that Asterisk no longer lists (its ``Hangup`` was lost)
  is dropped; a listed channel the picture lacks is added;
* a call we track whose caller channel is gone is closed, flagged incomplete with
  the reason (its end time is unknown: the correction's time is used, never a guess
  presented as a fact); at a resync with Asterisk's own records wired (CEL,
  ``callflow/recovery.py``) it is left to them instead, to be closed with Asterisk's
  times;
* an agent on a call with no channel on the desk is freed; an agent talking on the
  phone whom the engine thinks idle is put on that call;
* every correction is an alarm, ``state_corrected``, that says what was wrong.

Between two resyncs the events keep flowing while the listing is on its way, so a
difference only counts when it is older than the request: a channel born after the
request is not missing from the listing, one that died after it is not a phantom.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callflow.agents import state as agent_state
from callflow.agents.events import IN_CALL, AgentState
from callflow.engine import calls
from callflow.engine import channels as ch
from callflow.engine.effects import Alarm
from callflow.runtime.asterisk import UNTRACKED, AmiFrame, ChannelLink

if TYPE_CHECKING:
    from callflow.runtime.core import Runtime

log = logging.getLogger(__name__)

ENDED_OUT_OF_SIGHT = "ended while Asterisk's events were not seen (AMI link down or lost)"


def listed(channels: Sequence[AmiFrame]) -> list[ch.Listed]:
    """``CoreShowChannel`` items as the picture takes them."""
    return [ch.Listed(c.get("Uniqueid"), c.get("Channel"), c.get("Linkedid"),
                      c.get("ChannelStateDesc") == "Up", c.get("BridgeId"))
            for c in channels if c.get("Uniqueid")]


@dataclass
class Corrections:
    """What one reconciliation put right (each one is alarmed as ``state_corrected``)."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, what: str, **detail: Any) -> None:
        self.items.append({"what": what, **detail})


def reconcile(rt: Runtime, items: Sequence[AmiFrame], *, requested_at: float,
              full: bool) -> Corrections:
    """Put the engine right against Asterisk's listing ``items``.

    ``full``: the listing is the whole truth (a resync: events were held while it was
    taken); else only differences older than ``requested_at`` (monotonic) count.
    """
    facts = rt.asterisk
    fixes = Corrections()
    fresh = listed(items)
    if full:
        before = facts.view
        facts.replace_view(ch.rebuilt(fresh, before))
        rt.invariants.asterisk_listed({item.uid for item in fresh})
        dropped = sorted(set(before.channels) - set(facts.view.channels))
        if dropped:
            fixes.add("channels_gone", uniqueids=dropped)
    else:
        _patch_view(rt, fresh, requested_at, fixes)
    _relink_agent_legs(rt)
    _close_lost_calls(rt, fixes, defer=full and rt.ends_from_records)
    _free_or_seat_agents(rt, fixes)
    for fix in fixes.items:
        log.warning("reconciliation: %s", fix)
    rt.execute([Alarm("state_corrected", fix, std="STD-147") for fix in fixes.items])
    return fixes


def _patch_view(rt: Runtime, fresh: list[ch.Listed], requested_at: float,
                fixes: Corrections) -> None:
    facts = rt.asterisk
    view = facts.view
    listed_ids = {item.uid for item in fresh}
    phantoms = [uid for uid in view.channels
                if uid not in listed_ids and facts.born.get(uid, 0.0) < requested_at]
    missing = [item for item in fresh if item.uid not in view.channels
               and facts.died.get(item.uid, float("-inf")) < requested_at]
    if not phantoms and not missing:
        return
    keep = [ch.Listed(c.uid, c.name, c.linkedid, c.up, c.bridge)
            for c in view.channels.values() if c.uid not in phantoms]
    facts.replace_view(ch.rebuilt([*keep, *missing], view))
    if phantoms:
        fixes.add("channels_gone", uniqueids=sorted(phantoms))
    if missing:
        fixes.add("channels_unseen", uniqueids=sorted(item.uid for item in missing))


def _relink_agent_legs(rt: Runtime) -> None:
    """Agent channels of tracked calls (bridged with the caller, or linked to it) are
    known as that call's legs again, so their hang-up is seen."""
    view = rt.asterisk.view
    for channel in view.channels.values():
        agent_id = rt.agent_for_channel(channel.name)
        if agent_id is None or channel.uid in rt.agent_links:
            continue
        call_ids = [p.uid for p in view.peers(channel.uid) if p.uid in rt.calls]
        if not call_ids and channel.linkedid in rt.calls and channel.linkedid != channel.uid \
                and rt.consults.get(agent_id) != channel.linkedid:  # not a warm consult leg
            call_ids = [channel.linkedid]
        if call_ids:
            rt.agent_links[channel.uid] = ChannelLink(call_ids[0], agent_id)
            continue
        agent = rt.agents.get(agent_id)
        if agent is not None and agent.state in IN_CALL and agent.call_id \
                and agent.call_id not in rt.calls:
            # the agent's call from before an engine restart: its leg is followed to its end
            rt.agent_links[channel.uid] = ChannelLink(agent.call_id, agent_id)


def _close_lost_calls(rt: Runtime, fixes: Corrections, *, defer: bool) -> None:
    """``defer``: the link was down (a resync) and Asterisk's records are wired: the call
    waits in ``rt.lost_calls`` for them (callflow/recovery.py closes it with Asterisk's
    times right after this resync) instead of being closed with this moment's."""
    view = rt.asterisk.view
    for call in rt.live_calls():
        if call.call_id in view.channels or (defer and call.call_id in rt.lost_calls):
            continue
        fixes.add("call_ended_out_of_sight", call_id=call.call_id, phase=call.phase.value)
        if defer:
            rt.lost_calls.add(call.call_id)
            continue
        rt.lost_calls.discard(call.call_id)
        by = "pbx" if view.shutting_down else "unknown"
        rt.call_event(calls.CallReleased(call.call_id, time.time(), by=by,
                                         incomplete=ENDED_OUT_OF_SIGHT))


def _free_or_seat_agents(rt: Runtime, fixes: Corrections) -> None:
    view = rt.asterisk.view
    for agent in list(rt.agents.values()):
        if agent.state is AgentState.LOGGED_OUT or not agent.extension:
            continue
        on_desk = view.on_endpoint(agent.extension)
        # the engine's call for the agent is gone from the desk (even if another call is
        # there: the fallback queue gave the agent a caller while the engine was away)
        call_gone = agent.state in IN_CALL and not any(
            agent.call_id in (_leg_call(rt, c), UNTRACKED + c.linkedid) for c in on_desk)
        if call_gone:
            call = rt.calls.get(agent.call_id)
            dialling = agent.state is AgentState.RINGING and call is not None \
                and call.phase is not calls.Phase.ENDED and not on_desk
            if dialling:
                continue  # reserved by a flow that is about to dial it
            fixes.add("agent_freed", agent_id=agent.agent_id, state=agent.state.value,
                      call_id=agent.call_id)
            rt.agent_fact(agent.agent_id, agent_state.CallEnded(agent.call_id))
            agent = rt.agents[agent.agent_id]
        talking = [c for c in on_desk if c.bridge and view.peers(c.uid)]
        if agent.state in IN_CALL or not talking:
            continue
        leg = talking[0]
        link = rt.agent_links.get(leg.uid)
        call_id = link.call_id if link is not None else UNTRACKED + leg.linkedid
        fixes.add("agent_on_call", agent_id=agent.agent_id, state=agent.state.value,
                  call_id=call_id)
        rt.agent_fact(agent.agent_id, agent_state.CallJoined(call_id,
                                                             tracked=link is not None))


def _leg_call(rt: Runtime, channel: ch.Channel) -> str:
    """The call a desk's channel belongs to: the tracked call it is a leg of, else the
    call Asterisk linked it to."""
    link = rt.agent_links.get(channel.uid)
    return link.call_id if link is not None else channel.linkedid


def pbx_gone(rt: Runtime, reason: str, at: float) -> Corrections:
    """Asterisk died or restarted (the supervisor saw its process go, or AMI came back to
    a new Asterisk): every channel it had is gone with it. Each live call ends at ``at``
    as a ``pbx_failure`` (nobody hung up: no agent is blamed, no RONA, no abandon), its
    end flagged incomplete with ``reason`` (Asterisk sent no event; ``at`` is when we
    saw it gone), and every agent on a call or ringing is freed."""
    fixes = Corrections()
    facts = rt.asterisk
    gone = sorted(facts.view.channels)
    facts.replace_view(ch.PbxView(shutting_down=True))
    rt.invariants.asterisk_listed(set(), restarted=True)
    if gone:
        fixes.add("channels_gone", uniqueids=gone)
    rt.agent_links.clear()
    for call in rt.live_calls():
        fixes.add("call_lost_with_pbx", call_id=call.call_id, phase=call.phase.value)
        rt.call_event(calls.CallReleased(call.call_id, at, cause=0, by="pbx",
                                         incomplete=reason))
    for agent in list(rt.agents.values()):
        if agent.state in IN_CALL and agent.call_id:
            fixes.add("agent_freed", agent_id=agent.agent_id, state=agent.state.value,
                      call_id=agent.call_id)
            rt.agent_fact(agent.agent_id, agent_state.CallEnded(agent.call_id))
    for fix in fixes.items:
        log.warning("Asterisk gone (%s): %s", reason, fix)
    return fixes
