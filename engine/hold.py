"""Hold episodes of one call, as a pure state machine (STD-040, STD-041, STD-043, C-5).

Why a machine of its own: the agent machine only knows "on hold" as a state; the
standards judge each *hold* — its reminders, its limit, its length — and the call's
totals. Events carry two times: ``at`` (monotonic, what the timers run on) and
``wall`` (epoch seconds, what the records keep). Nothing here reads a clock.

Per hold episode:

* at ``reminder_s`` and every ``reminder_repeat_s`` after, the agent is reminded to
  update the caller (STD-041): a desktop message and a short beep to the agent only;
* at ``limit_s`` (per episode, or per call when ``breach_scope = "call"``, C-5) the
  breach: the agent is alerted again, supervisors get an Alarm, the caller hears a
  reassurance prompt, and the breach goes into the call's event log (STD-040);
* at ``max_wait_s`` the continue-or-callback choice is forced (STD-043): alarm and
  desktop, and (``max_wait_offer``) the caller hears "1 keep waiting, 2 be called back";
  a key pressed within ``choice_window_s`` decides (STD-042): 2 = a callback task and a
  polite end (a callback conversion), 1 = the hold goes on and the agent is told;
* optionally, at ``auto_retrieve_s`` the caller is taken off hold (Policy, off by default).

A hold is made either by the agent's softphone (re-INVITE, AMI ``Hold``) or by the system
at the desktop's request (``via = "desktop"``); only the system's own holds can be taken
back by the system, so ``Retrieve`` says which kind it is.

Every episode is stored as a ``call_holds`` row and the call keeps ``hold_count`` and
``hold_total_s``. Bad input (a second hold while on hold, an unhold with no hold, a
hold on an ended call, another agent's hold) raises StateError and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from callflow.engine.effects import (
    Alarm,
    CancelTimer,
    DomainEvent,
    Effect,
    Logged,
    Notice,
    StartTimer,
)
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import StateError

TIMER_PREFIX = "hold"
REMINDER = "reminder"  # STD-041
LIMIT = "limit"  # STD-040
MAX_WAIT = "max_wait"  # STD-043
RETRIEVE = "retrieve"  # optional auto-retrieve
CHOICE = "choice"  # the continue-or-callback key window closes (STD-042)
KEEP_WAITING, CALL_ME_BACK = "1", "2"
Via = Literal["softphone", "desktop"]


@dataclass(frozen=True)
class HoldRules:
    reminder_s: float
    reminder_repeat_s: float
    limit_s: float
    scope: Literal["episode", "call"]
    max_wait_s: float
    auto_retrieve_s: float
    max_wait_offer: bool = True
    choice_window_s: float = 15.0

    @classmethod
    def from_policy(cls, policy: Policy) -> HoldRules:
        hold = policy.hold
        return cls(reminder_s=hold.reminder_s, reminder_repeat_s=hold.reminder_repeat_s,
                   limit_s=hold.limit_s, scope=hold.breach_scope, max_wait_s=hold.max_wait_s,
                   auto_retrieve_s=hold.auto_retrieve_s, max_wait_offer=hold.max_wait_offer,
                   choice_window_s=hold.choice_window_s)


@dataclass(frozen=True)
class Episode:
    started_at: float  # monotonic
    started_wall: float
    ended_at: float | None = None
    ended_wall: float | None = None
    reminders: int = 0
    breached: bool = False
    max_wait: bool = False
    via: Via = "softphone"
    choice_open: bool = False  # the caller's key counts now (STD-042)
    choice: str | None = None  # what the caller chose

    @property
    def length(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class CallHolds:
    call_id: str
    agent_id: str
    episodes: tuple[Episode, ...] = ()
    ended: bool = False
    call_breached: bool = False  # scope "call": the call's one breach has been raised

    @property
    def current(self) -> Episode | None:
        if self.episodes and self.episodes[-1].ended_at is None:
            return self.episodes[-1]
        return None

    @property
    def count(self) -> int:
        return len(self.episodes)

    def total_s(self, now: float | None = None) -> float:
        """All hold of the call; an open episode counts up to ``now`` (if given)."""
        total = 0.0
        for ep in self.episodes:
            end = ep.ended_at if ep.ended_at is not None else now
            if end is not None:
                total += end - ep.started_at
        return total

    @property
    def breaches(self) -> int:
        return sum(1 for ep in self.episodes if ep.breached)


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True)
class HoldOn:
    call_id: str
    agent_id: str
    at: float
    wall: float
    via: Via = "softphone"


@dataclass(frozen=True)
class HoldOff:
    call_id: str
    agent_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class HoldTimer:
    """A timer ``hold:<call_id>:<episode>:<kind>:<n>`` fired."""

    key: str
    at: float
    wall: float


@dataclass(frozen=True)
class CallOver:
    """The call ended: an open hold closes now (it cannot outlive the call)."""

    call_id: str
    at: float
    wall: float


@dataclass(frozen=True)
class CallerKey:
    """The caller pressed a key (AMI ``DTMFEnd`` on the caller's channel)."""

    call_id: str
    digit: str
    at: float
    wall: float


HoldEvent = HoldOn | HoldOff | HoldTimer | CallOver | CallerKey


# --- commands for the feature (things only the Asterisk side can do) --------------


@dataclass(frozen=True)
class Beep(Effect):
    """A short beep or whisper to the agent's channel only, never to the caller (STD-041)."""

    call_id: str
    agent_id: str


@dataclass(frozen=True)
class Reassure(Effect):
    """The caller on hold hears the reassurance prompt (STD-040 limit, STD-044 wording)."""

    call_id: str


@dataclass(frozen=True)
class Retrieve(Effect):
    """Take the caller off hold (optional auto-retrieve at ``auto_retrieve_s``)."""

    call_id: str
    agent_id: str
    via: Via = "softphone"


@dataclass(frozen=True)
class OfferChoice(Effect):
    """The held caller hears "1 keep waiting, 2 be called back" (STD-042, STD-043)."""

    call_id: str


@dataclass(frozen=True)
class CallbackChosen(Effect):
    """The held caller chose a callback: a task for their number, then a polite end."""

    call_id: str
    agent_id: str


# --- the machine --------------------------------------------------------------------


def new(call_id: str, agent_id: str) -> CallHolds:
    return CallHolds(call_id=call_id, agent_id=agent_id)


def timer_key(call_id: str, episode: int, kind: str, n: int = 1) -> str:
    return f"{TIMER_PREFIX}:{call_id}:{episode}:{kind}:{n}"


def parse_key(key: str) -> tuple[str, int, str, int]:
    """``hold:<call_id>:<episode>:<kind>:<n>``; call ids contain dots, never colons."""
    try:
        prefix, call_id, episode, kind, n = key.split(":")
        if prefix != TIMER_PREFIX:
            raise ValueError(prefix)
        return call_id, int(episode), kind, int(n)
    except ValueError:
        raise StateError("bad_timer", f"not a hold timer key: {key!r}") from None


def step(holds: CallHolds, event: HoldEvent,
         rules: HoldRules) -> tuple[CallHolds, list[Effect]]:
    """Apply one event; illegal ones raise StateError with the state unchanged."""
    if isinstance(event, HoldTimer):
        return _timer(holds, event, rules)
    if event.call_id != holds.call_id:
        raise StateError("wrong_call", f"event for {event.call_id}, machine of {holds.call_id}")
    if isinstance(event, CallerKey):
        return _caller_key(holds, event)
    if isinstance(event, CallOver):
        if holds.ended:
            return holds, []
        effects: list[Effect] = []
        if holds.current is not None:
            holds, effects = _end_episode(holds, event.at, event.wall, rules, "call_ended")
        return replace(holds, ended=True), effects
    if holds.ended:
        raise StateError("call_ended", f"call {holds.call_id} has ended: no hold or unhold")
    if event.agent_id != holds.agent_id:
        raise StateError("not_your_call",
                         f"call {holds.call_id} is agent {holds.agent_id}'s, "
                         f"not {event.agent_id}'s")
    if isinstance(event, HoldOn):
        if holds.current is not None:
            raise StateError("already_on_hold", f"call {holds.call_id} is already on hold")
        if holds.episodes and event.at < (holds.episodes[-1].ended_at or 0.0):
            raise StateError("out_of_order", "hold earlier than the end of the previous hold")
        return _start_episode(holds, event, rules)
    if holds.current is None:
        raise StateError("not_on_hold", f"call {holds.call_id} is not on hold")
    if event.at < holds.current.started_at:
        raise StateError("out_of_order", "unhold earlier than its hold")
    return _end_episode(holds, event.at, event.wall, rules, "unhold")


def _start_episode(holds: CallHolds, event: HoldOn,
                   rules: HoldRules) -> tuple[CallHolds, list[Effect]]:
    episode = Episode(started_at=event.at, started_wall=event.wall, via=event.via)
    holds = replace(holds, episodes=(*holds.episodes, episode))
    n = holds.count
    cid = holds.call_id
    effects: list[Effect] = [StartTimer(timer_key(cid, n, REMINDER),
                                        event.at + reminder_offset(1, rules))]
    limit_at = _limit_at(holds, rules, event.at)
    if limit_at is not None:
        effects.append(StartTimer(timer_key(cid, n, LIMIT), limit_at))
    effects.append(StartTimer(timer_key(cid, n, MAX_WAIT), event.at + rules.max_wait_s))
    if rules.auto_retrieve_s > 0:
        effects.append(StartTimer(timer_key(cid, n, RETRIEVE), event.at + rules.auto_retrieve_s))
    effects.append(HoldChanged(holds, n, event.at, "hold_started", {"via": event.via}))
    return holds, effects


@enforces("STD-041", policy=("hold.reminder_s", "hold.reminder_repeat_s"))
def reminder_offset(n: int, rules: HoldRules) -> float:
    """How far into a hold the ``n``-th reminder is due (1-based): the timers are set from
    it and the episode's verdict counts the reminders that were due from it."""
    return rules.reminder_s + (n - 1) * rules.reminder_repeat_s


@enforces("STD-041", policy=("hold.reminder_s", "hold.reminder_repeat_s"))
def reminders_due(held_s: float, rules: HoldRules) -> int:
    """Reminders a hold of ``held_s`` was owed: those due before it ended (one only, when
    ``reminder_repeat_s`` is 0)."""
    if held_s < rules.reminder_s:
        return 0
    if rules.reminder_repeat_s <= 0:
        return 1
    return 1 + int((held_s - rules.reminder_s) // rules.reminder_repeat_s)


@enforces("STD-040", policy=("hold.limit_s", "hold.breach_scope"))
def hold_breached(episode: Episode, rules: HoldRules) -> bool:
    """STD-040: the episode went past the limit: its limit timer fired (``breached``, the
    engine's own decision, which also covers scope "call"), or, per episode, it ended past
    ``limit_s`` before that timer could fire."""
    if episode.breached:
        return True
    length = episode.length
    return rules.scope == "episode" and rules.limit_s > 0 and length is not None \
        and length > rules.limit_s


def _limit_at(holds: CallHolds, rules: HoldRules, at: float) -> float | None:
    """When this episode breaches: limit_s into it, or (scope "call") when the call's
    hold total reaches limit_s — once per call."""
    if rules.limit_s <= 0:
        return None
    if rules.scope == "episode":
        return at + rules.limit_s
    if holds.call_breached:
        return None
    before = holds.total_s()  # the closed episodes only
    return at + max(0.0, rules.limit_s - before)


def _end_episode(holds: CallHolds, at: float, wall: float, rules: HoldRules,
                 why: str) -> tuple[CallHolds, list[Effect]]:
    n = holds.count
    current = holds.current
    assert current is not None
    episode = replace(current, ended_at=at, ended_wall=wall)
    holds = replace(holds, episodes=(*holds.episodes[:-1], episode))
    cid = holds.call_id
    effects: list[Effect] = [CancelTimer(timer_key(cid, n, kind))
                             for kind in (REMINDER, LIMIT, MAX_WAIT, RETRIEVE, CHOICE)]
    effects += [CancelTimer(timer_key(cid, n, REMINDER, k))
                for k in range(2, current.reminders + 2)]
    effects.append(HoldChanged(holds, n, at, "hold_ended", {"why": why}))
    return holds, effects


@enforces("STD-040", "STD-041", "STD-043",
          policy=("hold.limit_s", "hold.reminder_s", "hold.reminder_repeat_s", "hold.breach_scope",
                  "hold.max_wait_s", "hold.auto_retrieve_s"))
def _timer(holds: CallHolds, event: HoldTimer,
           rules: HoldRules) -> tuple[CallHolds, list[Effect]]:
    call_id, n, kind, count = parse_key(event.key)
    if call_id != holds.call_id:
        raise StateError("wrong_call", f"timer {event.key} is not for call {holds.call_id}")
    current = holds.current
    if holds.ended or current is None or n != holds.count:
        return holds, []  # that hold is over: a late timer is harmless
    held = event.at - current.started_at
    agent = holds.agent_id
    detail = {"call_id": call_id, "agent_id": holds.agent_id, "episode": n,
              "held_s": round(held, 3)}
    if kind == REMINDER:
        current = replace(current, reminders=current.reminders + 1)
        effects: list[Effect] = [
            Notice("hold_reminder", agent, {"count": count, **detail}, std="STD-041"),
            Beep(call_id, holds.agent_id)]
        if rules.reminder_repeat_s > 0:
            effects.append(StartTimer(timer_key(call_id, n, REMINDER, count + 1),
                                      current.started_at + reminder_offset(count + 1, rules)))
        return _replace_current(holds, current), effects
    if kind == LIMIT:
        current = replace(current, breached=True)
        holds = replace(_replace_current(holds, current),
                        call_breached=holds.call_breached or rules.scope == "call")
        total = round(holds.total_s(event.at), 3)
        breach = {**detail, "limit_s": rules.limit_s, "scope": rules.scope, "total_s": total}
        return holds, [
            Notice("hold_limit", agent, breach, std="STD-040"),
            Notice("hold_breach", None, breach, std="STD-040", to_board=True),
            Alarm("hold_limit", breach, std="STD-040"),
            Logged("hold_breach", call_id, event.wall, breach),
            Reassure(call_id)]
    if kind == MAX_WAIT:
        holds = _replace_current(holds, replace(current, max_wait=True,
                                                choice_open=rules.max_wait_offer))
        over = {**detail, "max_wait_s": rules.max_wait_s, "offered": rules.max_wait_offer}
        effects = [Notice("hold_max_wait", agent, over, std="STD-043"),
                   Alarm("hold_max_wait", over, std="STD-043"),
                   Logged("hold_max_wait", call_id, event.wall, over)]
        if rules.max_wait_offer:
            effects += [OfferChoice(call_id),
                        StartTimer(timer_key(call_id, n, CHOICE),
                                   event.at + rules.choice_window_s)]
        return holds, effects
    if kind == CHOICE:
        if not current.choice_open:
            return holds, []
        holds = _replace_current(holds, replace(current, choice_open=False))
        return holds, [Notice("hold_choice", agent, {"choice": None, **detail},
                              std="STD-042")]
    if kind == RETRIEVE:
        return holds, [Retrieve(call_id, holds.agent_id, current.via)]
    raise StateError("bad_timer", f"unknown hold timer kind {kind!r}")


@enforces("STD-042", policy=("hold.max_wait_offer", "hold.choice_window_s"))
def _caller_key(holds: CallHolds, event: CallerKey) -> tuple[CallHolds, list[Effect]]:
    """A key counts only while the offer is open; any other key press is the caller's
    business with the agent (it reaches the agent's phone as usual)."""
    current = holds.current
    if holds.ended or current is None or not current.choice_open \
            or event.digit not in (KEEP_WAITING, CALL_ME_BACK):
        return holds, []
    n = holds.count
    holds = _replace_current(holds, replace(current, choice_open=False, choice=event.digit))
    choice = "callback" if event.digit == CALL_ME_BACK else "keep_waiting"
    detail = {"call_id": holds.call_id, "agent_id": holds.agent_id, "episode": n,
              "held_s": round(event.at - current.started_at, 3), "choice": choice}
    effects: list[Effect] = [
        CancelTimer(timer_key(holds.call_id, n, CHOICE)),
        Notice("hold_choice", holds.agent_id, detail, std="STD-042", to_board=True),
        Logged("hold_choice", holds.call_id, event.wall, detail)]
    if event.digit == CALL_ME_BACK:
        effects.append(CallbackChosen(holds.call_id, holds.agent_id))
    return holds, effects


def _replace_current(holds: CallHolds, episode: Episode) -> CallHolds:
    return replace(holds, episodes=(*holds.episodes[:-1], episode))


@dataclass(frozen=True)
class HoldChanged(DomainEvent):
    """A hold episode began or ended (``kind``: ``hold_started`` / ``hold_ended``): the
    store keeps the episode and the call's running totals, the board shows it and
    counts it (STD-040, STD-041). ``at`` is the machine's time of the change."""

    holds: CallHolds
    episode: int  # 1-based
    at: float
    kind: str
    extra: Mapping[str, str] = field(default_factory=dict)  # via | why


def hold_record(event: HoldChanged) -> dict[str, Any]:
    """One row per episode (opened, then finished) and the call's running totals."""
    holds, ep = event.holds, event.holds.episodes[event.episode - 1]
    return {
        "call_uniqueid": holds.call_id, "agent_id": holds.agent_id, "episode": event.episode,
        "started_at": ep.started_wall, "ended_at": ep.ended_wall,
        "hold_s": None if ep.length is None else round(ep.length, 3),
        "breached": ep.breached, "hold_count": holds.count,
        "hold_total_s": round(holds.total_s(), 3)}


def hold_episode_view(event: HoldChanged) -> dict[str, Any]:
    """The episode as the board is told of it."""
    holds, ep = event.holds, event.holds.episodes[event.episode - 1]
    return {
        "type": event.kind, "call_id": holds.call_id, "agent_id": holds.agent_id,
        "episode": event.episode, "hold_s": None if ep.length is None else round(ep.length, 3),
        "breached": ep.breached, "hold_count": holds.count,
        "hold_total_s": round(holds.total_s(event.at), 3), **event.extra}
