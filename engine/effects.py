"""Effects: what the pure core asks the edges to do, as plain data.

State machines return ``(new_state, [Effect, ...])`` and never touch a socket, the
database or the loop. The runtime (``callflow.runtime.core``) executes each effect
through an adapter. Keeping them plain frozen dataclasses makes every rule testable
by comparing lists, and lets a replay of the event log reproduce any state.

Everything callflow asks of Asterisk is a ``PbxAction`` (Originate, Hangup, Redirect,
MuteAudio, MixMonitor...) or a ``PbxQuery`` (the channel, endpoint and contact
listings): typed here, turned into AMI wire fields only by the AMI adapter
(``callflow.ami.actions``), carried out by the runtime. Nothing above the runtime
holds the AMI client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Effect:
    """Base class, so type hints can say ``list[Effect]``."""


@dataclass(frozen=True)
class StartTimer(Effect):
    """Fire ``TimerFired(key)`` at monotonic time ``at``; replaces a timer with that key."""

    key: str
    at: float


@dataclass(frozen=True)
class CancelTimer(Effect):
    key: str


@dataclass(frozen=True)
class DomainEvent(Effect):
    """Something that happened, as the core says it (a call changed, an agent entered a
    state, a hold ran past its limit...). Typed, with the machine's own values; the
    store keeps it (``callflow.store.rows``), the live stream shows it
    (``callflow.stream.frames``), and features that follow the core (the board,
    queue_log) read it as it is: nobody parses a wire payload back."""


@dataclass(frozen=True)
class Notice(DomainEvent):
    """A message about a live call for the agent's desktop (``agent_id``) and, with
    ``to_board``, the board: hold reminders and limits, script progress, a closing said.
    ``kind`` is its wire type (docs/agent-protocol.md); ``std`` the standard, if any."""

    kind: str
    agent_id: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)
    std: str | None = None
    to_board: bool = False


@dataclass(frozen=True)
class Logged(DomainEvent):
    """A fact kept in the call's event log for QA and reports (a hold past its limit, the
    held caller's choice, a number flagged): no table of its own. ``at`` is epoch."""

    kind: str
    call_id: str
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Publish(Effect):
    """A feature's own message to websocket subscribers of ``topic``, as is (the core
    never uses it: what the core says is a ``DomainEvent``)."""

    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Persist(Effect):
    """A feature's own record for the store; ``kind`` names the table/repository method
    (the core never uses it: the store writes the core's ``DomainEvent``s)."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Alarm(DomainEvent):
    """A broken standard or a fault supervisors must see (STD-147). ``raised_at`` (epoch)
    is stamped by the runtime when it carries the alarm out: the machines read no clock,
    and the store and the board must see the same instant (it keys the alarm)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    std: str = ""
    raised_at: float = 0.0


# --- what callflow asks of Asterisk ----------------------------------------------------


@dataclass(frozen=True)
class PbxAction(Effect):
    """An instruction for Asterisk. Executed as an effect it is fire-and-forget (a refusal
    is logged); ``Runtime.request`` awaits Asterisk's reply where the caller needs it."""


@dataclass(frozen=True)
class Originate(PbxAction):
    """A new channel to ``channel``, connected to an application (``application`` +
    ``data``) or to a dialplan extension (``context`` + ``exten`` + ``priority``).

    ``channel_id`` names the new channel's uniqueid (without it a failed asynchronous
    Originate cannot be tied to anything); ``other_channel_id`` the ;2 half of a Local
    channel."""

    channel: str
    application: str = ""
    data: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    caller_id: str = ""
    timeout_ms: int | None = None
    variables: tuple[tuple[str, str], ...] = ()
    channel_id: str = ""
    other_channel_id: str = ""


@dataclass(frozen=True)
class Hangup(PbxAction):
    """Hang ``channel`` up (a name, or a uniqueid: AMI finds a channel by either)."""

    channel: str
    cause: int = 16


@dataclass(frozen=True)
class Atxfer(PbxAction):
    """Start an attended (consult-first) transfer on an agent's leg ``channel``: Asterisk
    holds the caller and dials ``exten@context`` for the consultation. Completed when the
    transferer's leg hangs up; ``CancelAtxfer`` ends the consultation instead."""

    channel: str
    exten: str
    context: str


@dataclass(frozen=True)
class CancelAtxfer(PbxAction):
    """End the consultation started by ``Atxfer`` on ``channel``: the consulted party is
    hung up and the transferer is back with the caller."""

    channel: str


@dataclass(frozen=True)
class PlayDtmf(PbxAction):
    """One DTMF ``digit`` on ``channel``. ``receive``: as if the channel's phone had sent
    it (AMI PlayDTMF ``Receive``), so the bridge's feature hooks hear it and the phone
    hears nothing; this is how the desktop presses a feature code (the mid-call PIN step)
    on the agent's leg."""

    channel: str
    digit: str
    receive: bool = True


@dataclass(frozen=True)
class Redirect(PbxAction):
    """Send ``channel`` to ``exten@context`` (priority ``priority``)."""

    channel: str
    context: str
    exten: str
    priority: int = 1


@dataclass(frozen=True)
class SetVariable(PbxAction):
    """Set a channel variable or function, e.g. ``TALK_DETECT(set)``."""

    channel: str
    variable: str
    value: str = ""


@dataclass(frozen=True)
class MuteAudio(PbxAction):
    """Mute (or unmute) what ``channel`` sends (``in``) or receives (``out``)."""

    channel: str
    muted: bool
    direction: str = "in"


@dataclass(frozen=True)
class StartRecording(PbxAction):
    """MixMonitor ``channel`` into ``file`` (``b``: only while bridged)."""

    channel: str
    file: str
    options: str = "b"


@dataclass(frozen=True)
class PbxQuery:
    """A listing asked of Asterisk (``Runtime.query``): what it says is up now."""


@dataclass(frozen=True)
class ListChannels(PbxQuery):
    """Every live channel (CoreShowChannels)."""


@dataclass(frozen=True)
class ListEndpoints(PbxQuery):
    """Every PJSIP endpoint with its device state (PJSIPShowEndpoints)."""


@dataclass(frozen=True)
class ListRegistrations(PbxQuery):
    """Every outbound registration (a carrier trunk's) with its status
    (PJSIPShowRegistrationsOutbound)."""


@dataclass(frozen=True)
class ShowEndpoint(PbxQuery):
    """One PJSIP endpoint with each contact's status (PJSIPShowEndpoint)."""

    endpoint: str


@dataclass(frozen=True)
class ListContacts(PbxQuery):
    """Every registered or static PJSIP contact with its status (PJSIPShowContacts)."""
