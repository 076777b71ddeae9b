"""When a store outage is alarmed, and when its end is (STD-147), as a pure rule.

Found in testing: a SQLite file locked for 45 s, then made unwritable for 28 s, left
``/healthz`` at ok and raised no alarm, because a locked write waits for its busy
timeout (30 s) before it fails, and the health check only read. The watcher
(store/watch.py) now looks every ``store.check_interval_s`` at the writer (a write
that failed as unavailable, or one still waiting after ``store.stall_s``) and at its
own small write probe, and hands what it saw to ``observe``:

* the first look that sees the store failing raises ``store_unavailable`` (the error,
  since when: the start of the first write or probe that failed, how many records
  wait): once per outage, not once per retry;
* the first look after that which sees it working raises ``store_recovered`` with the
  outage's length, so a supervisor sees both ends of it;
* records held in memory only because the journal reached its bound raise
  ``store_journal_full`` once per episode, saying what it means.

Times are handed in (monotonic for lengths, epoch for what people read): no clock is
read here, so the tests drive it with a fake one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callflow.engine.effects import Alarm

STD = "STD-147"
#: What holding records in memory means, said in the alarm itself.
MEMORY_ONLY_MEANING = ("records past the journal's bound are held in memory only until "
                       "the store takes the backlog: an engine crash now would lose them")


@dataclass(frozen=True)
class StoreSeen:
    """One look at the store: is a write going in, and what is waiting."""

    at: float  # monotonic
    wall: float  # epoch seconds, for the alarm's text
    ok: bool
    error: str = ""
    pending: int = 0  # records not yet in the database
    memory_only: int = 0  # of them, held in memory only (the journal was full)
    journal_max_bytes: int = 0
    journal_error: str = ""  # why the journal took no more ("" when it was full)
    began: float | None = None  # monotonic: when the failure seen began (a write's start)


@dataclass(frozen=True)
class StoreHealth:
    """What the watcher remembers between looks."""

    down_since: float | None = None  # monotonic: the first failing look of this outage
    down_since_wall: float | None = None
    first_error: str = ""
    last_error: str = ""
    journal_full: bool = False
    last_outage_s: float | None = None  # the length of the last outage that ended

    @property
    def down(self) -> bool:
        return self.down_since is not None


def observe(health: StoreHealth, seen: StoreSeen) -> tuple[StoreHealth, tuple[Alarm, ...]]:
    """The health after one look, and the alarms that look raises."""
    alarms: list[Alarm] = []
    if not seen.ok:
        if health.down_since is None:
            began = min(seen.at, seen.began) if seen.began is not None else seen.at
            since_wall = seen.wall - (seen.at - began)
            health = replace(health, down_since=began, down_since_wall=since_wall,
                             first_error=seen.error)
            alarms.append(Alarm("store_unavailable", {
                "error": seen.error, "since": since_wall, "pending": seen.pending}, std=STD))
        health = replace(health, last_error=seen.error)
    elif health.down_since is not None:
        outage = round(seen.at - health.down_since, 3)
        alarms.append(Alarm("store_recovered", {
            "outage_s": outage, "error": health.first_error,
            "since": health.down_since_wall, "pending": seen.pending}, std=STD))
        health = replace(health, down_since=None, down_since_wall=None, first_error="",
                         last_outage_s=outage)
    if seen.memory_only and not health.journal_full:
        alarms.append(Alarm("store_journal_full", {
            "memory_only": seen.memory_only, "journal_max_bytes": seen.journal_max_bytes,
            "reason": seen.journal_error or "the journal reached its bound",
            "meaning": MEMORY_ONLY_MEANING}, std=STD))
        health = replace(health, journal_full=True)
    elif not seen.memory_only and health.journal_full:
        health = replace(health, journal_full=False)
    return health, tuple(alarms)
