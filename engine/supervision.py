"""When the board raises an alarm the core's machines cannot see (STD-147), as pure rules.

The call, agent and hold machines raise the alarms of their own events (RONA, ACW
overrun, softphone unreachable, hold breaches, the agent hanging up first). Four
conditions need a view over time or over every call instead, and the board watches
for them:

* **service level below target**: today's service level of a queue under its target
  (KPI). Raised once; re-armed when the queue is back at or above the target.
* **an interval's average answer ring above target** (STD-006): raised once per queue
  and report interval, for the rest of the day.
* **a caller waiting past the maximum** (STD-043): a call still routing or ringing, not
  answered, ``max_wait_s`` after it reached routing. Once per call.
* **a missed call** (STD-147): an inbound call that ended abandoned (the caller gave up
  waiting; not a short abandon, a callback chosen or a system ending). Once per call.
* **the AMI link down**: once per outage. A link that was up and went down is an alarm
  at once; a link that never came up only after a grace period from the start (so a
  slow Asterisk start-up is not an alarm).

Each rule is a function over plain data (a queue's figures, the live calls, the link
flag) and a ``SupervisionMemory`` of what was raised already; it returns a ``Verdict``:
the alarms to raise now and the new memory. Nothing here reads a clock or does I/O:
times are handed in, so the tests drive the rules with a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from callflow.engine.calls import InboundCall, Outcome, Phase
from callflow.engine.effects import Alarm
from callflow.engine.rules import enforces

#: A call still waits for an agent in these phases (not yet talking, not ended).
WAITING_PHASES = (Phase.ROUTING, Phase.OFFERING)

#: Alarms about a standing condition (a part down, a desk unreachable), not an incident:
#: while one is open (unacknowledged) the same condition is not raised again, so a
#: condition that outlives restarts is one alarm, not one per start (issue 14).
CONDITION_ALARMS = frozenset({"softphone_unreachable", "pbx_down", "pbx_gave_up",
                              "ami_link_down", "store_unavailable", "store_journal_full",
                              "no_route", "trunk_registration_refused",
                              "trunk_unreachable", "compliance_below_target"})


def condition_of(kind: str, detail: dict[str, object]) -> tuple[str, str] | None:
    """The condition a standing alarm is about (kind and the desk or part), else None."""
    if kind not in CONDITION_ALARMS:
        return None
    subject = detail.get("agent_id") or detail.get("extension") or detail.get("trunk") \
        or detail.get("rule") or ""
    return kind, str(subject)


@dataclass(frozen=True)
class SupervisionMemory:
    """What was raised already, so that each condition alarms once."""

    low_service_level: frozenset[str] = frozenset()  # queues, until back on target
    ring_intervals: frozenset[tuple[str, int]] = frozenset()  # (queue, interval) today
    long_waits: frozenset[str] = frozenset()  # call ids, while the call lives
    ami_seen_up: bool = False  # the link was up at least once since the start
    ami_down: bool = False  # the current outage is alarmed
    missed: tuple[str, ...] = ()  # the latest missed calls alarmed (call ids, bounded)


@dataclass(frozen=True)
class IntervalRing:
    """One report interval of today: its start (epoch seconds) and average answer ring."""

    start: float
    average_ring: float | None


@dataclass(frozen=True)
class QueueFigures:
    """What the queue rules read of a queue: today's figures and its targets."""

    queue: str
    service_level: float | None  # answered within the threshold / decided, 0..1
    decided: int | None
    service_level_target_pct: float
    average_ring_target: float
    intervals: tuple[IntervalRing, ...] = ()  # today's intervals, in order, up to now


@dataclass(frozen=True)
class Verdict:
    """The alarms to raise now and the memory after them."""

    alarms: tuple[Alarm, ...]
    memory: SupervisionMemory
    ami_link: bool | None = None  # the link's new state when it changed (to announce)


@enforces("STD-006", policy=("kpi.average_answer_rings_target", "kpi.report_interval_min"))
def check_queue(figures: QueueFigures, memory: SupervisionMemory) -> Verdict:
    """Service level below target (KPI) and intervals above the average ring (STD-006)."""
    queue = figures.queue
    alarms: list[Alarm] = []
    low = memory.low_service_level
    sl = figures.service_level
    target = figures.service_level_target_pct
    if sl is not None and sl * 100 < target:
        if queue not in low:
            low = low | {queue}
            alarms.append(Alarm("service_level_below_target", {
                "queue": queue, "service_level_pct": round(sl * 100, 1),
                "target_pct": target, "decided": figures.decided}, std="KPI"))
    elif sl is not None:
        low = low - {queue}
    rings = memory.ring_intervals
    ring_target = figures.average_ring_target
    for index, interval in enumerate(figures.intervals):
        ring = interval.average_ring
        if ring is not None and ring > ring_target and (queue, index) not in rings:
            rings = rings | {(queue, index)}
            alarms.append(Alarm("answer_ring_average_high", {
                "queue": queue, "interval_start": interval.start,
                "average_ring": round(ring, 2), "target": ring_target}, std="STD-006"))
    return Verdict(tuple(alarms), replace(memory, low_service_level=low, ring_intervals=rings))


@enforces("STD-043", policy=("hold.max_wait_s",))
def check_long_waits(calls: Iterable[InboundCall], now: float, max_wait_s: float,
                     memory: SupervisionMemory) -> Verdict:
    """STD-043: callers waiting for an agent past the maximum wait (``now``: epoch seconds).

    ``calls`` are all the live calls: a call that is gone is forgotten."""
    alarms: list[Alarm] = []
    alarmed = set(memory.long_waits)
    live_ids = set()
    for call in calls:
        live_ids.add(call.call_id)
        if call.phase in WAITING_PHASES and call.answered_at is None \
                and not call.in_menu \
                and now - call.t_in >= max_wait_s and call.call_id not in alarmed:
            alarmed.add(call.call_id)
            alarms.append(Alarm("caller_waiting_long", {
                "call_id": call.call_id, "queue": call.queue,
                "waited_s": round(now - call.t_in, 1), "limit_s": max_wait_s},
                std="STD-043"))
    return Verdict(tuple(alarms), replace(memory, long_waits=frozenset(alarmed & live_ids)))


#: How many alarmed missed calls the memory keeps (a call's record may change again after
#: it ended, e.g. Asterisk's CEL times; an older one will not).
MISSED_KEPT = 500


@enforces("STD-147")
def check_missed_call(call: InboundCall, memory: SupervisionMemory) -> Verdict:
    """STD-147: a missed call reaches the board at once: an inbound call that ended
    abandoned, once per call."""
    if call.phase is not Phase.ENDED or call.outcome is not Outcome.ABANDONED \
            or call.call_id in memory.missed:
        return Verdict((), memory)
    waited = None if call.ended_at is None else round(max(0.0, call.ended_at - call.t_in), 1)
    alarm = Alarm("missed_call", {"call_id": call.call_id, "caller": call.caller,
                                  "queue": call.queue, "waited_s": waited}, std="STD-147")
    kept = (*memory.missed, call.call_id)[-MISSED_KEPT:]
    return Verdict((alarm,), replace(memory, missed=kept))


@enforces("STD-147")
def check_ami_link(up: bool, since_start_s: float, grace_s: float, host: str, port: int,
                   memory: SupervisionMemory) -> Verdict:
    """The AMI link down (STD-147): once per outage; never up: only after ``grace_s``.

    ``since_start_s``: seconds since the board started watching (monotonic)."""
    if up:
        came_back = memory.ami_down
        memory = replace(memory, ami_seen_up=True, ami_down=False)
        return Verdict((), memory, ami_link=True if came_back else None)
    never_up_too_long = not memory.ami_seen_up and since_start_s > grace_s
    if (memory.ami_seen_up or never_up_too_long) and not memory.ami_down:
        alarm = Alarm("ami_link_down", {"host": host, "port": port}, std="STD-147")
        return Verdict((alarm,), replace(memory, ami_down=True), ami_link=False)
    return Verdict((), memory)


def new_day(memory: SupervisionMemory) -> SupervisionMemory:
    """Midnight: today's figures start from zero, so do the alarms raised over them."""
    return replace(memory, low_service_level=frozenset(), ring_intervals=frozenset())
