"""Campaigns, the do-not-call list and wrap-up forms in the database, on SQLite and
PostgreSQL: the claim skips listed numbers and skipped campaigns, listing a number
closes its pending tasks, a form is tied to its task attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callflow.errors import StateError
from callflow.store import campaigns, repo
from callflow.store.db import Store

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def campaign(store: Store, name: str = "c") -> int:
    row = store.run(campaigns.add_campaign, created_by="boss", name=name, agents=[],
                    queue="", days=[], window_start="09:00", window_end="21:00",
                    max_attempts=2, retry_spacing_min=30.0, caller_id_key="")
    return int(row.id)


def test_the_claim_skips_listed_numbers_and_skipped_campaigns(store: Store) -> None:
    first, second = campaign(store, "first"), campaign(store, "second")
    rows = {}
    for number, owner in (("13900000001", first), ("13900000002", second),
                          ("13900000003", first)):
        c = store.read(campaigns.get_campaign, owner)
        rows[number], created = store.run(campaigns.add_campaign_number, c, number, T0,
                                          note="", on_dnc=False)
        assert created and rows[number].campaign_id == owner and rows[number].max_attempts == 2
    plain, _ = store.run(repo.add_task, "manual", "13900000004", T0)
    listed, created, closed = store.run(campaigns.add_dnc, "13900000001", by="boss", at=T0)
    assert listed.number == "13900000001" and listed.added_by == "boss"
    assert created and [t.id for t in closed] == [rows["13900000001"].id]
    assert (closed[0].status, closed[0].last_outcome) == ("cancelled", "do_not_call")
    again = store.run(campaigns.add_dnc, "13900000001", by="boss", at=T0)
    assert again[1] is False and again[2] == []
    now = T0 + timedelta(minutes=1)
    claimed = store.run(repo.claim_next_task, now, skip_campaigns=frozenset({first}))
    assert claimed is not None and claimed.number == "13900000002"
    claimed = store.run(repo.claim_next_task, now, skip_campaigns=frozenset({first}))
    assert claimed is not None and claimed.id == plain.id  # not a campaign's: never skipped
    assert store.run(repo.claim_next_task, now, skip_campaigns=frozenset({first})) is None
    claimed = store.run(repo.claim_next_task, now)
    assert claimed is not None and claimed.number == "13900000003"
    # a task written for a listed number afterwards: never claimed, closed by the sweep
    late, _ = store.run(repo.add_task, "callback", "13900000001", T0)
    assert store.run(repo.claim_next_task, now) is None
    try:
        store.run(repo.claim_task, late.id, now)
        raise AssertionError("claimed a do-not-call number")
    except StateError as exc:
        assert exc.reason == "do_not_call"
    assert [t.id for t in store.run(campaigns.close_dnc_tasks)] == [late.id]
    assert store.run(campaigns.remove_dnc, "13900000001") is True
    assert store.read(campaigns.list_dnc) == ([], 0)


def test_a_form_is_tied_to_its_attempt_and_shown_as_the_last_disposition(store: Store
                                                                        ) -> None:
    store.run(repo.upsert_agent, "1001", name="Agent 1001")
    cid = campaign(store)
    c = store.read(campaigns.get_campaign, cid)
    task, _ = store.run(campaigns.add_campaign_number, c, "13900000009", T0, note="",
                        on_dnc=False)
    store.run(repo.claim_task, task.id, T0)
    store.run(repo.finish_attempt, task.id, T0, "answered", reached=True,
              call_uniqueid="cfo-1-1-aa", agent_id="1001")
    form_id = store.run(campaigns.add_wrapup, "cfo-1-1-aa", "1001", "resolved", notes="ok",
                        by="agent", at=T0)
    form = store.read(campaigns.wrapups_for_call, "cfo-1-1-aa")[-1]
    assert form.id == form_id
    assert form.task_id == task.id
    assert store.read(campaigns.last_dispositions, [task.id]) == {task.id: "resolved"}
    store.run(campaigns.add_wrapup, "1700000000.5", "1001", "follow_up", notes="",
              by="agent", at=T0)
    other = store.read(campaigns.wrapups_for_call, "1700000000.5")[-1]
    assert other.task_id is None  # an inbound call's form has no task
