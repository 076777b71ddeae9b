"""Transfers asked from the agent desktop: who may send a caller where (STD-049).

Pure rules, no I/O. The desktop (desktop/feature.py) asks ``check_transfer`` before it
touches the call; a refusal leaves the call exactly as it was, with the first agent,
and says why in one reason the desktop shows. A transfer that passes becomes a
``Destination``: the inbound flow (dialplan/inbound.py) tells the caller where they go
(``announcement``) and then takes them there with its own offer and waiting rules, so
a caller sent to a queue meets the same queue treatment as any caller (STD-047).

A desktop transfer is written on the call as ``TransferStarted.target`` =
``"<kind>:<value>"`` (``desktop_target``); a transfer made on the phone (REFER) keeps
the bare extension Asterisk reports, so the flow can tell the two apart
(``parse_desktop_target``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from callflow.agents import routing
from callflow.agents.events import AgentState
from callflow.agents.roster import Roster
from callflow.agents.state import AgentSnapshot
from callflow.engine.calls import InboundCall, OfferResult, Phase
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces

TargetKind = Literal["agent", "queue", "backoffice", "external"]
TARGET_KINDS: tuple[TargetKind, ...] = ("agent", "queue", "backoffice", "external")
TransferMode = Literal["blind", "warm"]
TRANSFER_MODES: tuple[TransferMode, ...] = ("blind", "warm")
#: A number an external transfer may dial (digits only: it becomes a dialplan extension).
EXTERNAL_NUMBER = re.compile(r"\d{3,20}")
#: Queue ids and work numbers: what may be written into a target string.
TARGET_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class TransferTarget:
    kind: TargetKind
    value: str = ""  # work number, queue id, number; empty for the back office


@dataclass(frozen=True)
class Destination:
    """Where a transfer that passed the rules takes the caller."""

    kind: TargetKind
    value: str  # agent work number, queue id, or the number to dial (back office, external)
    name: str  # what the caller is told (002:683: the department by its name)


@dataclass(frozen=True)
class Refusal:
    """The transfer is not made; the call stays with the first agent."""

    reason: str  # not_on_call | transfer_limit | transfer_loop | unknown_target |
    #              target_logged_out | target_busy | not_configured | bad_target |
    #              nobody_free (warm to a queue) | not_bridged | consult_in_progress
    detail: str


@dataclass(frozen=True)
class Colleagues:
    """What the rules need of the centre now: the roster and each agent's state."""

    known_agents: Collection[str]  # every work number in the roster
    states: Mapping[str, AgentState]  # each agent the runtime knows, by work number
    queues: Collection[str]  # every queue some agent serves or the Policy routes to


def talking_agent(call: InboundCall | None) -> str | None:
    """The agent who has the caller now (None before the answer, during a transfer)."""
    if call is None or call.phase is not Phase.CONNECTED:
        return None
    talking = call.talking_offer
    return None if talking is None else talking.agent_id


def had_the_call(call: InboundCall) -> set[str]:
    """Every agent who answered this call so far (a transfer back to one is a loop)."""
    return {o.agent_id for o in call.offers if o.result is OfferResult.ANSWERED}


@enforces("STD-049", policy=("transfers.max_per_call", "transfers.backoffice_number",
                             "transfers.backoffice_name", "transfers.queue_names"))
def check_transfer(call: InboundCall | None, agent_id: str, target: TransferTarget,
                   centre: Colleagues, policy: Policy) -> Destination | Refusal:
    """May ``agent_id`` send this call to ``target`` now? The destination, or why not.

    Refused: the agent is not talking to the caller; the call went through
    ``transfers.max_per_call`` transfers already; the target is an agent who had the
    call in this call (a loop), or unknown, logged out or not free; a queue nobody
    serves and the Policy does not route to; a back office not configured; a number
    that is not one.
    """
    if talking_agent(call) != agent_id or call is None:
        return Refusal("not_on_call", "a transfer needs a call the agent is talking on")
    rules = policy.transfers
    if call.transfer_count >= rules.max_per_call:
        return Refusal("transfer_limit", f"this call was transferred {call.transfer_count} "
                                         f"times; at most {rules.max_per_call}")
    if target.kind == "agent":
        return _to_agent(call, target.value, centre)
    if target.kind == "queue":
        if target.value not in centre.queues:
            return Refusal("unknown_target", f"no queue {target.value!r}")
        return Destination("queue", target.value,
                           rules.queue_names.get(target.value, target.value))
    if target.kind == "backoffice":
        if not rules.backoffice_number:
            return Refusal("not_configured", "no back office number in the Policy "
                                             "(transfers.backoffice_number)")
        return Destination("backoffice", rules.backoffice_number, rules.backoffice_name)
    if not EXTERNAL_NUMBER.fullmatch(target.value):
        return Refusal("bad_target", "an external number is 3-20 digits")
    return Destination("external", target.value, target.value)


def _to_agent(call: InboundCall, work_number: str, centre: Colleagues) -> Destination | Refusal:
    if work_number not in centre.known_agents:
        return Refusal("unknown_target", f"no agent {work_number!r} in the roster")
    if work_number in had_the_call(call):
        return Refusal("transfer_loop", f"agent {work_number} already had this call")
    state = centre.states.get(work_number, AgentState.LOGGED_OUT)
    if state is AgentState.LOGGED_OUT:
        return Refusal("target_logged_out", f"agent {work_number} is not logged in")
    if state is not AgentState.READY:
        return Refusal("target_busy", f"agent {work_number} is {state.value}, not ready")
    return Destination("agent", work_number, work_number)


def desktop_target(destination: Destination) -> str:
    """The ``TransferStarted.target`` of a desktop transfer: ``<kind>:<value>``."""
    return f"{destination.kind}:{destination.value}"


def parse_desktop_target(target: str) -> tuple[TargetKind, str] | None:
    """A desktop transfer's target back as ``(kind, value)``; None for a phone's REFER."""
    kind, sep, value = target.partition(":")
    for known in TARGET_KINDS:
        if sep and kind == known and TARGET_VALUE.fullmatch(value):
            return known, value
    return None


@enforces("STD-049")
def announcement(destination: Destination) -> tuple[tuple[str, dict[str, str]], ...]:
    """What the caller hears before being put through, as language-pack prompts: 004:126's
    「請您稍等,我馬上為您轉接。」 then where (002:683: the department by name, never
    "the department concerned"; an agent by work number)."""
    first: tuple[str, dict[str, str]] = ("transfer_wait", {})
    if destination.kind == "agent":
        return first, ("transfer_to_agent", {"agent_no": " ".join(destination.value)})
    if destination.kind == "external":
        return first, ("transfer_to_number", {"number": " ".join(destination.value)})
    return first, ("transfer_to_department", {"department": destination.name})


def presented_number(kind: str, caller: str, policy: Policy) -> str:
    """The number the far end of a transfer out sees (``CALLFLOW_CLI`` of
    ``[callflow-outbound]``; '' presents nothing of ours, as for the dialer).

    * back office: the caller's own number, so the department sees whose matter it takes
      over (it is our own department behind our own trunk, nobody is misled); the
      centre's number (``outbound.caller_id``) when the caller sent none or garbage;
    * external number: always the centre's number (``outbound.caller_id``): presenting
      a customer's number to an outside party is the spoofing carriers refuse, and the
      dialer never does it either (engine/outbound.py ``caller_id_for``).

    The caller ID came from the network: only 3-20 digits pass (it becomes a SIP header).
    """
    if kind == "backoffice" and EXTERNAL_NUMBER.fullmatch(caller):
        return caller
    return policy.outbound.caller_id


# --- warm (consult-first) transfers ------------------------------------------------------

ConsultStep = Literal["complete", "cancel", "conference"]


@dataclass(frozen=True)
class Consult:
    """A warm transfer under way: ``from_agent`` consults ``to_agent`` while the caller
    holds (AMI Atxfer on ``channel``, the first agent's leg). ``kind`` ``backoffice`` or
    ``external``: ``to_agent`` is the number dialled out (nobody's desk)."""

    call_id: str
    from_agent: str
    to_agent: str
    channel: str
    answered: bool = False  # the consulted agent picked up: the transfer may complete
    leg: str = ""  # the consulted agent's own channel, once their phone rings
    conference: bool = False  # all three talk together (Asterisk's threeway)
    kind: TargetKind = "agent"


@enforces("STD-049")
def check_warm(destination: Destination, consulting: Consult | None,
               bridged: bool) -> Refusal | None:
    """May a warm transfer to ``destination`` start? To an agent, the back office or an
    external number (someone answers there to be consulted; a queue is first resolved to
    its next agent by ``queue_consultee``, so a queue destination here is refused),
    one consultation at a time per agent, and only once Asterisk has bridged the caller
    with the agent (``bridged``): during the opening the agent's leg is not in a bridge
    yet and Asterisk would pass the transfer's digits to the caller (measured:
    ``Atxfer`` 1 s after the answer, opening still playing)."""
    if not bridged:
        return Refusal("not_bridged", "the caller is not through to the agent yet")
    if destination.kind == "queue":
        return Refusal("not_supported", "a warm transfer to a queue consults the agent "
                                        "its routing picks (queue_consultee)")
    if consulting is not None:
        return Refusal("consult_in_progress",
                       f"already consulting agent {consulting.to_agent}")
    return None


@enforces("STD-049")
def queue_consultee(call: InboundCall, queue: str, *, waiting: Iterable[InboundCall],
                    agents: Iterable[AgentSnapshot], roster: Roster,
                    held: Callable[[str], bool] = lambda agent_id: False) -> str | Refusal:
    """Whom a warm transfer to ``queue`` consults: the agent the queue's routing would
    offer its next call to (``routing.free_agent``: serving the queue, routable, ready
    the longest, not held), never one who had this call (a loop). Refused
    ``nobody_free`` when there is none, or when callers already wait in that queue (the
    next free agent is theirs, first come first served): the caller stays with the
    consulting agent, who may still transfer blind to the queue and its waiting rules."""
    if any(w.call_id != call.call_id and w.queue == queue and w.phase is Phase.ROUTING
           for w in waiting):
        return Refusal("nobody_free", f"callers wait in queue {queue!r}: its next free "
                                      "agent is theirs; transfer blind to wait in line")
    had = had_the_call(call)
    chosen = routing.free_agent(queue, agents=agents, roster=roster,
                                held=lambda agent_id: agent_id in had or held(agent_id))
    if chosen is None:
        return Refusal("nobody_free", f"nobody serving queue {queue!r} is free; "
                                      "transfer blind to wait in line")
    return chosen.agent_id


@enforces("STD-049")
def check_consult_step(consulting: Consult | None, step: ConsultStep) -> Refusal | None:
    """May the consulting agent complete (join the caller to the colleague), cancel, or
    make it a three-way conference now? Completing and conferencing need the colleague
    (or the number consulted) on the line: before they answer, hanging the first agent
    up would leave the caller with a ringing phone, and a conference would put the
    caller on a ringing line. A conference is made once. In a conference, ``complete`` is
    the first agent leaving (the caller stays with the colleague or the number),
    ``cancel`` drops the colleague or the number."""
    if consulting is None:
        return Refusal("no_consult", "no warm transfer is under way")
    if step in ("complete", "conference") and not consulting.answered:
        return Refusal("consult_not_answered",
                       f"{consulting.to_agent} has not answered yet")
    if step == "conference" and consulting.conference:
        return Refusal("in_conference",
                       f"already in a three-way conference with agent {consulting.to_agent}")
    return None
