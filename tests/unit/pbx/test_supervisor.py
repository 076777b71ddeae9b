"""The supervisor sees Asterisk go, says so, starts it again, and knows when to stop."""

from __future__ import annotations

import asyncio
from typing import Any

from callflow.errors import PbxError
from callflow.pbx.supervisor import PbxSupervisor, SupervisionRules


class FakeProcess:
    """An Asterisk whose death the test decides; ``fail_starts`` starts fail first."""

    def __init__(self, fail_starts: int = 0) -> None:
        self.running = True
        self.pid = 100
        self.fail_starts = fail_starts
        self.starts = 0

    def restart(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise PbxError("port 5060 in use\nmore detail")
        self.pid += 1
        self.running = True


def supervised(process: FakeProcess, **rules: Any) -> tuple[PbxSupervisor, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    sup = PbxSupervisor(process,  # type: ignore[arg-type]
                        on_down=lambda why: seen.append(("down", why)),
                        on_up=lambda s: seen.append(("up", s)),
                        on_gave_up=lambda why: seen.append(("gave_up", why)),
                        rules=SupervisionRules(**{"check_s": 0.01, "backoff_max_s": 0.04,
                                                  **rules}))
    return sup, seen


async def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_a_dead_asterisk_is_reported_and_started_again() -> None:
    proc = FakeProcess()
    sup, seen = supervised(proc)
    task = asyncio.create_task(sup.run())
    proc.running = False
    await wait_until(lambda: len(seen) == 2)
    assert [k for k, _ in seen] == ["down", "up"]
    assert "pid 100" in seen[0][1]
    assert (sup.state, sup.restarts, proc.pid) == ("up", 1, 101)
    task.cancel()


async def test_failed_starts_are_retried_with_backoff_and_the_error_kept() -> None:
    proc = FakeProcess(fail_starts=2)
    sup, seen = supervised(proc)
    task = asyncio.create_task(sup.run())
    proc.running = False
    await wait_until(lambda: ("up" in [k for k, _ in seen]))
    assert proc.starts == 3 and sup.last_error == "port 5060 in use"
    task.cancel()


async def test_it_gives_up_after_too_many_restarts_in_the_window() -> None:
    proc = FakeProcess()
    sup, seen = supervised(proc, max_restarts=2, window_s=60)
    task = asyncio.create_task(sup.run())
    for _ in range(2):
        proc.running = False
        await wait_until(lambda: proc.running)
    proc.running = False
    await wait_until(lambda: sup.state == "gave_up")
    assert [k for k, _ in seen] == ["down", "up", "down", "up", "down", "gave_up"]
    assert "2 restarts within 60 s" in seen[-1][1]
    await asyncio.wait_for(task, 1)  # the watch ends: a person takes over


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert SupervisionRules(check_s=0.5, backoff_max_s=8).pauses() == [0.5, 1, 2, 4, 8]
