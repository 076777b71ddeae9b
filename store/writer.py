"""The store adapter: Persist effects written in order, off the event loop.

The core emits ``Persist(kind, data)`` and moves on; one writer thread applies them
to the database in the order they were emitted. A database outage must lose
nothing: a write that fails because the database is unavailable stays at the head
of the queue and is retried with backoff while later writes wait behind it, so the
order is kept. A record the database refuses for its content (a constraint) will
never go in by retrying: it is appended to a dead-letter file as JSON, with the
reason, for a person to look at, and the queue moves on. The queue is in memory:
what is pending when the process dies is lost, which the AMI resync and the call
records' upserts repair on the next start.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callflow.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

Writer = Callable[[str, dict[str, Any]], None]


@dataclass
class WriterStats:
    written: int = 0
    failures: int = 0
    dead_letters: int = 0
    pending: int = 0
    last_error: str = ""


class PersistQueue:
    def __init__(self, write: Writer, dead_letters: Path, *, max_backoff_s: float = 5.0) -> None:
        self._write = write
        self.dead_letters = dead_letters
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._max_backoff = max_backoff_s
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name="callflow-store-writer",
                                        daemon=True)
        self._thread.start()

    def put(self, kind: str, data: dict[str, Any]) -> None:
        """Never blocks: the loop hands the record over and goes on."""
        self.stats.pending += 1
        self._queue.put((kind, data))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.stats.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _dead_letter(self, kind: str, data: dict[str, Any], exc: Exception) -> None:
        log.error("store refused a %s record (%s); kept in %s", kind, exc, self.dead_letters)
        self.stats.dead_letters += 1
        line = json.dumps({"kind": kind, "error": str(exc), "data": data}, default=str,
                          ensure_ascii=False)
        self.dead_letters.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letters.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, data = item
            backoff = 0.1
            while True:
                try:
                    self._write(kind, data)
                    break
                except StoreUnavailable as exc:
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)
                    if self._stop.is_set():
                        log.error("store down at shutdown; %s record dropped: %s", kind, exc)
                        break
                    log.warning("store write of %s failed (%s); retrying in %.1fs",
                                kind, exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                except (StoreError, ValueError, TypeError, KeyError) as exc:
                    self.stats.failures += 1
                    self._dead_letter(kind, data, exc)
                    break
            with self._idle:
                self.stats.written += 1
                self.stats.pending -= 1
                self._idle.notify_all()
