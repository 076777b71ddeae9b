"""The desktop's keypad (desktop/keypad.py): a feature code typed on the agent's leg key
by key, each ``PlayDTMF`` sent once Asterisk answered the one before; a failure stops the
code and is logged. The runtime is the real one; only the AMI link's far end is this
file's (it answers as Asterisk's manager does, through the real encoder), the keys
reach a real Asterisk in the conference and PIN live tests."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.actions import encode
from callflow.ami.client import AmiMessage
from callflow.desktop.keypad import KeyPad
from callflow.engine.clock import FakeClock
from callflow.engine.effects import PbxAction
from callflow.engine.policy import Policy
from callflow.errors import AmiActionFailed
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

LEG = "PJSIP/agent1001-00000001"


class SlowPbx:
    """Answers each action after ``delay_s``; counts the actions in flight at once;
    refuses the ``fail_at``-th action (0-based) as Asterisk's ``Response: Error``."""

    def __init__(self, delay_s: float = 0.02, fail_at: int | None = None) -> None:
        self.up = True
        self.stats: dict[str, float] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay_s = delay_s
        self.fail_at = fail_at

    async def send(self, action: PbxAction) -> AmiMessage:
        index = len(self.sent)
        self.sent.append(encode(action))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if index == self.fail_at:
            raise AmiActionFailed("PlayDTMF: Channel not found")
        return AmiMessage("Success", {"Response": "Success"}, time.monotonic(), "response")

    async def query(self, query: Any) -> list[AmiMessage]:
        return []


def _runtime(pbx: SlowPbx) -> Runtime:
    clock = FakeClock()
    runtime = Runtime(Policy.defaults(), clock, Roster((RosterAgent("1001", "A", "agent1001"),)),
                      edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None))
    runtime.adapters.pbx = pbx
    return runtime


async def _settled(pad: KeyPad) -> None:
    while pad._tasks:
        await asyncio.sleep(0.01)


async def test_a_code_is_typed_in_order_one_key_at_a_time() -> None:
    pbx = SlowPbx()
    pad = KeyPad(_runtime(pbx))
    pad.press(LEG, "*38", "the three-way conference")
    await _settled(pad)
    assert [(name, f["Channel"], f["Digit"], f["Receive"]) for name, f in pbx.sent] == [
        ("PlayDTMF", LEG, "*", "true"), ("PlayDTMF", LEG, "3", "true"),
        ("PlayDTMF", LEG, "8", "true")]
    assert pbx.most_in_flight == 1  # each key only after Asterisk answered the last


async def test_a_refused_key_stops_the_code_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    pbx = SlowPbx(fail_at=1)
    pad = KeyPad(_runtime(pbx))
    with caplog.at_level(logging.ERROR, logger="callflow.desktop.keypad"):
        pad.press(LEG, "*8#", "call c1's PIN step")
        await _settled(pad)
    assert [f["Digit"] for _, f in pbx.sent] == ["*", "8"]  # "#" never sent
    [record] = [r for r in caplog.records if r.name == "callflow.desktop.keypad"]
    assert record.levelno == logging.ERROR
    assert "call c1's PIN step" in record.getMessage() and LEG in record.getMessage()
    assert "Channel not found" in record.getMessage()


async def test_stop_cancels_a_code_still_being_typed() -> None:
    pbx = SlowPbx(delay_s=0.2)
    pad = KeyPad(_runtime(pbx))
    pad.press(LEG, "*3", "the three-way conference")
    await asyncio.sleep(0.05)
    await pad.stop()
    await asyncio.sleep(0.3)
    assert [f["Digit"] for _, f in pbx.sent] == ["*"] and not pad._tasks
