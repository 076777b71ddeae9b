"""Callback and follow-up tasks: one open task per number and kind, atomic claims, retries.

Every test runs on SQLite and PostgreSQL; the concurrency tests use real threads with
their own connections, as the runtime's worker threads do.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from callflow.errors import StateError, StoreError
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import CallbackTask

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def agents(store: Store) -> list[str]:
    for agent_id in ("1001", "1002"):
        store.run(repo.upsert_agent, agent_id)
    return ["1001", "1002"]


def test_a_task_is_created_pending_and_linked_to_its_call(store: Store) -> None:
    store.run(repo.upsert_call, "c1", direction="inbound", caller_number="138")
    task, created = store.run(repo.add_task, "callback", "138", at(60), note="after 14:00",
                              created_from_uniqueid="c1", deadline_at=at(3600))
    call = store.read(repo.get_call, "c1")
    assert created and call is not None
    assert (task.kind, task.number, task.status, task.attempts, task.max_attempts) == (
        "callback", "138", "pending", 0, 3)
    assert (task.due_at, task.deadline_at, task.note) == (at(60), at(3600), "after 14:00")
    assert task.created_from_call_id == call.id
    assert task.owner_agent_id is None


def test_one_open_task_per_number_and_kind(store: Store, agents: list[str]) -> None:
    """STD-090: asking twice for the same callback gives the same task, unchanged."""
    first, created = store.run(repo.add_task, "callback", "138", at(60))
    again, created_again = store.run(repo.add_task, "callback", "138", at(10),
                                     owner_agent_id="1001")
    assert created and not created_again
    assert again.id == first.id
    assert (again.due_at, again.owner_agent_id) == (at(60), None)

    other_kind, created_other = store.run(repo.add_task, "follow_up", "138", at(60))
    assert created_other and other_kind.id != first.id

    store.run(repo.cancel_task, first.id)
    renewed, created_renewed = store.run(repo.add_task, "callback", "138", at(90))
    assert created_renewed and renewed.id != first.id


def test_the_database_itself_forbids_a_second_open_task(store: Store) -> None:
    store.run(repo.add_task, "callback", "138", at(0))
    with pytest.raises(StoreError, match=r"(?i)unique|duplicate"), store.session() as s:
        s.add(CallbackTask(kind="callback", number="138", due_at=at(5), status="dialing"))
        s.flush()


def test_closed_tasks_do_not_count_as_open(store: Store) -> None:
    with store.session() as s:
        for status in ("done", "unreachable", "cancelled", "done"):
            s.add(CallbackTask(kind="callback", number="138", due_at=at(0), status=status))
    _, created = store.run(repo.add_task, "callback", "138", at(0))
    assert created


def test_a_named_agent_task_needs_its_agent(store: Store) -> None:
    with pytest.raises(StoreError, match="named_agent_has_owner"):
        store.run(repo.add_task, "named_agent", "138", at(0))


def test_a_task_for_an_unknown_owner_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"(?i)foreign key"):
        store.run(repo.add_task, "named_agent", "138", at(0), owner_agent_id="9999")
    assert store.read(repo.list_open_tasks) == []


def test_claim_takes_due_pool_tasks_in_due_order(store: Store, agents: list[str]) -> None:
    late, _ = store.run(repo.add_task, "callback", "131", at(30))
    early, _ = store.run(repo.add_task, "callback", "132", at(10))
    store.run(repo.add_task, "callback", "133", at(100))                    # not due yet
    store.run(repo.add_task, "named_agent", "134", at(0), owner_agent_id="1001")  # not pool

    claimed = store.run(repo.claim_due_tasks, at(60), 10, claimed_by="engine-a")
    assert [t.id for t in claimed] == [early.id, late.id]
    assert all((t.status, t.attempts, t.claimed_at, t.claimed_by) ==
               ("dialing", 1, at(60), "engine-a") for t in claimed)
    assert store.run(repo.claim_due_tasks, at(60), 10) == []   # dialing is not claimable


def test_claim_respects_the_limit(store: Store) -> None:
    for i in range(5):
        store.run(repo.add_task, "callback", f"13{i}", at(i))
    assert [t.number for t in store.run(repo.claim_due_tasks, at(10), 2)] == ["130", "131"]
    assert [t.number for t in store.run(repo.claim_due_tasks, at(10), 2)] == ["132", "133"]
    assert store.run(repo.claim_due_tasks, at(10), 0) == []


def test_an_agent_claims_only_their_own_tasks(store: Store, agents: list[str]) -> None:
    """STD-072: the task owned by 1001 is offered when 1001 becomes ready, not to 1002."""
    own, _ = store.run(repo.add_task, "named_agent", "138", at(0), owner_agent_id="1001")
    store.run(repo.add_task, "callback", "139", at(0))
    assert store.run(repo.claim_due_tasks, at(5), 5, owner_agent_id="1002") == []
    assert [t.id for t in store.read(repo.list_open_tasks, owner_agent_id="1001")] == [own.id]
    assert [t.id for t in store.run(repo.claim_due_tasks, at(5), 5, owner_agent_id="1001")] == [
        own.id]


def test_a_reached_callee_finishes_the_task(store: Store, agents: list[str]) -> None:
    task, _ = store.run(repo.add_task, "follow_up", "138", at(0))
    store.run(repo.claim_due_tasks, at(0), 1)
    done = store.run(repo.finish_attempt, task.id, at(20), "answered", reached=True,
                     call_uniqueid="out-1", agent_id="1001", hangup_cause=16)
    assert (done.status, done.last_outcome, done.claimed_by, done.claimed_at) == (
        "done", "answered", None, None)
    [attempt] = store.read(repo.task_attempts, task.id)
    assert (attempt.at, attempt.outcome, attempt.call_uniqueid, attempt.agent_id,
            attempt.hangup_cause) == (at(20), "answered", "out-1", "1001", 16)


def test_unanswered_attempts_retry_until_max_attempts(store: Store) -> None:
    """STD-081: no answer after 6 rings; the core's retry time is applied until attempts run out."""
    task, _ = store.run(repo.add_task, "callback", "138", at(0), max_attempts=2)
    store.run(repo.claim_due_tasks, at(0), 1)
    retry = store.run(repo.finish_attempt, task.id, at(30), "no_answer", reached=False,
                      retry_at=at(1800), hangup_cause=19)
    assert (retry.status, retry.due_at, retry.attempts) == ("pending", at(1800), 1)
    assert store.run(repo.claim_due_tasks, at(1799), 1) == []
    assert len(store.run(repo.claim_due_tasks, at(1800), 1)) == 1
    final = store.run(repo.finish_attempt, task.id, at(1830), "no_answer", reached=False,
                      retry_at=at(3600))
    assert (final.status, final.attempts) == ("unreachable", 2)
    assert [a.outcome for a in store.read(repo.task_attempts, task.id)] == [
        "no_answer", "no_answer"]


def test_no_retry_time_means_unreachable(store: Store) -> None:
    task, _ = store.run(repo.add_task, "callback", "138", at(0))
    store.run(repo.claim_due_tasks, at(0), 1)
    assert store.run(repo.finish_attempt, task.id, at(30), "busy",
                     reached=False).status == "unreachable"


def test_only_a_dialing_task_can_finish_an_attempt(store: Store) -> None:
    task, _ = store.run(repo.add_task, "callback", "138", at(0))
    with pytest.raises(StateError, match="task_not_dialing"):
        store.run(repo.finish_attempt, task.id, at(1), "answered", reached=True)
    assert store.read(repo.task_attempts, task.id) == []
    with pytest.raises(StateError, match="not_found"):
        store.run(repo.finish_attempt, 4242, at(1), "answered", reached=True)


def test_cancel_only_open_tasks(store: Store) -> None:
    task, _ = store.run(repo.add_task, "manual", "138", at(0))
    assert store.run(repo.cancel_task, task.id).status == "cancelled"
    with pytest.raises(StateError, match="task_closed"):
        store.run(repo.cancel_task, task.id)


def test_stale_claims_of_a_crashed_engine_are_released(store: Store) -> None:
    old, _ = store.run(repo.add_task, "callback", "131", at(0))
    fresh, _ = store.run(repo.add_task, "callback", "132", at(0))
    store.run(repo.claim_due_tasks, at(0), 1, claimed_by="crashed")
    store.run(repo.claim_due_tasks, at(100), 1, claimed_by="alive")
    assert store.run(repo.release_stale_claims, at(50)) == 1
    reopened = store.read(repo.get_task, old.id)
    assert reopened is not None
    assert (reopened.status, reopened.claimed_by, reopened.attempts) == ("pending", None, 1)
    still = store.read(repo.get_task, fresh.id)
    assert still is not None and still.status == "dialing"


# --- concurrency -------------------------------------------------------------------


def _in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in n threads released at the same instant."""
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_claimers_never_get_the_same_task(store: Store) -> None:
    for i in range(60):
        store.run(repo.add_task, "callback", f"1380000{i:04d}", at(i))

    def claimer(worker: int) -> list[int]:
        mine: list[int] = []
        while batch := store.run(repo.claim_due_tasks, at(100), 3, claimed_by=f"w{worker}"):
            mine += [t.id for t in batch]
        return mine

    per_worker = _in_threads(4, claimer)
    claimed = [task_id for ids in per_worker for task_id in ids]
    assert len(claimed) == 60
    assert Counter(claimed).most_common(1)[0][1] == 1
    still_open = store.read(repo.list_open_tasks)
    assert len(still_open) == 60
    assert {(t.status, t.attempts) for t in still_open} == {("dialing", 1)}


def test_concurrent_requests_for_the_same_callback_make_one_task(store: Store) -> None:
    results = _in_threads(6, lambda i: store.run(repo.add_task, "callback", "138", at(i)))
    assert sum(created for _, created in results) == 1
    assert len({task.id for task, _ in results}) == 1


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.pg)])
def test_postgres_claimers_skip_locked_rows_instead_of_waiting(store: Store) -> None:
    """While one engine holds its claim open, another takes the other rows at once."""
    for i in range(4):
        store.run(repo.add_task, "callback", f"13{i}", at(i))
    with store.session() as first:
        held = repo.claim_due_tasks(first, at(10), 2, claimed_by="a")
        with store.session() as second:
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            taken = repo.claim_due_tasks(second, at(10), 4, claimed_by="b")
    assert [t.number for t in held] == ["130", "131"]
    assert [t.number for t in taken] == ["132", "133"]
