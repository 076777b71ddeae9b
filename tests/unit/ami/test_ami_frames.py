"""The AMI wire format, driven with bytes captured from a real Asterisk 22 (no sockets).

Fixtures: tests/fixtures/ami/*.txt are raw CRLF byte streams recorded from Asterisk
22.10.1 (see that folder's README). A captured response carries the ActionID the
capture script used (``csc-1``...), which these tests check as-is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callflow.ami.frames import AmiFrameParser, AmiMessage, Parsed, encode_action
from callflow.errors import AmiProtocolError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(data: bytes, *, banner: bytes = BANNER, chunk: int = 0,
          max_frame_bytes: int = 1 << 20) -> tuple[AmiFrameParser, Parsed]:
    """Feed ``data`` (after a banner unless it has one), whole or ``chunk`` bytes at a time."""
    parser = AmiFrameParser(max_frame_bytes)
    stream = data if data.startswith(b"Asterisk") else banner + data
    total = Parsed()
    step = chunk or len(stream)
    for at in range(0, len(stream), step):
        part = parser.feed(stream[at:at + step], float(at))
        total.messages.extend(part.messages)
        total.problems.extend(part.problems)
    return parser, total


def names(messages: list[AmiMessage]) -> list[str]:
    return [m.name for m in messages]


ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.txt"))


def test_there_are_captures() -> None:
    assert len(ALL_FIXTURES) >= 15


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_capture_parses_cleanly(name: str) -> None:
    _, out = parse(fixture(name))
    assert out.problems == []
    assert out.messages
    data = fixture(name)
    body = data.split(b"\r\n", 1)[1] if data.startswith(b"Asterisk") else data
    assert len(out.messages) == body.count(b"\r\n\r\n")


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1000])
def test_framing_does_not_depend_on_how_tcp_splits_the_stream(chunk: int) -> None:
    whole = parse(fixture("call_playback.txt"))[1].messages
    split = parse(fixture("call_playback.txt"), chunk=chunk)[1].messages
    assert [m.fields for m in split] == [m.fields for m in whole]
    assert len(whole) == 28


def test_parsed_messages_are_ordinary_frozen_messages() -> None:
    _, out = parse(b"Event: X\r\nPrivilege: call,all\r\nA: 1\r\n\r\n")
    message = out.messages[0]
    built = AmiMessage("X", {"Event": "X", "Privilege": "call,all", "A": "1"},
                       message.received_at, "event")
    assert message == built and hash(message) == hash(built)
    with pytest.raises(AttributeError):
        message.name = "Y"  # type: ignore[misc]


def test_banner_and_login() -> None:
    parser, out = parse(fixture("login_ok.txt"))
    assert parser.version == "11.0.0"
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert names(out.messages) == ["Success", "FullyBooted", "SuccessfulAuth"]
    login = out.messages[0]
    assert login.is_response and login.action_id == "login-1"
    assert login.get("Message") == "Authentication accepted"
    assert out.messages[1].is_event and out.messages[1].get("Status") == "Fully Booted"


def test_repeated_keys_become_lists_in_wire_order() -> None:
    _, out = parse(fixture("coreshowchannels.txt"))
    channel = out.messages[2]
    assert channel.name == "CoreShowChannel"
    assert channel.fields["ChanVariable"] == ["CF_CALL=long-200", "CF_TAG="]
    assert channel.get("ChanVariable") == "CF_CALL=long-200"
    assert channel.get_all("ChanVariable") == ["CF_CALL=long-200", "CF_TAG="]
    assert channel.get("AccountCode") == ""
    assert channel.get("Missing", "dflt") == "dflt" and channel.get_all("Missing") == []
    _, out = parse(fixture("command.txt"))
    assert out.messages[0].get_all("Output") == [
        "0 active channels", "0 active calls", "2 calls processed"]


def test_originate_response_is_an_event_even_with_a_response_key() -> None:
    _, out = parse(fixture("originate_failure.txt"))
    orig = [m for m in out.messages if m.name == "OriginateResponse"]
    assert len(orig) == 1
    event = orig[0]
    assert event.is_event and not event.is_response
    assert event.get("Response") == "Failure" and event.get("Reason") == "3"
    assert event.action_id == "orig-fail-2" and event.get("Uniqueid") == "cap-fail-2"


def test_keys_asterisk_really_sends_are_kept() -> None:
    _, out = parse(fixture("call_playback.txt"))
    orig = next(m for m in out.messages if m.name == "OriginateResponse")
    assert orig.get("ChanVariable(Local/100@test-00000000;1)") == "CF_CALL="
    assert orig.get_all("ChanVariable(Local/100@test-00000000;1)") == ["CF_CALL=", "CF_TAG=tagged"]
    test_event = next(m for m in out.messages if m.name == "TestEvent")
    assert test_event.get_all("State")[0] == test_event.get_all("State")[1] == "CallIDChange"
    _, out = parse(fixture("userevent.txt"))
    assert out.messages[1].get("Header1") == "x: y"


def test_a_bare_newline_inside_a_value_is_not_a_line_end() -> None:
    """Asterisk 22 ends this message with LF before the CRLF (captured as-is)."""
    _, out = parse(fixture("pjsipshowcontacts_none.txt"))
    assert out.problems == []
    assert out.messages[0].name == "Error"
    assert out.messages[0].get("Message") == "No Contacts found"


def test_a_frame_without_event_or_response_is_skipped_and_reported() -> None:
    _, out = parse(b"\x00\xffgarbage with no colon\r\n\r\nActionID: x7\r\nFoo: bar\r\n\r\n"
                   b"Event: Hangup\r\nUniqueid: 1\r\n\r\n")
    assert names(out.messages) == ["Hangup"]
    assert [p.skipped for p in out.problems] == [True, True]
    assert "neither an Event nor a Response" in out.problems[1].reason
    assert out.problems[1].action_id == "x7"


def test_a_bad_line_is_dropped_and_the_event_still_delivered() -> None:
    _, out = parse(b"Event: Hangup\r\nUniqueid: 1700.1\r\nthis line has no colon\r\n"
                   b"bad key: x\r\n: empty key\r\nCause: 16\r\n\r\n")
    assert names(out.messages) == ["Hangup"]
    assert dict(out.messages[0].fields) == {"Event": "Hangup", "Uniqueid": "1700.1", "Cause": "16"}
    assert len(out.problems) == 1 and not out.problems[0].skipped
    assert "3 line(s)" in out.problems[0].reason
    assert "this line has no colon" in out.problems[0].reason


def test_invalid_utf8_is_replaced_reported_and_delivered() -> None:
    _, out = parse(b"Event: Newchannel\r\nCallerIDName: Jos\xe9\r\nUniqueid: 2\r\n\r\n")
    assert out.messages[0].get("CallerIDName") == "Jos\ufffd"
    assert out.messages[0].get("Uniqueid") == "2"
    assert len(out.problems) == 1 and "invalid UTF-8" in out.problems[0].reason
    assert not out.problems[0].skipped


@pytest.mark.parametrize("chunk", [0, 100, 1000])
def test_a_huge_frame_is_discarded_and_the_stream_goes_on(chunk: int) -> None:
    huge = b"Event: Huge\r\nActionID: big-1\r\n" + b"X: " + b"y" * 5000 + b"\r\n\r\n"
    data = b"Event: Before\r\n\r\n" + huge + b"Event: After\r\nA: 1\r\n\r\n"
    parser, out = parse(data, chunk=chunk, max_frame_bytes=1024)
    assert names(out.messages) == ["Before", "After"]
    assert len(out.problems) == 1
    problem = out.problems[0]
    assert problem.skipped and "longer than 1024 bytes" in problem.reason
    assert problem.action_id == "big-1"
    assert problem.size >= 5000
    assert len(parser._buf) < 1024  # nothing of the huge frame is held


def test_the_buffer_never_holds_more_than_one_frame_limit() -> None:
    parser = AmiFrameParser(1024)
    parser.feed(BANNER, 0.0)
    for _ in range(100):
        parser.feed(b"z" * 1000, 0.0)
        assert len(parser._buf) <= 1024 + 1000
    out = parser.feed(b"\r\n\r\nEvent: Next\r\n\r\n", 0.0)
    assert names(out.messages) == ["Next"]
    assert out.problems[0].size >= 100_000


def test_stray_blank_lines_between_frames_are_ignored() -> None:
    _, out = parse(b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n")
    assert names(out.messages) == ["A", "B"] and out.problems == []


def test_not_an_asterisk_banner_is_a_protocol_error() -> None:
    parser = AmiFrameParser()
    with pytest.raises(AmiProtocolError, match="not an Asterisk Call Manager banner"):
        parser.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n", 0.0)
    parser = AmiFrameParser()
    with pytest.raises(AmiProtocolError, match="no AMI banner"):
        parser.feed(b"x" * 2000, 0.0)


def test_received_at_is_the_time_of_the_chunk_that_completed_the_frame() -> None:
    parser = AmiFrameParser()
    parser.feed(BANNER + b"Event: A\r\n", 1.0)
    out = parser.feed(b"\r\n", 2.5)
    assert out.messages[0].received_at == 2.5


def test_encode_action() -> None:
    data = encode_action("Originate", "a-1", {
        "Channel": "PJSIP/agent1001", "Variable": ["A=1", "B=2"], "CallerID": '"Zoë" <1>'})
    assert data == ("Action: Originate\r\nActionID: a-1\r\nChannel: PJSIP/agent1001\r\n"
                    "Variable: A=1\r\nVariable: B=2\r\nCallerID: \"Zoë\" <1>\r\n\r\n").encode()


@pytest.mark.parametrize("fields, message", [
    ({"CallerID": "x\r\nAction: Hangup"}, "CR/LF"),
    ({"Variable": ["ok=1", "bad=\n"]}, "CR/LF"),
    ({"ActionID": "mine"}, "set by the adapter"),
    ({"action": "Hangup"}, "set by the adapter"),
    ({"Bad Key": "x"}, "invalid header name"),
    ({"Timeout": 30000}, "must be a string"),
])
def test_encode_action_refuses_what_would_break_the_frame(fields: dict, message: str) -> None:
    with pytest.raises(AmiProtocolError, match=message):
        encode_action("Originate", "a-1", fields)


def test_encode_action_refuses_a_bad_action_name() -> None:
    with pytest.raises(AmiProtocolError, match="CR/LF"):
        encode_action("Ping\r\nAction: Hangup", "a-1", {})


# ---- two messages in one frame (issue 13, "Protocol edges") -----------------------------
#
# The broken inputs are real Asterisk 22 streams (tests/fixtures/ami/endings) with one or
# every empty line between two frames replaced by what a broken peer or relay sends.

ENDINGS = sorted(p.name for p in (FIXTURES / "endings").glob("*.txt"))

BROKEN_SEPARATORS = {
    "crlf + bare lf": b"\r\n\n",        # the empty line is a bare LF
    "crlf + bare cr": b"\r\n\r",        # the empty line is a bare CR, no LF
    "crlf + cr line": b"\r\n\r\r\n",    # the empty line holds a CR
    "missing": b"\r\n",                 # no empty line at all
    "lf + crlf": b"\n\r\n",             # the last line ends in LF, the empty line is CRLF
}


def ending_frames(name: str) -> list[bytes]:
    """The frames of a capture, without their terminators or the empty lines around them.

    (A TestEvent ends with one empty line too many: its next frame starts with CRLF.)
    """
    frames = fixture(f"endings/{name}").split(b"\r\n\r\n")
    return [f.strip(b"\r\n") for f in frames if f.strip(b"\r\n")]


def joined(frames: list[bytes], separators: dict[int, bytes]) -> bytes:
    """The frames with a proper terminator after each, except ``separators[i]`` after i."""
    return b"".join(f + separators.get(i, b"\r\n\r\n") for i, f in enumerate(frames))


def fields_of(out: Parsed) -> list[dict[str, object]]:
    return [dict(m.fields) for m in out.messages]


@pytest.mark.parametrize("name", ENDINGS)
def test_every_ending_capture_parses_cleanly(name: str) -> None:
    """No false split on real streams: TestEvent's extra CRLF, OriginateResponse, UserEvent."""
    _, out = parse(fixture(f"endings/{name}"))
    assert out.problems == []
    assert len(out.messages) == len(ending_frames(name))


@pytest.mark.parametrize("separator", BROKEN_SEPARATORS.values(), ids=BROKEN_SEPARATORS.keys())
@pytest.mark.parametrize("chunk", [0, 1, 7, 300])
def test_a_frame_glued_to_the_next_is_split_and_reported(separator: bytes, chunk: int) -> None:
    frames = ending_frames("caller_bye_talking.txt")
    hangup = next(i for i, f in enumerate(frames) if f.startswith(b"Event: Hangup\r\n"))
    clean = parse(joined(frames, {}))[1]
    _, out = parse(joined(frames, {hangup - 1: separator}), chunk=chunk)
    assert fields_of(out) == fields_of(clean)          # the Hangup is not swallowed
    assert len(out.problems) == 1
    problem = out.problems[0]
    assert (problem.kind, problem.skipped) == ("separator", False)
    assert "b'Event: Hangup'" in problem.reason and repr(separator) in problem.reason


def test_every_separator_of_a_call_broken_loses_nothing() -> None:
    frames = ending_frames("refer_attended.txt")
    kinds = list(BROKEN_SEPARATORS.values())
    broken = {i: kinds[i % len(kinds)] for i in range(len(frames) - 1)}
    clean = parse(joined(frames, {}))[1]
    _, out = parse(joined(frames, broken))
    assert fields_of(out) == fields_of(clean)
    assert [p.kind for p in out.problems] == ["separator"] * len(broken)
    assert not any(p.skipped for p in out.problems)


@pytest.mark.parametrize("separator", BROKEN_SEPARATORS.values(), ids=BROKEN_SEPARATORS.keys())
def test_a_response_glued_to_an_event_and_back(separator: bytes) -> None:
    """A second Response: or Event: key starts a message, whichever came first."""
    reply = [f for f in fixture("coreshowchannels.txt").split(b"\r\n\r\n") if f]
    event = ending_frames("caller_bye_talking.txt")[0]
    frames = [event, reply[0], reply[1]]
    _, out = parse(joined(frames, {0: separator, 1: separator}))
    assert [(m.kind, m.name) for m in out.messages] == [
        ("event", "TestEvent"), ("response", "Success"), ("event", "CoreShowChannel")]
    assert out.messages[1].action_id == "csc-1" and out.messages[1].get("EventList") == "start"
    assert [p.kind for p in out.problems] == ["separator", "separator"]


def test_originate_response_keeps_its_response_key_but_not_a_second_one() -> None:
    orig = next(f for f in fixture("call_playback.txt").split(b"\r\n\r\n")
                if f.startswith(b"Event: OriginateResponse"))
    _, out = parse(orig + b"\r\n\r\n")
    assert names(out.messages) == ["OriginateResponse"] and out.problems == []
    _, out = parse(joined([orig, orig, b"Response: Success\r\nActionID: x-1"],
                          {0: b"\r\n", 1: b"\r\n"}))
    assert [(m.kind, m.name) for m in out.messages] == [
        ("event", "OriginateResponse"), ("event", "OriginateResponse"), ("response", "Success")]
    assert out.messages[0].get("Response") == "Success" and len(out.problems) == 2


@pytest.mark.parametrize("junk", [b"\n", b"\r", b"\r\n\n", b"\n\r"])
def test_stray_cr_or_lf_between_frames_is_dropped_and_reported(junk: bytes) -> None:
    frames = ending_frames("caller_bye_waiting.txt")[:3]
    data = frames[0] + b"\r\n\r\n" + junk + frames[1] + b"\r\n\r\n" + junk + b"\r\n\r\n" \
        + frames[2] + b"\r\n\r\n"
    _, out = parse(data)
    assert fields_of(out) == fields_of(parse(joined(frames, {}))[1])
    assert [p.kind for p in out.problems] == ["separator", "separator"]
    assert not any(p.skipped for p in out.problems)
    assert "between frames" in out.problems[1].reason


def test_a_glued_piece_keeps_its_own_problems() -> None:
    _, out = parse(b"Event: A\r\nX: 1\r\nEvent: B\r\nno colon\r\nCallerIDName: Jos\xe9\r\n\r\n")
    assert [(m.name, m.get("X"), m.get("CallerIDName")) for m in out.messages] == [
        ("A", "1", ""), ("B", "", "Jos\ufffd")]
    assert [p.kind for p in out.problems] == ["separator", "decode", "bad_lines"]


# ---- frames a caller may have written (issue 15) -----------------------------------------
#
# tests/fixtures/ami/hostile: real Asterisk 22 streams of callers whose From user held
# %0d%0a (see its README). Every frame Asterisk wrote as it should is believed; every frame
# the caller's number touched is ``suspect``, whatever shape it took.

ENGINE_READS = {"Newchannel", "Newstate", "Rename", "DialBegin", "DialEnd", "HangupRequest",
                "SoftHangupRequest", "Hangup", "BridgeEnter", "BridgeLeave", "BlindTransfer",
                "AttendedTransfer", "ContactStatus", "Hold", "Unhold", "ChannelTalkingStart",
                "DTMFEnd", "MixMonitorStop", "OriginateResponse", "CoreShowChannel",
                "ContactList", "EndpointList"}
HOSTILE = sorted(p.name for p in (FIXTURES / "hostile").glob("*.txt"))
FORGED = ("1796000000.1", "agent1001")


@pytest.mark.parametrize("name", [*(f"endings/{n}" for n in ENDINGS),
                                  "coreshowchannels.txt", "pjsipshowcontacts.txt",
                                  "originate_failure.txt", "call_playback.txt"])
def test_every_frame_asterisk_writes_that_the_engine_reads_is_believed(name: str) -> None:
    _, out = parse(fixture(name))
    assert [(m.name, m.suspect) for m in out.messages
            if m.name in ENGINE_READS and m.suspect] == []


@pytest.mark.parametrize("name", HOSTILE)
def test_frames_a_callers_number_wrote_into_are_suspect(name: str) -> None:
    """Believed: only frames sent once the dialplan cleaned the number (and, where the
    number only added keys no reader reads, the frames it added them to). Everything the
    caller's forged lines reached, whole frames included, is suspect."""
    _, out = parse(fixture(f"hostile/{name}"))
    cleaned = next(m.get("CallerIDNum") for m in out.messages if m.name == "NewCallerid")
    read = [m for m in out.messages if m.name in ENGINE_READS]
    believed = [m for m in read if not m.suspect]
    raw_but_harmless = {"13800000000"} if name == "number_adds_lines.txt" else set()
    assert believed and {m.get("CallerIDNum") for m in believed} <= {cleaned, *raw_but_harmless}
    if not raw_but_harmless:
        forged = [m for m in read if any(word in repr(m.fields) for word in FORGED)]
        assert forged and all(m.suspect for m in forged)


def test_a_forged_frame_cannot_fit_a_channel_into_79_bytes() -> None:
    """What a forged Hangup needs to be believed: the 14 keys of its channel."""
    forged = (b"Event: Hangup\r\nPrivilege: call,all\r\nUniqueid: 1796000000.1\r\n"
              b"Channel: PJSIP/agent1001-00000001\r\nLinkedid: 1796000000.1\r\n\r\n")
    _, out = parse(forged)
    assert "without ChannelState" in out.messages[0].suspect
    whole = parse(fixture("endings/caller_bye_talking.txt"))[1].messages
    hangup = next(m for m in whole if m.name == "Hangup")
    assert sum(len(key) + 4 for key in hangup.fields) > 2 * 79   # "Key: " + CRLF, no values


@pytest.mark.parametrize(("frame", "why"), [
    (b"Event: X\r\nPrivilege: call,all\r\nChanVariable: a=1\r\nChanVariable: b=2\r\n", ""),
    (b"Event: X\r\nPrivilege: call,all\r\nAOR: a\r\nAOR: b\r\n", "AOR written twice"),
    (b"Event: ContactStatus\r\nAOR: agent1001\r\nContactStatus: Removed\r\n", "no Privilege"),
    (b"Event: ContactStatus\r\nPrivilege: system,all\r\nAOR: agent1001\r\n"
     b"ContactStatus: Removed\r\n", "ContactStatus without EndpointName, URI"),
    (b"Event: DialEnd\r\nPrivilege: call,all\r\nDestUniqueid: 1.2\r\nDialStatus: BUSY\r\n",
     "names channel Dest without DestChannel"),
    (b"Event: BridgeLeave\r\nPrivilege: call,all\r\nBridgeUniqueid: b\r\n",
     "names a bridge without BridgeType"),
])
def test_the_shapes_asterisk_never_writes(frame: bytes, why: str) -> None:
    message = parse(frame + b"\r\n")[1].messages[0]
    assert (why in message.suspect) if why else message.suspect == ""


def test_a_remembered_shape_gives_the_same_verdict_and_the_memory_is_bounded() -> None:
    """The parser caches suspect_shape by (event name, key set): the verdicts of a real
    and a cut-short Hangup stay apart, repeated or not, and forged shapes cannot grow
    the cache past its bound."""
    from callflow.ami import frames

    channel = "".join(f"{k}: x\r\n" for k in frames.CHANNEL_KEYS)
    whole = f"Event: Hangup\r\nPrivilege: call,all\r\n{channel}Cause: 16\r\n\r\n"
    short = "Event: Hangup\r\nPrivilege: call,all\r\nChannel: x\r\nUniqueid: 1\r\n\r\n"
    parser = AmiFrameParser()
    parser.feed(BANNER, 0.0)
    got = [m.suspect for m in parser.feed(((whole + short) * 3).encode(), 0.0).messages]
    assert got[0] == got[2] == got[4] == ""
    assert got[1] == got[3] == got[5] != ""
    forged = "".join(f"Event: Hangup\r\nPrivilege: call,all\r\nX{n}: 1\r\n\r\n"
                     for n in range(frames._SHAPE_CACHE_LIMIT + 50))
    parser.feed(forged.encode(), 0.0)
    assert len(parser._shapes) == frames._SHAPE_CACHE_LIMIT
