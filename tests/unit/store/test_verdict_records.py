"""Verdicts (engine/verdicts.py) reach call_verdicts through the store's rows, once per
(call, rule, key) however often the record is replayed, and are read back for a call,
for a period (compliance history) and for the QA sample (breached calls)."""

from __future__ import annotations

from datetime import UTC, datetime

from edges import as_edges

from callflow.engine.effects import Persist
from callflow.engine.verdicts import CallJudged, Outcome, Verdict
from callflow.store import records
from callflow.store.db import Store
from callflow.store.verdicts import breached_calls, verdicts_between, verdicts_of_call

T0 = 1_800_000_000.0


def judged(call: str, rule: str, outcome: str, key: str = "", at: float = T0) -> Verdict:
    return Verdict(call, rule, Outcome(outcome), 34.0, 30.0, "s", "1001", "main", at,
                   "hold 34 s of 30", key)


def persist(store: Store, event: CallJudged) -> None:
    for e in as_edges([event]):
        if isinstance(e, Persist):
            records.write(store, e.kind, e.data)


def test_verdicts_are_stored_once_and_read_back(store: Store) -> None:
    event = CallJudged((judged("c1", "STD-040", "fail", "hold:1"),
                        judged("c1", "STD-040", "pass", "hold:2"),
                        judged("c1", "STD-110", "pass")))
    persist(store, event)
    persist(store, event)  # a journal replay, or the same verdict reached again
    persist(store, CallJudged((judged("c2", "STD-008", "pass", "answer", at=T0 + 7200),)))
    found = store.read(verdicts_of_call, "c1")
    assert [(v.rule, v.key, v.outcome.value) for v in found] == [
        ("STD-040", "hold:1", "fail"), ("STD-040", "hold:2", "pass"), ("STD-110", "", "pass")]
    assert found[0] == judged("c1", "STD-040", "fail", "hold:1")  # every field round-trips
    since = datetime.fromtimestamp(T0 - 1, UTC)
    until = datetime.fromtimestamp(T0 + 3600, UTC)
    assert {v.call_id for v in store.read(verdicts_between, since, until)} == {"c1"}
    assert store.read(breached_calls, ["c1", "c2", "c3"]) == {"c1": ["STD-040"]}
