"""A store outage is alarmed once, its end with its length, a full journal once per episode
(engine/store_health.py), driven with made-up times."""

from __future__ import annotations

from callflow.engine.store_health import StoreHealth, StoreSeen, observe

WALL0 = 1_800_000_000.0


def look(health: StoreHealth, at: float, ok: bool, error: str = "", **kw: int
         ) -> tuple[StoreHealth, list[tuple[str, dict[str, object]]]]:
    health, alarms = observe(health, StoreSeen(at, WALL0 + at, ok, error, **kw))
    return health, [(a.kind, dict(a.detail)) for a in alarms]


def test_a_healthy_store_raises_nothing() -> None:
    health = StoreHealth()
    for t in range(10):
        health, alarms = look(health, t, True)
        assert alarms == []
    assert not health.down


def test_an_outage_is_alarmed_at_its_first_failing_look_and_once() -> None:
    health, alarms = look(StoreHealth(), 10.0, False, "database is locked", pending=3)
    assert alarms == [("store_unavailable", {"error": "database is locked",
                                             "since": WALL0 + 10.0, "pending": 3})]
    assert health.down
    for t in (10.5, 11.0, 20.0, 39.5):  # retries fail: no second alarm
        health, alarms = look(health, t, False, "disk I/O error", pending=40)
        assert alarms == []
    assert health.last_error == "disk I/O error" and health.first_error == "database is locked"


def test_the_end_of_an_outage_is_said_with_its_length() -> None:
    health, _ = look(StoreHealth(), 10.0, False, "database is locked")
    health, _ = look(health, 25.0, False, "database is locked")
    health, alarms = look(health, 40.25, True, pending=57)
    assert alarms == [("store_recovered", {"outage_s": 30.25, "error": "database is locked",
                                           "since": WALL0 + 10.0, "pending": 57})]
    assert not health.down and health.last_outage_s == 30.25
    health, alarms = look(health, 41.0, False, "again")  # a new outage: a new alarm
    assert [kind for kind, _ in alarms] == ["store_unavailable"]


def test_records_held_in_memory_only_are_alarmed_once_per_episode() -> None:
    health, alarms = look(StoreHealth(), 1.0, False, "locked", memory_only=1,
                          journal_max_bytes=65536)
    assert [kind for kind, _ in alarms] == ["store_unavailable", "store_journal_full"]
    full = alarms[1][1]
    assert full["memory_only"] == 1 and full["journal_max_bytes"] == 65536
    assert "crash" in str(full["meaning"])
    health, alarms = look(health, 2.0, False, "locked", memory_only=500)
    assert alarms == []
    health, alarms = look(health, 3.0, True, memory_only=20)  # store back, backlog draining
    assert [kind for kind, _ in alarms] == ["store_recovered"]
    health, alarms = look(health, 4.0, True, memory_only=0)
    assert alarms == [] and not health.journal_full
    health, alarms = look(health, 5.0, True, memory_only=2)
    assert [kind for kind, _ in alarms] == ["store_journal_full"]


def test_the_outage_is_dated_from_the_write_that_began_it_not_from_when_it_was_seen() -> None:
    """A locked write is seen failing only once it has waited ``store.stall_s``."""
    health, alarms = observe(StoreHealth(), StoreSeen(12.5, WALL0 + 12.5, False, "locked",
                                                      began=10.0))
    assert alarms[0].detail["since"] == WALL0 + 10.0
    health, alarms = observe(health, StoreSeen(40.0, WALL0 + 40.0, True))
    assert alarms[0].detail["outage_s"] == 30.0
