"""The dialer's store queries on SQLite and PostgreSQL: claims never hand one task or one
number out twice, even to claimers racing in threads (STD-090); released claims lose
nothing; edits keep the one-open-task-per-number rule."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from callflow.errors import StateError
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import CallbackTask

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def agents(store: Store) -> list[str]:
    ids = ["1001", "1002"]
    for agent_id in ids:
        store.run(repo.upsert_agent, agent_id, name=f"Agent {agent_id}")
    return ids


def add(store: Store, number: str, kind: str = "callback", due: float = 0,
        owner: str | None = None) -> CallbackTask:
    task, created = store.run(repo.add_task, kind, number, at(due), owner_agent_id=owner)
    assert created
    return task


def test_racing_claimers_never_share_a_task_or_a_number(store: Store) -> None:
    numbers = [f"1390000{i:04d}" for i in range(10)]
    for number in numbers:  # two purposes per number: only one may be dialled at a time
        add(store, number, "callback")
        add(store, number, "manual")
    start = threading.Barrier(8)

    def claimer(name: str) -> list[CallbackTask]:
        start.wait()
        got = []
        while (task := store.run(repo.claim_next_task, at(10), claimed_by=name)) is not None:
            got.append(task)
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claimer, [f"engine-{i}" for i in range(8)]))
    claimed = [t for got in results for t in got]
    assert len({t.id for t in claimed}) == len(claimed) == 10
    assert sorted(t.number for t in claimed) == numbers  # one per number, each number once
    dialing = store.read(repo.list_tasks, statuses=("dialing",))
    assert sorted(t.number for t in dialing) == numbers


def test_a_finished_number_can_be_claimed_again(store: Store) -> None:
    first = add(store, "13900000001", "callback")
    second = add(store, "13900000001", "manual", due=1)
    claimed = store.run(repo.claim_next_task, at(5), claimed_by="a")
    assert claimed is not None and claimed.id == first.id
    assert store.run(repo.claim_next_task, at(5), claimed_by="b") is None
    store.run(repo.finish_attempt, first.id, at(6), "busy", reached=False, retry_at=at(1800),
              hangup_cause=17)
    again = store.run(repo.claim_next_task, at(7), claimed_by="b")
    assert again is not None and again.id == second.id


def test_own_and_pool_claims(store: Store, agents: list[str]) -> None:
    pool = add(store, "13900000001")
    own = add(store, "13900000002", "dropped_call", owner="1001")
    assert store.run(repo.claim_next_task, at(1), owner_agent_id="1002") is None
    mine = store.run(repo.claim_next_task, at(1), owner_agent_id="1001")
    assert mine is not None and mine.id == own.id
    shared = store.run(repo.claim_next_task, at(1))
    assert shared is not None and shared.id == pool.id
    assert store.read(repo.due_task_owners, at(1)) == (set(), 0)


def test_due_task_owners(store: Store, agents: list[str]) -> None:
    add(store, "13900000001")
    add(store, "13900000002", owner="1001")
    add(store, "13900000003", owner="1002", due=100)
    assert store.read(repo.due_task_owners, at(10)) == ({"1001"}, 1)
    assert store.read(repo.due_task_owners, at(100)) == ({"1001", "1002"}, 1)


def test_claim_task_by_id(store: Store) -> None:
    task = add(store, "13900000001", due=3600)  # not due yet: an agent may still dial it
    claimed = store.run(repo.claim_task, task.id, at(0), claimed_by="preview")
    assert (claimed.status, claimed.attempts, claimed.claimed_by) == ("dialing", 1, "preview")
    with pytest.raises(StateError, match="task_not_pending"):
        store.run(repo.claim_task, task.id, at(0))
    other = add(store, "13900000001", "manual")
    with pytest.raises(StateError, match="number_dialing"):
        store.run(repo.claim_task, other.id, at(0))
    with pytest.raises(StateError, match="not_found"):
        store.run(repo.claim_task, 999, at(0))


def test_a_released_claim_is_refunded_and_kept_in_the_history(store: Store) -> None:
    task = add(store, "13900000001")
    store.run(repo.claim_next_task, at(1))
    back = store.run(repo.release_claim, task.id, at(2), "not_dialled", due_at=at(32),
                     call_uniqueid="cfo-1-1-x", agent_id=None)
    assert (back.status, back.attempts, back.due_at, back.claimed_at) == (
        "pending", 0, at(32), None)
    history = store.read(repo.task_attempts, task.id)
    assert [(a.outcome, a.call_uniqueid) for a in history] == [("not_dialled", "cfo-1-1-x")]
    with pytest.raises(StateError, match="task_not_dialing"):
        store.run(repo.release_claim, task.id, at(3), "not_dialled", due_at=at(3))


def test_edits(store: Store, agents: list[str]) -> None:
    task = add(store, "13900000001")
    add(store, "13900000002")
    with store.session() as s:
        edited = repo.update_task(s, task.id, due_at=at(60), owner_agent_id="1002",
                                  note="call after lunch", max_attempts=5)
    assert (edited.due_at, edited.owner_agent_id, edited.note, edited.max_attempts) == (
        at(60), "1002", "call after lunch", 5)
    with store.session() as s, pytest.raises(StateError, match="duplicate_task"):
        repo.update_task(s, task.id, number="13900000002")
    assert store.read(repo.get_task, task.id).number == "13900000001"  # type: ignore[union-attr]
    with store.session() as s, pytest.raises(Exception, match="unknown task field"):
        repo.update_task(s, task.id, status="done")
    store.run(repo.claim_next_task, at(100), owner_agent_id="1002")
    with store.session() as s, pytest.raises(StateError, match="task_not_pending"):
        repo.update_task(s, task.id, note="too late")


def test_named_agent_tasks_keep_their_owner(store: Store, agents: list[str]) -> None:
    named = add(store, "13900000001", "named_agent", owner="1001")
    with store.session() as s, pytest.raises(StateError, match="invalid_task"):
        repo.update_task(s, named.id, owner_agent_id=None)
    assert store.read(repo.get_task, named.id).owner_agent_id == "1001"  # type: ignore[union-attr]


def test_list_tasks_filters(store: Store, agents: list[str]) -> None:
    a = add(store, "13900000001", owner="1001")
    b = add(store, "13900000002", due=5)
    store.run(repo.cancel_task, b.id)
    assert [t.id for t in store.read(repo.list_tasks)] == [a.id, b.id]
    assert [t.id for t in store.read(repo.list_tasks, statuses=("pending",))] == [a.id]
    assert [t.id for t in store.read(repo.list_tasks, owner_agent_id="1001")] == [a.id]
    assert [t.id for t in store.read(repo.list_tasks, pool_only=True)] == [b.id]
    assert [t.id for t in store.read(repo.list_tasks, number="13900000002")] == [b.id]
    assert [t.id for t in store.read(repo.list_tasks, due_by=at(1))] == [a.id]
    assert [t.id for t in store.read(repo.due_tasks_of_absent, {"1002"}, at(1))] == [a.id]
    assert store.read(repo.due_tasks_of_absent, {"1001"}, at(1)) == []
    changed = store.read(repo.tasks_changed_since, a.updated_at)
    assert [t.id for t in changed] == [b.id]  # b was cancelled after a was written
