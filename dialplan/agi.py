"""One FastAGI session: pyst2's AGI protocol knowledge over an asyncio stream, hardened.

Why this shape (design.md, "dialplan/"). pyst2 0.5.1 is synchronous and
process-oriented: ``AGI.__init__`` installs a SIGHUP handler (``signal.signal`` raises
off the main thread) and every command method blocks on ``stdin.readline()``, so its
command methods cannot run on an event loop. What is kept from pyst2, and what is not:

- kept: its reply grammar, ``asterisk.agi.re_kv`` (``key=value`` with a greedy
  ``(data)``, so a variable's value may contain parentheses), and its result
  conventions (a digit is its ASCII code, 0 for none; EXEC ``-2`` = no such
  application; ``(hangup)`` data = the caller left; GET VARIABLE ``result=1 (value)``
  versus ``result=0`` for unset);
- replaced: ``get_result`` and ``_get_agi_env``. Driving them through a signal-free
  subclass and an in-memory line source worked, but cost 12-30 us per reply and
  165-270 us per environment block against 3-7 us and 14-36 us here (each
  pretty-prints its result to stderr, even a null one); end to end, in one alternating
  run, the server did 0.49 of a bare asyncio server's sessions/s with them and 0.84
  without (bench/bench_fastagi.py, 200 concurrent, shared 2-core box). And their
  control flow is where the defects live:
  ``get_result`` loops forever on EOF inside a 520 block, swallows the next reply after
  a one-line ``520``, raises ``ValueError`` on ``HANGUP``/EOF and ``AGIUnknownError``
  on ``100 Trying``/``511`` (desynchronising the stream), raises on ``result=-1``
  before returning what it parsed, and ``re_kv`` drops the ``(timeout)`` of an empty
  ``result=`` (GET DATA, no digit). ``_quote`` escapes nothing: a ``"`` or a newline in
  a caller-supplied string is command injection. (tests/unit/dialplan/test_agi_wire.py pins
  each defect against pyst2's code, so an upgrade that fixes one shows up.)

Here, ``AgiSession._on_item`` frames what Asterisk sends, line by line as the loop
reads it (dialplan/agi_stream.py: no reader task, issue 20) (one line at a time, at most
``MAX_LINE_BYTES``, strict UTF-8, a ``520-`` block read to its ``520 `` line and no
further, ``100 Trying`` consumed, ``HANGUP`` remembered, EOF = hang-up), ``parse_reply``
turns one framed reply into an ``AgiResult`` or one of callflow's exceptions (no pyst2
exception is ever raised on this path), and ``quote_word`` makes every argument safe.

Replies that would otherwise stall a command or pass for a success (issue 13), each
a clear error at once:

- ``520 End of proper usage.`` glued to the end of the last usage line (the usage
  text written with no newline after it, as reported of older res_agi versions)
  ends the block like a line of its own; waiting for a separate end line would
  read the next command's reply as usage text, or stall to the command timeout.
- ``100 result=0 Trying...`` (only GOSUB sends it, before running the subroutine)
  leaves the final reply due within ``trying_timeout`` (5 s by default; the
  command's own timeout if shorter). A bare ``100`` and then nothing is an
  ``AgiCommandTimeout`` naming that line, not a wait for the 30 s command timeout,
  or forever under ``timeout=None``. A flow that runs a longer GOSUB raises
  ``trying_timeout`` (``None`` = no bound).
- A ``200`` without ``result=`` right after the code, or whose data part opens a
  parenthesis that the line never closes (``200 result=1 (value``: a value holding
  a newline is cut like this), is an ``AgiProtocolError`` naming the raw line; pyst2's
  ``re_kv`` would return an empty result for the first and lose the data of the
  second. As for any protocol error the session is then unusable (the stream may be
  out of step) and the server answers FAILURE, so the dialplan falls back.

The stream keeps reading for the whole session, after a failure too, so a
``HANGUP`` line or EOF is recorded the moment it arrives whether a command is
pending or not: Asterisk writes ``HANGUP`` from its idle loop, between commands
(after the pending command's reply, or just before the reply to a command written
as the caller left). ``hung_up``, ``wait_hangup()`` and the hang-up callbacks change
at that moment; the command in flight still gets its own reply, so the route sees
one ``CallerHungUp``, from that reply (``511``, ``result=-1``) or from the next
command that needs a live channel.

The environment block is the caller's to shape (issue 15): Asterisk writes the
caller's number, the DNID and the extension verbatim, and pjsip decodes ``%0d%0a`` in a
SIP URI into CR LF, so one value can add ``agi_`` lines (pyst2 lets the last one win:
``agi_network_script: feature`` ran an agent's feature code) or end the block early.
The dialplan cleans those values before ``AGI()`` runs; here, an environment Asterisk
would never write is refused (``check_env``): a repeated or unknown key, a line that is
no ``agi_`` line, bytes that are not UTF-8, or bytes after the blank line. Those last
are found by sending ``GET FULL VARIABLE`` of a random word right after the block
(``read_after_env``): Asterisk writes the whole block before it reads a command, so
whatever arrives before the word's echo followed the blank line. A refused session is
still a session, in step, whose ``env`` holds only what Asterisk answers for the
channel's ``UNIQUEID``, ``CHANNEL`` and ``CONTEXT``; the server routes it by that
context (dialplan/server.py). Log lines escape control characters (``printable``).

Facts from the real Asterisk 22.10 that shape the rules below (captured in
``tests/fixtures/agi/``):

- After the caller hangs up, Asterisk sends ``HANGUP`` (about 40 ms after the pending
  command's ``200 result=-1``) and then keeps the session open, answering the commands
  that ``agi show commands`` marks *Dead: Yes* (``DEAD_CHANNEL_COMMANDS``) and ``511``
  to every other one, until the script closes the socket.
- A command that fails with ``result=-1`` because the caller hung up during it (e.g.
  WAIT FOR DIGIT) is followed by that ``HANGUP``; a ``result=-1`` on a live channel
  (e.g. STREAM FILE of a missing file) is not. ``PROBE_COMMAND`` tells them apart.
- A command line of 8191 bytes or more (newline included) is split by Asterisk's 8 KiB
  ``fgets`` buffer into two commands: the tail runs as a command of its own.
- Two commands written back to back: Asterisk's stdio buffer swallows the second one
  and it never runs. One command at a time, always.
- A script that writes ``FAILURE`` makes ``AGI()`` set ``AGISTATUS=FAILURE``; a script
  that just closes the socket leaves ``AGISTATUS=SUCCESS`` (even before reading the
  environment). The dialplan's fallback to ``Queue()`` keys on FAILURE (STD-001: the
  hotline stays routed when the engine cannot take the call).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl

import asterisk.agi as pyst2  # type: ignore[import-untyped]

from callflow.dialplan.agi_stream import AgiStream, Item
from callflow.errors import (
    AgiArgumentError,
    AgiCommandError,
    AgiCommandTimeout,
    AgiEnvironmentRefused,
    AgiError,
    AgiProtocolError,
    CallerHungUp,
)

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 8192
"""Longest line accepted from Asterisk (newline included); longer is garbage."""

MAX_COMMAND_BYTES: Final = 8191
"""Longest command line sent (newline included): Asterisk 22 splits 8192 and above."""

MAX_ENV_LINES: Final = 256
"""A real environment block has about 25 lines (plus one per AGI() argument)."""

MAX_USAGE_LINES: Final = 256
"""A 520 usage text has a handful of lines; more means the block never ends."""

PROBE_COMMAND: Final = b"CHANNEL STATUS\n"
"""Sent after a ``result=-1`` to tell a hang-up from a failure: Asterisk processes the
channel's hang-up before it reads the next command, so a dead channel answers ``511``
(after a ``HANGUP`` line, unless ``AGISIGHUP=no``) and a live one ``200``."""

FAILURE_LINE: Final = b"FAILURE\n"
"""What a script writes to make ``AGI()`` report ``AGISTATUS=FAILURE`` (res_agi.c)."""

ENV_KEYS: Final = frozenset({
    "agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language",
    "agi_type", "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname",
    "agi_callingpres", "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid",
    "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced",
    "agi_accountcode", "agi_threadid",
})
"""Every key Asterisk 22 writes into a FastAGI environment, each once (res_agi.c
``launch_netscript`` and ``setup_env``), besides ``agi_arg_<n>``."""

IDENTITY: Final = (("agi_uniqueid", "UNIQUEID"), ("agi_channel", "CHANNEL"),
                   ("agi_context", "CONTEXT"))
"""The environment keys a refused environment is given, each as Asterisk answers GET
VARIABLE for that channel variable (set by Asterisk, never by a caller)."""

DEAD_CHANNEL_COMMANDS: Final = frozenset({
    ("ASYNCAGI", "BREAK"),
    ("DATABASE", "DEL"),
    ("DATABASE", "DELTREE"),
    ("DATABASE", "GET"),
    ("DATABASE", "PUT"),
    ("EXEC",),
    ("GET", "FULL", "VARIABLE"),
    ("GET", "VARIABLE"),
    ("NOOP",),
    ("SET", "VARIABLE"),
    ("SPEECH", "DESTROY"),
    ("SPEECH", "UNLOAD", "GRAMMAR"),
    ("VERBOSE",),
})
"""Commands Asterisk 22 still runs after ``HANGUP`` (``agi show commands``, Dead=Yes)."""

_BARE_WORD = re.compile(r"[A-Za-z0-9_.:/@+*#=-]+\Z")
_FORBIDDEN_IN_WORD = re.compile(r"[\r\n\x00]")
_ENV_LINE = re.compile(r"agi_[A-Za-z0-9_]+:")
_ARG_KEY = re.compile(r"agi_arg_[1-9][0-9]*\Z")
_REPLY_LINE = re.compile(r"[0-9]{3}(?:[ -]|\Z)")
_APP_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_EMPTY_RESULT_DATA = re.compile(r"^200 result= \((?P<data>[^)]*)\)")
_PLAIN_200 = re.compile(r"result=([^\s(]*)\Z")
_USAGE_END = re.compile(r"520 End of proper usage\.?\s*\Z")
_EXCERPT = 120

DEFAULT_TRYING_TIMEOUT: Final = 5.0
"""Seconds a command may take to its final reply after a ``100 Trying`` line."""


class _Default(enum.Enum):
    TIMEOUT = "session default"


SESSION_DEFAULT: Final = _Default.TIMEOUT
"""``timeout=`` value meaning "the server's ``command_timeout``" (``None`` = no limit)."""

Timeout = float | None | _Default


@dataclass(frozen=True, slots=True)
class AgiResult:
    """A ``200`` reply: ``result=`` value, its ``(data)``, and any other ``key=value``.

    (Slots: one object a reply, not two; issue 20.)"""

    code: int
    result: str
    data: str
    extra: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- wire format


def quote_word(word: str) -> str:
    """One AGI argument as Asterisk's ``parse_args`` will read it back, unchanged.

    CR, LF and NUL cannot be carried at all (a newline ends the command, NUL ends the C
    string): rejected. Anything outside a plain-word alphabet is double-quoted with
    ``\\`` and ``"`` backslash-escaped, which ``parse_args`` undoes.
    """
    if not isinstance(word, str):
        raise AgiArgumentError(f"AGI argument must be str, got {type(word).__name__}")
    if _FORBIDDEN_IN_WORD.search(word):
        raise AgiArgumentError(f"AGI argument contains CR, LF or NUL: {word!r}")
    if _BARE_WORD.match(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_command_line(words: Sequence[str]) -> bytes:
    """The bytes of one command, or AgiArgumentError before anything is sent."""
    if not words or not words[0]:
        raise AgiArgumentError("empty AGI command")
    line = (" ".join(quote_word(w) for w in words) + "\n").encode("utf-8")
    if len(line) > MAX_COMMAND_BYTES:
        raise AgiArgumentError(
            f"AGI command of {len(line)} bytes: Asterisk would split it at "
            f"{MAX_COMMAND_BYTES} and run the tail as a second command")
    return line


@functools.lru_cache(maxsize=256)
def _known_command(words: tuple[str, ...]) -> tuple[bytes, str]:
    """``build_command_line`` and ``command_label`` remembered: a flow sends the same
    few commands on every call (issue 20: quoting was ~7 % of the server's time).
    Errors are not cached."""
    return build_command_line(words), command_label(words)


def command_label(words: Sequence[str]) -> str:
    """How errors and logs name a command: its first three words, 40 characters each."""
    return " ".join(w[:40] for w in words[:3])


def command_name(words: Sequence[str]) -> tuple[str, ...]:
    """The command's keyword prefix, upper-cased (at most three words)."""
    return tuple(w.upper() for w in words[:3])


def allowed_on_dead_channel(words: Sequence[str]) -> bool:
    name = command_name(words)
    return any(name[: len(dead)] == dead for dead in DEAD_CHANNEL_COMMANDS)


def exec_data(args: Sequence[str]) -> str:
    """EXEC's one application-data word: args joined by commas.

    A comma inside an arg would silently become an extra application argument
    (``Dial(PJSIP/x,15)`` from one "arg"), so it is refused; CR/LF are refused later
    by ``quote_word`` like everywhere else.
    """
    for arg in args:
        if "," in arg:
            raise AgiArgumentError(
                f"EXEC argument contains a comma (pass separate args): {arg!r}")
    return ",".join(args)


# --------------------------------------------------------------------------- parsing


class _ResultFailed(AgiCommandError):
    """``200 result=-1``: the command failed, or the caller hung up during it."""


def printable(text: str) -> str:
    """``text`` for one log line: each character ``str.isprintable`` rejects (CR, LF,
    NUL, U+2028...) written as its escape, so a caller's string cannot start a line of
    its own or hide in one."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def parse_env_lines(lines: Sequence[str]) -> dict[str, str]:
    """The environment block (lines without their newline): ``agi_name: value`` pairs.

    As pyst2 reads it: the key ends at the first colon, both sides are stripped. What
    Asterisk itself never writes is refused (``AgiEnvironmentRefused``), because it is
    what a caller's value holding a newline looks like (Asterisk writes the caller's
    number verbatim, issue 15): a line that is no ``agi_`` line, a key Asterisk does not
    write, a key written twice (pyst2 lets the last one win: the caller's).
    """
    pairs = [line.partition(":") for line in lines]
    keys = {key for key, _, _ in pairs}
    if (len(keys) == len(pairs) and keys <= ENV_KEYS
            and all(colon for _, colon, _ in pairs)):
        # Asterisk's own block (each key once, every key one it writes, as it writes
        # it, with its colon) passes every check below as it is: one pass, no regex
        # (issue 20). Anything else takes the line-by-line checks and their errors.
        return {key: value.strip() for key, _, value in pairs}
    env: dict[str, str] = {}
    for line in lines:
        key, colon, value = line.partition(":")
        if not colon or key not in ENV_KEYS:   # a known key passes the checks as it is
            if not _ENV_LINE.match(line):
                raise AgiEnvironmentRefused(
                    f"not an AGI environment line: {printable(line[:_EXCERPT])}")
            key = key.strip()
        if key in env:
            raise AgiEnvironmentRefused(
                f"{key} written twice, then as {printable(value.strip()[:_EXCERPT])}")
        if key not in ENV_KEYS and not _ARG_KEY.match(key):
            raise AgiEnvironmentRefused(f"{printable(key[:_EXCERPT])} is not a key "
                                        "Asterisk writes")
        env[key] = value.strip()
    return env


def parse_reply(block: Sequence[str], what: str = "AGI command") -> AgiResult:
    """One framed reply (a line, or a whole 520 block) as a result or an exception.

    ``200`` gives an AgiResult, except ``result=-1`` (``_ResultFailed``) and ``(hangup)``
    data (CallerHungUp); ``511`` is CallerHungUp; ``510``, ``520`` and anything else
    (e.g. ``503 result=-2 Memory allocation failure``) are AgiCommandError.
    """
    first = block[0]
    known = _PLAIN_LINES.get(first)
    if known is not None:               # a plain "200 result=N" line seen before
        return known
    code, rest = first[:3], first[4:]
    if code == "200":
        _check_200(first, rest, what)
        plain = _PLAIN_200.match(rest)
        if plain is not None:           # "result=N" alone, most replies: no re_kv needed
            return _plain_result(first, plain[1], what)
        fields = {key: (value, data) for key, value, data in pyst2.re_kv.findall(rest)}
        result, data = fields.pop("result", ("", ""))
        empty = _EMPTY_RESULT_DATA.match(first) if not result else None
        if empty:                      # re_kv needs a non-empty value: "result= (timeout)"
            data = empty["data"]
        if data == "hangup":
            raise CallerHungUp(f"{what}: caller hung up during the command")
        if result == "-1":
            raise _ResultFailed(f"{what}: result=-1 (error, or the channel went away)")
        extra = {key: value for key, (value, _data) in fields.items()} if fields \
            else _NO_EXTRA
        return AgiResult(code=200, result=result, data=data, extra=extra)
    if code == "511":
        raise CallerHungUp(f"{what}: channel is dead ({first})")
    if code == "510":
        raise AgiCommandError(f"{what}: 510 invalid or unknown command")
    if code == "520":
        usage = " / ".join(line.strip() for line in block[1:-1] if line.strip())
        raise AgiCommandError(f"{what}: {first}" + (f"; usage: {usage}" if usage else ""))
    raise AgiCommandError(f"{what}: unexpected reply {first[:80]!r}")


_NO_EXTRA: Final[Mapping[str, str]] = MappingProxyType({})
_PLAIN_RESULTS: dict[str, AgiResult] = {}
"""The result of each plain ``200 result=N`` seen (``AgiResult`` is frozen, so one
object serves every such reply: issue 20): short values, at most
``_PLAIN_RESULTS_KEPT`` of them."""
_PLAIN_RESULTS_KEPT: Final = 64
_PLAIN_LINES: dict[str, AgiResult] = {}
"""The same results by their whole reply line (``_plain_result``)."""


def _plain_result(line: str, value: str, what: str) -> AgiResult:
    """The result of ``200 result=<value>`` with nothing after the value.

    ``AgiResult`` is frozen, so one object serves every such reply with a short value;
    it is remembered by value and, for a line exactly ``200 result=<value>``, by the
    whole line, which ``parse_reply`` then answers with one lookup, before its checks
    (the line passed them once and cannot answer otherwise: issue 20).
    """
    known = _PLAIN_RESULTS.get(value)
    if known is None:
        if value == "-1":
            raise _ResultFailed(f"{what}: result=-1 (error, or the channel went away)")
        known = AgiResult(code=200, result=value, data="", extra=_NO_EXTRA)
        if len(value) > 8 or len(_PLAIN_RESULTS) >= _PLAIN_RESULTS_KEPT:
            return known
        _PLAIN_RESULTS[value] = known
    if len(_PLAIN_LINES) < _PLAIN_RESULTS_KEPT and line == "200 result=" + value:
        _PLAIN_LINES[line] = known
    return known


def _check_200(line: str, rest: str, what: str) -> None:
    """AgiProtocolError for a ``200`` that ``re_kv`` would misread (module docstring)."""
    if not rest.startswith("result="):
        raise AgiProtocolError(f"{what}: malformed 200 reply, no result=: "
                               f"{line[:_EXCERPT]!r}")
    opened = rest.find("(")
    if opened >= 0 and rest.rfind(")") < opened:
        raise AgiProtocolError(f"{what}: malformed 200 reply, unclosed parenthesis: "
                               f"{line[:_EXCERPT]!r}")


def split_usage_end(line: str) -> list[str] | None:
    """The lines a usage block's end line stands for, or None if ``line`` does not end it.

    ``["520 End of proper usage."]`` for the proper end line; the usage text and the
    end line when Asterisk glued them (``...at the other end.520 End of proper
    usage.``).
    """
    if line.startswith("520 "):
        return [line]
    match = _USAGE_END.search(line)
    if match is None:
        return None
    return [line[:match.start()], match.group().rstrip()]


# --------------------------------------------------------------------------- line I/O


def _line_text(raw: bytes) -> str:
    """One reply line without its newline; AgiProtocolError if it is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgiProtocolError(f"line is not UTF-8: {raw[:60]!r}") from exc
    return text.rstrip("\r\n")


def _env_text(raw: bytes | None) -> str | None:
    """One line of the environment (or of what follows it) without its newline; None at
    EOF. Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``): the
    environment is then refused, but read to its end, so the stream stays in step."""
    if raw is None:
        return None
    return raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


async def _read_env_line(stream: AgiStream, deadline: float) -> str | None:
    """``_env_text`` of the next line; the block mostly arrives in one piece, so a queued
    line is taken without waiting (``read_env`` inlines the same)."""
    return _env_text(stream.take_line() if stream.has_line
                     else await stream.readline(deadline))


async def read_env(stream: AgiStream, *, timeout: float) -> list[str]:
    """The environment block Asterisk sends first, bounded in lines and time, unparsed.

    Bytes that are not UTF-8 come as lone surrogates (see ``check_env``); a block that
    never ends is an ``AgiProtocolError``.
    """
    lines: list[str] = []
    deadline = stream.loop.time() + timeout
    try:
        block = await stream.take_block(deadline)
        if block is not None:           # whole, short, no CR: one decode, one split
            lines = block.decode("utf-8", errors="surrogateescape").split("\n")[:-2]
            if len(lines) > MAX_ENV_LINES:
                raise AgiProtocolError(f"AGI environment longer than {MAX_ENV_LINES} lines")
            return lines
        while True:
            line = _env_text(stream.take_line() if stream.has_line
                             else await stream.readline(deadline))
            if line is None:
                raise AgiProtocolError("connection closed inside the AGI environment")
            if line == "":
                break
            if len(lines) >= MAX_ENV_LINES:
                raise AgiProtocolError(f"AGI environment longer than {MAX_ENV_LINES} lines")
            lines.append(line)
    except TimeoutError:
        raise AgiProtocolError(f"no complete AGI environment within {timeout:g} s") from None
    return lines


async def read_after_env(stream: AgiStream, *, timeout: float) -> tuple[list[str], bool]:
    """What Asterisk wrote after the environment's blank line, and whether ``HANGUP``
    was among it.

    Asterisk writes the whole environment before it reads a command, and then nothing
    but ``HANGUP`` until it has one. So a ``GET FULL VARIABLE`` of a random word is sent
    and everything up to its echo is what followed the blank line: a caller's value
    with an empty line in it ends the block early, and the rest of the block comes
    here (issue 15). Only Asterisk's reply can hold the word, so a forged reply in
    those bytes cannot pass for it, and the stream is in step afterwards either way.
    """
    word = secrets.token_hex(8)
    echo = f"200 result=1 ({word})"
    after: list[str] = []
    hung_up = False
    deadline = stream.loop.time() + timeout
    # a hex word is a bare word: the line ``build_command_line`` would write, without
    # its quoting checks on every call (issue 20)
    stream.write(f"GET FULL VARIABLE {word}\n".encode())
    try:
        while (line := await _read_env_line(stream, deadline)) != echo:
            if line is None:
                raise AgiProtocolError("connection closed after the AGI environment")
            if line == "HANGUP":
                hung_up = True
            elif len(after) < MAX_ENV_LINES:
                after.append(line)
            else:
                raise AgiProtocolError(f"more than {MAX_ENV_LINES} lines after the "
                                       "AGI environment")
    except TimeoutError:
        raise AgiProtocolError(f"no reply to GET FULL VARIABLE within {timeout:g} s after "
                               "the AGI environment") from None
    return after, hung_up


def check_env(lines: Sequence[str], after: Sequence[str]) -> dict[str, str]:
    """The environment, or ``AgiEnvironmentRefused`` (``parse_env_lines``; and bytes
    after its blank line, or bytes that are not UTF-8: what Asterisk never writes)."""
    if after:
        raise AgiEnvironmentRefused(f"{len(after)} line(s) after the environment's blank "
                                    f"line, the first {printable(after[0][:_EXCERPT])}")
    env = parse_env_lines(lines)
    if "\n".join(env.values()).isascii():
        return env                      # the usual block: nothing to decode-check
    for key, value in env.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise AgiEnvironmentRefused(
                f"{key} is not UTF-8: {printable(value[:_EXCERPT])}") from None
    return env


# --------------------------------------------------------------------------- session


class AgiSession:
    """One call's FastAGI conversation, from the environment to the socket's close.

    A route handler gets one and calls the command methods; every way the caller can
    disappear (``HANGUP`` line, ``511``, ``result=-1`` followed by ``HANGUP``, EOF)
    surfaces as one ``CallerHungUp``. After the hang-up, the commands Asterisk still
    serves on a dead channel (``DEAD_CHANNEL_COMMANDS``, e.g. GET VARIABLE DIALSTATUS)
    are sent; any other raises ``CallerHungUp`` without touching the wire.

    The moment Asterisk says the caller is gone (the ``HANGUP`` line as it is read,
    even between commands; ``511``; EOF), ``hung_up`` turns True, ``wait_hangup()``
    returns and the ``add_hangup_callback`` callbacks run: a flow waiting on
    something else (an agent, a timer) can race it against ``wait_hangup()`` to
    stop at once. ``hung_up`` stays a plain bool (``if session.hung_up`` is how the
    server decides whether FAILURE may still be written).
    """

    def __init__(self, stream: AgiStream,
                 env: Mapping[str, str], *, command_timeout: float | None = 30.0,
                 trying_timeout: float | None = DEFAULT_TRYING_TIMEOUT) -> None:
        self.env: Mapping[str, str] = MappingProxyType(dict(env))
        request = self.env.get("agi_network_script", "")
        path, _, query = request.partition("?")
        self.script: str = path.strip("/")
        self.args: Mapping[str, str] = MappingProxyType(
            dict(parse_qsl(query, keep_blank_values=True))) if query else _NO_EXTRA
        self.argv: tuple[str, ...] = tuple(_positional_args(self.env))
        self.command_timeout = command_timeout
        self.trying_timeout = trying_timeout
        self._stream = stream
        self._loop = stream.loop
        self._busy = False               # a command is in flight (``_wait_turn``)
        self._turns: deque[asyncio.Future[None]] | None = None  # commands waiting for it
        self._pending: asyncio.Future[list[str]] | None = None
        self._deadline = stream.deadline      # the pending command's, on the one timer
        self._usage: list[str] | None = None    # a 520 usage block being read
        self._trying = ""                # the pending command's "100 Trying" line, if any
        self._trying_cut = False         # ...and whether it shortened the deadline
        self._hung_up = False
        self._hangup_event: asyncio.Event | None = None   # made by the first wait_hangup
        self._hangup_callbacks: list[Callable[[], None]] = []
        self._eof = False
        self._failure: AgiError | None = None
        self._closed = False
        self.protocol_error: AgiProtocolError | None = None
        self.refused: str | None = None
        stream.start_session(self._on_item)

    @classmethod
    async def accept(cls, stream: AgiStream, *, env_timeout: float = 5.0,
                     command_timeout: float | None = 30.0,
                     trying_timeout: float | None = DEFAULT_TRYING_TIMEOUT) -> AgiSession:
        """Read and check the environment block, then start the session.

        ``AgiProtocolError`` when no session can be had (a block that never ends, EOF, a
        timeout). A refused environment (``check_env``) still gives a session, in step
        with Asterisk, whose ``refused`` says why and whose ``env`` holds only what
        Asterisk answers about the channel (``IDENTITY``): no script, no caller, no
        argument. The server decides what such a call gets.
        """
        lines = await read_env(stream, timeout=env_timeout)
        after, hung_up = await read_after_env(stream, timeout=env_timeout)
        try:
            env, refused = check_env(lines, after), None
        except AgiEnvironmentRefused as exc:
            env, refused = {}, exc
        session = cls(stream, env, command_timeout=command_timeout,
                      trying_timeout=trying_timeout)
        if hung_up:
            session._set_hung_up()
        if refused is not None:
            await session._believe_only_asterisk(refused)
        return session

    async def _believe_only_asterisk(self, refused: AgiEnvironmentRefused) -> None:
        """After a refused environment: the channel's identity as Asterisk answers it."""
        self.refused = str(refused)
        try:
            self.env = MappingProxyType(
                {key: await self.get_variable(name) or "" for key, name in IDENTITY})
        except AgiError:
            await self.close(fallback=True)
            raise AgiProtocolError(f"environment refused ({refused}), and the channel's "
                                   "identity could not be read") from None

    # -- identity ---------------------------------------------------------------------

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "?")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "?")

    @property
    def context(self) -> str:
        """The dialplan context the channel runs in ("" if not known)."""
        return self.env.get("agi_context", "")

    def describe(self) -> str:
        """Channel, uniqueid and script for a log line (control characters escaped)."""
        return printable(f"{self.channel} ({self.uniqueid}) script={self.script!r}")

    @property
    def hung_up(self) -> bool:
        """True once Asterisk said the channel is gone (HANGUP, 511, -1+HANGUP, EOF)."""
        return self._hung_up

    def add_hangup_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) when the caller hangs up, or soon if that happened."""
        if self.hung_up:
            self._loop.call_soon(callback)
        else:
            self._hangup_callbacks.append(callback)

    async def wait_hangup(self, timeout: float | None = None) -> bool:
        """Wait until the caller hangs up; True if that happened within ``timeout``."""
        if self._hung_up:
            return True
        if self._hangup_event is None:  # most sessions never wait for it: no Event each
            self._hangup_event = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._hangup_event.wait()
        except TimeoutError:
            return False
        return True

    # -- commands ---------------------------------------------------------------------

    async def command(self, *words: str, timeout: Timeout = SESSION_DEFAULT,
                      secret: bool = False) -> AgiResult:
        """Send one AGI command and return its ``200`` reply.

        ``words`` are the command's keywords and arguments, each quoted as needed.
        ``timeout``: seconds, ``None`` for none (EXEC Dial, long prompts), default the
        server's ``command_timeout``. Raises CallerHungUp, AgiCommandError (510, 520,
        ``result=-1`` on a live channel), AgiCommandTimeout, AgiProtocolError,
        AgiArgumentError (before anything is sent). ``secret``: the reply carries what
        must not be logged (a PIN keyed by the caller): an error about it names the
        command, never the reply line.
        """
        for word in words:
            if type(word) is not str:   # only plain strings go through the cache
                line, what = build_command_line(words), command_label(words)
                break
        else:
            line, what = _known_command(words)
        limit = self.command_timeout if timeout is SESSION_DEFAULT else timeout
        if self._busy:                  # another command of this session is in flight
            await self._wait_turn()
        else:
            self._busy = True
        try:
            self._check_usable(words, what)
            try:                        # ``_exchange``, inlined
                block = await self._send(line, what, limit)
            except TimeoutError:
                raise self._timed_out(what, limit) from None
            finally:
                self._pending = None
                self._deadline.disarm()
            try:
                return self._interpret(block, what) if not secret \
                    else self._interpret_secret(block, what)
            except _ResultFailed:
                if not self.hung_up:
                    await self._probe_channel()
                if self.hung_up:
                    raise CallerHungUp(f"{what}: caller hung up during the command") from None
                raise
            except AgiProtocolError as exc:     # a malformed reply: the stream is suspect
                self._protocol_failure(exc)
                raise
        finally:
            self._next_turn()

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def stream_file(self, path: str, escape_digits: str = "", *,
                          timeout: Timeout = SESSION_DEFAULT) -> str:
        """Play a sound file; the escape digit pressed, or "" if it played to the end."""
        reply = await self.command("STREAM", "FILE", path, escape_digits, timeout=timeout)
        return _digit(reply, "STREAM FILE")

    async def get_data(self, path: str, timeout_ms: int, max_digits: int, *,
                       timeout: Timeout = SESSION_DEFAULT, secret: bool = False) -> str:
        """Play a prompt and collect up to ``max_digits`` DTMF digits ("" if none).

        The default command timeout is ``command_timeout`` (for the prompt) plus the
        longest the digits may take (``timeout_ms`` per digit).
        """
        if timeout is SESSION_DEFAULT:
            timeout = self._plus_default(timeout_ms * max(1, max_digits))
        reply = await self.command("GET", "DATA", path, str(int(timeout_ms)),
                                   str(int(max_digits)), timeout=timeout, secret=secret)
        return reply.result

    async def wait_for_digit(self, timeout_ms: int, *, timeout: Timeout = SESSION_DEFAULT) -> str:
        """One DTMF digit within ``timeout_ms`` (-1 = forever), or "".

        The default command timeout is ``timeout_ms`` plus ``command_timeout`` (none
        for -1).
        """
        if timeout is SESSION_DEFAULT:
            timeout = self._plus_default(timeout_ms)
        reply = await self.command("WAIT", "FOR", "DIGIT", str(int(timeout_ms)), timeout=timeout)
        return _digit(reply, "WAIT FOR DIGIT")

    async def exec(self, app: str, *args: str, timeout: Timeout = None) -> str:
        """Run a dialplan application; its result (``EXEC app "a,b"``).

        No timeout by default: applications such as Dial or Queue last as long as
        the call. An unknown application (``result=-2``) raises AgiCommandError.
        """
        if not _APP_NAME.match(app):
            raise AgiArgumentError(f"not an application name: {app!r}")
        reply = await self.command("EXEC", app, exec_data(args), timeout=timeout)
        if reply.result == "-2":
            raise AgiCommandError(f"EXEC {app}: no such application")
        return reply.result

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """A channel variable's value, or None if unset (works after the hang-up).

        Asterisk truncates the value to 1023 bytes.
        """
        reply = await self.command("GET", "VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def hangup(self) -> None:
        await self.command("HANGUP")

    async def verbose(self, msg: str, level: int = 1) -> None:
        await self.command("VERBOSE", msg, str(int(level)))

    # -- end of session ---------------------------------------------------------------

    async def close(self, *, fallback: bool = False) -> None:
        """End the session; with ``fallback`` make the dialplan see AGISTATUS=FAILURE."""
        if self._closed:
            return
        self._closed = True
        self._failure = self._failure or AgiProtocolError("session is closed")
        if fallback and not self._eof:
            self._stream.write(FAILURE_LINE)
        self._stream.close()
        await self._stream.wait_closed(CLOSE_TIMEOUT)

    # -- internals --------------------------------------------------------------------

    def _plus_default(self, wait_ms: int) -> float | None:
        """A command that may legitimately wait ``wait_ms``: that plus the usual margin."""
        if wait_ms < 0 or self.command_timeout is None:
            return None
        return wait_ms / 1000 + self.command_timeout

    async def _wait_turn(self) -> None:
        """Wait until the commands written before this one have their replies.

        Asterisk loses a command written before the previous reply, so a session's
        commands go one at a time, first come first served, as with the
        ``asyncio.Lock`` this replaces (issue 20: the lock, and its ``acquire``
        coroutine on every command, cost more than the one check a session issuing
        its commands in order needs; the queue is only made when two overlap).
        """
        turns = self._turns
        if turns is None:
            turns = self._turns = deque()
        turn: asyncio.Future[None] = self._loop.create_future()
        turns.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._next_turn()       # handed the turn as it was cancelled: pass it on
            raise

    def _next_turn(self) -> None:
        """The command in flight is done: the next waiting one goes, or none is busy."""
        turns = self._turns
        while turns:
            turn = turns.popleft()
            if not turn.done():         # (a cancelled waiter is skipped)
                turn.set_result(None)   # still busy: the turn is handed over
                return
        self._busy = False

    def _check_usable(self, words: Sequence[str], what: str) -> None:
        if self._failure is not None:
            raise type(self._failure)(f"{what}: {self._failure}")
        if self._eof:
            raise CallerHungUp(f"{what}: connection to Asterisk is closed")
        if self.hung_up and not allowed_on_dead_channel(words):
            raise CallerHungUp(f"{what}: caller has hung up")

    async def _exchange(self, line: bytes, what: str, limit: float | None) -> list[str]:
        """Write one command and wait for its framed reply (``_on_item`` resolves it).

        The deadline is armed before the write, since a ``100 Trying`` may come at once,
        on the connection's one timer (``agi_stream.Deadline``: no timer, timeout
        context or task per command). ``command`` inlines the same three steps (issue
        20: one coroutine less per command).
        """
        try:
            return await self._send(line, what, limit)
        except TimeoutError:
            raise self._timed_out(what, limit) from None
        finally:
            self._pending = None
            self._deadline.disarm()

    def _send(self, line: bytes, what: str, limit: float | None) -> asyncio.Future[list[str]]:
        """Write one command; the future its framed reply will resolve (``_exchange``)."""
        if self._stream.eof:
            raise CallerHungUp(f"{what}: connection to Asterisk is closed")
        loop = self._loop
        pending: asyncio.Future[list[str]] = loop.create_future()
        self._pending = pending
        self._trying, self._trying_cut = "", False
        self._deadline.arm(pending, loop.time() + limit if limit is not None else None)
        self._stream.write(line)
        return pending

    def _timed_out(self, what: str, limit: float | None) -> AgiCommandTimeout:
        """No reply in time: the session fails (``_fail``); the error to raise."""
        error = AgiCommandTimeout(self._timeout_message(what, limit))
        self._fail(error)
        return error

    def _timeout_message(self, what: str, limit: float | None) -> str:
        if not self._trying:
            return f"{what}: no reply within {limit:g} s"
        waited = self.trying_timeout if self._trying_cut else limit
        return (f"{what}: {self._trying[:_EXCERPT]!r}, then no final reply within "
                f"{waited:g} s")

    def _on_trying(self, line: str) -> None:
        """``100 Trying``: the final reply is now due within ``trying_timeout``."""
        log.debug("%s: %s", self.describe(), line)
        self._trying = line
        pending = self._pending
        if pending is None or self.trying_timeout is None:
            return
        due = self._loop.time() + self.trying_timeout
        current = self._deadline.due
        if current is None or due < current:
            self._deadline.arm(pending, due)
            self._trying_cut = True

    async def _probe_channel(self) -> None:
        """After ``result=-1``: is the channel still there? (see ``PROBE_COMMAND``)."""
        block = await self._exchange(PROBE_COMMAND, "CHANNEL STATUS", self.command_timeout)
        if block[0].startswith("511"):
            self._set_hung_up()

    def _interpret_secret(self, block: list[str], what: str) -> AgiResult:
        """``_interpret`` whose errors do not quote the reply (it may hold a PIN)."""
        try:
            return self._interpret(block, what)
        except (_ResultFailed, CallerHungUp):
            raise  # their texts name the command only
        except AgiError as exc:
            raise type(exc)(f"{what}: {type(exc).__name__} (reply withheld: secret "
                            "input)") from None

    def _interpret(self, block: list[str], what: str) -> AgiResult:
        if block[0].startswith("511"):
            self._set_hung_up()
        return parse_reply(block, what)

    def _on_item(self, item: Item) -> None:
        """Each line Asterisk sends, as it arrives, for the whole session (module
        docstring); called by the stream from the loop, never awaits.

        Replies go to the one pending command. After a failure nothing is framed any
        more (the late reply after a timeout, garbage), but ``HANGUP`` and EOF are
        still recorded at once.
        """
        if item is None:
            self._usage = None
            self._mark_eof()
            return
        try:
            if isinstance(item, AgiProtocolError):
                raise item
            line = _line_text(item)
            if self._usage is not None:
                self._take_usage_line(line)
            elif line == "HANGUP":
                log.info("caller hung up: %s", self.describe())
                self._set_hung_up()
            elif self._failure is None:
                self._take_reply(line)
        except AgiProtocolError as exc:
            self._usage = None
            if self._failure is None:           # after a failure, garbage is just skipped
                self._protocol_failure(exc)

    def _take_reply(self, line: str) -> None:
        """Frame one reply for the pending command."""
        if not _REPLY_LINE.match(line):
            raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
        pending = self._pending
        if pending is None or pending.done():
            raise AgiProtocolError(f"reply with no command pending: {line[:80]!r}")
        if line.startswith("100"):
            self._on_trying(line)
        elif line.startswith("520-"):
            self._usage = [line]
        else:
            pending.set_result([line])

    def _take_usage_line(self, line: str) -> None:
        """One line of a 520 usage block; its end line hands the block to the command."""
        block = self._usage
        assert block is not None
        end = split_usage_end(line)
        if end is None:
            block.append(line)
            if len(block) > MAX_USAGE_LINES:
                raise AgiProtocolError(f"520 usage text longer than {MAX_USAGE_LINES} lines")
            return
        block.extend(end)
        self._usage = None
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(block)

    def _protocol_failure(self, error: AgiProtocolError) -> None:
        """Asterisk broke the protocol: log it once, fail the session (``_fail``)."""
        if self.protocol_error is None:
            log.error("AGI protocol error on %s: %s", self.describe(), error)
            self.protocol_error = error
        self._fail(error)

    def _set_hung_up(self) -> None:
        if self._hung_up:
            return
        self._hung_up = True
        if self._hangup_event is not None:
            self._hangup_event.set()
        callbacks, self._hangup_callbacks = self._hangup_callbacks, []
        for callback in callbacks:
            callback()

    def _mark_eof(self) -> None:
        self._eof = True
        self._set_hung_up()
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(CallerHungUp("connection to Asterisk closed"))

    def _fail(self, error: AgiError) -> None:
        """The stream can no longer be trusted: later commands raise ``error``'s type.

        The socket stays open so that ``close(fallback=True)`` can still tell the
        dialplan FAILURE (a bare close would read as SUCCESS and drop the caller).
        """
        self._failure = self._failure or error
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(error)


CLOSE_TIMEOUT: Final = 2.0
"""Seconds ``close`` waits for the connection to go once it has closed its end."""


def _positional_args(env: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in env:
        args.append(env[f"agi_arg_{len(args) + 1}"])
    return args


def _digit(reply: AgiResult, what: str) -> str:
    """pyst2's convention: result is the digit's ASCII code, 0 for none."""
    if reply.result == "0":
        return ""
    try:
        return chr(int(reply.result))
    except ValueError:
        raise AgiProtocolError(f"{what}: result is not a digit code: {reply.result!r}") from None
