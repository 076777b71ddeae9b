"""callflow/recovery.py: the store brought up to Asterisk's CEL rows (issue 14), on the
real store and runtime, with rows captured from the live Asterisk (tests/fixtures/cel)
written into a records file the way Asterisk writes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callflow.agents.roster import Roster, RosterAgent
from callflow.engine import channels as ch
from callflow.engine.calls import CallReleased, Phase
from callflow.engine.cel import CelEvent
from callflow.engine.clock import RealClock
from callflow.engine.effects import DomainEvent
from callflow.engine.policy import Policy, StorePolicy
from callflow.pbx.cel import COLUMNS, TABLE, prepare_database
from callflow.pbx.process import AsteriskProcess
from callflow.recovery import CHECKPOINT, NO_END, NO_ROWS, CallRecovery
from callflow.runtime.core import Runtime
from callflow.runtime.reconcile import ENDED_OUT_OF_SIGHT
from callflow.service import edge_adapters
from callflow.settings import Settings
from callflow.store import records, repo
from callflow.store.applied import StoreSink
from callflow.store.db import Store
from callflow.store.journal import Journal
from callflow.store.writer import PersistQueue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cel"
AGENTS = ("1001", "1002", "1003", "1004")


def fixture_rows(name: str) -> list[CelEvent]:
    return [CelEvent(**row) for row in json.loads((FIXTURES / f"{name}.json").read_text())["cel"]]


def write_rows(path: Path, rows: list[CelEvent]) -> None:
    """Rows as cel_sqlite3_custom inserts them: every value text, eventtime '%.6f'."""
    values = {"eventtype": lambda r: r.event, "eventtime": lambda r: f"{r.at:.6f}",
              "uniqueid": lambda r: r.uniqueid, "linkedid": lambda r: r.linkedid,
              "channame": lambda r: r.channel, "context": lambda r: r.context,
              "exten": lambda r: r.exten, "appname": lambda r: r.app,
              "appdata": lambda r: r.appdata, "cid_num": lambda r: r.cid_num,
              "cid_name": lambda r: "", "peer": lambda r: r.peer,
              "extra": lambda r: json.dumps(dict(r.extra)) if r.extra else ""}
    names = [c for c, _ in COLUMNS]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(f"INSERT INTO {TABLE} VALUES (NULL, {', '.join('?' * len(names))})",
                       [[values[c](r) for c in names] for r in rows])


@dataclass
class Rig:
    store: Store
    runtime: Runtime
    writer: PersistQueue
    recovery: CallRecovery
    pbx: AsteriskProcess
    events: list[DomainEvent]

    async def run(self) -> Any:
        report = await self.recovery.run()
        assert self.writer.flush(10)
        return report

    def checkpoint(self, at: float) -> None:
        self.store.run(repo.append_event, CHECKPOINT, datetime.fromtimestamp(at, UTC),
                       {"at": at, "until": at})

    def live(self, *uids: str) -> None:
        """Asterisk lists these channels (uid = linkedid: callers) at the resync."""
        listed = [ch.Listed(uid, f"PJSIP/caller-{uid}", uid, True, "") for uid in uids]
        self.runtime.asterisk.replace_view(ch.rebuilt(listed, self.runtime.asterisk.view))


@pytest.fixture
def rig(store: Store, tmp_path: Path) -> Iterator[Rig]:
    settings = Settings(state_dir=tmp_path, database_url="", asterisk_root=tmp_path / "root",
                        policy_file=None, pbx_workdir=tmp_path / "pbx")
    pbx = AsteriskProcess(settings.asterisk_root, settings.pbx_dir)
    prepare_database(pbx.cel_path)
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20)
    writer = PersistQueue(StoreSink(store, journal.journal_id), journal,
                          tmp_path / "dead.jsonl", StorePolicy())
    clock = RealClock()
    roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in AGENTS))
    records.sync_roster(store, roster)
    runtime = Runtime(Policy.defaults(), clock, roster, edge_adapters(
        clock, persist=writer.put, publish=lambda topic, payload: None))
    events: list[DomainEvent] = []
    runtime.on_event(events.append)
    recovery = CallRecovery(runtime, store, writer, settings, Policy.defaults())
    try:
        yield Rig(store, runtime, writer, recovery, pbx, events)
    finally:
        writer.close()


def store_open_call(rig: Rig, rows: list[CelEvent], *, answered: bool) -> str:
    """The store as an engine that died mid-call left it: entered, offered, maybe
    answered (Asterisk's times, from AMI), never ended."""
    caller = next(r for r in rows if r.event == "CHAN_START" and r.uniqueid == r.linkedid)
    leg = next(r for r in rows if r.event == "CHAN_START" and r.uniqueid != r.linkedid)
    up = next(r for r in rows if r.event == "ANSWER" and r.uniqueid == leg.uniqueid)
    agent = leg.channel.split("/agent")[1][:4]

    def when(at: float) -> datetime:
        return datetime.fromtimestamp(at, UTC)

    def write(s: Any) -> None:
        repo.upsert_call(s, caller.uniqueid, direction="inbound", caller_number=caller.cid_num,
                         did=caller.exten, queue="main", entered_at=when(caller.at + 0.003),
                         agent_id=agent if answered else None,
                         answered_at=when(up.at) if answered else None)
        repo.add_offer(s, caller.uniqueid, agent, when(leg.at),
                       ended_at=when(up.at) if answered else None,
                       result="answered" if answered else None)
    rig.store.run(write)
    return caller.uniqueid


async def test_a_call_the_store_kept_open_is_closed_as_asterisk_says_and_twice_is_once(
        rig: Rig) -> None:
    rows = fixture_rows("engine_killed_caller_hangs_up")
    write_rows(rig.pbx.cel_path, rows)
    call_id = store_open_call(rig, rows, answered=True)
    report = await rig.run()
    assert report.closed == [call_id] and not report.incomplete
    call = rig.store.read(repo.get_call, call_id)
    assert call is not None and call.ended_at is not None
    caller_hangup = next(r.at for r in rows if r.event == "HANGUP" and r.uniqueid == call_id)
    assert call.ended_at.timestamp() == pytest.approx(caller_hangup, abs=0.005)
    assert (call.outcome, call.released_by, call.ending) == ("answered", "caller",
                                                             "caller_released")
    offers = rig.store.read(repo.offers_for_call, call_id)
    assert [(o.agent_id, o.result, o.left_at is not None) for o in offers] == [
        ("1001", "answered", True)]
    again = await rig.run()
    assert not again.changed
    assert rig.store.read(repo.open_calls) == []


async def test_an_answer_only_asterisk_saw_is_recorded(rig: Rig) -> None:
    """The engine died while the phone rang: the answer is in the rows only."""
    rows = fixture_rows("engine_killed_agent_hangs_up")
    write_rows(rig.pbx.cel_path, rows)
    call_id = store_open_call(rig, rows, answered=False)
    await rig.run()
    call = rig.store.read(repo.get_call, call_id)
    up = next(r.at for r in rows if r.event == "ANSWER" and r.uniqueid != r.linkedid)
    assert call is not None and call.answered_at is not None
    assert call.answered_at.timestamp() == pytest.approx(up, abs=0.001)
    assert (call.outcome, call.released_by, call.agent_id) == ("answered", "agent", "1004")


async def test_a_caller_asterisk_still_has_is_adopted(rig: Rig) -> None:
    rows = fixture_rows("engine_killed_caller_hangs_up")
    live_rows = [r for r in rows if r.event not in ("HANGUP", "CHAN_END", "LINKEDID_END",
                                                    "BRIDGE_EXIT")]
    write_rows(rig.pbx.cel_path, live_rows)
    call_id = store_open_call(rig, rows, answered=True)
    rig.live(call_id)
    report = await rig.run()
    assert report.adopted == [call_id] and not report.closed
    call = rig.runtime.calls[call_id]
    assert call.phase is Phase.CONNECTED and call.agent_id == "1001"
    assert rig.store.read(repo.open_calls)[0].uniqueid == call_id


async def test_a_call_with_no_rows_is_closed_incomplete_with_the_reason(rig: Rig) -> None:
    rows = fixture_rows("engine_killed_caller_hangs_up")
    call_id = store_open_call(rig, rows, answered=True)  # no rows written
    report = await rig.run()
    assert report.incomplete == [call_id]
    call = rig.store.read(repo.get_call, call_id)
    assert call is not None and call.ended_at is not None
    assert call.incomplete_reason == NO_ROWS and call.released_by is None
    assert call.ending == "unknown"


async def test_rows_that_stop_short_of_the_end_are_a_pbx_failure(rig: Rig) -> None:
    """Asterisk went (killed, restarted) before it wrote the call's hang-up."""
    rows = fixture_rows("engine_killed_caller_hangs_up")
    write_rows(rig.pbx.cel_path, [r for r in rows if r.event not in (
        "HANGUP", "CHAN_END", "LINKEDID_END", "BRIDGE_EXIT")])
    call_id = store_open_call(rig, rows, answered=True)
    report = await rig.run()
    assert report.incomplete == [call_id]
    call = rig.store.read(repo.get_call, call_id)
    assert call is not None and call.incomplete_reason == NO_END
    assert (call.outcome, call.released_by, call.ending) == ("pbx_failure", "pbx",
                                                             "pbx_failure")


async def test_unreadable_records_close_open_calls_incomplete_saying_why(rig: Rig) -> None:
    rows = fixture_rows("engine_killed_caller_hangs_up")
    call_id = store_open_call(rig, rows, answered=True)
    rig.pbx.cel_path.unlink()
    report = await rig.run()
    assert report.incomplete == [call_id] and "does not exist" in report.records_error
    call = rig.store.read(repo.get_call, call_id)
    assert call is not None and call.incomplete_reason is not None
    assert "CEL records file" in call.incomplete_reason
    # the window was not read: the next run reads it again
    assert rig.store.read(repo.latest_event, CHECKPOINT) is None


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))


async def test_calls_the_fallback_served_are_entered_with_their_recording(rig: Rig) -> None:
    answered, abandoned = fixture_rows("fallback_answered"), fixture_rows("fallback_abandoned")
    write_rows(rig.pbx.cel_path, answered + abandoned)
    answered_id, abandoned_id = answered[0].linkedid, abandoned[0].linkedid
    write_wav(rig.pbx.spool_dir / "monitor" / f"callflow-fallback-{answered_id}.wav", 5.0)
    rig.checkpoint(answered[0].at - 60)  # the engine had looked before they came
    report = await rig.run()
    assert report.entered == [answered_id, abandoned_id]
    assert report.recordings == [answered_id]  # the abandoned one's file is not there
    call = rig.store.read(repo.get_call, answered_id)
    assert call is not None and call.fallback_served
    assert (call.outcome, call.agent_id, call.released_by) == ("answered", "1002", "caller")
    assert call.entered_at is not None
    assert call.entered_at.timestamp() == pytest.approx(answered[0].at, abs=0.001)
    recording = rig.store.read(repo.recording_for_call, answered_id)
    assert recording is not None and recording.agent_id == "1002"
    assert recording.duration_s == pytest.approx(5.0) and call.recording_path == recording.path
    gone = rig.store.read(repo.get_call, abandoned_id)
    assert gone is not None and gone.fallback_served and gone.outcome == "short_abandon"
    offers = rig.store.read(repo.offers_for_call, abandoned_id)
    assert [(o.agent_id, o.result) for o in offers] == [("1003", "caller_gone")]
    assert not (await rig.run()).changed


async def test_a_first_start_enters_nothing_from_before_it(rig: Rig) -> None:
    write_rows(rig.pbx.cel_path, fixture_rows("fallback_answered"))
    report = await rig.run()
    assert not report.entered
    assert rig.store.read(repo.latest_event, CHECKPOINT) is not None


async def test_a_call_lost_while_the_link_was_down_waits_for_the_records(rig: Rig) -> None:
    """At a resync the reconciler leaves a call whose caller is gone to the records,
    which close it with Asterisk's end, not the resync's moment."""
    rows = fixture_rows("engine_killed_caller_hangs_up")
    write_rows(rig.pbx.cel_path, rows)
    caller = rows[0]
    rig.runtime.call_entered(caller.uniqueid, caller.channel, caller.cid_num, caller.exten,
                             at=caller.at + 0.003)
    rig.runtime.apply_resync([], [])
    assert rig.runtime.calls[caller.uniqueid].phase is not Phase.ENDED
    assert rig.runtime.lost_calls == {caller.uniqueid}
    report = await rig.run()
    assert report.closed == [caller.uniqueid]
    call = rig.runtime.calls[caller.uniqueid]
    hangup = next(r.at for r in rows if r.event == "HANGUP" and r.uniqueid == caller.uniqueid)
    assert call.phase is Phase.ENDED and call.incomplete == "" != ENDED_OUT_OF_SIGHT
    assert call.ended_at == pytest.approx(hangup, abs=0.005)
    assert (call.outcome.value if call.outcome else None, call.released_by,
            call.agent_id) == ("answered", "caller", "1001")


async def test_with_the_link_down_the_flows_word_on_an_end_waits_for_the_records(
        rig: Rig) -> None:
    rig.runtime.call_entered("9.1", "PJSIP/caller-9", "138", "100", at=1.0)
    rig.runtime.caller_gone("9.1")  # the link is down (no PBX wired here)
    rig.runtime.agent_released("9.1")
    assert rig.runtime.calls["9.1"].phase is not Phase.ENDED


async def test_a_fallback_call_still_going_on_is_adopted_and_recorded_when_it_ends(
        rig: Rig) -> None:
    rows = fixture_rows("fallback_answered")
    call_id = rows[0].linkedid
    write_rows(rig.pbx.cel_path, [r for r in rows if r.event not in (
        "HANGUP", "CHAN_END", "LINKEDID_END", "BRIDGE_EXIT")])
    write_wav(rig.pbx.spool_dir / "monitor" / f"callflow-fallback-{call_id}.wav", 2.0)
    rig.checkpoint(rows[0].at - 60)
    rig.live(call_id)
    report = await rig.run()
    assert report.entered == [call_id] and report.adopted == [call_id]
    assert rig.runtime.calls[call_id].phase is Phase.CONNECTED
    assert rig.store.read(repo.recording_for_call, call_id) is None  # not over yet
    hangup = next(r for r in rows if r.event == "HANGUP" and r.uniqueid == call_id)
    rig.runtime.call_event(CallReleased(call_id, hangup.at, by="caller"))  # AMI's word
    for _ in range(100):
        await asyncio.sleep(0.05)
        if rig.recovery.runs[-1].recordings:
            break
    assert rig.writer.flush(10)
    recording = rig.store.read(repo.recording_for_call, call_id)
    assert recording is not None and recording.agent_id == "1002"
    assert recording.ended_at is not None
    assert recording.ended_at.timestamp() == pytest.approx(hangup.at, abs=0.001)
    call = rig.store.read(repo.get_call, call_id)
    assert call is not None and call.fallback_served and call.outcome == "answered"
