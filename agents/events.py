"""What can happen to an agent: the inputs of the agent state machine (agents/state.py).

Two kinds of input arrive, and the machine treats them differently:

* requests, made by a person (the agent's desktop, a supervisor on the board, a
  feature code dialled from the softphone): ``LogIn``, ``LogOut``, ``RequestState``,
  ``EndAcw``, ``SubmitWrapup``, ``ExtendAcw``,
  ``ApproveBusy``. An illegal request is rejected with a
  reason and changes nothing.
* facts, reported by the PBX or the call machines: ``CallOffered``, ``CallAnswered``,
  ``OfferTimedOut``, ``OfferRejected``, ``OfferWithdrawn``, ``CallJoined``,
  ``CallEnded``, ``HoldStarted``, ``HoldEnded``, ``PhoneInUse``,
  ``SoftphoneReachable``/``SoftphoneUnreachable``, and the core's own ``TimerFired``
  and ``DayRollover``. A fact repeated (AMI and the AGI flow both report it) is a
  no-op; a fact about another call is stale and rejected like a request.

States are defined by behaviour, never by the seeds' labels (C-3): busy (示忙) is
"present, away from calls, with a reason" (STD-097); ACW is work on the call just
ended (STD-098); not-ready is set by the engine (ring-no-answer, unreachable;
STD-099) or chosen with one of the configured not-ready reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from callflow.engine.policy import Policy

Actor = Literal["agent", "supervisor", "feature_code", "system"]


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RINGING = "ringing"
    ON_CALL = "on_call"
    ON_HOLD = "on_hold"
    ACW = "acw"
    BUSY = "busy"
    NOT_READY = "not_ready"


IN_CALL = frozenset({AgentState.RINGING, AgentState.ON_CALL, AgentState.ON_HOLD})


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogIn:
    """Start a session at ``extension`` (empty: the extension the roster gave the agent).

    ``reachable``: what PJSIP last said of that extension's softphone (hot-desking: the
    agent's flag follows the desk, not the person); None keeps the agent's flag.
    """

    extension: str = ""
    by: Actor = "agent"
    reachable: bool | None = None


@dataclass(frozen=True)
class LogOut:
    """End the session; ``reason`` says why when it is not the agent's own choice.

    E.g. ``inactivity`` (STD-102, sent by the runtime) or ``supervisor``.
    """

    by: Actor = "agent"
    reason: str = ""


@dataclass(frozen=True)
class RequestState:
    """Ask for ready, busy(reason) or not_ready(reason); the other states follow calls."""

    state: AgentState
    reason: str = ""
    by: Actor = "agent"


@dataclass(frozen=True)
class EndAcw:
    """Finish after-call work now (feature code *24, the desktop's 'done' button)."""

    by: Actor = "agent"


@dataclass(frozen=True)
class SubmitWrapup:
    """The wrap-up form of ``call_id`` (STD-092): a disposition from the Policy's list and
    the agent's notes (the customer's feedback, problems and needs, 003:134)."""

    call_id: str
    disposition: str
    notes: str = ""
    by: Actor = "agent"


@dataclass(frozen=True)
class ExtendAcw:
    """A supervisor gives this call's ACW more time (STD-100: the limit is per call)."""

    seconds: float
    by: Actor = "supervisor"


@dataclass(frozen=True)
class ApproveBusy:
    """A supervisor approves a busy reason that needs approval (STD-106)."""

    by: Actor = "supervisor"


@dataclass(frozen=True)
class RefuseBusy:
    """A supervisor refuses an absence awaiting approval (STD-106): the agent is told and
    goes where ``agents.absence_refused_state`` says (agents/state.py)."""

    by: Actor = "supervisor"


@dataclass(frozen=True)
class AskAcwExtension:
    """The agent asks a supervisor for more after-call work time (STD-100); one request
    per ACW, answered by ``ExtendAcw`` (granted) or ``RefuseAcwExtension``."""

    reason: str = ""
    by: Actor = "agent"


@dataclass(frozen=True)
class RefuseAcwExtension:
    """A supervisor refuses the agent's open request for more ACW time."""

    by: Actor = "supervisor"


# --- facts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallOffered:
    """Routing chose this agent for ``call_id``; the phone starts ringing. ``outbound``:
    the dialler's attempt (agent-first), which owes the wrap-up form when it ends
    (STD-092; inbound calls only when the Policy says so)."""

    call_id: str
    outbound: bool = False


@dataclass(frozen=True)
class CallAnswered:
    call_id: str


@dataclass(frozen=True)
class OfferTimedOut:
    """The offer rang the full ring limit unanswered (STD-008)."""

    call_id: str


@dataclass(frozen=True)
class OfferRejected:
    """The agent's phone refused the offer before the ring limit: 486 Busy Here, 603
    Decline, or a 302 forward elsewhere (``why``: busy | declined | forwarded). Not a
    ring-no-answer (STD-008 counts only the ring limit running out), but the agent is
    not taking calls: the router moves on and, per Policy, sets them not-ready."""

    call_id: str
    why: str


@dataclass(frozen=True)
class OfferWithdrawn:
    """The offer ended without an answer for another cause (caller hung up, dial failed)."""

    call_id: str


@dataclass(frozen=True)
class CallJoined:
    """The agent is talking on ``call_id`` without the router having offered it to them:
    a transfer or a forward made on the phone, a call from the fallback queue, a
    personal call. ``tracked``: a call the engine records (an inbound call that moved to
    this agent) -> handled like any call, ACW after it; untracked (a call the engine
    does not route) -> the agent is back where they were when it ends."""

    call_id: str
    tracked: bool = True


@dataclass(frozen=True)
class CallEnded:
    call_id: str


@dataclass(frozen=True)
class PhoneInUse:
    """Asterisk says the agent's desk has a live channel (``busy``) or none any more.

    The router never offers a call to a desk in use, whatever the agent's state says
    (issue 13: Asterisk is the truth for occupancy)."""

    busy: bool


@dataclass(frozen=True)
class HoldStarted:
    call_id: str


@dataclass(frozen=True)
class HoldEnded:
    call_id: str


@dataclass(frozen=True)
class TimerFired:
    """A timer this machine started (``StartTimer(key, at)``) is due."""

    key: str


@dataclass(frozen=True)
class SoftphoneReachable:
    """PJSIP says the agent's contact is reachable again."""


@dataclass(frozen=True)
class SoftphoneUnreachable:
    """PJSIP says the agent's contact is unreachable or gone (unregistered)."""


@dataclass(frozen=True)
class DayRollover:
    """Midnight (centre time): close the day's totals and start new ones."""


AgentEvent = (LogIn | LogOut | RequestState | EndAcw | SubmitWrapup | ExtendAcw | ApproveBusy
              | RefuseBusy | AskAcwExtension | RefuseAcwExtension
              | CallOffered
              | CallAnswered | OfferTimedOut | OfferRejected | OfferWithdrawn | CallJoined
              | CallEnded | HoldStarted | HoldEnded | PhoneInUse | TimerFired
              | SoftphoneReachable | SoftphoneUnreachable | DayRollover)


def feature_code_event(code: str, policy: Policy) -> AgentEvent | None:
    """The request a dialled feature code stands for (None: not one of ours).

    Feature codes cannot ask for a reason, so busy and not-ready take the Policy's
    default reasons (busy always carries one, STD-097).
    """
    codes = policy.agents.feature_codes
    action = codes.codes().get(code.strip())
    if action == "ready":
        return RequestState(AgentState.READY, by="feature_code")
    if action == "busy":
        return RequestState(AgentState.BUSY, codes.busy_reason, by="feature_code")
    if action == "not_ready":
        return RequestState(AgentState.NOT_READY, codes.not_ready_reason, by="feature_code")
    if action == "end_acw":
        return EndAcw(by="feature_code")
    return None
