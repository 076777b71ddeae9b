"""The store watcher: a store outage is alarmed within seconds, and its end too.

Runs on the loop every ``store.check_interval_s``. What it looks at:

* the writer (store/writer.py ``health``): a write that failed as unavailable, or one
  still waiting after ``store.stall_s`` (a locked SQLite file makes a write wait for
  its 30 s busy timeout before failing: without this, a 45 s lock went unseen);
* its own write probe (store/applied.py ``probe_write``: a small committed write that
  waits at most ``store.probe_timeout_s``), every ``store.probe_interval_s`` while the
  writer has nothing to write or the store is down. A read would not do: a locked or
  unwritable SQLite file still answers reads. A probe that goes in while the writer
  waits to retry tells the writer to retry at once.

The verdict is the pure rule's (engine/store_health.py): ``store_unavailable`` once per
outage, ``store_recovered`` with its length, ``store_journal_full`` when records are
held in memory only. The alarms go through the runtime's alarm path (``raise_alarm``:
the board sees them live); their own store rows go through the journal like every
record, so raising one never waits for the store it is about. ``component()`` is the
store's part of ``/healthz``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from callflow.engine.effects import Alarm
from callflow.engine.policy import StorePolicy
from callflow.engine.store_health import StoreHealth, StoreSeen, observe
from callflow.errors import StoreError
from callflow.store.writer import PersistQueue, WriterHealth

log = logging.getLogger(__name__)

Probe = Callable[[float], None]


class StoreWatcher:
    def __init__(self, writer: PersistQueue, probe: Probe, rules: StorePolicy,
                 raise_alarm: Callable[[Alarm], None], *,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.rules = rules
        self._probe = probe
        self._raise = raise_alarm
        self._monotonic = monotonic
        self._wall = wall
        self.health = StoreHealth()
        self.last_seen: StoreSeen | None = None
        self._probing: asyncio.Task[None] | None = None
        self._probe_done_at: float | None = None  # monotonic: when the last probe finished
        self._probe_began: float | None = None  # ... and when it started
        self._probe_error = ""
        self.probes = 0

    async def run(self) -> None:
        """Look every ``store.check_interval_s`` until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.rules.check_interval_s)
                try:
                    self.look()
                except Exception:  # the watcher must outlive its own faults
                    log.exception("store watcher: a look failed")
        finally:
            if self._probing is not None:
                self._probing.cancel()

    def look(self) -> StoreSeen:
        """One look: judge the writer and the last probe, start a probe if one is due,
        raise what the rule says."""
        now = self._monotonic()
        writer = self.writer.health()
        error, began = self._writer_trouble(writer, now)
        probe_failed = bool(self._probe_error) and (
            writer.last_ok is None or (self._probe_done_at or 0.0) > writer.last_ok)
        ok = not error and not probe_failed
        if probe_failed and self._probe_began is not None:
            began = min(began or now, self._probe_began)
        if not ok:
            error = self._probe_error or error  # the database's own words, when it said any
        self._maybe_probe(writer, now, ok)
        seen = StoreSeen(now, self._wall(), ok, error, writer.pending, writer.memory_only,
                         self.rules.journal_max_bytes, writer.journal_error, began)
        was_down = self.health.down
        self.health, alarms = observe(self.health, seen)
        if self.health.down and not was_down:
            log.error("store unavailable: %s (%d records waiting in the journal)", error,
                      writer.pending)
        elif was_down and not self.health.down:
            log.warning("store back after %.1f s; %d records waiting", self.health.last_outage_s
                        or 0.0, writer.pending)
        for alarm in alarms:
            self._raise(alarm)
        self.last_seen = seen
        return seen

    def _writer_trouble(self, writer: WriterHealth, now: float) -> tuple[str, float | None]:
        """What is wrong with the writer now ("" if nothing), and since when."""
        if writer.unavailable:
            return (writer.last_error or "a write failed: the database is unavailable",
                    writer.failing_since)
        if writer.writing_since is not None and now - writer.writing_since > self.rules.stall_s:
            return (f"a write has waited {now - writer.writing_since:.1f} s for the database "
                    "(locked or not answering)", writer.writing_since)
        return "", None

    def _maybe_probe(self, writer: WriterHealth, now: float, ok: bool) -> None:
        """Probe while the writer is idle (is a write possible?) or the store is down (is it
        back?), at most every ``store.probe_interval_s``, one at a time."""
        if self._probing is not None:
            return
        idle = writer.pending == 0
        if ok and not idle:
            return  # the writer's own writes say it all
        last = max(self._probe_done_at or float("-inf"), writer.last_ok or float("-inf"))
        if ok and now - last < self.rules.probe_interval_s:
            return
        if not ok and now - (self._probe_done_at or float("-inf")) < self.rules.probe_interval_s:
            return
        self._probing = asyncio.get_running_loop().create_task(self._run_probe(),
                                                              name="store-probe")

    async def _run_probe(self) -> None:
        began = self._monotonic()
        try:
            await asyncio.to_thread(self._probe, self.rules.probe_timeout_s)
        except StoreError as exc:
            self._probe_error = str(exc)
        except Exception as exc:  # a probe must never kill the watcher
            log.exception("store probe failed unexpectedly")
            self._probe_error = f"{type(exc).__name__}: {exc}"
        else:
            self._probe_error = ""
            if self.writer.health().unavailable:
                self.writer.retry_now()
        finally:
            self.probes += 1
            self._probe_began = began
            self._probe_done_at = self._monotonic()
            self._probing = None

    def component(self) -> dict[str, Any]:
        """The store's part of ``/healthz``: ok, or degraded with what waits and why."""
        writer = self.writer.health()
        health = self.health
        stats = self.writer.stats
        part: dict[str, Any] = {
            "ok": not health.down and not health.journal_full,
            "state": "unavailable" if health.down else (
                "journal_full" if health.journal_full else "ok"),
            "pending_records": writer.pending,
            "journal_records": writer.journal_records,
            "journal_bytes": writer.journal_bytes,
            "memory_only_records": writer.memory_only,
            "pending_writes": stats.pending,
            "write_failures": stats.failures,
            "dead_letters": stats.dead_letters,
            # how well writes are grouped (issue 20): records per transaction and per fsync
            "records_put": stats.put,
            "transactions": stats.batches,
            "fsyncs": stats.fsyncs,
        }
        if health.down:
            assert health.down_since is not None
            down_for = self._monotonic() - health.down_since
            part["down_for_s"] = round(down_for, 1)
            part["last_error"] = health.last_error
            part["detail"] = (f"store unavailable for {down_for:.0f} s: {health.last_error}; "
                              f"{writer.journal_records} records kept in the journal")
        elif health.journal_full:
            part["detail"] = (f"journal full: {writer.memory_only} records held in memory "
                              "only until the store takes the backlog")
        if health.last_outage_s is not None:
            part["last_outage_s"] = health.last_outage_s
        return part
