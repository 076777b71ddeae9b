"""A ``queue_log`` written live, in Asterisk's format, so tools that read it work unchanged.

callflow routes calls itself (design.md: "Who routes calls"), so Asterisk's app_queue
never sees them and writes no queue_log. Contact-centre tools (QueueMetrics and its
peers) read that file, so callflow writes the same lines from its own records: the
call records and agent states the core publishes (``engine/calls.py`` ``call_record``,
``agents/state.py`` ``agent_payload``), as they happen.

The format is app_queue's: one line per event,
``epoch|callid|queue|agent|event|data1|data2|...``, with ``NONE`` where a field does
not apply. The events and their data, as app_queue writes them:

=============== ======================================= =================================
event           data                                    written when
=============== ======================================= =================================
ENTERQUEUE      url|callerid|position                   the call reaches routing (t_in)
RINGNOANSWER    ringtime_ms                             an offer ends unanswered (STD-008)
RINGCANCELED    ringtime_ms                             the caller left while it rang
CONNECT         holdtime|member_uniqueid|ringtime       the agent answers
COMPLETECALLER  holdtime|calltime|origposition          caller released first
COMPLETEAGENT   holdtime|calltime|origposition          the agent (or the engine) released
TRANSFER        extension|context|holdtime|calltime|    a second agent answered the call
                origposition
ABANDON         position|origposition|waittime          caller left before an answer
EXITWITHKEY     key|position|origposition|waittime      caller chose a callback (STD-047)
ADDMEMBER       (empty)                                 log-in (once per queue served)
REMOVEMEMBER    (empty)                                 log-out
PAUSE           reason                                  busy / not-ready with its reason
UNPAUSE         reason                                  back from busy / not-ready
=============== ======================================= =================================

Choices where callflow differs from app_queue: ``holdtime`` is the KPI total wait
(``t_ans - t_in``, queue plus ringing), the member's channel uniqueid in CONNECT is
left empty (the record does not carry it), ACW writes nothing (app_queue's wrap-up
time is not logged either), short abandons are ordinary ABANDON lines (tools apply
their own threshold), and the callback key is unknown to the record so EXITWITHKEY's
key is empty. Calls live at an engine restart are picked up from their next record
and get their ENTERQUEUE again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from callflow.agents.changes import AgentChanged
from callflow.engine.calls import CallChanged
from callflow.engine.effects import DomainEvent

log = logging.getLogger(__name__)

PAUSED_STATES = frozenset({"busy", "not_ready"})
#: Calls whose last line is written are remembered this long (a late duplicate record of
#: a call must not open it again with a second ENTERQUEUE).
CLOSED_MEMORY = 10_000


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def _clean(value: object) -> str:
    """A field may not contain the separator or a line break."""
    return str(value).replace("|", "/").replace("\n", " ").replace("\r", " ")


def default_member_name(agent_id: str) -> str:
    return f"Agent/{agent_id}"


@dataclass
class _Call:
    queue: str
    entered: float
    origpos: int
    offers_done: int = 0
    agent: str | None = None  # the agent talking now
    answered: float | None = None
    closed: bool = False  # TRANSFER, COMPLETE*, ABANDON or EXIT* written


class QueueLog:
    """Records in, queue_log lines out (no I/O: ``QueueLogFile`` writes them).

    ``member_queues(agent_id)`` names the queues an agent serves (their ADDMEMBER,
    PAUSE... lines are written once per queue, as app_queue does for a member of
    several queues).
    """

    def __init__(self, member_queues: Callable[[str], Sequence[str]],
                 member_name: Callable[[str], str] = default_member_name) -> None:
        self._member_queues = member_queues
        self._member_name = member_name
        self._calls: dict[str, _Call] = {}
        self._waiting: dict[str, list[str]] = {}  # queue -> call ids in arrival order
        self._agents: dict[str, tuple[str, str]] = {}  # agent -> (state, reason)
        self._closed: OrderedDict[str, None] = OrderedDict()

    def observe(self, event: DomainEvent, epoch_of: Callable[[float], float]) -> list[str]:
        """A fact of the core (``Runtime.on_event``); the queue_log lines it makes. Calls
        are logged from their record (``call_record``), as the store keeps them."""
        if isinstance(event, CallChanged):
            return self.on_call(event.record)
        if isinstance(event, AgentChanged):
            agent = event.agent
            prev = None if event.prev_state is None else (event.prev_state.value,
                                                          event.prev_reason)
            return self.on_agent(agent.agent_id, agent.state.value, agent.reason,
                                 epoch_of(agent.since), prev)
        return []

    # --- calls ---------------------------------------------------------------------

    def on_call(self, record: dict[str, Any]) -> list[str]:
        if record.get("direction", "inbound") != "inbound":
            return []
        uid = str(record["uniqueid"])
        entered = _epoch(record.get("entered_at"))
        if entered is None or uid in self._closed:
            return []
        lines: list[tuple[float, str]] = []
        call = self._calls.get(uid)
        queue = _clean(record.get("queue") or "main")
        if call is None:
            waiting = self._waiting.setdefault(queue, [])
            call = _Call(queue=queue, entered=entered, origpos=len(waiting) + 1)
            self._calls[uid] = call
            waiting.append(uid)
            lines.append((entered, self._line(entered, uid, queue, "NONE", "ENTERQUEUE", "",
                                              _clean(record.get("caller_number") or ""),
                                              call.origpos)))
        if call.closed:
            return [line for _, line in lines]
        offers = record.get("offers") or []
        for offer in offers[call.offers_done:]:
            ended = _epoch(offer.get("ended_at"))
            if ended is None:
                break
            call.offers_done += 1
            lines += self._offer_lines(uid, call, offer, ended)
            if call.closed:
                break
        ended_at = _epoch(record.get("ended_at"))
        if ended_at is not None and not call.closed:
            lines.append((ended_at, self._end_line(uid, call, record, ended_at)))
        if call.closed:
            self._forget(uid, call)
        lines.sort(key=lambda pair: pair[0])
        return [line for _, line in lines]

    def _offer_lines(self, uid: str, call: _Call, offer: dict[str, Any],
                     ended: float) -> list[tuple[float, str]]:
        agent = self._member_name(str(offer["agent_id"]))
        started = _epoch(offer.get("started_at")) or ended
        ring_s = ended - started
        result = offer.get("result")
        if result != "answered":
            event = "RINGCANCELED" if result == "caller_gone" else "RINGNOANSWER"
            return [(ended, self._line(ended, uid, call.queue, agent, event,
                                       round(ring_s * 1000)))]
        if call.agent is None:  # the first answer: the call leaves the queue
            call.agent, call.answered = agent, ended
            self._leave_queue(uid, call)
            return [(ended, self._line(ended, uid, call.queue, agent, "CONNECT",
                                       round(ended - call.entered), "", round(ring_s)))]
        # answered by a second agent: app_queue logs the first agent's TRANSFER, and the
        # call is no longer the queue's
        assert call.answered is not None
        line = self._line(ended, uid, call.queue, call.agent, "TRANSFER",
                          _clean(offer["agent_id"]), "callflow",
                          round(call.answered - call.entered), round(ended - call.answered),
                          call.origpos)
        call.closed = True
        return [(ended, line)]

    def _end_line(self, uid: str, call: _Call, record: dict[str, Any], ended: float) -> str:
        call.closed = True
        if call.agent is not None and call.answered is not None:
            event = "COMPLETEAGENT" if record.get("released_by") in ("agent", "system") \
                else "COMPLETECALLER"
            return self._line(ended, uid, call.queue, call.agent, event,
                              round(call.answered - call.entered), round(ended - call.answered),
                              call.origpos)
        position = self._position(uid, call)
        self._leave_queue(uid, call)
        wait = round(ended - call.entered)
        if record.get("outcome") == "callback":
            return self._line(ended, uid, call.queue, "NONE", "EXITWITHKEY", "", position,
                              call.origpos, wait)
        return self._line(ended, uid, call.queue, "NONE", "ABANDON", position, call.origpos,
                          wait)

    def _position(self, uid: str, call: _Call) -> int:
        waiting = self._waiting.get(call.queue, [])
        return waiting.index(uid) + 1 if uid in waiting else 1

    def _leave_queue(self, uid: str, call: _Call) -> None:
        waiting = self._waiting.get(call.queue, [])
        if uid in waiting:
            waiting.remove(uid)

    def _forget(self, uid: str, call: _Call) -> None:
        self._leave_queue(uid, call)
        self._calls.pop(uid, None)
        self._closed[uid] = None
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    # --- agents --------------------------------------------------------------------

    def on_agent(self, agent_id: str, state: str, reason: str, at: float,
                 prev: tuple[str, str] | None = None) -> list[str]:
        """An agent in ``state`` since ``at`` (epoch); ``prev`` the state and reason left,
        when the agent entered a new state (else the last one seen here)."""
        known = self._agents.get(agent_id)
        prev_state, prev_reason = prev if prev is not None else (
            known if known is not None else (None, ""))
        self._agents[agent_id] = (state, reason)
        if prev_state is None or (prev_state == state and (prev_reason or "") == reason):
            return []
        member = self._member_name(agent_id)
        events: list[tuple[str, str]] = []
        if prev_state == "logged_out":
            events.append(("ADDMEMBER", ""))
        if state == "logged_out":
            events.append(("REMOVEMEMBER", ""))
        elif state in PAUSED_STATES:
            events.append(("PAUSE", _clean(reason)))
        elif prev_state in PAUSED_STATES:
            events.append(("UNPAUSE", ""))
        return [self._line(at, "NONE", _clean(queue), member, event, data)
                for event, data in events for queue in self._member_queues(agent_id)]

    @staticmethod
    def _line(at: float, callid: str, queue: str, agent: str, event: str, *data: object) -> str:
        return "|".join([str(int(at)), callid, queue, agent, event, *map(str, data)])


class QueueLogFile:
    """Appends lines to the queue_log file (line-buffered: a reader sees whole lines).

    Lines are a few dozen bytes to a local file, so they are written on the loop; a
    write error is logged once per failure streak and the lines are dropped (the
    store keeps the records; queue_log is a courtesy copy for other tools).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._failing = False
        self.written = 0

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write("".join(line + "\n" for line in lines))
            except OSError as exc:
                if not self._failing:
                    log.error("queue_log %s: write failed, lines dropped: %s", self.path, exc)
                self._failing = True
                return
            self._failing = False
            self.written += len(lines)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
