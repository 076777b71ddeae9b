"""The AMI adapter against the session's real Asterisk: events, lists, a cut link, a restart.

A long call is an ``Originate`` of ``Local/<did>@inbound`` into ``Wait(120)``: the
inbound leg finds no FastAGI server and waits in the fallback queue, so the call
stays up without SIPp until ``asterisk.reset()`` hangs it up. The link cut goes
through a small TCP proxy between the adapter and Asterisk (kernel-chosen port),
which can drop both sockets (RST) or black-hole the bytes while keeping them open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from callflow.ami.client import AmiClient, AmiListResult, AmiMessage
from callflow.errors import AmiActionFailed

if TYPE_CHECKING:
    from conftest import PbxHandle

pytestmark = pytest.mark.integration


class TcpProxy:
    """127.0.0.1:<ephemeral> -> 127.0.0.1:upstream, with a cut and a freeze switch."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._every_link: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._frozen: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepted: list[asyncio.StreamWriter] = []

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """Both sides see the connection reset, as when a firewall or NIC drops it."""
        for client, upstream in self.links:
            client.transport.abort()
            upstream.transport.abort()
        self.links.clear()

    def freeze(self) -> None:
        """Current links stay open but carry nothing either way (a wedged path)."""
        for client, upstream in self.links:
            self._frozen.update((client, upstream))

    async def close(self) -> None:
        """Every connection aborted, also one accepted a moment ago (a client reconnecting
        while the test ends): Python 3.11's ``Server.wait_closed`` waits for them all."""
        if self._server is not None:
            self._server.close()
        self.links = self._every_link
        self.cut()
        for client in self._accepted:
            client.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._accepted.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.links.append((writer, up_writer))
        self._every_link.append((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)
        for w in (writer, up_writer):
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if writer in self._frozen:
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


class Seen:
    def __init__(self) -> None:
        self.messages: list[AmiMessage] = []

    def __call__(self, batch: Sequence[AmiMessage]) -> None:
        self.messages.extend(batch)

    async def wait(self, name: str, timeout: float = 10.0, **match: str) -> AmiMessage:
        end = time.monotonic() + timeout
        while True:
            for m in self.messages:
                if m.name == name and all(m.get(k) == v for k, v in match.items()):
                    return m
            if time.monotonic() > end:
                raise AssertionError(f"no {name} {match} in {[m.name for m in self.messages]}")
            await asyncio.sleep(0.02)


class Resyncs:
    """An on_connected hook that snapshots the channels, like the runtime's resync."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.snapshots: list[tuple[float, AmiListResult]] = []
        client.on_connected(self)

    async def __call__(self) -> None:
        self.snapshots.append((time.monotonic(), await self.client.action_list("CoreShowChannels")))

    async def wait_count(self, n: int, timeout: float) -> float:
        end = time.monotonic() + timeout
        while len(self.snapshots) < n:
            if time.monotonic() > end:
                raise AssertionError(f"{len(self.snapshots)} resyncs, wanted {n}")
            await asyncio.sleep(0.01)
        return self.snapshots[n - 1][0]

    def uniqueids(self, n: int) -> set[str]:
        return {e.get("Uniqueid") for e in self.snapshots[n - 1][1].events}


def client_for(asterisk: PbxHandle, port: int | None = None, **kwargs: object) -> AmiClient:
    return AmiClient("127.0.0.1", port or asterisk.ports.ami, asterisk.username,
                     asterisk.secret, **kwargs)  # type: ignore[arg-type]


async def start_long_call(client: AmiClient, seen: Seen, channel_id: str) -> None:
    reply = await client.action("Originate", Channel="Local/5550100@inbound",
                                Application="Wait", Data="120", Async="true",
                                ChannelId=channel_id, CallerID="ami-live <100>")
    assert reply.name == "Success"
    await seen.wait("OriginateResponse", Uniqueid=channel_id, Response="Success")


async def test_adapter_logs_in_sees_events_and_lists(asterisk: PbxHandle) -> None:
    client = client_for(asterisk)
    seen = Seen()
    client.subscribe(seen)
    await client.start()
    try:
        await client.wait_up(5)
        booted = await seen.wait("FullyBooted")
        assert booted.get("Status") == "Fully Booted"
        channels = await client.action_list("CoreShowChannels")
        assert channels.complete is not None and channels.events == []
        queue = await client.action_list("QueueStatus")
        assert queue.events[0].name == "QueueParams"
        members = [e.get("Location") for e in queue.events if e.name == "QueueMember"]
        assert set(members) == {f"PJSIP/agent{ext}" for ext in asterisk.agents}
        contacts = await client.action_list("PJSIPShowContacts")
        assert all(e.name == "ContactList" for e in contacts.events)
        with pytest.raises(AmiActionFailed, match="No such channel"):
            await client.action("Hangup", Channel="PJSIP/nobody-00000000")

        await start_long_call(client, seen, "ami-live-1")
        await seen.wait("MusicOnHoldStart", timeout=5)  # waiting in the queue (QueueCallerJoin
        # is of the agent class, which the engine's login does not read)
        channels = await client.action_list("CoreShowChannels")
        assert {"ami-live-1", "ami-live-1;2"} <= {e.get("Uniqueid") for e in channels.events}
        await client.action("Hangup", Channel="/^Local\\/5550100@inbound-.*$/")
        hangup = await seen.wait("Hangup", Uniqueid="ami-live-1")
        assert hangup.get("Channel").startswith("Local/5550100@inbound-")
        stats = client.stats
        assert stats["malformed"] == 0 and stats["reconnects"] == 0
        assert stats["max_lag"] < 0.5
        print(f"\nlive: {stats['events']:.0f} events in {stats['batches']:.0f} batches, "
              f"max lag {stats['max_lag'] * 1000:.1f} ms")
    finally:
        await client.stop()


async def test_event_filters_leave_out_what_nobody_reads(asterisk: PbxHandle) -> None:
    """Asterisk 22 honours the adapter's ``Filter`` actions (issue 20): a filtered login
    gets only the events asked for, the same call seen by an unfiltered one has many
    more; list replies to actions are not events and still come whole."""
    wanted = {"Newchannel", "Hangup", "OriginateResponse"}
    filtered, everything = client_for(asterisk), client_for(asterisk)
    only, seen = Seen(), Seen()
    filtered.subscribe(only)
    everything.subscribe(seen)
    filtered.only_events(lambda: wanted)
    await filtered.start()
    await everything.start()
    try:
        await filtered.wait_up(5)
        await everything.wait_up(5)
        assert filtered.stats["filters"] == len(wanted) + 1  # and FullyBooted
        await start_long_call(filtered, only, "ami-live-filter")
        channels = await filtered.action_list("CoreShowChannels")
        assert "ami-live-filter" in {e.get("Uniqueid") for e in channels.events}
        await filtered.action("Hangup", Channel="/^Local\\/5550100@inbound-.*$/")
        await only.wait("Hangup", Uniqueid="ami-live-filter")
        await seen.wait("Hangup", Uniqueid="ami-live-filter")
        call = {"ami-live-filter", "ami-live-filter;2"}
        got = [m.name for m in only.messages if m.get("Uniqueid") in call]
        all_names = [m.name for m in seen.messages if m.get("Uniqueid") in call]
        assert set(got) <= wanted and {"Newchannel", "Hangup"} <= set(got)
        assert {"Newstate", "HangupRequest"} <= set(all_names) - wanted  # of the call class
        print(f"\nfilters: {len(got)} events of the call for the filtered login, "
              f"{len(all_names)} for an unfiltered one: {sorted(set(all_names))}")
    finally:
        await filtered.stop()
        await everything.stop()


async def test_link_cut_reconnects_and_resync_sees_the_call_in_progress(
        asterisk: PbxHandle) -> None:
    proxy = await TcpProxy(asterisk.ports.ami).start()
    client = client_for(asterisk, proxy.port)
    seen = Seen()
    client.subscribe(seen)
    resyncs = Resyncs(client)
    await client.start()
    try:
        await client.wait_up(5)
        await start_long_call(client, seen, "ami-live-cut")
        assert "ami-live-cut" not in resyncs.uniqueids(1)

        cut_at = time.monotonic()
        proxy.cut()
        resynced_at = await resyncs.wait_count(2, timeout=5)
        await client.wait_up(2)
        reconnect_s = resynced_at - cut_at
        print(f"\nlink cut -> logged in again and resync started in {reconnect_s:.3f} s")
        assert reconnect_s < 2.0
        assert {"ami-live-cut", "ami-live-cut;2"} <= resyncs.uniqueids(2)
        assert client.stats["reconnects"] == 1
        # events flow on the new link: the call's hang-up is seen
        await client.action("Hangup", Channel="/^Local\\/5550100@inbound-.*$/")
        await seen.wait("Hangup", Uniqueid="ami-live-cut")
    finally:
        await client.stop()
        await proxy.close()


async def test_a_silent_link_is_detected_by_the_watchdog(asterisk: PbxHandle) -> None:
    proxy = await TcpProxy(asterisk.ports.ami).start()
    client = client_for(asterisk, proxy.port)  # defaults: ping 1 s, timeout 2 s
    resyncs = Resyncs(client)
    await client.start()
    try:
        await client.wait_up(5)
        await asyncio.sleep(1.5)  # a few pings answered on an idle link
        assert client.up and client.stats["pongs"] >= 1
        frozen_at = time.monotonic()
        proxy.freeze()
        while not client.stats["watchdog_trips"]:  # ``up`` may flip back too fast to see
            assert time.monotonic() - frozen_at < 3.0, "silent link not detected"
            await asyncio.sleep(0.01)
        detected_s = time.monotonic() - frozen_at
        resynced_at = await resyncs.wait_count(2, timeout=5)
        print(f"\nsilent link detected in {detected_s:.3f} s, logged in again "
              f"{resynced_at - frozen_at:.3f} s after the freeze")
        assert detected_s <= 2.1  # ping_timeout after the last frame, which came before
        assert client.stats["watchdog_trips"] == 1
    finally:
        await client.stop()
        await proxy.close()


async def test_asterisk_restart_reconnects_and_resyncs(asterisk: PbxHandle) -> None:
    client = client_for(asterisk)
    seen = Seen()
    client.subscribe(seen)
    resyncs = Resyncs(client)
    await client.start()
    try:
        await client.wait_up(5)
        await start_long_call(client, seen, "ami-live-restart")
        started = time.monotonic()
        booted_s = await asyncio.to_thread(asterisk.restart)  # stop + start, ~2-3 s
        booted_at = time.monotonic()
        resynced_at = await resyncs.wait_count(2, timeout=10)
        await client.wait_up(2)
        await seen.wait("Shutdown")
        print(f"\nrestart: Asterisk back in {booted_s:.2f} s; adapter resynced "
              f"{resynced_at - booted_at:+.2f} s after boot ({resynced_at - started:.2f} s "
              f"after the restart began)")
        assert resynced_at - booted_at < 3.0
        assert resyncs.uniqueids(2) == set()  # the restart ended the call
        pong = await client.action("Ping")
        assert pong.get("Ping") == "Pong"
        assert client.stats["reconnects"] == 1
    finally:
        await client.stop()
