"""Asterisk dies or restarts under load: nothing is blamed, nothing stays open (issue 14).

The scene at the moment of the fault, on the real Asterisk with SIPp: a caller talking
with agent 1001, one held by agent 1002 (the softphone's own hold), one ringing agent
1003, one waiting for a free agent. Then Asterisk is killed (SIGKILL) or told
``core restart now`` (which, in the harness's no-chroot mode, exits). The engine runs
it (``ServiceOptions.pbx``: ``callflow run``'s supervisor) and must:

* see it within 2 s, raise ``pbx_down``, start it again, raise ``pbx_restarted``;
* end all four calls as ``pbx_failure`` released by ``pbx`` (no "agent hung up first",
  no ring-no-answer for the ringing agent, no abandoned caller), none left open;
* leave no agent on a call, ringing or holding; keep the call record's invariants;
* take a new call after the restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from amitap import AmiTapError
from product import Product, make_roster, make_settings

from callflow.agents.state import AgentState, EndAcw, LogIn
from callflow.cli import default_features
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
AGENTS = ["1001", "1002", "1003"]
DETECT_S = 2.0  # the bound: noticed within 2 s


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), Policy.defaults(),
                      make_roster(AGENTS, asterisk.agent_port),
                      ServiceOptions(features=default_features(), pbx=asterisk.process))
    running.start()
    try:
        yield running
    finally:
        running.stop()
        reconnect_tap(asterisk)


def reconnect_tap(asterisk: PbxHandle, within_s: float = 20.0) -> None:
    """The tap logs in again once Asterisk is back (the supervisor starts it)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            asterisk.tap.reconnect()
            return
        except (OSError, AmiTapError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def phases(product: Product) -> dict[str, Phase]:
    """On the loop (inside ``wait_for``/``call``)."""
    return {c.call_id: c.phase for c in product.runtime.calls.values()}


def agent_states(product: Product) -> dict[str, AgentState]:
    """On the loop (inside ``wait_for``/``call``)."""
    return {a: s.state for a, s in product.runtime.agents.items()}


def busy_scene(product: Product, sipp: SippControl) -> None:
    """Talking (1001), held (1002), ringing (1003), waiting (no agent free)."""
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000)
    sipp.softphone("1002", "uas_answer_hold35.xml", ring_ms=1000)
    for agent_id in ("1001", "1002"):
        product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))
    sipp.caller("100", "uac_call.xml", talk_ms=120_000, caller_id="13900000101")
    product.wait_for(lambda: agent_states(product)["1001"] is AgentState.ON_CALL, 20,
                     "agent 1001 talking")
    sipp.caller("100", "uac_call.xml", talk_ms=120_000, caller_id="13900000102")
    product.wait_for(lambda: agent_states(product)["1002"] is AgentState.ON_HOLD, 25,
                     "agent 1002 holding its caller")
    sipp.softphone("1003", "uas_answer.xml", ring_ms=60_000)
    product.call(lambda: product.runtime.agent_event("1003", LogIn()))
    sipp.caller("100", "uac_call.xml", talk_ms=120_000, caller_id="13900000103")
    product.wait_for(lambda: agent_states(product)["1003"] is AgentState.RINGING, 20,
                     "agent 1003 ringing")
    sipp.caller("100", "uac_call.xml", talk_ms=120_000, caller_id="13900000104")
    product.wait_for(lambda: sum(p is Phase.ROUTING for p in phases(product).values()) == 1,
                     20, "a fourth caller waiting")


@pytest.mark.parametrize("fault", ["sigkill", "core_restart"])
def test_asterisk_lost_under_load_ends_every_call_as_a_pbx_failure(
        asterisk: PbxHandle, sipp: SippControl, product: Product, fault: str) -> None:
    busy_scene(product, sipp)
    live = [cid for cid, p in product.call(lambda: phases(product)).items()
            if p is not Phase.ENDED]
    assert len(live) == 4
    old_pid = asterisk.process.pid
    assert old_pid is not None
    t_fault = time.time()
    if fault == "sigkill":
        os.kill(old_pid, signal.SIGKILL)
    else:
        with contextlib.suppress(AmiTapError):  # the link goes with Asterisk, reply or not
            asterisk.tap.command("core restart now")

    product.wait_for(lambda: all(phases(product)[c] is Phase.ENDED for c in live),
                     DETECT_S + 1, "every call ended as the PBX went")
    detected = product.call(lambda: max(product.runtime.calls[c].ended_at or 0
                                        for c in live))
    product.wait_for(lambda: product.service.supervisor is not None
                     and product.service.supervisor.state == "up"
                     and asterisk.process.pid != old_pid, 20, "Asterisk started again")
    t_back = time.time()
    product.flush()
    rows = [product.store.read(repo.get_call, c) for c in live]
    for row in rows:
        assert row is not None and row.ended_at is not None, row
        assert (row.outcome, row.released_by) == ("pbx_failure", "pbx"), (
            row.uniqueid, row.outcome, row.released_by)
    answered = [r for r in rows if r is not None and r.answered_at is not None]
    assert len(answered) == 2  # the talking and the held call were answered, and stay so
    states = product.call(lambda: agent_states(product))
    assert not {states[a] for a in AGENTS} & {AgentState.ON_CALL, AgentState.ON_HOLD,
                                               AgentState.RINGING}
    assert product.call(lambda: product.runtime.agents["1003"].ring_no_answer_count) == 0
    alarms = [a.kind for a in product.store.read(repo.open_alarms)]
    assert "pbx_down" in alarms and "pbx_restarted" in alarms
    assert "ring_no_answer" not in alarms and "agent_hung_up_first" not in alarms
    print(f"\n[{fault}] calls closed {detected - t_fault:+.2f} s "
          f"after the fault; Asterisk back after {t_back - t_fault:.2f} s")

    # a new call after the restart is routed and answered
    reconnect_tap(asterisk)
    sipp.stop_all()
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000)
    if product.call(lambda: agent_states(product))["1001"] is AgentState.ACW:
        product.call(lambda: product.runtime.agent_event("1001", EndAcw()))
    after = sipp.caller("100", "uac_call.xml", talk_ms=3000, caller_id="13900000105")
    product.wait_for(lambda: agent_states(product)["1001"] is AgentState.ON_CALL, 30,
                     "the first call after the restart answered")
    assert after.wait(60) == 0, after.diagnostics()
    product.wait_for(lambda: not product.runtime.live_calls(), 10, "the new call ended")
