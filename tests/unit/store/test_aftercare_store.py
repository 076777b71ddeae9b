"""What comes after a call, over a real store (SQLite and PostgreSQL): the missing-form
flag and the survey's answers as the record writers store them, read back by the call
record API (repo.call_aftercare) and the survey KPIs' loader (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callflow.agents.changes import WrapupMissing, WrapupSubmitted
from callflow.engine import calls, kpi
from callflow.engine.policy import Policy
from callflow.engine.survey import SurveyAnswered
from callflow.runtime.core import call_rules
from callflow.store import records, repo
from callflow.store.db import Store
from callflow.store.kpi_facts import load_survey_facts
from callflow.store.rows import rows

POLICY = Policy.defaults()
NOW = datetime(2024, 5, 7, 10, 0, tzinfo=UTC)


def write(store: Store, event: object) -> None:
    for kind, data in rows(event, lambda t: t):  # type: ignore[arg-type]
        records.write(store, kind, data)


def a_call(store: Store, call_id: str) -> None:
    entered = calls.CallEntered(call_id, "PJSIP/c-1", "138", "100", "main", NOW.timestamp())
    _call, effects = calls.start(entered, call_rules(POLICY))
    for effect in effects:
        if isinstance(effect, calls.CallChanged):
            records.write(store, "call", calls.call_record(effect.call, effect.rules))


def test_the_flag_and_the_survey_are_stored_with_the_call(store: Store) -> None:
    store.run(repo.upsert_agent, "1001", name="Agent 1001")
    a_call(store, "c1")
    a_call(store, "c2")
    at = NOW.timestamp() + 60
    write(store, WrapupMissing("1001", "c1", at))
    write(store, SurveyAnswered("c1", "1001", "main", "service", 4, "answered", at))
    write(store, SurveyAnswered("c2", "1001", "main", "service", None, "hangup", at))
    write(store, WrapupSubmitted("1001", "c2", "follow_up", "call back", "agent", at))
    write(store, WrapupMissing("1001", "attempt-9", at))  # no call row: the log has it
    first = store.read(repo.call_aftercare, "c1")
    assert first["wrapup_missing"] is True and first["wrapups"] == []
    assert [(a["question"], a["score"], a["how"]) for a in first["survey"]] == [
        ("service", 4, "answered")]
    second = store.read(repo.call_aftercare, "c2")
    assert second["wrapup_missing"] is False and second["disposition"] == "follow_up"
    assert [(a["score"], a["how"]) for a in second["survey"]] == [(None, "hangup")]
    assert store.read(repo.call_aftercare, "nope")["known"] is False
    facts = load_survey_facts(store, kpi.Period(NOW, NOW + timedelta(hours=1)))
    assert kpi.survey_kpis(facts)["agents"]["1001"] == {
        "asked": 2, "answered": 1, "response_rate": 0.5, "mean_score": 4.0}
    assert load_survey_facts(store, kpi.Period(NOW - timedelta(hours=2), NOW)) == []
