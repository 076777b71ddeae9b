"""The AMI wire format with no I/O in it: bytes in, messages out; actions to bytes.

``ami/client.py`` owns sockets and threads; this module only knows the protocol, so
unit tests drive it with captured bytes in microseconds (the websockets habit in
style.md). It replaces the framing and parsing of asterisk-ami 0.1.7, whose
defects a contact centre cannot live with (each is pinned by
``tests/unit/ami/test_ami_library.py``):

- its receive buffer is unbounded (``data += recv``) and split from the start for
  every frame, so a frame that never ends grows memory forever and a backlog costs
  quadratic time; here a frame has a size limit and the buffer is scanned once;
- ``Event.read`` silently drops lines without ``": "``, ``Response.read`` turns
  the rest of a frame into "follows" at the first key it dislikes (``ChanVariable(
  Local/100@test-00000000;1)`` is one Asterisk really sends), repeated keys become a
  dict (``ChanVariable``) or a newline-joined string; here repeated keys are lists
  and every dropped byte is reported;
- a connection that closes before the banner ends its reader thread with a bare
  ``StopIteration`` and no ``on_disconnect``; here a bad banner is an
  ``AmiProtocolError`` the adapter sees.

Frames and their problems (decided here, documented for the lead):

- A frame is the bytes up to ``\\r\\n\\r\\n``; lines end with ``\\r\\n``. A lone
  ``\\n`` stays inside the value (Asterisk 22 really sends ``Message: No Contacts
  found\\n`` in ``PJSIPShowContacts``); values are stripped of surrounding blanks.
- ``Event:`` anywhere in a frame makes it an event, even if it also has
  ``Response:``: ``OriginateResponse`` carries both and is an event.
- A frame with neither ``Event:`` nor ``Response:`` (garbage, a truncated frame) is
  skipped and reported (``skipped=True``).
- A line without a colon, or with a key that is blank or holds control
  characters, is dropped from an otherwise good frame, which is still delivered:
  losing a whole ``Hangup`` because a caller-supplied value held a CR/LF would leave
  a phantom call on the board (STD on call records); the drop is reported.
- Invalid UTF-8 (Asterisk passes SIP display names through unchecked) is decoded
  with U+FFFD replacements, delivered and reported.
- A frame longer than ``max_frame_bytes`` is discarded up to its terminator and
  reported; the link stays up.
- Two messages in one frame (issue 13): when the empty line between two frames is
  broken (``\r\n`` + a bare ``\n``, a lone ``\r`` line, or missing), the second
  frame's ``Event:``/``Response:`` line lands inside the first. Left alone, the second
  message vanished into the first, its head line at best reported as a dropped line
  (a swallowed ``Hangup`` is a phantom call; a swallowed ``Response`` fails its
  action after its timeout). So a
  frame is cut before every ``Event:``/``Response:`` line (at a line start, after any
  CR or LF) that follows the frame's own ``Event:``/``Response:``, and each cut is
  reported (kind ``separator``, delivered). The one exception is Asterisk's own
  ``OriginateResponse`` event, which carries one ``Response:`` by design. CR/LF
  bytes before a frame's first line that are not whole empty lines (a stray ``\n``
  after ``\r\n\r\n``) are dropped and reported the same way.
  The check costs nothing on a well-formed frame: the cut is looked for only when
  the frame's fields already show it (a repeated ``Event``/``Response``, both keys
  outside ``OriginateResponse``, or a dropped line, which is what ``\n`` or ``\r``
  glued to a key looks like). Not caught: a frame whose last line *and* empty line
  both end in a bare LF (``1\n\nEvent: B``) keeps the next frame inside that value,
  as before (finding it would mean scanning every value of every frame).

Frames a caller may have written (issue 15). Asterisk writes a caller's number
(``CallerIDNum``, from the SIP From user, where pjsip decodes ``%0d%0a`` into CR LF;
up to 79 bytes) verbatim into every event of that channel until the dialplan cleans
it, so one value can add ``Key: value`` lines to a real event, cut it short with an
empty line and write a whole event of its own, or start one with an ``Event:`` line
(which the cut above then splits off). Measured: ``tests/fixtures/ami/hostile/``. A
message is delivered with ``suspect`` saying why it is not believed, and the runtime
applies none of it:

- a piece cut out of a frame (above): one side is what the caller wrote;
- a key written twice, besides those Asterisk repeats (``ChanVariable``, a command's
  ``Output``, TestEvent's ``State``): an added line (AmiMessage.get reads the first);
- a channel the engine reads (no prefix, ``Dest``, ``Transferee``, ``Transferer``,
  ``TransferTarget``), or the bridge, named without every key Asterisk always writes
  with it (the 14 of ``ast_manager_build_channel_state_string_prefix``, the 7 of a
  bridge); the events the engine reads that name no channel (``ContactStatus``, the
  ``ContactList`` and ``EndpointList`` items, ``OriginateResponse``) without theirs;
  an event without ``Privilege`` that answers no action. A cut-short real event lacks
  its tail; a forged one cannot fit what it needs into 79 bytes (a ``Hangup`` naming
  a channel needs ~300).

The shape is checked with set operations on the keys (``suspect_shape``): 1-3 us a
message on the shared 2-core box, against 13-25 us for the rest of its parsing; the
parser remembers each (event name, key set) verdict (bounded), ~4x cheaper again.

Speed (issue 20): the parser decodes a read once, remembers what each valid line it has
checked means, and builds a frame whose every line it remembers in C
(``AmiFrameParser._parse_text``); any other frame takes the strict line loop
(``_parse_lines``), which holds every rule above. Both give the same result
(tests/unit/ami/test_ami_line_memory.py, test_ami_ingest_fast_path.py); figures in
docs/ingest-performance.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Literal, cast

from callflow.errors import AmiProtocolError

BANNER_LIMIT = 1024
"""A banner line longer than this is not Asterisk's."""

DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Large enough for a ``Command`` reply listing thousands of channels."""

_BANNER_RE = re.compile(r"^Asterisk *Call *Manager/(?P<version>([0-9]+\.)*[0-9]+)", re.IGNORECASE)
_ACTION_ID_RE = re.compile(rb"(?:^|\r\n)ActionID: *([^\r\n]*)", re.IGNORECASE)
_HEAD_RE = re.compile(rb"(?<![^\r\n])(Event|Response):[ \t]*([^\r\n]*)")
"""An ``Event:``/``Response:`` line start: at the frame's start or after any CR or LF."""
_ACTION_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_EXCERPT = 120
_KEY_OF = itemgetter(0)
_VALUE_OF = itemgetter(1)
_TERMINATOR = b"\r\n\r\n"
_KEY_CACHE_LIMIT = 4096
_SHAPE_CACHE_LIMIT = 1024
_LINE_CACHE_LIMIT = 8192
"""Lines the parser remembers (``AmiFrameParser._lines``) before it forgets them all."""
_LINE_CACHE_CHARS = 160
"""Longer lines are not remembered: at most ~8192 x 160 characters, whatever comes in."""
_PLAN_CACHE_LIMIT = 1024
"""Plans (``AmiFrameParser._plans``) remembered before they are all forgotten."""
_VERDICTS_PER_PLAN = 16
"""Event names whose shape verdict a plan keeps (a plan's keys fit few events)."""
_PLAN_LINES_LIMIT = 256
"""Longer frames (a long ``Command`` output) are read line by line: the plans and shapes
remembered by key sequence stay small (at most 1024 x 256 keys each)."""
_NEW_EVERY_TIME = frozenset({"Timestamp"})
"""Keys whose lines are never the same twice: not worth remembering."""
_EVENT_WITH_RESPONSE = "OriginateResponse"
"""The one Asterisk event that carries a ``Response:`` key of its own."""

CHANNEL_KEYS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
                "Exten", "Priority", "Uniqueid", "Linkedid")
"""What Asterisk 22 writes of every channel an event names, each key with the same prefix."""
BRIDGE_KEYS = ("BridgeUniqueid", "BridgeType", "BridgeTechnology", "BridgeCreator",
               "BridgeName", "BridgeNumChannels", "BridgeVideoSourceMode")
"""What Asterisk 22 writes of every bridge an event names."""
READ_CHANNEL_PREFIXES = ("", "Dest", "Transferee", "Transferer", "TransferTarget")
"""The channels of an event the engine reads (``Uniqueid``, ``DestChannel``...)."""
_CHANNEL_NAMING = ("Channel", "Uniqueid", "Linkedid")
OWN_KEYS: Mapping[str, frozenset[str]] = {
    "ContactStatus": frozenset({"Privilege", "URI", "ContactStatus", "AOR", "EndpointName"}),
    "ContactList": frozenset({"ObjectType", "ObjectName", "Uri", "Status", "Endpoint",
                              "ViaAddr", "CallId", "UserAgent"}),
    "EndpointList": frozenset({"ObjectType", "ObjectName", "Transport", "Aor", "Auths",
                               "OutboundAuths", "DeviceState", "ActiveChannels"}),
    _EVENT_WITH_RESPONSE: frozenset({"Privilege", "Response", "Channel", "Reason",
                                     "Uniqueid", "CallerIDNum", "CallerIDName"}),
}
"""Keys Asterisk 22 always writes in the events the engine reads that name no whole
channel (an ``OriginateResponse`` names its channel by ``Channel`` and ``Uniqueid``
only)."""
_REPEATED_BY_ASTERISK = ("ChanVariable", "Output", "State")


_Shape = tuple[str, frozenset[str], tuple[str, ...]]


def _read_blocks() -> dict[str, _Shape]:
    """The channels and the bridge the engine reads, by each key that names one: (how a
    message names it, every key Asterisk writes of it, as a set and in its order)."""
    shapes: dict[str, _Shape] = {}
    for prefix in READ_CHANNEL_PREFIXES:
        block = tuple(prefix + key for key in CHANNEL_KEYS)
        for key in _CHANNEL_NAMING:
            shapes[prefix + key] = (f"channel {prefix or 'the'}", frozenset(block), block)
    shapes["BridgeUniqueid"] = ("a bridge", frozenset(BRIDGE_KEYS), BRIDGE_KEYS)
    return shapes


_READ_BLOCKS = _read_blocks()
_NAMING_KEYS = frozenset(_READ_BLOCKS)

ProblemKind = Literal["separator", "bad_lines", "decode", "no_head", "oversize"]
"""What a FrameProblem is about (the adapter counts and logs per kind):
``separator`` a broken empty line (messages split apart, nothing lost), ``bad_lines``
lines dropped from a delivered frame, ``decode`` invalid UTF-8 replaced, ``no_head``
a frame with neither Event nor Response (lost), ``oversize`` a frame over the limit
(lost)."""


@dataclass(frozen=True)
class AmiMessage:
    """One AMI event or response, as read from the wire.

    ``fields`` holds every key of the frame (``Event``/``Response`` included); a key
    that repeats (``ChanVariable``, ``Output``, TestEvent's ``State``) maps to a list
    of its values in wire order.
    """

    name: str
    fields: Mapping[str, str | list[str]] = field(hash=False)
    received_at: float
    kind: str = "event"
    suspect: str = ""
    """Why the message is not shaped as Asterisk writes it ("" if it is; module docstring)."""

    def get(self, key: str, default: str = "") -> str:
        """The (first) value of ``key``; the core mostly wants exactly one."""
        value = self.fields.get(key)
        if value is None:
            return default
        if isinstance(value, list):
            return value[0] if value else default
        return value

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` in wire order ([] when absent)."""
        value = self.fields.get(key)
        if value is None:
            return []
        return list(value) if isinstance(value, list) else [value]

    @property
    def is_event(self) -> bool:
        return self.kind == "event"

    @property
    def is_response(self) -> bool:
        return self.kind == "response"

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


@dataclass(frozen=True)
class AmiListResult:
    """An EventList action's answer: the Response, its events, the ``...Complete`` event.

    ``complete`` is None when no ``...Complete`` event ended the list: Asterisk said
    it is empty (``No Contacts found``: ``warning`` is ""), or it answered without
    ``EventList: start`` and never sent one (``warning`` says the list may be
    incomplete; ami/client.py decides when it ends).
    """

    response: AmiMessage
    events: list[AmiMessage]
    complete: AmiMessage | None
    warning: str = ""


@dataclass(frozen=True)
class FrameProblem:
    """Something wrong in the byte stream, for the adapter to log and count.

    ``skipped`` says whether the frame was lost (True) or delivered with the
    problem repaired (False). ``action_id`` lets the adapter fail the action a lost
    response belonged to at once, instead of letting it time out.
    """

    kind: ProblemKind
    reason: str
    excerpt: bytes
    size: int
    skipped: bool
    action_id: str = ""

    def describe(self) -> str:
        lost = "frame skipped" if self.skipped else "frame delivered"
        aid = f", ActionID {self.action_id!r}" if self.action_id else ""
        return f"{self.reason} ({self.size} bytes, {lost}{aid}): {self.excerpt!r}"


@dataclass
class Parsed:
    """What one ``feed`` produced, in wire order."""

    messages: list[AmiMessage] = field(default_factory=list)
    problems: list[FrameProblem] = field(default_factory=list)
    answering: list[int] = field(default_factory=list, compare=False)
    """Where in ``messages`` those that may answer an action are (a response, or one
    with an ``ActionID``): the client hands the others on as events without a look."""


class AmiFrameParser:
    """Incremental AMI reader: feed it every chunk ``recv`` returned, in order."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 64:
            raise ValueError("max_frame_bytes must be at least 64")
        self.max_frame_bytes = max_frame_bytes
        self.banner: str | None = None
        self.version: str | None = None
        self._buf = bytearray()
        self._scan_from = 0
        self._oversize = False
        self._discarded = 0
        self._oversize_head: tuple[bytes, str] = (b"", "")
        self._good_keys: set[str] = set()
        self._shapes: dict[tuple[str, frozenset[str] | tuple[str, ...]], str] = {}
        self._lines = _KnownLines(self._good_keys, self._valid_key)
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def feed(self, data: bytes, received_at: float) -> Parsed:
        """Parse what ``data`` completes; keep the rest for the next call.

        Raises AmiProtocolError only for a banner that is not Asterisk's: then the
        peer is not an AMI server and the connection is useless.
        """
        out = Parsed()
        buf = self._buf
        buf += data
        if self.banner is None and not self._read_banner():
            return out
        if self._oversize:
            end = buf.find(_TERMINATOR)
            if end < 0:
                self._discard_all_but_tail()
                return out
            self._discarded += end
            self._report_oversize(out)
            del buf[:end + 4]
            self._scan_from = 0
        last = buf.rfind(_TERMINATOR, self._scan_from)
        if last >= 0:
            region = bytes(buf[:last])
            del buf[:last + 4]
            self._parse_region(region, received_at, out)
        if len(buf) > self.max_frame_bytes:
            self._start_oversize(bytes(buf[:4096]))
            self._discard_all_but_tail()
        self._scan_from = max(0, len(buf) - 3)
        return out

    def _discard_all_but_tail(self) -> None:
        """Drop the oversize frame's bytes, keeping 3: a terminator may straddle two reads."""
        buf = self._buf
        drop = len(buf) - 3
        if drop > 0:
            self._discarded += drop
            del buf[:drop]
        self._scan_from = 0

    def _start_oversize(self, head: bytes) -> None:
        self._oversize = True
        self._discarded = 0
        self._oversize_head = (head[:_EXCERPT], _action_id(head))

    def _report_oversize(self, out: Parsed) -> None:
        excerpt, action_id = self._oversize_head
        out.problems.append(FrameProblem(
            "oversize", f"frame longer than {self.max_frame_bytes} bytes discarded", excerpt,
            self._discarded, True, action_id))
        self._oversize = False
        self._discarded = 0

    def _read_banner(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > BANNER_LIMIT:
                raise AmiProtocolError(f"no AMI banner in the first {BANNER_LIMIT} bytes: "
                                       f"{bytes(buf[:_EXCERPT])!r}")
            return False
        line = bytes(buf[:end]).decode("utf-8", "replace")
        match = _BANNER_RE.match(line)
        if match is None:
            raise AmiProtocolError(f"not an Asterisk Call Manager banner: {line[:_EXCERPT]!r}")
        self.banner = line
        self.version = match.group("version")
        del buf[:end + 2]
        self._scan_from = 0
        return True

    def _parse_region(self, region: bytes, received_at: float, out: Parsed) -> None:
        """Whole frames (``region``: up to, without, the last terminator) into ``out``.

        Decoded once as a whole when it is valid UTF-8 and too short to hold a frame over
        the limit: each frame is then cut from the text (``\\r\\n\\r\\n`` is ASCII, so the
        same cut as on the bytes) and read by ``_parse_text``. Else frame by frame on the
        bytes (``_parse_frames``), where the limit and the decode are checked per frame.
        """
        if len(region) <= self.max_frame_bytes:
            try:
                text = region.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                self._parse_text(text, received_at, out)
                return
        self._parse_frames(region, received_at, out)

    def _parse_frames(self, region: bytes, received_at: float, out: Parsed) -> None:
        """Frame by frame: an oversize frame is reported, an empty one skipped."""
        limit = self.max_frame_bytes
        for raw in region.split(_TERMINATOR):
            if len(raw) > limit:
                self._start_oversize(raw)
                self._discarded = len(raw)
                self._report_oversize(out)
            elif raw:
                self._parse(raw, received_at, out)

    def _parse(self, raw: bytes, received_at: float, out: Parsed) -> None:
        """One whole frame's bytes into ``out``: not UTF-8, line by line
        (``_parse_lines`` reports it); else as ``_parse_text`` reads it."""
        text, problem = decode_frame(raw)
        if problem:
            self._parse_lines(raw, text, received_at, out, decode_problem=problem)
        else:
            self._parse_text(text, received_at, out)

    def _parse_text(self, text: str, received_at: float, out: Parsed) -> None:
        """Whole frames of valid UTF-8 text, joined by ``\\r\\n\\r\\n``, into ``out``: each
        from the lines already seen when every line of it was, else line by line
        (``_parse_lines``), with the same result either way.

        Asterisk writes the same lines over and over (``Privilege: call,all``,
        ``Context: ...``, a call's ``Channel`` and ``Uniqueid`` in each of its events), so
        the parser remembers what each valid line it checked means (``_lines``: the line
        -> its key and stripped value; a line's meaning depends on nothing else). A frame
        whose every line is remembered has no line to drop, and when it carries exactly
        one ``Event`` or one ``Response`` (not both) nothing can be glued into it: its
        fields are built in C (``map`` over the lines, ``dict``) instead of a Python step
        per line (a regex over the frame cost more than the bare loop itself:
        docs/ingest-performance.md). Its keys in wire order (a tuple made in C) find its
        ``_Plan``: which keys repeat and where (``ChanVariable``), its head and kind, the
        first key written twice that Asterisk does not repeat. Anything else, hostile or
        broken, takes ``_parse_lines``, which owns every check and every reported problem.
        One loop over the frames of a read, with no call per frame (issue 20).
        """
        known = self._lines.__getitem__
        plans = self._plans
        messages = out.messages
        append = messages.append
        answering = out.answering
        for frame in text.split("\r\n\r\n"):
            if not frame:
                continue
            lines = frame.split("\r\n")
            try:
                if len(lines) > _PLAN_LINES_LIMIT:
                    raise KeyError(frame)
                pairs = list(map(known, lines))
            except KeyError:
                self._parse_lines(frame.encode("utf-8"), frame, received_at, out, lines=lines)
                continue
            keys = tuple(map(_KEY_OF, pairs))
            plan = plans.get(keys)
            if plan is None:
                plan = self._new_plan(keys)
            head, kind, repeats, repeated, verdicts, answers = plan
            fields: dict[str, str | list[str]] = dict(pairs)
            if head != "Event" and head != "Response":
                if not head or fields["Event"] != _EVENT_WITH_RESPONSE:
                    # two heads or none (glued, or no head at all), or a Response
                    # glued into an event other than OriginateResponse
                    self._parse_lines(frame.encode("utf-8"), frame, received_at, out,
                                      lines=lines)
                    continue
                head = "Event"
            for key, pick in repeats:
                fields[key] = list(map(_VALUE_OF, pick(pairs)))
            name = fields[head]
            assert isinstance(name, str)  # the plan saw head once
            if repeated:
                suspect = f"{repeated} written twice, then as {_excerpt(fields[repeated])}"
            else:
                suspect = verdicts.get(name)  # type: ignore[assignment]
                if suspect is None:
                    suspect = self._verdict(name, keys, fields, verdicts)
            message = _NEW(AmiMessage)
            slots = message.__dict__  # five stores: cheaper than the frozen __init__
            slots["name"] = name
            slots["fields"] = fields
            slots["received_at"] = received_at
            slots["kind"] = kind
            slots["suspect"] = suspect
            if answers:
                answering.append(len(messages))
            append(message)

    def _verdict(self, name: str, keys: tuple[str, ...],
                 fields: Mapping[str, str | list[str]], verdicts: dict[str, str]) -> str:
        """``suspect_shape`` of a frame read by its plan, from the parser's memory of
        shapes (bounded: forged shapes cannot grow it), then kept in the plan's own
        ``verdicts`` by event name (at most ``_VERDICTS_PER_PLAN``), so the next frame
        of that plan and name finds it with one small lookup."""
        shapes = self._shapes
        shape = (name, keys)
        verdict = shapes.get(shape)
        if verdict is None:
            verdict = suspect_shape(name, fields)
            if len(shapes) < _SHAPE_CACHE_LIMIT:
                shapes[shape] = verdict
        if len(verdicts) < _VERDICTS_PER_PLAN:
            verdicts[name] = verdict
        return verdict

    def _new_plan(self, keys: tuple[str, ...]) -> _Plan:
        """``_plan`` of ``keys``, remembered; the memory is emptied when full (bounded,
        and a key new in every call, ``ChanVariable(Local/...;1)``, does not freeze it)."""
        plans = self._plans
        if len(plans) >= _PLAN_CACHE_LIMIT:
            plans.clear()
        plan = plans[keys] = _plan(keys)
        return plan

    def _parse_lines(self, raw: bytes, text: str, received_at: float, out: Parsed,
                     whole: bool = True, decode_problem: str = "",
                     lines: list[str] | None = None) -> None:
        """One frame into ``out``, line by line, with every check; ``whole`` is False for a
        piece cut out of a glued frame (such a piece is ``suspect``: module docstring).
        """
        fields: dict[str, str | list[str]] = {}
        bad_lines: list[str] = []
        repeated = ""
        good_keys = self._good_keys
        for line in text.split("\r\n") if lines is None else lines:
            key, colon, value = line.partition(":")
            if not colon or (key not in good_keys and not self._valid_key(key)):
                if line:  # a stray blank line is harmless
                    bad_lines.append(line)
                continue
            value = value.strip()
            old = fields.get(key)
            if old is None:
                fields[key] = value
            else:
                if not repeated and not _repeated_by_asterisk(key):
                    repeated = key
                if isinstance(old, list):
                    old.append(value)
                else:
                    fields[key] = [old, value]
        event, response = fields.get("Event"), fields.get("Response")
        if (whole and (bad_lines or isinstance(event, list) or response is not None)
                and _looks_glued(event, response, bool(bad_lines))
                and self._split(raw, received_at, out)):
            return
        if event is not None:
            kind, name = "event", event
        elif response is not None:
            kind, name = "response", response
        else:
            out.problems.append(FrameProblem(
                "no_head", "frame has neither an Event nor a Response line", raw[:_EXCERPT],
                len(raw), True, _action_id(raw)))
            return
        if isinstance(name, list):
            name = name[0]
        if decode_problem:
            out.problems.append(FrameProblem("decode", decode_problem, raw[:_EXCERPT], len(raw),
                                             False, _first(fields.get("ActionID"))))
        if bad_lines:
            out.problems.append(FrameProblem(
                "bad_lines",
                f"{len(bad_lines)} line(s) without a valid 'Key: value' dropped from {kind} "
                f"{name!r}: {bad_lines[0][:_EXCERPT]!r}", raw[:_EXCERPT], len(raw), False,
                _first(fields.get("ActionID"))))
        if not whole:
            suspect = "cut out of a frame at an Event or Response line inside it"
        elif repeated:
            suspect = f"{repeated} written twice, then as {_excerpt(fields[repeated])}"
        else:
            suspect = self._suspect_shape(name, fields)
        if kind == "response" or "ActionID" in fields:
            out.answering.append(len(out.messages))
        out.messages.append(_new_message(name, fields, received_at, kind, suspect))

    def _split(self, raw: bytes, received_at: float, out: Parsed) -> bool:
        """Parse ``raw`` as the messages glued into it; False if it holds just one.

        Each broken separator is reported (kind ``separator``, nothing lost), then
        each piece is parsed on its own, so its other problems are reported too.
        """
        start, cuts = _glue_points(raw)
        lead = raw[:start]
        if not cuts and not _stray(lead):
            return False
        if _stray(lead):
            where = f"before {_line_at(raw, start)!r}" if start < len(raw) else "between frames"
            out.problems.append(FrameProblem(
                "separator", f"stray {lead[:_EXCERPT]!r} {where} (not an empty line): dropped",
                raw[:_EXCERPT], len(raw), False))
        bounds = [start, *cuts, len(raw)]
        for begin, end in itertools.pairwise(bounds):
            body = raw[begin:end].rstrip(b"\r\n")
            if end < len(raw):
                out.problems.append(FrameProblem(
                    "separator", f"no empty line before {_line_at(raw, end)!r} (separator "
                    f"{raw[begin + len(body):end]!r}): split into two messages",
                    raw[max(begin, end - _EXCERPT // 2):end + _EXCERPT // 2], len(raw), False,
                    _action_id(body)))
            if body:
                text, problem = decode_frame(body)
                self._parse_lines(body, text, received_at, out, whole=False,
                                  decode_problem=problem)
        return True

    def _suspect_shape(self, name: str, fields: Mapping[str, str | list[str]]) -> str:
        """``suspect_shape``, remembered by event name and key set: it depends on nothing
        else, and Asterisk writes the same few shapes over and over (a fifth of the
        adapter's time went here, bench_ami; the cache makes it ~4x cheaper). Bounded like
        the known keys, so forged shapes cannot grow it."""
        shape = (name, frozenset(fields))
        verdict = self._shapes.get(shape)
        if verdict is None:
            verdict = suspect_shape(name, fields)
            if len(self._shapes) < _SHAPE_CACHE_LIMIT:
                self._shapes[shape] = verdict
        return verdict

    def _valid_key(self, key: str) -> bool:
        """Keys are printable and blank-free (``ChanVariable(Local/1@x-0;1)`` is fine)."""
        if not key or not key.isprintable() or " " in key or "\ufffd" in key:
            return False
        if len(self._good_keys) < _KEY_CACHE_LIMIT:
            self._good_keys.add(key)
        return True


class _KnownLines(dict[str, tuple[str, str]]):
    """Each valid ``Key: value`` line seen -> its key and stripped value, as
    ``_parse_lines`` reads it (a line's meaning depends on nothing else).

    ``lines[line]`` looks a line up in C and checks a new one here (``__missing__``):
    a valid one is remembered and returned, an invalid one raises KeyError, which sends
    its frame to ``_parse_lines``. Bounded: lines longer than ``_LINE_CACHE_CHARS`` and
    the ``Timestamp`` line (``timestampevents``: new in every event) are not kept, and
    the memory is emptied when full, so lines a caller forges cannot grow it.
    """

    def __init__(self, good_keys: set[str], valid_key: Callable[[str], bool]) -> None:
        super().__init__()
        self._good_keys = good_keys
        self._valid_key = valid_key

    def __missing__(self, line: str) -> tuple[str, str]:
        key, colon, value = line.partition(":")
        if not colon or (key not in self._good_keys and not self._valid_key(key)):
            raise KeyError(line)
        pair = (key, value.strip())
        if len(line) <= _LINE_CACHE_CHARS and key not in _NEW_EVERY_TIME:
            if len(self) >= _LINE_CACHE_LIMIT:
                self.clear()
            self[line] = pair
        return pair


_Pick = Callable[[list[tuple[str, str]]], tuple[tuple[str, str], ...]]
"""``itemgetter`` of the positions of a repeated key's lines, over a frame's pairs."""
_Plan = tuple[str, str, tuple[tuple[str, _Pick], ...], str, dict[str, str], bool]
"""How to build a frame's fields from its (key, value) pairs, by its keys in wire order:
the head key (``Event`` or ``Response``; ``OriginateResponse`` for one of each, which
only that event may carry; "" when the frame needs ``_parse_lines``), the
message kind, each repeated key with the positions of its values, the first key
written twice that Asterisk does not repeat ("" if none), the ``suspect_shape``
verdicts found so far for these keys, by event name (``AmiFrameParser._verdict``), and
whether the message may answer an action (``Parsed.answering``)."""


def _plan(keys: tuple[str, ...]) -> _Plan:
    """The ``_Plan`` of a frame with these keys, as ``_parse_lines`` would read it."""
    places: dict[str, list[int]] = {}
    repeated = ""
    for at, key in enumerate(keys):
        seen = places.setdefault(key, [])
        if seen and not repeated and not _repeated_by_asterisk(key):
            repeated = key
        seen.append(at)
    events, responses = len(places.get("Event", ())), len(places.get("Response", ()))
    if events == 1 and not responses:
        head, kind = "Event", "event"
    elif events == 1 and responses == 1:
        head, kind = _EVENT_WITH_RESPONSE, "event"  # only if it is one: _parse_text checks
    elif responses == 1 and not events:
        head, kind = "Response", "response"
    else:
        head, kind = "", ""
    repeats = tuple((key, cast(_Pick, itemgetter(*at))) for key, at in places.items()
                    if len(at) > 1)
    answers = kind == "response" or "ActionID" in places
    return head, kind, repeats, repeated, {}, answers


_NEW: Callable[[type[AmiMessage]], AmiMessage] = object.__new__
"""``AmiMessage`` without ``__init__`` (``_new_message`` says why)."""


def decode_frame(raw: bytes) -> tuple[str, str]:
    """A frame's text, and the problem to report when it is not UTF-8 ("" when it is):
    such a frame is decoded with U+FFFD and read line by line like any other."""
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return (raw.decode("utf-8", "replace"),
                f"invalid UTF-8 at byte {exc.start}, decoded with U+FFFD")


def _new_message(name: str, fields: dict[str, str | list[str]], received_at: float,
                 kind: str, suspect: str) -> AmiMessage:
    """Build an AmiMessage without the frozen dataclass's per-field ``object.__setattr__``.

    The reader makes one per event (~2 us each via ``__init__``, about a tenth of the
    whole per-event budget measured by bench/bench_ami.py); the result is the same
    object ``AmiMessage(name, fields, received_at, kind, suspect)`` would be.
    """
    message = _NEW(AmiMessage)
    slots = message.__dict__  # five stores: cheaper than update(**kwargs)
    slots["name"] = name
    slots["fields"] = fields
    slots["received_at"] = received_at
    slots["kind"] = kind
    slots["suspect"] = suspect
    return message


def suspect_shape(name: str, fields: Mapping[str, str | list[str]]) -> str:
    """Why a message's keys are not those Asterisk 22 writes, "" if they are (module
    docstring); set operations on the keys, done in C."""
    keys = fields.keys()
    if "Privilege" not in keys and "ActionID" not in keys and "Event" in keys:
        return "an event with no Privilege that answers no action"
    own = OWN_KEYS.get(name)
    if own is not None:
        if not keys >= own:
            return f"{name} without {', '.join(sorted(own - keys))}"
        if name == _EVENT_WITH_RESPONSE:
            return ""
    for naming in _NAMING_KEYS.intersection(keys):
        label, block, order = _READ_BLOCKS[naming]
        if not keys >= block:
            return f"names {label} without {', '.join(k for k in order if k not in keys)}"
    return ""


def _repeated_by_asterisk(key: str) -> bool:
    return key.endswith(_REPEATED_BY_ASTERISK) or key.startswith("ChanVariable(")


def _excerpt(value: str | list[str]) -> str:
    """The last value of a key, for a log line: cut, control characters escaped."""
    text = value[-1] if isinstance(value, list) else value
    return repr(text[:_EXCERPT])


def _looks_glued(event: str | list[str] | None, response: str | list[str] | None,
                 dropped_lines: bool) -> bool:
    """Whether a frame's fields show a second message inside it (module docstring).

    Called only past a cheap test in ``_parse``, so a plain event costs nothing here.
    """
    if dropped_lines or isinstance(event, list) or isinstance(response, list):
        return True
    return response is not None and event is not None and event != _EVENT_WITH_RESPONSE


def _glue_points(raw: bytes) -> tuple[int, list[int]]:
    """Where the frame's first message starts, and where each glued-on message starts.

    A message starts at an ``Event:``/``Response:`` line that follows the current
    message's own (a ``Response:`` inside an ``OriginateResponse`` event belongs to
    it). The first message starts at byte 0, or at its first such line when only
    CR/LF bytes come before it.
    """
    start = 0
    cuts: list[int] = []
    head: bytes | None = None      # b"Event" / b"Response" of the current message
    may_add_response = False
    for match in _HEAD_RE.finditer(raw):
        key, at = match.group(1), match.start()
        if head is None:
            if not raw[:at].strip(b"\r\n"):
                start = at
        elif key == b"Response" and may_add_response:
            may_add_response = False
            continue
        else:
            cuts.append(at)
        head = key
        may_add_response = key == b"Event" and match.group(2).strip() == b"OriginateResponse"
    if head is None and not raw.strip(b"\r\n"):
        start = len(raw)           # nothing but CR/LF: junk between two frames
    return start, cuts


def _line_at(raw: bytes, at: int) -> bytes:
    """The line starting at ``at`` (up to the next CR or LF), cut for a log message."""
    end = at
    while end < len(raw) and end - at < _EXCERPT and raw[end] not in b"\r\n":
        end += 1
    return raw[at:end]


def _stray(lead: bytes) -> bool:
    """CR/LF bytes before a frame that are not whole empty lines (``\r\n`` is harmless)."""
    return bool(lead.replace(b"\r\n", b""))


def _first(value: str | list[str] | None) -> str:
    if value is None:
        return ""
    return value[0] if isinstance(value, list) else value


def _action_id(raw: bytes) -> str:
    match = _ACTION_ID_RE.search(raw)
    return match.group(1).decode("utf-8", "replace").strip() if match else ""


def encode_action(name: str, action_id: str, fields: Mapping[str, str | Sequence[str]]) -> bytes:
    """One action frame; refuses anything that would break out of it.

    asterisk-ami's ``Action.__str__`` pastes values in as they are, so a value with
    CR/LF (a caller ID, a variable) would inject extra lines or a whole extra action
    into the stream. Keys are AMI header names; values may be a list for keys that
    Asterisk accepts repeatedly (``Variable``).
    """
    lines = [f"Action: {_checked_value('Action', name)}", f"ActionID: {action_id}"]
    for key, value in fields.items():
        if not _ACTION_KEY_RE.match(key):
            raise AmiProtocolError(f"AMI {name}: invalid header name {key!r}")
        if key.lower() in ("action", "actionid"):
            raise AmiProtocolError(f"AMI {name}: {key} is set by the adapter, not the caller")
        for item in _values(name, key, value):
            lines.append(f"{key}: {_checked_value(key, item)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _values(action: str, key: str, value: str | Sequence[str]) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        return
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        yield from value
        return
    raise AmiProtocolError(f"AMI {action}: {key} must be a string or a list of strings, "
                           f"got {type(value).__name__}")


def _checked_value(key: str, value: str) -> str:
    if not isinstance(value, str):
        raise AmiProtocolError(f"AMI {key} must be a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise AmiProtocolError(f"refusing to send AMI {key} containing CR/LF "
                               f"(it would inject lines into the stream): {value[:_EXCERPT]!r}")
    return value
