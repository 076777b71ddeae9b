"""The board's alarms: the open alarm book, the alarms raised here, acknowledgements.

Supervisors must see every broken standard and every fault (STD-147) until one of
them acknowledges it. Most alarms come from the core's machines (RONA, ACW overrun and
softphone unreachable from the agent machine, hold breaches from ``engine/hold.py``,
the agent hanging up first (STD-110) from the release judge in
``engine/special_calls.py``); the board adds those the machines cannot see: the AMI link
down, a caller waiting past the maximum (STD-043), service level below target, an
interval's average answer ring above target (STD-006). Their rules are pure, in
``engine/supervision.py``; here they are fed and their alarms raised through the
runtime, so they are stored and published like the core's own.

The board keeps the open (unacknowledged) alarms in memory, newest last and bounded,
each under a key (``kind@raised_at``) that is the same from a live publish and from the
store row, so the page acknowledges by the key it shows. An acknowledgement is stored
and audited in one transaction; a second one keeps the first one's name and time and is
audited too.

Topic ``alarms`` carries the core's ``alarm``, and from here ``alarm_open`` {alarm: {key,
id, kind, std, detail, raised_at}} and ``alarm_ack`` {key, id, by, at}; a (re)connecting
board gets the open alarms in its snapshot (``live_view.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callflow.agents.changes import AgentChanged
from callflow.agents.escalation import ESCALATION
from callflow.agents.events import AgentState
from callflow.engine import supervision
from callflow.engine.calls import CallChanged, Phase
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.rules import enforces
from callflow.errors import CallflowError, StateError
from callflow.store import repo

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

#: How many open alarms the board keeps in memory (older ones stay in the store).
OPEN_ALARMS_KEPT = 500
#: Who acknowledged an escalation whose call ended (STD-066) in the store and the audit.
CALL_ENDED_BY = "system:call_ended"
LIVE_CALL = frozenset({AgentState.ON_CALL, AgentState.ON_HOLD})

log = logging.getLogger(__name__)


class AlarmKeyError(CallflowError):
    """An alarm key that is not ``kind@ISO-time`` with the time's zone."""


def alarm_key(kind: str, raised_at: datetime) -> str:
    """The board's name of an alarm, the same from a live publish and from the store row."""
    return f"{kind}@{raised_at.astimezone(UTC).isoformat()}"


def parse_alarm_key(key: str) -> tuple[str, datetime]:
    """The kind and the raise time an alarm key names (AlarmKeyError if it names none)."""
    kind, _, iso = key.partition("@")
    try:
        raised = datetime.fromisoformat(iso)
    except ValueError:
        raise AlarmKeyError("bad alarm key: kind@ISO-time") from None
    if raised.tzinfo is None:
        raise AlarmKeyError("bad alarm key: the time needs its zone")
    return kind, raised


@dataclass
class AlarmEntry:
    """One open alarm as the board shows it (``id``: the store row's, once known)."""

    key: str
    kind: str
    std: str
    detail: dict[str, Any]
    raised_at: datetime
    id: int | None = None

    def payload(self) -> dict[str, Any]:
        return {"key": self.key, "id": self.id, "kind": self.kind, "std": self.std,
                "detail": self.detail, "raised_at": self.raised_at.timestamp()}


class AlarmBook:
    """The open (unacknowledged) alarms, newest last, bounded."""

    def __init__(self, limit: int = OPEN_ALARMS_KEPT) -> None:
        self._open: OrderedDict[str, AlarmEntry] = OrderedDict()
        self._limit = limit

    def add(self, entry: AlarmEntry) -> AlarmEntry:
        self._open[entry.key] = entry
        self._open.move_to_end(entry.key)
        while len(self._open) > self._limit:
            self._open.popitem(last=False)
        return entry

    def from_alarm(self, alarm: Alarm) -> AlarmEntry:
        """An alarm the runtime carried out (its ``raised_at`` stamped)."""
        at = datetime.fromtimestamp(alarm.raised_at, UTC)  # as callflow.store.records stores it
        return self.add(AlarmEntry(alarm_key(alarm.kind, at), alarm.kind, alarm.std,
                                   dict(alarm.detail), at))

    def get(self, key: str) -> AlarmEntry | None:
        return self._open.get(key)

    def remove(self, key: str) -> AlarmEntry | None:
        return self._open.pop(key, None)

    def open(self) -> list[AlarmEntry]:
        return list(self._open.values())

    def __len__(self) -> int:
        return len(self._open)


class BoardAlarms:
    """The open alarm book; the supervision rules fed and their alarms raised; acks."""

    def __init__(self, service: FeatureServices, ami_grace_s: float, started_at: float) -> None:
        """``started_at``: the loop's time at the start (the AMI link's grace runs from it)."""
        self._service = service
        self._ami_grace_s = ami_grace_s
        self._started_at = started_at
        self.book = AlarmBook()
        self.memory = supervision.SupervisionMemory()
        self._pending: set[asyncio.Task[dict[str, Any]]] = set()

    async def load_open(self) -> None:
        """The alarms still open in the store (raised before a restart) into the book."""
        store = self._service.store
        assert store is not None
        for row in await asyncio.to_thread(store.read, repo.open_alarms):
            self.book.add(AlarmEntry(alarm_key(row.kind, row.raised_at), row.kind, row.std,
                                     dict(row.detail or {}), row.raised_at, row.id))

    def admits(self, alarm: Alarm) -> bool:
        """A standing condition already open (even from before a restart) is not raised
        again (engine/supervision.py ``condition_of``)."""
        condition = supervision.condition_of(alarm.kind, alarm.detail)
        return condition is None or not any(
            supervision.condition_of(e.kind, e.detail) == condition for e in self.book.open())

    def observe(self, event: DomainEvent) -> None:
        """An alarm the runtime raised: into the book, and ``alarm_open`` out; an agent's
        call that ended clears the escalations about it."""
        if isinstance(event, Alarm):
            entry = self.book.from_alarm(event)
            self._service.hub.publish("alarms", {"type": "alarm_open",
                                                 "alarm": entry.payload()})
        elif isinstance(event, AgentChanged) and event.prev_state in LIVE_CALL \
                and event.agent.state not in LIVE_CALL:
            self._clear_escalations(event.agent.agent_id)
        elif isinstance(event, CallChanged) and event.call.phase is Phase.ENDED:
            verdict = supervision.check_missed_call(event.call, self.memory)
            if verdict.alarms:  # raised after this event's step, not inside it
                self.memory = verdict.memory
                asyncio.get_running_loop().call_soon(self._service.runtime.execute,
                                                     list(verdict.alarms))

    @enforces("STD-066", "STD-147")
    def _clear_escalations(self, agent_id: str) -> None:
        """STD-066: an escalation is about a live call; when the call ends it is cleared
        (acknowledged by ``system``, stored and audited like a supervisor's)."""
        keys = [e.key for e in self.book.open()
                if e.kind == ESCALATION and e.detail.get("agent_id") == agent_id]
        for key in keys:
            task = asyncio.get_running_loop().create_task(
                self.acknowledge(CALL_ENDED_BY, key=key))
            self._pending.add(task)
            task.add_done_callback(self._cleared)

    def _cleared(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an escalation was not cleared: %s", task.exception())

    # --- the supervision rules (engine/supervision.py) -------------------------------------

    def check_queues(self, views: list[dict[str, Any]]) -> None:
        """Service level and interval average ring of queue views just recomputed."""
        for view in views:
            self._raise(supervision.check_queue(_queue_figures(view), self.memory))

    def check_long_waits(self, now_epoch: float) -> None:
        """STD-043: a caller waiting for an agent past the maximum wait."""
        runtime = self._service.runtime
        assert runtime is not None
        self._raise(supervision.check_long_waits(
            runtime.live_calls(), now_epoch, self._service.policy.hold.max_wait_s,
            self.memory))

    def check_ami_link(self, loop_time: float) -> None:
        """The AMI link down (once per outage); the board is told the link's changes."""
        service = self._service
        verdict = supervision.check_ami_link(
            service.runtime.pbx_up, loop_time - self._started_at,
            self._ami_grace_s, service.settings.bind_host, service.settings.ports.ami,
            self.memory)
        if verdict.ami_link is not None:
            service.hub.publish("board", {"type": "ami_link", "up": verdict.ami_link})
        self._raise(verdict)

    def new_day(self) -> None:
        """Midnight: the alarms over today's figures may be raised again."""
        self.memory = supervision.new_day(self.memory)

    def _raise(self, verdict: supervision.Verdict) -> None:
        self.memory = verdict.memory
        runtime = self._service.runtime
        assert runtime is not None
        for alarm in verdict.alarms:
            runtime.execute([alarm])

    # --- acknowledgements and the store -----------------------------------------------------

    async def acknowledge(self, by: str, *, key: str | None = None,
                          alarm_id: int | None = None) -> dict[str, Any]:
        """Acknowledge by the board's key or by the store's id; stored and audited.

        Raises AlarmKeyError (a malformed key) or StateError ``not_found``."""
        entry = self.book.get(key) if key is not None else None
        kind = raised = None
        if key is not None:
            kind, raised = parse_alarm_key(key)
            if entry is not None and entry.id is not None:
                alarm_id = entry.id
        service = self._service
        now = service.clock.wall()
        row = await asyncio.to_thread(self._ack_in_store, by, now, alarm_id, kind, raised,
                                      entry is not None)
        the_key = alarm_key(row["kind"], row["raised_at"])
        self.book.remove(the_key)
        at = row["acknowledged_at"]
        message = {"type": "alarm_ack", "key": the_key, "id": row["id"],
                   "by": row["acknowledged_by"], "at": at.timestamp()}
        service.hub.publish("alarms", message)
        return {**message, "kind": row["kind"], "at": at.isoformat()}

    def _ack_in_store(self, by: str, now: datetime, alarm_id: int | None, kind: str | None,
                      raised: datetime | None, raised_here: bool) -> dict[str, Any]:
        """Find the alarm, acknowledge it and audit it, in one transaction (a worker thread).

        An alarm this process raised may still be in the store writer's queue: only then
        is the writer waited for (an unknown key must not wait behind a busy writer)."""
        service = self._service
        store = service.store
        assert store is not None
        if alarm_id is None:
            assert kind is not None and raised is not None
            found = store.read(repo.find_alarm, kind, raised)
            if found is None and raised_here and service.writer is not None:
                service.writer.flush(5.0)
                found = store.read(repo.find_alarm, kind, raised)
            if found is None:
                raise StateError("not_found", f"no alarm {kind} raised at {raised}")
            alarm_id = found.id
        with store.session() as s:
            alarm = repo.ack_alarm(s, alarm_id, by, now)
            # a second acknowledgement keeps the first one's name and time; both are audited
            repo.audit(s, by, "ack_alarm", now, target=f"alarm:{alarm.id}",
                       detail={"kind": alarm.kind, "std": alarm.std,
                               "already_acknowledged": alarm.acknowledged_at != now})
            assert alarm.acknowledged_at is not None
            return {"id": alarm.id, "kind": alarm.kind, "raised_at": alarm.raised_at,
                    "acknowledged_at": alarm.acknowledged_at,
                    "acknowledged_by": alarm.acknowledged_by}

    async def recent(self, since: datetime | None, open_only: bool,
                     limit: int) -> list[dict[str, Any]]:
        """Alarms newest first from the store, with their keys (numbers unmasked)."""
        store = self._service.store
        assert store is not None
        rows = await asyncio.to_thread(store.read, repo.recent_alarms, since=since,
                                       open_only=open_only, limit=limit)
        return [{"id": r.id, "key": alarm_key(r.kind, r.raised_at), "kind": r.kind,
                 "std": r.std, "detail": r.detail, "raised_at": r.raised_at.isoformat(),
                 "acknowledged_at": r.acknowledged_at.isoformat()
                 if r.acknowledged_at else None, "acknowledged_by": r.acknowledged_by}
                for r in rows]


def _queue_figures(view: dict[str, Any]) -> supervision.QueueFigures:
    """What the queue rules read of a queue view (``LiveDay.queue_view``)."""
    k = view["kpi"]
    targets = view["targets"]
    return supervision.QueueFigures(
        view["queue"], service_level=k.get("service_level"), decided=k.get("decided"),
        service_level_target_pct=targets["service_level_pct"],
        average_ring_target=targets["average_ring"],
        intervals=tuple(supervision.IntervalRing(point["t"], point.get("ring"))
                        for point in view["series"]))
