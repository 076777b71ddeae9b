"""The parser's fast path (frames built from remembered lines, issue 20) against its
strict line-by-line path: the same bytes give the same messages and problems.

``AmiFrameParser._parse_text`` builds a frame whose every line it has seen before from its
memory of lines, and sends anything else to ``_parse_lines`` (the checks of issue 13
and 15). ``StrictParser`` below always takes ``_parse_lines``: it is the reference.
Every stream is fed twice on the same parser, so the second pass meets remembered
lines, and split at random, so frames straddle reads.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from callflow.ami import frames
from callflow.ami.frames import AmiFrameParser, Parsed, decode_frame

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CAPTURES = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.txt"))


class StrictParser(AmiFrameParser):
    """The reference: every frame line by line, nothing remembered."""

    def _parse_region(self, region: bytes, received_at: float, out: Parsed) -> None:
        self._parse_frames(region, received_at, out)  # each frame's bytes to _parse

    def _parse(self, raw: bytes, received_at: float, out: Parsed) -> None:
        text, problem = decode_frame(raw)
        self._parse_lines(raw, text, received_at, out, decode_problem=problem)


class CountingParser(AmiFrameParser):
    """The product's parser, counting the frames that took the strict path."""

    strict = 0

    def _parse_lines(self, *args: object, **kwargs: object) -> None:
        self.strict += 1
        super()._parse_lines(*args, **kwargs)  # type: ignore[arg-type]


def feed(parser: AmiFrameParser, stream: bytes, cuts: list[int]) -> Parsed:
    total = Parsed()
    for begin, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        part = parser.feed(stream[begin:end], float(begin))
        total.messages.extend(part.messages)
        total.problems.extend(part.problems)
    return total


def both(stream: bytes, cuts: list[int] | None = None, max_frame_bytes: int = 1 << 20,
         passes: int = 2) -> tuple[Parsed, Parsed, CountingParser]:
    """What the product's parser and the strict one make of ``stream`` after a banner,
    fed ``passes`` times on one parser each, cut at ``cuts`` (offsets into one pass)."""
    fast, strict = CountingParser(max_frame_bytes), StrictParser(max_frame_bytes)
    got, want = fast.feed(BANNER, 0.0), strict.feed(BANNER, 0.0)
    for _ in range(passes):
        for parser, total in ((fast, got), (strict, want)):
            part = feed(parser, stream, sorted(set(cuts or [])))
            total.messages.extend(part.messages)
            total.problems.extend(part.problems)
    return got, want, fast


def body(name: str) -> bytes:
    data = (FIXTURES / name).read_bytes()
    return data.split(b"\r\n", 1)[1] if data.startswith(b"Asterisk") else data


def test_there_are_captures_to_compare() -> None:
    assert len(CAPTURES) >= 60


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_parses_the_same_and_mostly_from_memory(name: str) -> None:
    stream = body(name)
    got, want, fast = both(stream)
    assert got == want
    frames_per_pass = len(want.messages) // 2 + len(want.problems) // 2
    assert frames_per_pass
    # the second pass meets only remembered lines, but for a Timestamp or a long line
    # and the frames that must be read line by line (glued, forged, broken...)
    assert fast.strict < 2 * frames_per_pass


def test_the_fast_path_really_takes_the_real_call() -> None:
    """Not a test that cannot fail: the real call of 27 events is built from memory on
    the second pass (no frame of it needs the strict path), identically."""
    got, want, fast = both(body("call_playback.txt"))
    assert got == want
    first_pass = CountingParser()
    first_pass.feed(BANNER + body("call_playback.txt"), 0.0)
    assert fast.strict == first_pass.strict  # nothing more on the second pass
    assert first_pass.strict < 28


def test_split_at_every_byte() -> None:
    stream = (body("call_playback.txt")[:1400] + b"\r\n\r\n"
              + body("hostile/number_adds_lines.txt")[:700] + b"\r\n\r\n")
    whole = both(stream)[1]
    for at in range(1, len(stream)):
        got, want, _ = both(stream, [at])
        assert got == want, at
        assert [m.fields for m in got.messages] == [m.fields for m in whole.messages]


LINES = [
    b"Event: Hangup", b"Event: OriginateResponse", b"Response: Success", b"Response: Error",
    b"Privilege: call,all", b"Channel: PJSIP/agent1001-00000001", b"Uniqueid: 1.2",
    b"ActionID: a-1", b"ChanVariable: CF_CALL=x", b"ChanVariable(Local/1@x-0;1): CF_TAG=",
    b"Output: line", b"State: UP", b"CallerIDNum: 100", b"AccountCode: ", b"Cause: 16",
    b"Message: No Contacts found\n", b"Key:value", b"Key:", b"Key: ", b"Key:  two",
    b"Key: trailing ", b"Key: \ttab", b"Key: x\x0b", b"Key: a: b", b"Key: a: ", b"K y: 1",
    b" Key: 1", b"Key : 1", b": empty", b"no colon", b"", b"\r", b"\n", b"Key: \xff\xfe",
    b"Key: \xc3\xa9t\xc3\xa9", b"Cl\xc3\xa9: v", b"Key: \xc2\xa0nbsp", b"Key: nbsp\xc2\xa0",
    b"Key: \xe2\x80\xa8", b"Key\x00: 1", b"Key: 1\x1f", b"Timestamp: 1796617018.684818",
    b"Event: Hangup\rResponse: Success", b"Key: 1\nEvent: X", b"Key: 1\n\nEvent: Y",
]


def random_stream(rng: random.Random, frames_count: int) -> bytes:
    """Frames of lines from LINES and the captures, joined by the right separator or, now
    and then, by a broken one; bytes flipped here and there."""
    real = [line for name in ("call_playback.txt", "hostile/number_forged_hangup.txt",
                              "originate_failure.txt", "queuestatus.txt")
            for line in body(name).split(b"\r\n") if line]
    out = []
    for _ in range(frames_count):
        lines = [rng.choice(LINES if rng.random() < 0.3 else real)
                 for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.7:
            lines.insert(0, rng.choice([b"Event: Newchannel", b"Event: Hangup",
                                        b"Response: Success", b"Event: OriginateResponse"]))
        frame = b"\r\n".join(lines)
        if rng.random() < 0.1 and frame:
            at = rng.randrange(len(frame))
            frame = frame[:at] + bytes([rng.randrange(256)]) + frame[at + 1:]
        out.append(frame)
        out.append(rng.choice([b"\r\n\r\n"] * 12 + [b"\r\n\n", b"\r\n", b"\r\n\r\n\r\n",
                                                     b"\n\r\n\r\n", b"\r\r\n\r\n"]))
    return b"".join(out)


@pytest.mark.parametrize("seed", range(40))
def test_random_frames_parse_the_same(seed: int) -> None:
    rng = random.Random(seed)
    stream = random_stream(rng, 60)
    cuts = [rng.randrange(1, len(stream)) for _ in range(rng.randint(0, 8))]
    got, want, _ = both(stream, cuts, max_frame_bytes=rng.choice([64, 256, 1 << 20]))
    assert got == want


def test_oversize_frames_parse_the_same() -> None:
    stream = body("call_playback.txt") + b"Event: Big\r\nData: " + b"x" * 500 + b"\r\n\r\n"
    got, want, _ = both(stream, max_frame_bytes=300)
    assert got == want
    assert [p.kind for p in got.problems].count("oversize") >= 4


def test_the_memory_of_lines_is_bounded_and_forgetting_changes_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines a caller forges (a new CallerIDNum in every event) cannot grow the memory:
    it is emptied when full, and the frames read after that read the same."""
    monkeypatch.setattr(frames, "_LINE_CACHE_LIMIT", 50)
    call = body("call_playback.txt")
    forged = b"".join(b"Event: Newchannel\r\nPrivilege: call,all\r\nCallerIDNum: %d\r\n"
                      b"Timestamp: 1.%d\r\n" % (n, n) + b"Long: " + b"y" * 200 + b"\r\n\r\n"
                      for n in range(120))
    got, want, fast = both(call + forged + call)
    assert got == want
    assert 0 < len(fast._lines) <= 50
    assert not any(line.startswith(("Timestamp:", "Long:")) for line in fast._lines)


def test_the_same_keys_repeated_in_other_places_parse_the_same() -> None:
    """Plans are remembered by line count and keys in first-seen order: frames that
    share both but repeat a key in other places must not borrow each other's plan."""
    head = b"Event: Newchannel\r\nPrivilege: call,all\r\n"
    frames_ = [head + b"A: 1\r\nChanVariable: x=1\r\nA: 2\r\nB: 3\r\n",
               head + b"A: 1\r\nChanVariable: x=1\r\nB: 3\r\nA: 2\r\n",
               head + b"A: 1\r\nA: 2\r\nChanVariable: x=1\r\nB: 3\r\n",
               head + b"A: 1\r\nChanVariable: x=1\r\nChanVariable: y=2\r\nB: 3\r\n",
               head + b"A: 1\r\nChanVariable: x=1\r\nB: 3\r\nChanVariable: y=2\r\n"]
    stream = b"\r\n".join(frames_) + b"\r\n"
    got, want, _ = both(stream, passes=3)
    assert got == want
    assert [m.get_all("A") for m in got.messages[:3]] == [["1", "2"], ["1", "2"], ["1", "2"]]
    assert got.messages[0].suspect.startswith("A written twice")
    assert got.messages[3].get_all("ChanVariable") == ["x=1", "y=2"]


def test_a_long_frame_parses_the_same() -> None:
    output = b"".join(b"Output: line %d\r\n" % (n % 7) for n in range(600))
    stream = b"Response: Success\r\nActionID: c-1\r\n" + output + b"\r\n"
    got, want, _ = both(stream)
    assert got == want
    assert len(got.messages[0].get_all("Output")) == 600
