"""The AMI adapter over real sockets, against a server that replays captured frames.

``ReplayAsterisk`` is a real TCP server on 127.0.0.1 (kernel-chosen port, so
parallel runs never collide). It sends Asterisk's captured banner, reads the
adapter's actions and answers each with the captured reply for that action
(tests/fixtures/ami), its ActionID rewritten to the adapter's. The adapter runs
unchanged: its reader and writer threads, watchdog and reconnects are the real
ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from callflow.ami.client import AmiClient, AmiMessage, _AmiConnection
from callflow.errors import AmiActionFailed, AmiActionTimeout, AmiLinkDown, AmiProtocolError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
SECRET = "s3cret-for-tests"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


LOGIN_OK = fixture("login_ok.txt")
BANNER, LOGIN_REPLY = LOGIN_OK.split(b"\r\n", 1)[0] + b"\r\n", LOGIN_OK.split(b"\r\n", 1)[1]
LOGIN_FAIL = fixture("login_fail.txt").split(b"\r\n", 1)[1]
FULLY_BOOTED = next(f + b"\r\n\r\n" for f in LOGIN_REPLY.split(b"\r\n\r\n")
                    if f.startswith(b"Event: FullyBooted"))
ACTION_ID_LINE = re.compile(rb"ActionID: [^\r\n]*")

REPLIES = {
    "ping": fixture("ping.txt"),
    "logoff": fixture("logoff.txt"),
    "coreshowchannels": fixture("coreshowchannels.txt"),
    "pjsipshowcontacts": fixture("pjsipshowcontacts.txt"),
    "queuestatus": fixture("queuestatus.txt"),
    "command": fixture("command.txt"),
    "hangup": fixture("error_no_such_channel.txt"),
    "originate": fixture("originate_failure.txt"),
}


def frames(data: bytes) -> list[bytes]:
    return [f + b"\r\n\r\n" for f in data.split(b"\r\n\r\n") if f]


def event_names(data: bytes) -> list[str]:
    return [m.group(1).decode() for m in re.finditer(rb"(?m)^Event: ([^\r\n]*)", data)]


class ReplayAsterisk:
    """A scripted AMI server speaking captured Asterisk 22 frames."""

    def __init__(self) -> None:
        self.replies: dict[str, bytes | Callable[[dict[str, str]], bytes | None]] = dict(REPLIES)
        self.accept_login = True
        self.booted = True  # False: Asterisk still loads modules (no FullyBooted at login)
        self.banner = BANNER
        self.ignored: set[str] = set()          # actions never answered
        self.actions: list[dict[str, str]] = []
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._silent: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> ReplayAsterisk:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._server is not None:
            await self._server.wait_closed()

    def push(self, data: bytes) -> None:
        """Send raw bytes to every live connection (events, garbage, anything)."""
        for writer in self._writers:
            if writer not in self._silent:
                writer.write(data)

    def drop(self) -> None:
        """The link breaks (RST): every connection is aborted."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def go_silent(self) -> None:
        """Current connections stay open but never send another byte (a wedged link)."""
        self._silent.update(self._writers)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action", "").lower() == name.lower()]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._writers.append(writer)
        writer.write(self.banner)
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action = dict(line.split(": ", 1) for line in
                              raw.decode().strip().split("\r\n") if ": " in line)
                self.actions.append(action)
                reply = self._reply(action)
                if reply and writer not in self._silent:
                    writer.write(reply)
                    await writer.drain()
                if action.get("Action", "").lower() == "logoff" or (
                        action.get("Action", "").lower() == "login" and not self.accept_login):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    def _reply(self, action: dict[str, str]) -> bytes | None:
        name = action.get("Action", "").lower()
        action_id = action.get("ActionID", "").encode()
        if name == "login":
            ok = self.accept_login and action.get("Secret") == SECRET
            reply: bytes | None = LOGIN_REPLY if ok else LOGIN_FAIL
            if ok and not self.booted:
                reply = LOGIN_REPLY.replace(FULLY_BOOTED, b"")
        elif name in self.ignored:
            return None
        else:
            template = self.replies.get(name, fixture("error_unknown_action.txt"))
            reply = template(action) if callable(template) else template
        if reply is None:
            return None
        return ACTION_ID_LINE.sub(b"ActionID: " + action_id, reply)


class Recorder:
    """A subscriber that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[Sequence[AmiMessage]] = []

    def __call__(self, batch: Sequence[AmiMessage]) -> None:
        self.batches.append(batch)

    @property
    def names(self) -> list[str]:
        return [m.name for batch in self.batches for m in batch]

    async def wait_names(self, expected_tail: list[str], timeout: float = 3.0) -> None:
        end = time.monotonic() + timeout
        while self.names[-len(expected_tail):] != expected_tail:
            if time.monotonic() > end:
                raise AssertionError(f"got {self.names}, wanted it to end with {expected_tail}")
            await asyncio.sleep(0.01)


def make_client(server: ReplayAsterisk, **kwargs: object) -> AmiClient:
    options: dict[str, object] = dict(action_timeout=2.0, ping_interval=0.2, ping_timeout=0.6,
                                      connect_timeout=1.0, reconnect_backoff=(0.05, 0.4))
    options.update(kwargs)
    return AmiClient("127.0.0.1", server.port, "test", SECRET, **options)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> ReplayAsterisk:
    srv = await ReplayAsterisk().start()
    yield srv
    await srv.close()


@pytest.fixture
async def running(server: ReplayAsterisk) -> tuple[AmiClient, Recorder]:
    client = make_client(server)
    recorder = Recorder()
    client.subscribe(recorder)
    await client.start()
    await client.wait_up(3)
    yield client, recorder
    await client.stop()


# -- login ---------------------------------------------------------------------------------


async def test_login_ok_then_events_after_login_arrive(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    assert client.up
    await recorder.wait_names(["FullyBooted", "SuccessfulAuth"])
    login = server.actions_named("Login")[0]
    assert login == {"Action": "Login", "ActionID": login["ActionID"], "Username": "test",
                     "Secret": SECRET, "Events": "on"}
    assert client.stats["connects"] == 1 and client.stats["reconnects"] == 0


async def test_login_refused_is_reported_and_retried(server: ReplayAsterisk) -> None:
    server.accept_login = False
    client = make_client(server)
    await client.start()
    with pytest.raises(AmiLinkDown, match="Authentication failed"):
        await client.wait_up(0.5)
    assert not client.up
    assert len(server.actions_named("Login")) >= 2  # backoff retries go on
    with pytest.raises(AmiLinkDown, match="Authentication failed"):
        await client.action("Ping")
    server.accept_login = True  # e.g. manager.conf fixed and reloaded
    await client.wait_up(2)
    await client.stop()


async def test_a_peer_that_is_not_asterisk_is_refused(server: ReplayAsterisk) -> None:
    server.banner = b"SSH-2.0-OpenSSH_9.2\r\n"
    client = make_client(server)
    await client.start()
    with pytest.raises(AmiLinkDown, match="not an Asterisk Call Manager banner"):
        await client.wait_up(0.5)
    await client.stop()
    assert server.actions == []


async def test_connect_refused_then_asterisk_comes_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AmiClient("127.0.0.1", port, "test", SECRET, reconnect_backoff=(0.05, 0.2))
    await client.start()
    with pytest.raises(AmiLinkDown, match="cannot connect"):
        await client.wait_up(0.3)
    srv = await ReplayAsterisk().start(port)
    try:
        await client.wait_up(2)
        assert client.up
    finally:
        await client.stop()
        await srv.close()


# -- events ---------------------------------------------------------------------------------


async def test_a_calls_events_arrive_in_order_and_in_batches(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    await recorder.wait_names(["FullyBooted", "SuccessfulAuth"])
    call = fixture("call_playback.txt")
    expected = event_names(call)
    assert len(expected) == 27
    server.push(call)
    await recorder.wait_names(expected)
    assert recorder.names == ["FullyBooted", "SuccessfulAuth", *expected]
    assert client.stats["events"] == 29
    assert client.stats["batches"] < 29  # one loop wake-up per batch, not per event
    assert client.stats["unmatched_responses"] == 1  # the capture's Originate reply
    hangups = [m for b in recorder.batches for m in b if m.name == "Hangup"]
    assert [h.get("Uniqueid") for h in hangups] == ["cap-call-1;2", "cap-call-1"]
    assert all(isinstance(b, tuple) for b in recorder.batches)
    assert client.stats["last_lag"] >= 0 and client.stats["max_lag"] < 1.0


async def test_unknown_events_pass_through(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    _, recorder = running
    server.push(b"Event: RTCPSent\r\nChannel: PJSIP/x\r\nSSRC: 0x1\r\n\r\n"
                b"Event: SomethingAsterisk23Adds\r\nX: 1\r\n\r\n")
    await recorder.wait_names(["RTCPSent", "SomethingAsterisk23Adds"])


async def test_a_raising_subscriber_does_not_stop_delivery(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running

    def broken(batch: Sequence[AmiMessage]) -> None:
        raise RuntimeError("bug in a handler")

    client.subscribe(broken)
    second = Recorder()
    client.subscribe(second)
    server.push(b"Event: One\r\n\r\n")
    await second.wait_names(["One"])
    server.push(b"Event: Two\r\n\r\n")
    await second.wait_names(["Two"])
    await recorder.wait_names(["One", "Two"])
    assert client.stats["handler_errors"] == 2
    assert client.up


# -- actions --------------------------------------------------------------------------------


async def test_action_resolves_with_its_response(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    pong = await client.action("Ping")
    assert pong.is_response and pong.name == "Success" and pong.get("Ping") == "Pong"
    output = await client.action("Command", Command="core show channels count")
    assert output.get_all("Output")[2] == "2 calls processed"
    sent = server.actions_named("Command")[0]
    assert sent["Command"] == "core show channels count"
    assert sent["ActionID"] == output.action_id


async def test_concurrent_actions_each_get_their_own_response(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    replies = await asyncio.gather(*(client.action("Ping") for _ in range(50)),
                                   client.action("Command", Command="x"))
    ids = [r.action_id for r in replies]
    assert len(set(ids)) == 51
    assert replies[-1].get_all("Output")


async def test_response_error_raises_action_failed(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    with pytest.raises(AmiActionFailed, match="Hangup failed: No such channel"):
        await client.action("Hangup", Channel="PJSIP/nosuch-00000000")
    with pytest.raises(AmiActionFailed, match="Invalid/unknown command"):
        await client.action("NoSuchAction")
    assert client.up and client.stats["action_errors"] == 2


async def test_action_timeout_and_the_late_answer_is_harmless(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    server.ignored.add("status")
    started = time.monotonic()
    with pytest.raises(AmiActionTimeout, match=r"Status .* within 0.3 s"):
        await client.action("Status", _timeout=0.3)
    assert 0.29 <= time.monotonic() - started < 0.6
    late_id = server.actions_named("Status")[0]["ActionID"]
    server.push(f"Response: Success\r\nActionID: {late_id}\r\n\r\n".encode())
    await server.wait_for(lambda: client.stats["unmatched_responses"] >= 1)
    assert client.up and (await client.action("Ping")).get("Ping") == "Pong"
    assert client.stats["action_timeouts"] == 1


async def test_a_field_that_would_inject_lines_is_refused_before_sending(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    with pytest.raises(AmiProtocolError, match="CR/LF"):
        await client.action("Originate", Channel="Local/1@x",
                            CallerID="evil\r\n\r\nAction: Hangup\r\nChannel: /.*/")
    await client.action("Ping")
    assert server.actions_named("Originate") == [] and server.actions_named("Hangup") == []


async def test_originate_response_is_an_event_not_the_originate_reply(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    reply = await client.action("Originate", Channel="PJSIP/agent1001", Application="Echo",
                                Async="true", Timeout="2000", ChannelId="cap-fail-2")
    assert reply.name == "Success" and reply.get("Message") == "Originate successfully queued"
    await recorder.wait_names(["OriginateResponse", "Hangup"])
    event = next(m for b in recorder.batches for m in b if m.name == "OriginateResponse")
    assert event.is_event and event.get("Response") == "Failure" and event.get("Reason") == "3"
    assert event.action_id == reply.action_id  # the capture's ActionID, rewritten
    assert event.get("Uniqueid") == "cap-fail-2"


# -- EventList aggregation ------------------------------------------------------------------


async def test_eventlists_are_aggregated_by_action_id(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    await recorder.wait_names(["FullyBooted", "SuccessfulAuth"])
    channels = await client.action_list("CoreShowChannels")
    assert channels.response.get("EventList") == "start"
    assert [e.get("Channel") for e in channels.events] == [
        "Local/200@test-00000001;1", "Local/200@test-00000001;2"]
    assert channels.complete is not None and channels.complete.get("ListItems") == "2"
    queue = await client.action_list("QueueStatus")
    assert [e.name for e in queue.events] == ["QueueParams", "QueueMember", "QueueMember"]
    contacts = await client.action_list("PJSIPShowContacts")
    assert [e.get("Uri") for e in contacts.events] == ["sip:agent1003@127.0.0.1:23083"]
    assert recorder.names == ["FullyBooted", "SuccessfulAuth"]  # list events are replies
    assert client.stats["list_events"] == 6


async def test_empty_lists(server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    server.replies["coreshowchannels"] = fixture("coreshowchannels_empty.txt")
    server.replies["pjsipshowcontacts"] = fixture("pjsipshowcontacts_none.txt")
    empty = await client.action_list("CoreShowChannels")
    assert empty.events == [] and empty.complete is not None
    none = await client.action_list("PJSIPShowContacts")  # Asterisk says Error: No ... found
    assert none.events == [] and none.complete is None
    assert none.response.get("Message") == "No Contacts found"


def without(data: bytes, *lines: bytes) -> bytes:
    """A capture with the given header lines removed (as older Asterisk versions send it)."""
    for line in lines:
        data = data.replace(line + b"\r\n", b"")
    return data


async def test_a_list_without_eventlist_start_is_collected_to_its_complete_event(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder],
        caplog: pytest.LogCaptureFixture) -> None:
    client, recorder = running
    await recorder.wait_names(["FullyBooted", "SuccessfulAuth"])
    server.replies["coreshowchannels"] = without(fixture("coreshowchannels.txt"),
                                                 b"EventList: start")
    server.replies["queuestatus"] = without(fixture("queuestatus.txt"), b"EventList: start",
                                            b"EventList: Complete")
    started = time.monotonic()
    channels = await client.action_list("CoreShowChannels")
    queue = await client.action_list("QueueStatus")
    assert time.monotonic() - started < 0.4           # ended by Complete, not by the quiet
    assert [e.get("Channel") for e in channels.events] == [
        "Local/200@test-00000001;1", "Local/200@test-00000001;2"]
    assert channels.complete is not None and channels.warning == ""
    assert [e.name for e in queue.events] == ["QueueParams", "QueueMember", "QueueMember"]
    assert queue.complete is not None and queue.complete.name == "QueueStatusComplete"
    assert recorder.names == ["FullyBooted", "SuccessfulAuth"]
    stats = client.stats
    assert (stats["lists_unannounced"], stats["lists_without_complete"]) == (2, 0)
    assert "CoreShowChannels: Asterisk answered without 'EventList: start'" in caplog.text


async def test_a_list_without_eventlist_or_complete_ends_after_a_quiet_period(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder],
        caplog: pytest.LogCaptureFixture) -> None:
    client, recorder = running  # list_quiet 0.5 s, action timeout 2 s
    reply = frames(without(fixture("pjsipshowcontacts.txt"), b"EventList: start"))
    server.replies["pjsipshowcontacts"] = b"".join(reply[:-1])        # no ContactListComplete
    started = time.monotonic()
    contacts = await client.action_list("PJSIPShowContacts")
    assert 0.45 <= time.monotonic() - started < 1.5
    assert [e.get("Uri") for e in contacts.events] == ["sip:agent1003@127.0.0.1:23083"]
    assert contacts.complete is None
    assert "no 'EventList: start'" in contacts.warning and "1 event(s)" in contacts.warning
    assert client.stats["lists_without_complete"] == 1
    assert "may be incomplete" in caplog.text
    server.replies["pjsipshowcontacts"] = reply[0]                    # the Response alone
    nothing = await client.action_list("PJSIPShowContacts")
    assert nothing.events == [] and "0 event(s)" in nothing.warning   # empty, but said so
    assert client.stats["lists_without_complete"] == 2
    assert recorder.names == ["FullyBooted", "SuccessfulAuth"]


async def test_an_unannounced_list_is_returned_at_the_action_timeout_if_that_comes_first(
        server: ReplayAsterisk) -> None:
    client = make_client(server, list_quiet=5.0)
    await client.start()
    await client.wait_up(3)
    reply = frames(without(fixture("coreshowchannels.txt"), b"EventList: start"))
    server.replies["coreshowchannels"] = b"".join(reply[:-1])
    started = time.monotonic()
    channels = await client.action_list("CoreShowChannels", _timeout=0.3)
    assert 0.29 <= time.monotonic() - started < 1.0
    assert len(channels.events) == 2 and "0.3 s action timeout" in channels.warning
    assert client.stats["action_timeouts"] == 0
    await client.stop()


async def test_an_announced_list_without_its_complete_event_times_out_loudly(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    server.replies["coreshowchannels"] = b"".join(frames(fixture("coreshowchannels.txt"))[:-1])
    with pytest.raises(AmiActionTimeout, match=r"2 list event\(s\) came, no \.\.\.Complete"):
        await client.action_list("CoreShowChannels", _timeout=0.3)


async def test_other_events_interleaved_with_a_list_go_to_subscribers(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    parts = frames(fixture("coreshowchannels.txt"))
    newchannel = frames(fixture("call_playback.txt"))[1]
    server.replies["coreshowchannels"] = b"".join([parts[0], newchannel, parts[1], parts[2],
                                                   newchannel, parts[3]])
    result = await client.action_list("CoreShowChannels")
    assert [e.name for e in result.events] == ["CoreShowChannel", "CoreShowChannel"]
    await recorder.wait_names(["Newchannel", "Newchannel"])


async def test_hangup_by_regex_is_a_list_and_the_hangups_are_events(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    server.replies["hangup"] = fixture("hangup_regex.txt")
    result = await client.action_list("Hangup", Channel="/^Local\\/200@test.*$/")
    assert [e.get("Channel") for e in result.events] == [
        "Local/200@test-00000001;1", "Local/200@test-00000001;2"]
    await recorder.wait_names(["DeviceStateChange", "DeviceStateChange"])
    assert recorder.names.count("Hangup") == 2
    assert "ChannelHungup" not in recorder.names


# -- malformed input ------------------------------------------------------------------------


async def test_malformed_frames_are_logged_counted_skipped_and_the_link_stays_up(
        server: ReplayAsterisk, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(server, max_frame_bytes=4096)
    recorder = Recorder()
    client.subscribe(recorder)
    await client.start()
    await client.wait_up(3)
    caplog.set_level(logging.WARNING, logger="callflow.ami.client")
    server.push(b"\x00\x01\xfe\xffgarbage\r\n\r\n"                      # no head: skipped
                b"Event: Hangup\r\nUniqueid: 1\r\nno colon here\r\n\r\n"  # repaired
                b"Event: Newchannel\r\nCallerIDName: Jos\xe9\r\n\r\n"     # invalid UTF-8
                + b"Event: Huge\r\nPad: " + b"p" * 20000 + b"\r\n\r\n"    # > 4096: skipped
                + b"Event: StillHere\r\n\r\n")
    await recorder.wait_names(["Hangup", "Newchannel", "StillHere"])
    stats = client.stats
    assert stats["malformed"] == 4
    assert stats["malformed_frames"] == 2 and stats["malformed_lines"] == 1
    assert stats["decode_errors"] == 1
    text = caplog.text
    assert "malformed frame from Asterisk: frame has neither an Event nor a Response" in text
    assert "longer than 4096 bytes" in text and "invalid UTF-8" in text
    assert "no colon here" in text
    assert client.up and (await client.action("Ping")).get("Ping") == "Pong"
    assert client.stats["connects"] == 1
    await client.stop()


ENDING = (FIXTURES / "endings" / "caller_bye_talking.txt").read_bytes()


def ending_events() -> list[bytes]:
    """A real call's frames (Asterisk 22), without terminators or stray empty lines."""
    return [f.strip(b"\r\n") for f in ENDING.split(b"\r\n\r\n") if f.strip(b"\r\n")]


async def test_glued_frames_are_split_counted_and_logged_once(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder],
        caplog: pytest.LogCaptureFixture) -> None:
    """Every other empty line of a real call broken: every event still arrives."""
    client, recorder = running
    await recorder.wait_names(["FullyBooted", "SuccessfulAuth"])
    caplog.set_level(logging.DEBUG, logger="callflow.ami.client")
    events = ending_events()
    separators = [b"\r\n\n", b"\r\n\r", b"\r\n"]
    broken = 0
    stream = b""
    for i, frame in enumerate(events):
        if i % 2 == 0 and i + 1 < len(events):
            stream += frame + separators[broken % len(separators)]
            broken += 1
        else:
            stream += frame + b"\r\n\r\n"
    server.push(stream)
    expected = [f.split(b"\r\n", 1)[0][len(b"Event: "):].decode() for f in events]
    await recorder.wait_names(expected)
    assert recorder.names == ["FullyBooted", "SuccessfulAuth", *expected]
    stats = client.stats
    assert stats["bad_separators"] == broken == stats["malformed"]
    assert stats["malformed_frames"] == stats["malformed_lines"] == 0
    repaired = [r for r in caplog.records if "repaired frame" in r.getMessage()]
    assert len(repaired) == broken
    assert [r.levelno for r in repaired] == [logging.WARNING] + [logging.DEBUG] * (broken - 1)
    assert "first of its kind" in repaired[0].getMessage()
    assert "bad_separators" in repaired[0].getMessage()


async def test_a_response_glued_to_an_event_still_answers_its_action(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, recorder = running
    event = ending_events()[0]
    server.replies["ping"] = event + b"\r\n" + fixture("ping.txt")     # no empty line
    started = time.monotonic()
    pong = await client.action("Ping")
    assert pong.get("Ping") == "Pong" and time.monotonic() - started < 0.5
    await recorder.wait_names([event.split(b"\r\n", 1)[0][len(b"Event: "):].decode()])
    assert client.stats["bad_separators"] == 1


async def test_a_malformed_reply_fails_its_action_at_once(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    server.replies["status"] = b"ActionID: x\r\nthis is not AMI\r\n\r\n"
    started = time.monotonic()
    with pytest.raises(AmiProtocolError, match="Status: its response was malformed"):
        await client.action("Status")
    assert time.monotonic() - started < 0.5  # not the 2 s action timeout
    assert client.up


# -- link loss, reconnect, resync --------------------------------------------------------


async def test_dropped_link_reconnects_and_resyncs_before_new_events(
        server: ReplayAsterisk) -> None:
    client = make_client(server)
    log: list[str] = []
    snapshots: list[int] = []

    async def resync() -> None:
        log.append("resync-start")
        result = await client.action_list("CoreShowChannels")
        snapshots.append(len(result.events))
        log.append("resync-done")

    client.subscribe(lambda batch: log.extend(m.name for m in batch))
    client.on_connected(resync)
    await client.start()
    await client.wait_up(3)
    assert log[:2] == ["resync-start", "resync-done"]  # before FullyBooted was delivered
    assert log[2:4] == ["FullyBooted", "SuccessfulAuth"]

    # the next login: Asterisk sends an event while the resync is still running
    base = REPLIES["coreshowchannels"]
    server.replies["coreshowchannels"] = b"Event: DuringResync\r\n\r\n" + base
    log.clear()
    server.drop()
    await server.wait_for(lambda: "resync-done" in log and client.up)
    assert server.connections == 2
    assert log.index("resync-done") < log.index("DuringResync")
    assert log.index("resync-done") < log.index("FullyBooted")
    assert snapshots == [2, 2]
    assert client.stats["reconnects"] == 1 and client.stats["disconnects"] == 1
    server.push(b"Event: AfterReconnect\r\n\r\n")
    await server.wait_for(lambda: "AfterReconnect" in log)
    await client.stop()


async def test_the_resync_waits_until_asterisk_has_booted(server: ReplayAsterisk) -> None:
    """Asterisk accepts a login while it still loads modules (measured after a restart:
    the resync's PJSIPShowContacts was an unknown command 0.5 s after the port opened, and
    the whole resync was lost): the resync waits for FullyBooted, events stay held."""
    server.booted = False
    client = make_client(server)
    log: list[str] = []

    async def resync() -> None:
        log.append("resync")

    client.subscribe(lambda batch: log.extend(m.name for m in batch))
    client.on_connected(resync)
    await client.start()
    await server.wait_for(lambda: bool(server.actions_named("Login")))
    await asyncio.sleep(0.3)
    assert log == [] and not client.up
    server.push(FULLY_BOOTED)
    await client.wait_up(2)
    await server.wait_for(lambda: len(log) >= 3)
    assert log[:3] == ["resync", "SuccessfulAuth", "FullyBooted"]
    assert client.stats["boot_waits"] == 1 and client.stats["boot_waits_timed_out"] == 0
    await client.stop()


async def test_no_fully_booted_at_all_delays_the_resync_by_boot_timeout_only(
        server: ReplayAsterisk) -> None:
    """A login whose events leave out the system class never hears FullyBooted."""
    server.booted = False
    client = make_client(server, boot_timeout=0.3)
    resyncs: list[float] = []

    async def resync() -> None:
        resyncs.append(time.monotonic())

    client.on_connected(resync)
    started = time.monotonic()
    await client.start()
    await client.wait_up(2)
    assert len(resyncs) == 1 and resyncs[0] - started >= 0.3
    assert client.stats["boot_waits_timed_out"] == 1
    await client.stop()


async def test_an_action_in_flight_fails_at_once_when_the_link_drops(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running
    server.ignored.add("status")
    task = asyncio.create_task(client.action("Status"))
    await server.wait_for(lambda: bool(server.actions_named("Status")))
    started = time.monotonic()
    server.drop()
    with pytest.raises(AmiLinkDown, match="link lost while waiting for Status"):
        await task
    assert time.monotonic() - started < 0.5
    await client.wait_up(2)


async def test_asterisk_shutdown_then_back(server: ReplayAsterisk) -> None:
    client = make_client(server)
    resyncs: list[float] = []

    async def resync() -> None:
        resyncs.append(time.monotonic())

    recorder = Recorder()
    client.subscribe(recorder)
    client.on_connected(resync)
    await client.start()
    await client.wait_up(3)
    port = server.port
    server.push(fixture("shutdown.txt").split(b"Message: Authentication accepted\r\n\r\n")[1])
    await recorder.wait_names(["Shutdown"])
    await server.close()  # Asterisk is gone: connection refused for a while
    await asyncio.sleep(0.5)
    assert not client.up
    with pytest.raises(AmiLinkDown):
        await client.action("Ping")
    back = await ReplayAsterisk().start(port)
    try:
        await client.wait_up(2)
        assert len(resyncs) == 2
        assert (await client.action("Ping")).get("Ping") == "Pong"
    finally:
        await client.stop()
        await back.close()


async def test_watchdog_detects_a_silent_link_within_ping_timeout(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running  # ping_interval 0.2 s, ping_timeout 0.6 s
    await asyncio.sleep(0.5)
    assert client.up and client.stats["pongs"] >= 2
    server.go_silent()  # socket open, nothing ever comes back
    started = time.monotonic()
    # (polling ``up`` could miss the short down window: the reconnect is immediate)
    await server.wait_for(lambda: client.stats["watchdog_trips"] >= 1, timeout=2)
    detected = time.monotonic() - started
    assert detected <= 0.6 + 0.1
    await server.wait_for(lambda: server.connections == 2)
    await client.wait_up(2)  # a fresh connection, which answers
    assert client.stats["watchdog_trips"] == 1 and client.stats["reconnects"] == 1


async def test_a_stalled_event_loop_is_not_mistaken_for_a_dead_link(
        server: ReplayAsterisk, running: tuple[AmiClient, Recorder]) -> None:
    client, _ = running  # ping_timeout 0.6 s
    await asyncio.sleep(0.3)
    time.sleep(1.0)  # a handler hogs the loop: no Ping goes out, no pong comes back
    await asyncio.sleep(0.5)
    assert client.stats["watchdog_trips"] == 0 and client.stats["connects"] == 1
    assert client.stats["loop_stalls"] == 1
    assert client.up


async def test_stop_is_quick_while_the_reader_is_blocked(server: ReplayAsterisk) -> None:
    client = make_client(server, ping_interval=5.0, ping_timeout=10.0)
    await client.start()
    await client.wait_up(3)
    server.go_silent()  # nothing more comes, Logoff will not be answered
    session = client._session
    assert session is not None
    started = time.monotonic()
    await client.stop()
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.05)
    assert session.conn.finished and session.lost.done()
    assert not [t for t in threading.enumerate() if t.name.startswith(client._label)]
    assert not client.up
    with pytest.raises(AmiLinkDown):
        await client.action("Ping")


async def test_stop_while_connecting_is_quick() -> None:
    client = AmiClient("10.255.255.1", 9, "test", SECRET, connect_timeout=3.0)
    await client.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await client.stop()
    assert time.monotonic() - started < 0.5


async def test_action_before_start_is_link_down() -> None:
    client = AmiClient("127.0.0.1", 9, "test", SECRET)
    with pytest.raises(AmiLinkDown, match="link is down"):
        await client.action("Ping")
    with pytest.raises(ValueError, match="ping_interval"):
        AmiClient("127.0.0.1", 9, "test", SECRET, ping_interval=2.0, ping_timeout=2.0)


# -- the connection cannot end silently ---------------------------------------------------


async def _connection(sink: object) -> tuple[_AmiConnection, socket.socket, list[object]]:
    """An _AmiConnection on one end of a socket pair; the test writes the other end."""
    left, right = socket.socketpair()
    lost: list[object] = []
    banners: list[bool] = []
    conn = _AmiConnection("t", 1 << 20, sink, lambda: banners.append(True),  # type: ignore[arg-type]
                          lost.append)
    await asyncio.get_running_loop().create_connection(lambda: conn, sock=left)
    return conn, right, lost


async def _until(check: object, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_a_bug_downstream_of_the_read_ends_the_link_loudly() -> None:
    """A bug in what handles a chunk ends the connection with on_lost, never silently."""

    def sink(conn: _AmiConnection, parsed: object) -> None:
        raise RuntimeError("sink bug")

    conn, right, lost = await _connection(sink)
    right.sendall(BANNER + b"Event: X\r\n\r\n")
    await _until(lambda: lost)
    assert len(lost) == 1 and isinstance(lost[0], RuntimeError)
    assert "reader crashed" in conn.end_reason
    assert conn.finished
    right.close()


async def test_eof_ends_the_link_once_with_its_reason() -> None:
    got: list[str] = []

    def sink(conn: _AmiConnection, parsed: object) -> None:
        got.extend(m.name for m in parsed.messages)  # type: ignore[attr-defined]

    conn, right, lost = await _connection(sink)
    right.sendall(BANNER + b"Event: A\r\n\r\n")
    right.sendall(b"Event: B\r\n\r\n")
    await _until(lambda: got == ["A", "B"])
    assert got == ["A", "B"]
    right.close()  # EOF
    await _until(lambda: lost)
    assert lost == [None]
    assert conn.end_reason == "Asterisk closed the connection (EOF)"
    with pytest.raises(AmiLinkDown):
        conn.write(b"Action: Ping\r\n\r\n")
    conn.disconnect()  # again: harmless, on_lost is not told twice
    await asyncio.sleep(0.02)
    assert lost == [None]


# -- event filters (issue 20: Asterisk sends only what the engine reads) -------------------

FILTER_OK = b"Response: Success\r\nActionID: x\r\nMessage: Success\r\n\r\n"


async def test_each_login_asks_for_the_wanted_events_only(server: ReplayAsterisk) -> None:
    server.replies["filter"] = FILTER_OK
    client = make_client(server)
    client.only_events(lambda: ["Hangup", "Newchannel"])
    await client.start()
    await client.wait_up(3)
    filters = server.actions_named("Filter")
    assert [(f["Operation"], f["MatchCriteria"]) for f in filters] == [
        ("Add", "name(FullyBooted)"), ("Add", "name(Hangup)"), ("Add", "name(Newchannel)")]
    assert all("Filter" not in f for f in filters)  # name() alone: no regex for Asterisk
    assert client.stats["filters"] == 3
    server.drop()  # a new session has no filters: they are asked again
    await server.wait_for(lambda: len(server.actions_named("Filter")) == 6)
    await client.stop()


async def test_a_refused_filter_means_no_filters_not_missing_events(
        server: ReplayAsterisk) -> None:
    """Include filters are all-or-nothing: a partial set would hide events silently."""
    server.replies["filter"] = lambda action: (
        fixture("error_unknown_action.txt") if "Hangup" in action["MatchCriteria"]
        else FILTER_OK)
    client = make_client(server)
    client.only_events(lambda: ["Hangup", "Newchannel"])
    await client.start()
    await client.wait_up(3)
    assert client.stats["filters_refused"] == 1 and server.connections == 2
    assert len(server.actions_named("Filter")) == 3  # the second login asked for none
    server.push(b"Event: UserEvent\r\nPrivilege: user,all\r\n\r\n")
    await client.stop()
