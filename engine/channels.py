"""What Asterisk says is up: its channels and bridges, as a pure picture.

The engine's picture of calls and agents must come from what Asterisk reports
(issue 13), not from the paths our flows scripted. This module keeps the part of
that report the rules need, from typed facts the runtime reads off AMI:

* every live channel by uniqueid, with its name, linkedid, the PJSIP endpoint it
  belongs to, whether it is up (answered) and the bridge it is in;
* who asked for a channel's end first: a far end's BYE, CANCEL or rejection reaches
  AMI as ``HangupRequest`` on that leg within milliseconds; everything Asterisk does
  itself (the dialplan ending, an AMI or AGI hangup, a transfer's internals, a
  shutdown) is a ``SoftHangupRequest``, whose cause is a flag, not a Q.850 cause
  (4 = the PBX is shutting down). Only the first of each is kept per channel;
* the bridges and their members (who talks to whom right now).

From that: which endpoints are in use (a desk with any live channel is busy to the
router, whatever our flows think), who has a caller (the agent leg bridged with the
caller's channel), and why a channel went away. Nothing here reads a clock or a
socket; ``apply`` returns a new picture.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

#: ``SoftHangupRequest`` cause flags (Asterisk's AST_SOFTHANGUP_*), not Q.850 causes.
SOFT_DEV = 1  # a transfer's internals (the attended transfer drops the consult leg)
SOFT_ASYNCGOTO = 2  # the channel is sent elsewhere (a blind transfer)
SOFT_SHUTDOWN = 4  # Asterisk is stopping or restarting
SOFT_APPUNLOAD = 16  # the dialplan ended
SOFT_EXPLICIT = 32  # an AMI/AGI/dialplan Hangup

_PJSIP_CHANNEL = re.compile(r"PJSIP/(?P<endpoint>[^/;]+)-[0-9a-f]+$")


def endpoint_of(channel: str) -> str:
    """``PJSIP/agent1003-0000002a`` -> ``agent1003``; "" for any other technology."""
    match = _PJSIP_CHANNEL.match(channel)
    return match.group("endpoint") if match else ""


@dataclass(frozen=True)
class HangupAsked:
    """The first request to end a channel: ``soft`` when Asterisk itself asked."""

    cause: int | None  # Q.850 for a far end's request (None: no Cause key); a flag if soft
    soft: bool
    at: float  # epoch, Asterisk's stamp


@dataclass(frozen=True)
class Channel:
    uid: str
    name: str
    linkedid: str
    endpoint: str = ""
    up: bool = False
    bridge: str = ""
    far_end_hangup: HangupAsked | None = None  # the first HangupRequest
    soft_hangup: HangupAsked | None = None  # the first SoftHangupRequest


@dataclass(frozen=True)
class PbxView:
    """Live channels and bridges, and whether Asterisk said it is shutting down."""

    channels: Mapping[str, Channel] = field(default_factory=lambda: MappingProxyType({}))
    bridges: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    shutting_down: bool = False  # a SoftHangupRequest with the shutdown flag was seen

    def on_endpoint(self, endpoint: str) -> list[Channel]:
        """The live channels of a PJSIP endpoint (a desk's softphone)."""
        return [c for c in self.channels.values() if c.endpoint == endpoint]

    def endpoint_busy(self, endpoint: str) -> bool:
        return any(c.endpoint == endpoint for c in self.channels.values())

    def peers(self, uid: str) -> list[Channel]:
        """The other channels in ``uid``'s bridge (who it talks to now)."""
        channel = self.channels.get(uid)
        if channel is None or not channel.bridge:
            return []
        members = self.bridges.get(channel.bridge, frozenset())
        return [self.channels[m] for m in sorted(members)
                if m != uid and m in self.channels]

    def linked(self, linkedid: str) -> list[Channel]:
        """Every live channel of one call (Asterisk's linkedid)."""
        return [c for c in self.channels.values() if c.linkedid == linkedid]


# --- facts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelNew:
    uid: str
    name: str
    linkedid: str
    up: bool = False


@dataclass(frozen=True)
class ChannelUp:
    uid: str
    at: float


@dataclass(frozen=True)
class HangupRequested:
    uid: str
    cause: int | None
    soft: bool
    at: float


@dataclass(frozen=True)
class ChannelGone:
    uid: str
    cause: int | None
    at: float


@dataclass(frozen=True)
class BridgeJoined:
    bridge: str
    uid: str


@dataclass(frozen=True)
class BridgeLeft:
    bridge: str
    uid: str


@dataclass(frozen=True)
class ChannelRenamed:
    """A Local channel optimised away, a masquerade: the uniqueid keeps a new name."""

    uid: str
    name: str


PbxFact = (ChannelNew | ChannelUp | HangupRequested | ChannelGone | BridgeJoined
           | BridgeLeft | ChannelRenamed)


def apply(view: PbxView, fact: PbxFact) -> PbxView:
    """The picture after one fact; facts about unknown channels are ignored, except the
    bridge facts and ``ChannelNew`` that bring a channel in."""
    channels = dict(view.channels)
    if isinstance(fact, ChannelNew):
        if fact.uid not in channels:
            channels[fact.uid] = Channel(fact.uid, fact.name, fact.linkedid or fact.uid,
                                         endpoint_of(fact.name), up=fact.up)
        return _with(view, channels)
    channel = channels.get(fact.uid)
    if isinstance(fact, BridgeJoined | BridgeLeft):
        return _bridge(view, channels, fact)
    if channel is None:
        return view
    if isinstance(fact, ChannelUp):
        channels[fact.uid] = replace(channel, up=True)
    elif isinstance(fact, ChannelRenamed):
        channels[fact.uid] = replace(channel, name=fact.name, endpoint=endpoint_of(fact.name))
    elif isinstance(fact, HangupRequested):
        asked = HangupAsked(fact.cause, fact.soft, fact.at)
        if fact.soft and channel.soft_hangup is None:
            channels[fact.uid] = replace(channel, soft_hangup=asked)
        elif not fact.soft and channel.far_end_hangup is None:
            channels[fact.uid] = replace(channel, far_end_hangup=asked)
        if fact.soft and fact.cause == SOFT_SHUTDOWN:
            return _with(view, channels, shutting_down=True)
    elif isinstance(fact, ChannelGone):
        del channels[fact.uid]
        bridges = dict(view.bridges)
        if channel.bridge in bridges:
            bridges[channel.bridge] = bridges[channel.bridge] - {fact.uid}
            if not bridges[channel.bridge]:
                del bridges[channel.bridge]
        return _with(view, channels, bridges=bridges)
    return _with(view, channels)


def _bridge(view: PbxView, channels: dict[str, Channel],
            fact: BridgeJoined | BridgeLeft) -> PbxView:
    bridges = dict(view.bridges)
    members = bridges.get(fact.bridge, frozenset())
    channel = channels.get(fact.uid)
    if isinstance(fact, BridgeJoined):
        bridges[fact.bridge] = members | {fact.uid}
        if channel is not None:
            channels[fact.uid] = replace(channel, bridge=fact.bridge)
    else:
        left = members - {fact.uid}
        if left:
            bridges[fact.bridge] = left
        else:
            bridges.pop(fact.bridge, None)
        if channel is not None and channel.bridge == fact.bridge:
            channels[fact.uid] = replace(channel, bridge="")
    return _with(view, channels, bridges=bridges)


def _with(view: PbxView, channels: dict[str, Channel], *,
          bridges: dict[str, frozenset[str]] | None = None,
          shutting_down: bool | None = None) -> PbxView:
    return PbxView(
        MappingProxyType(channels),
        view.bridges if bridges is None else MappingProxyType(bridges),
        view.shutting_down if shutting_down is None else shutting_down)


@dataclass(frozen=True)
class Listed:
    """One channel as Asterisk lists it at a resync (CoreShowChannels)."""

    uid: str
    name: str
    linkedid: str
    up: bool
    bridge: str


def rebuilt(listed: Iterable[Listed], before: PbxView) -> PbxView:
    """The picture from a full listing: what Asterisk says is up now. Hang-up requests
    already seen on channels still up are kept (the listing does not carry them)."""
    channels: dict[str, Channel] = {}
    bridges: dict[str, set[str]] = {}
    for item in listed:
        old = before.channels.get(item.uid)
        channels[item.uid] = Channel(
            item.uid, item.name, item.linkedid or item.uid, endpoint_of(item.name), item.up,
            item.bridge, old.far_end_hangup if old else None, old.soft_hangup if old else None)
        if item.bridge:
            bridges.setdefault(item.bridge, set()).add(item.uid)
    return PbxView(MappingProxyType(channels),
                   MappingProxyType({b: frozenset(m) for b, m in bridges.items()}))
