"""Calls that ended while the engine could not see them, closed from Asterisk's records.

Issue 14 ("crash-safe and self-healing"). The engine records calls from AMI; when it
cannot hear AMI (its process died, the link was down) Asterisk goes on: calls are
answered and end, and when the FastAGI server is not there the dialplan's fallback
queue serves callers on its own (``asterisk-conf/extensions.conf.j2``). Asterisk's own
records of all that are CEL rows (``callflow/pbx/cel.py``), and after every AMI login
(the engine's start included), right after the resync put the live picture right
(``Runtime.apply_resync``), ``CallRecovery.run`` brings the store up to them:

* **a call the engine tracked whose caller went while the link was down** (the resync
  left it in ``Runtime.lost_calls``) and **a call the store kept open** (the engine
  died) are closed with Asterisk's times and the real outcome: the offers and answers
  the record missed, the release, who asked for it (``engine/cel.py``). A call whose
  caller Asterisk still has is **adopted**: tracked again, AMI's events carry it to its
  end. A call whose rows stop short of its end went with Asterisk (a ``pbx_failure``);
  one the records say nothing of is closed by nobody known; both are flagged
  incomplete with the reason (``incomplete_reason``): no call is left open;
* **a call of the inbound context the store does not have** (the fallback served it
  while the engine was away) is entered as the engine would have entered it, flagged
  ``fallback_served``, and its fallback recording (MixMonitor's file in Asterisk's
  monitor spool) goes into the recordings table; such a call still going on is
  adopted, its recording entered when it ends;
* the rows are read for the calls above, and for the window since the engine last
  looked (a checkpoint in the event log, ``records_checkpoint``), at most
  ``supervision.records_lookback_h`` back; a store that never had a checkpoint (a
  first start) takes nothing from before it.

Everything goes through the runtime (the call machine, the store writer, the live
stream, the invariants), and twice is the same as once: a closed call is not open any
more, an entered call has its row, the checkpoint moved.

The service wires it as a second AMI login hook (after its own resync), so AMI's events
stay held until the records are applied, and a call adopted here hears its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from callflow.engine import calls
from callflow.engine.calls import CallChanged, InboundCall, Offer, OfferResult
from callflow.engine.cel import CallFacts, by_linkedid, call_events, call_facts, entered
from callflow.engine.effects import DomainEvent, Persist, Redirect
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import CallflowError, PbxError
from callflow.pbx.cel import CelReader
from callflow.pbx.process import AsteriskProcess
from callflow.pbx.render import FALLBACK_QUEUE, INBOUND_CONTEXT, RESUME_CONTEXT
from callflow.recordings.feature import settle, wav_info
from callflow.runtime.core import Runtime
from callflow.settings import Settings
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import Call, CallOffer
from callflow.store.records import FALLBACK_SERVED_RECORD
from callflow.store.writer import PersistQueue

log = logging.getLogger(__name__)

#: The event-log kind that says up to when the engine has looked at Asterisk's records.
CHECKPOINT = "records_checkpoint"
#: Asterisk writes a channel's CEL rows on its own thread, milliseconds after the channel
#: goes: a call with no end in the rows is read once more after this long.
ROWS_LAG_S = 0.5
#: How long the store writer may take to write what the engine already emitted.
FLUSH_TIMEOUT_S = 10.0
#: The last runs' reports kept for diagnostics (one per AMI login).
REPORTS_KEPT = 20

NO_ROWS = "no end seen, and Asterisk's records (CEL) hold no row of this call"
NO_END = ("no end seen, and Asterisk's records (CEL) stop before this call's hang-up "
          "(Asterisk stopped or restarted?)")


@dataclass
class RecoveryReport:
    """What one run did (logged; tests read it)."""

    closed: list[str] = field(default_factory=list)  # closed with Asterisk's times
    incomplete: list[str] = field(default_factory=list)  # closed without them, with why
    adopted: list[str] = field(default_factory=list)  # tracked again, still going on
    entered: list[str] = field(default_factory=list)  # the store did not have them
    recordings: list[str] = field(default_factory=list)
    taken_back: list[str] = field(default_factory=list)  # from the fallback queue into our flow
    records_error: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.closed or self.incomplete or self.adopted or self.entered
                    or self.recordings or self.taken_back)


@dataclass(frozen=True)
class _Recording:
    path: Path
    started_at: float
    number: str


class CallRecovery:
    """``run()`` after every AMI resync (``Service.start`` wires ``after_resync`` as a
    login hook)."""

    def __init__(self, runtime: Runtime, store: Store, writer: PersistQueue,
                 settings: Settings, policy: Policy) -> None:
        self.rt = runtime
        self.store = store
        self.writer = writer
        self.policy = policy
        pbx = AsteriskProcess(settings.asterisk_root, settings.pbx_dir)
        self.reader = CelReader(pbx.cel_path)
        self.monitor_dir = pbx.spool_dir / "monitor"
        self.pending: dict[str, _Recording] = {}  # adopted fallback calls' recordings
        self.runs: deque[RecoveryReport] = deque(maxlen=REPORTS_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()
        runtime.ends_from_records = True  # a lost call waits for these records
        runtime.on_event(self._on_event)

    async def after_resync(self) -> None:
        """The AMI login hook (after the service's resync)."""
        await self.run()

    async def run(self) -> RecoveryReport:
        report = RecoveryReport()
        self.runs.append(report)
        now = time.time()
        if not await asyncio.to_thread(self.writer.flush, FLUSH_TIMEOUT_S):
            log.warning("records recovery: the store writer is behind; rows it still holds "
                        "may be entered twice")
        lost = self.rt.take_lost_calls()
        stored = await asyncio.to_thread(self.store.read, _open_calls)
        stored = [(row, offers) for row, offers in stored if row.uniqueid not in self.rt.calls]
        checkpoint = await asyncio.to_thread(self.store.read, repo.latest_event, CHECKPOINT)
        since = None
        if checkpoint is not None:
            since = max(float(checkpoint.payload.get("until", now)),
                        now - self.policy.supervision.records_lookback_h * 3600)
        known = [c.call_id for c in lost] + [row.uniqueid for row, _ in stored]
        facts = await self._facts(known, since, report)
        unknown = await self._unknown(facts, since)
        facts = await self._reread_unfinished(facts, [*known, *unknown], report)
        for call in lost:
            self._close(call, facts.get(call.call_id), report)
        for row, offers in stored:
            self._resume(row, offers, facts.get(row.uniqueid), report)
        for linkedid in unknown:
            self._enter(facts[linkedid], report)
        await self._take_back(facts, report)
        if not report.records_error:  # else the next run reads this window again
            self.rt.execute([Persist(CHECKPOINT, {"at": now, "until": now})])
        if report.changed or report.records_error:
            log.warning("records recovery: closed %s, incomplete %s, adopted %s, entered %s, "
                        "recordings %s%s", report.closed, report.incomplete, report.adopted,
                        report.entered, report.recordings,
                        f" ({report.records_error})" if report.records_error else "")
        return report

    # --- reading ---------------------------------------------------------------------

    async def _facts(self, linkedids: list[str], since: float | None,
                     report: RecoveryReport) -> dict[str, CallFacts]:
        try:
            rows = await asyncio.to_thread(self.reader.for_linkedids, linkedids)
            if since is not None:
                rows += await asyncio.to_thread(self.reader.since, since)
        except PbxError as exc:
            log.error("records recovery: %s", exc)
            report.records_error = str(exc)
            return {}
        out = {}
        for linkedid, group in by_linkedid(rows).items():
            found = call_facts(group, fallback_queue=FALLBACK_QUEUE)
            if found is not None:
                out[linkedid] = found
        return out

    async def _unknown(self, facts: dict[str, CallFacts], since: float | None) -> list[str]:
        """Calls of the inbound context in the window that the store does not have."""
        if since is None:
            return []
        inbound = [lid for lid, f in facts.items() if f.context == INBOUND_CONTEXT
                   and lid not in self.rt.calls]
        have = await asyncio.to_thread(self.store.read, repo.calls_by_uniqueid, inbound)
        return [lid for lid in inbound if lid not in have]

    async def _reread_unfinished(self, facts: dict[str, CallFacts], linkedids: list[str],
                                 report: RecoveryReport) -> dict[str, CallFacts]:
        """A call whose caller is gone but whose rows have no end yet: Asterisk may not
        have written them yet; read once more."""
        view = self.rt.asterisk.view
        late = [lid for lid in linkedids if lid not in view.channels
                and (lid not in facts or not facts[lid].ended)]
        if not late or report.records_error:
            return facts
        await asyncio.sleep(ROWS_LAG_S)
        return {**facts, **await self._facts(late, None, report)}

    # --- applying ----------------------------------------------------------------------

    def _agent_of(self, channel: str) -> str | None:
        return self.rt.agent_for_channel(channel)

    def _apply(self, call: InboundCall, facts: CallFacts, *, closing: bool) -> None:
        for event in call_events(call, facts, self._agent_of, closing=closing):
            self.rt.call_event(event)

    def _close(self, call: InboundCall, facts: CallFacts | None,
               report: RecoveryReport) -> None:
        """A call whose caller Asterisk no longer has: closed as its rows say, else as
        incomplete (now) with the reason: a PBX failure when the rows stop short of its
        end, by nobody known when there are none."""
        if facts is not None:
            self._apply(call, facts, closing=True)
            self._fallback(call.call_id, facts)
        closed = self.rt.calls.get(call.call_id)
        if closed is not None and closed.phase is calls.Phase.ENDED:
            report.closed.append(call.call_id)
            return
        reason = report.records_error and f"no end seen, and {report.records_error}"
        reason = reason or (NO_END if facts is not None else NO_ROWS)
        # rows that stop short of the hang-up: Asterisk went before it could write them
        # (the call was lost with it, like runtime/reconcile.py's ``pbx_gone``)
        by = "pbx" if reason == NO_END else "unknown"
        self.rt.call_event(calls.CallReleased(call.call_id, time.time(), by=by,
                                              incomplete=reason[:200]))
        report.incomplete.append(call.call_id)

    def _resume(self, row: Call, offers: list[CallOffer], facts: CallFacts | None,
                report: RecoveryReport) -> None:
        """A call the store kept open across an engine restart."""
        view = self.rt.asterisk.view
        live = view.channels.get(row.uniqueid)
        channel = live.name if live is not None else (facts.caller.channel if facts else "")
        call = self.rt.adopt_call(calls.resumed(_stored_call(row, offers, channel)))
        if live is None:
            self._close(call, facts, report)
            return
        if facts is not None:
            self._apply(call, facts, closing=False)
            self._fallback(call.call_id, facts)
        report.adopted.append(call.call_id)

    def _enter(self, facts: CallFacts, report: RecoveryReport) -> None:
        """A call the engine never saw: entered, then closed or adopted like the others."""
        if facts.linkedid in self.rt.asterisk.view.channels and not facts.fallback:
            return  # our flow is about to take it (its AGI is connecting)
        routing = self.policy.routing
        queue = routing.did_queues.get(facts.did, routing.default_queue)
        event = entered(facts, queue)
        call = self.rt.call_entered(event.call_id, event.channel, event.caller, event.did,
                                    event.queue, at=event.at)
        report.entered.append(call.call_id)
        if facts.linkedid in self.rt.asterisk.view.channels:
            self._apply(call, facts, closing=False)
            self._fallback(call.call_id, facts)
            report.adopted.append(call.call_id)
            return
        self._close(call, facts, report)

    @enforces("STD-001", policy=("supervision.take_back_fallback_callers",))
    async def _take_back(self, facts: dict[str, CallFacts], report: RecoveryReport) -> None:
        """Callers the fallback queue still holds, waiting (in no bridge), go back into our
        flow (``supervision.take_back_fallback_callers``): the fallback queue rings agents
        with no regard for their state (after-call work, not ready, a call the engine is
        offering them), so with the engine back it must not be the one routing."""
        if not self.policy.supervision.take_back_fallback_callers:
            return
        view = self.rt.asterisk.view
        for call_id in report.adopted:
            found, call = facts.get(call_id), self.rt.calls.get(call_id)
            caller = view.channels.get(call_id)
            if found is None or not found.fallback or call is None or caller is None \
                    or caller.bridge or call.answered_at is not None \
                    or not found.did.isdigit():
                continue
            try:
                await self.rt.request(Redirect(caller.name, RESUME_CONTEXT, found.did, 1))
            except CallflowError as exc:
                log.warning("caller %s left in the fallback queue: %s", call_id, exc)
                continue
            report.taken_back.append(call_id)
            log.info("caller %s taken back from the fallback queue into the flow", call_id)

    @enforces("STD-001")
    def _fallback(self, call_id: str, facts: CallFacts) -> None:
        """The fallback queue served it: the flag, and its recording (now if the call is
        over, else when it ends)."""
        if not facts.fallback:
            return
        self.rt.execute([Persist(FALLBACK_SERVED_RECORD, {"uniqueid": call_id})])
        path = self._recording_path(facts.recording)
        if path is None or facts.recording_started_at is None:
            return
        rec = _Recording(path, facts.recording_started_at, facts.number)
        call = self.rt.calls.get(call_id)
        if call is not None and call.phase is calls.Phase.ENDED:
            self._store_recording(call, rec)
        else:
            self.pending[call_id] = rec

    def _recording_path(self, name: str) -> Path | None:
        """MixMonitor's file: a bare name lands in the monitor spool; anything else (a
        path the dialplan did not give) is not ours to enter."""
        if not name or "/" in name or name.startswith("."):
            return None
        return self.monitor_dir / name

    def _on_event(self, event: DomainEvent) -> None:
        if isinstance(event, CallChanged) and event.call.phase is calls.Phase.ENDED:
            rec = self.pending.pop(event.call.call_id, None)
            if rec is not None:
                task = asyncio.get_running_loop().create_task(
                    self._finish_recording(event.call, rec))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _finish_recording(self, call: InboundCall, rec: _Recording) -> None:
        await asyncio.to_thread(settle, rec.path)
        self._store_recording(call, rec)

    def _store_recording(self, call: InboundCall, rec: _Recording) -> None:
        try:
            info = wav_info(rec.path)
        except (OSError, EOFError, wave.Error) as exc:
            log.error("fallback recording of %s unreadable at %s: %s", call.call_id,
                      rec.path, exc)
            return
        hold = self.policy.hold
        data: dict[str, Any] = {
            "call_uniqueid": call.call_id, "direction": "inbound", "agent_id": call.agent_id,
            "number": rec.number, "path": str(rec.path), "started_at": rec.started_at,
            "ended_at": call.ended_at, "duration_s": round(info.duration_s, 3),
            "bytes": info.bytes, "hold_limit_s": hold.limit_s,
            "hold_scope": hold.breach_scope}
        self.rt.execute([Persist("recording", data)])
        if self.runs:
            self.runs[-1].recordings.append(call.call_id)


def _open_calls(s: Session) -> list[tuple[Call, list[CallOffer]]]:
    """The store's open inbound calls with their offers (one read)."""
    rows = repo.open_calls(s)
    offers = repo.offers_for_calls(s, [row.id for row in rows])
    by_call: dict[int, list[CallOffer]] = {}
    for offer in offers:
        by_call.setdefault(offer.call_id, []).append(offer)
    return [(row, sorted(by_call.get(row.id, []), key=lambda o: (o.started_at, o.id)))
            for row in rows]


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _stored_call(row: Call, offers: list[CallOffer], channel: str) -> InboundCall:
    """The engine's record of a call as the store kept it (its phase comes after)."""
    return InboundCall(
        call_id=row.uniqueid, channel=channel, caller=row.caller_number or "",
        did=row.did or "", queue=row.queue or "", entered_at=_epoch(row.entered_at) or 0.0,
        offers=tuple(Offer(agent_id=o.agent_id, channel="", started_at=o.started_at.timestamp(),
                           ended_at=_epoch(o.ended_at),
                           result=OfferResult(o.result) if o.result else None,
                           left_at=_epoch(o.left_at)) for o in offers),
        agent_id=row.agent_id, answered_at=_epoch(row.answered_at),
        transfer_count=row.transfer_count or 0, greeting=row.greeting or "normal",
        repeat_caller=bool(row.repeat_caller))
