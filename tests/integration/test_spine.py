"""The spine, end to end on a real Asterisk: SIPp caller -> our FastAGI flow -> greeting
and Dial with the Policy's ring limit -> SIPp softphone answers -> bridged -> caller hangs
up -> one call record with Asterisk's timestamps, and the AMI adapter saw every event.

Also: the AMI link is cut mid-call (a TCP proxy between the engine and Asterisk drops
it) -> the adapter reconnects, resyncs, and the call in progress is still known and is
recorded to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from product import Product, make_roster, make_settings

from callflow.agents.state import AgentState, LogIn
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy, ring_limit_seconds
from callflow.pbx.render import AMI_READ
from callflow.settings import Ports
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

AGENTS = ["1001", "1002"]


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    running = Product(settings, Policy.defaults(), make_roster(AGENTS, asterisk.agent_port))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def log_in(product: Product, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))


def adapter_frames(product: Product) -> list[Any]:
    frames: list[Any] = []
    assert product.service.ami is not None
    product.call(lambda: product.service.ami.subscribe(frames.extend))  # type: ignore[union-attr]
    return frames


def stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(float(event["Timestamp"]), UTC)


def close_to(a: datetime | None, b: datetime, within_s: float = 0.01) -> bool:
    assert a is not None
    return abs((a.replace(tzinfo=UTC) - b).total_seconds()) <= within_s


def test_call_flows_through_our_agi_to_a_softphone_and_is_recorded(
        asterisk: PbxHandle, sipp: SippControl, product: Product) -> None:
    seen = adapter_frames(product)
    ring_ms = 7000  # the softphone answers during the 2nd ring at cn cadence (5 s a ring)
    sipp.softphone("1001", "uas_answer.xml", ring_ms=ring_ms)
    log_in(product, "1001")
    t0 = asterisk.tap.mark()
    # Asterisk answers the caller at once (dialplan Answer): talk time includes the
    # ringing and the greeting with the agent's work number (about 6 s of speech)
    caller = sipp.caller("100", "uac_call.xml", talk_ms=ring_ms + 10000,
                         caller_id="13900000001")
    assert caller.wait(60) == 0, caller.diagnostics()

    tap = asterisk.tap
    begin = tap.wait_event("DialBegin", 5, since=t0)
    call_id = begin["Uniqueid"]
    dial_end = tap.wait_event("DialEnd", 5, since=t0, Uniqueid=call_id)
    answer = tap.wait_event("Newstate", 5, since=t0, Uniqueid=begin["DestUniqueid"],
                            ChannelStateDesc="Up")
    bye = tap.wait_event("HangupRequest", 5, since=t0, Uniqueid=call_id)  # the caller's BYE
    assert begin["DestChannel"].startswith("PJSIP/agent1001-")
    assert dial_end["DialStatus"] == "ANSWER"
    # the Dial our flow sent carries the Policy's ring limit (STD-008) and the greeting
    dial_cmd = next(e["Command"] for e in tap.events_since(t0, "AGIExecStart")
                    if e["Uniqueid"] == call_id and e["Command"].startswith("EXEC Dial"))
    limit = ring_limit_seconds(product.service.policy)
    assert f"PJSIP/agent1001,{limit:g},A(:" in dial_cmd and "opening-" in dial_cmd

    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end in the core")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None
    assert call.direction == "inbound" and call.caller_number == "13900000001"
    assert call.outcome == "answered" and call.agent_id == "1001"
    assert call.released_by == "caller"
    assert call.entered_at < call.ring_started_at < call.answered_at < call.ended_at
    assert close_to(call.ring_started_at, stamp(begin))
    assert close_to(call.answered_at, stamp(answer))  # the agent picked up
    assert stamp(dial_end) > stamp(answer)  # DialEnd waits for the greeting to end
    assert close_to(call.ended_at, stamp(bye))  # t_end: the caller's BYE, not the teardown
    assert call.answer_ring == 2  # 7 s of ringing at 5 s a ring
    offers = product.store.read(repo.offers_for_call, call_id)
    assert [(o.agent_id, o.result) for o in offers] == [("1001", "answered")]
    assert offers[0].ring_s == pytest.approx(ring_ms / 1000, abs=0.2)

    # every AMI event of the call the tap saw in the classes the engine reads (AMI_READ:
    # least privilege) and of the names the engine reads (its event filters, issue 20),
    # the engine's adapter saw too, in order, and nothing else
    def of_call(frames: list[dict[str, str]]) -> list[tuple[str, str, str]]:
        return [(f["Event"], f.get("Uniqueid", ""), f.get("Timestamp", "")) for f in frames
                if f.get("Linkedid") == call_id]

    wanted = product.call(lambda: product.runtime.ami_event_names())

    def readable(event: dict[str, str]) -> bool:
        return bool(set(event.get("Privilege", "").split(",")) & set(AMI_READ.split(","))
                    and event.get("Event") in wanted)

    product.call(lambda: None)
    expected = of_call([e for e in tap.events_since(t0) if readable(e)])
    got = of_call([dict(m.fields) for m in list(seen)])
    assert expected, "the tap saw no event of the call"
    assert got == expected
    # and the agent is in after-call work, not ready for the next call at once (STD-098)
    state = product.call(lambda: product.runtime.agents["1001"].state)
    assert state is AgentState.ACW


class CuttableProxy:
    """A TCP proxy in front of AMI whose connections the test can cut, like a failed link."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._pipe, "127.0.0.1", 0), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            for w in self.writers:
                w.transport.abort()
            self.writers.clear()

        self.loop.call_soon_threadsafe(close_all)

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for w in self.writers:
                w.transport.abort()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_ami_link_cut_mid_call_reconnects_and_the_call_is_still_known(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    proxy = CuttableProxy(asterisk.ports.ami)
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    ports = Ports(**{**settings.ports.__dict__, "ami": proxy.port})
    product = Product(settings.with_ports(ports), Policy.defaults(),
                      make_roster(AGENTS, asterisk.agent_port))
    try:
        product.start()
        sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
        log_in(product, "1001")
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=8000)
        begin = asterisk.tap.wait_event("BridgeEnter", 15, since=t0)
        call_id = begin["Linkedid"]
        product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.CONNECTED, 5,
                         "the core to see the call connected")
        assert product.service.ami is not None
        reconnects = product.service.ami.stats["reconnects"]
        resyncs = product.call(lambda: product.runtime.stats.resyncs)
        cut_at = time.monotonic()
        proxy.cut()
        product.wait_for(lambda: product.runtime.stats.resyncs > resyncs, 10,
                         "the adapter to reconnect and resync")
        back_after = time.monotonic() - cut_at
        assert product.service.ami.stats["reconnects"] > reconnects
        assert proxy.connections >= 2
        # the call is still known and still connected after the resync
        assert product.call(lambda: product.runtime.calls[call_id].phase) is Phase.CONNECTED
        assert caller.wait(30) == 0, caller.diagnostics()
        product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                         "the call's end to arrive over the new link")
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.outcome == "answered" and call.ended_at is not None
        bye = asterisk.tap.wait_event("HangupRequest", 5, since=t0, Uniqueid=call_id)
        assert close_to(call.ended_at, stamp(bye))
        print(f"AMI link back and resynced {back_after:.2f}s after the cut")
    finally:
        product.stop()
        proxy.close()
