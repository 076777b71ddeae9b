"""AGI wire format without sockets: quoting, command lines, the environment block, reply
parsing, and the pyst2 0.5.1 defects that made us replace its parser (each defect test
fails if pyst2 changes)."""

from __future__ import annotations

import threading

import asterisk.agi as pyst2
import pytest

from callflow.dialplan.agi import (
    MAX_COMMAND_BYTES,
    AgiResult,
    allowed_on_dead_channel,
    build_command_line,
    check_env,
    exec_data,
    parse_env_lines,
    parse_reply,
    printable,
    quote_word,
    split_usage_end,
)
from callflow.errors import (
    AgiArgumentError,
    AgiCommandError,
    AgiEnvironmentRefused,
    AgiProtocolError,
    CallerHungUp,
)


def parse_args(line: str) -> list[str]:
    """Asterisk's res_agi.c parse_args(), transcribed: how Asterisk reads our words back."""
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args.append("".join(cur))
            cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
        cur.append(ch)
        escaped = False
    if cur is not None:
        args.append("".join(cur))
    return args


@pytest.mark.parametrize("word", [
    "hello-world", "", "a b", 'Q"uo\\te', "\\", '"', 'end\\"', "tab\there", "中文",
    "${CALLERID(num)}", "A(:greeting)", "x=1",
])
def test_quoted_words_read_back_unchanged_by_asterisk(word: str) -> None:
    line = build_command_line(["SET", "VARIABLE", "X", word]).decode().rstrip("\n")
    assert parse_args(line) == ["SET", "VARIABLE", "X", word]


def test_plain_words_stay_bare_and_others_are_quoted() -> None:
    assert quote_word("hello-world") == "hello-world"
    assert quote_word("1000") == "1000"
    assert quote_word("") == '""'
    assert quote_word('Q"uo\\te') == '"Q\\"uo\\\\te"'
    line = build_command_line(["STREAM", "FILE", "hello-world", ""])
    assert line == b'STREAM FILE hello-world ""\n'


@pytest.mark.parametrize("bad", ["a\nANSWER", "a\rb", "nul\x00", "\n"])
def test_cr_lf_nul_rejected(bad: str) -> None:
    with pytest.raises(AgiArgumentError, match="CR, LF or NUL"):
        quote_word(bad)


def test_non_str_argument_rejected() -> None:
    with pytest.raises(AgiArgumentError, match="must be str"):
        build_command_line(["WAIT", "FOR", "DIGIT", 1000])  # type: ignore[list-item]


def test_command_longer_than_asterisks_buffer_rejected() -> None:
    """Measured on Asterisk 22: 8191 bytes with the newline run whole, 8192 are split."""
    overhead = len('VERBOSE "') + len('" 1\n')
    fits = " " + "x" * (MAX_COMMAND_BYTES - overhead - 1)
    assert len(build_command_line(["VERBOSE", fits, "1"])) == MAX_COMMAND_BYTES == 8191
    with pytest.raises(AgiArgumentError, match="split"):
        build_command_line(["VERBOSE", fits + "x", "1"])


def test_empty_command_rejected() -> None:
    with pytest.raises(AgiArgumentError):
        build_command_line([])


def test_exec_joins_args_with_commas_and_refuses_commas_inside() -> None:
    assert exec_data(["PJSIP/agent1001", "15", "A(:greeting)"]) == "PJSIP/agent1001,15,A(:greeting)"
    assert exec_data([]) == ""
    with pytest.raises(AgiArgumentError, match="comma"):
        exec_data(["PJSIP/a,15"])


@pytest.mark.parametrize(("words", "allowed"), [
    (["GET", "VARIABLE", "DIALSTATUS"], True),
    (["get", "full", "variable", "${X}"], True),
    (["EXEC", "NoOp"], True),
    (["VERBOSE", "x", "1"], True),
    (["SET", "VARIABLE", "A", "1"], True),
    (["ANSWER"], False),
    (["STREAM", "FILE", "x", ""], False),
    (["WAIT", "FOR", "DIGIT", "1"], False),
    (["SET", "MUSIC", "on"], False),
    (["HANGUP"], False),
])
def test_dead_channel_commands_as_asterisk_22_lists_them(words: list[str], allowed: bool) -> None:
    assert allowed_on_dead_channel(words) is allowed


ENV = [
    "agi_network: yes",
    "agi_network_script: inbound?lang=en",
    "agi_channel: PJSIP/caller-00000000",
    "agi_calleridname: Q\"uo\\\\te: with colon",
    "agi_accountcode: ",
]


def test_env_keeps_colons_in_values() -> None:
    env = parse_env_lines(ENV)
    assert env["agi_network_script"] == "inbound?lang=en"
    assert env["agi_calleridname"] == 'Q"uo\\\\te: with colon'
    assert env["agi_accountcode"] == ""


@pytest.mark.parametrize("garbage", ["hello", "\x00\x01\x02", "AGI_", "200 result=0"])
def test_env_garbage_is_a_protocol_error(garbage: str) -> None:
    with pytest.raises(AgiProtocolError, match="not an AGI environment line"):
        parse_env_lines([*ENV, garbage])


@pytest.mark.parametrize(("extra", "why"), [
    (["agi_network_script: feature"], "agi_network_script written twice"),
    (["agi_arg_1: 100", "agi_arg_1: *21"], "agi_arg_1 written twice"),
    (["agi_evil: 1"], "agi_evil is not a key Asterisk writes"),
    (["agi_arg_0: x"], "agi_arg_0 is not a key"),
])
def test_env_that_asterisk_never_writes_is_refused(extra: list[str], why: str) -> None:
    """Issue 15: a caller's value holding a newline adds lines; the last one no longer wins."""
    with pytest.raises(AgiEnvironmentRefused, match=why):
        parse_env_lines([*ENV, *extra])


def test_env_check_refuses_bytes_after_the_blank_line_and_bytes_that_are_not_utf8() -> None:
    assert check_env(ENV, [])["agi_channel"] == "PJSIP/caller-00000000"
    with pytest.raises(AgiEnvironmentRefused, match=r"1 line\(s\) after .*agi_x: 1"):
        check_env(ENV, ["agi_x: 1"])
    undecodable = b"agi_calleridname: \xff".decode("utf-8", errors="surrogateescape")
    with pytest.raises(AgiEnvironmentRefused, match="agi_calleridname is not UTF-8"):
        check_env([*ENV[:3], undecodable], [])


def test_printable_escapes_what_would_break_a_log_line() -> None:
    assert printable("张三 O'Brien") == "张三 O'Brien"
    assert printable("139\r\nagi_x: 1\x00\u2028") == "139\\r\\nagi_x: 1\\x00\\u2028"


@pytest.mark.parametrize(("line", "result", "data", "extra"), [
    ("200 result=0", "0", "", {}),
    ("200 result=0 endpos=11360", "0", "", {"endpos": "11360"}),
    ('200 result=1 (Q"uo\\te)', "1", 'Q"uo\\te', {}),
    ("200 result=1 (f(x) = (a b))", "1", "f(x) = (a b)", {}),
    ("200 result=1 ()", "1", "", {}),
    ("200 result= (timeout)", "", "timeout", {}),
    ("200 result=123 (timeout)", "123", "timeout", {}),
    ("200 result=-2", "-2", "", {}),
    ("200 result=0 Gosub complete", "0", "", {}),
    ("200 result=1 (digit) digit=1 endpos=8000", "1", "digit", {"digit": "1", "endpos": "8000"}),
])
def test_200_replies(line: str, result: str, data: str, extra: dict[str, str]) -> None:
    assert parse_reply([line]) == AgiResult(200, result, data, extra)


@pytest.mark.parametrize(("block", "error", "text"), [
    (["200 result=-1 endpos=0"], AgiCommandError, "result=-1"),
    (["200 result=1 (hangup) endpos=0"], CallerHungUp, "hung up"),
    (["511 Command Not Permitted on a dead channel or intercept routine"], CallerHungUp, "dead"),
    (["510 Invalid or unknown command"], AgiCommandError, "510"),
    (["520-Invalid command syntax.  Proper usage follows:", "Send the file.", "",
      "520 End of proper usage."], AgiCommandError, "usage: Send the file."),
    (["520 Invalid command syntax.  Proper usage not available."], AgiCommandError,
     "not available"),
    (["503 result=-2 Memory allocation failure"], AgiCommandError, "503"),
])
def test_error_replies(block: list[str], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        parse_reply(block, "X")


@pytest.mark.parametrize(("line", "why"), [
    ("200", "no result="),
    ("200 ", "no result="),
    ("200 endpos=11360", "no result="),
    ("200 Gosub complete", "no result="),
    ("200 res=1 (x)", "no result="),
    ("200 result=1 (value", "unclosed parenthesis"),
    ("200 result=1 (first line of a value holding a newline", "unclosed parenthesis"),
    ("200 result=1 (timeout endpos=8000", "unclosed parenthesis"),
    ("200 result= (timeout", "unclosed parenthesis"),
])
def test_malformed_200_is_a_protocol_error_naming_the_line(line: str, why: str) -> None:
    """pyst2's re_kv would make the first ones an empty result and lose the data of the rest."""
    with pytest.raises(AgiProtocolError) as info:
        parse_reply([line], "GET VARIABLE X")
    assert str(info.value) == f"GET VARIABLE X: malformed 200 reply, {why}: {line!r}"


def test_a_malformed_200_is_named_but_not_pasted_whole() -> None:
    with pytest.raises(AgiProtocolError) as info:
        parse_reply(["200 result=1 (" + "x" * 8000], "GET VARIABLE X")
    assert len(str(info.value)) < 200


# the last usage line and end line of STREAM FILE's 520 block (tests/fixtures/agi/command_errors)
LAST_USAGE = "    <value>FAILED</value>"


@pytest.mark.parametrize(("line", "split"), [
    ("520 End of proper usage.", ["520 End of proper usage."]),
    (LAST_USAGE + "520 End of proper usage.", [LAST_USAGE, "520 End of proper usage."]),
    ("the other end.520 End of proper usage", ["the other end.", "520 End of proper usage"]),
    ("Returns 0. 520 End of proper usage.  ", ["Returns 0. ", "520 End of proper usage."]),
    (LAST_USAGE, None),
    ("mentions 520 End of proper usage. mid-line", None),
    ("", None),
])
def test_the_end_of_a_usage_block_glued_or_not(line: str, split: list[str] | None) -> None:
    assert split_usage_end(line) == split


# ---- pyst2 0.5.1 defects, confirmed against its code -----------------------------------


class _Lines:
    """A stdin that serves lines, then '' (EOF) forever, counting the reads."""

    def __init__(self, *lines: str) -> None:
        self.lines = [line + "\n" for line in lines]
        self.reads = 0

    def readline(self) -> str:
        self.reads += 1
        if self.reads > 1000:
            raise RuntimeError("still reading after 1000 EOFs")
        return self.lines.pop(0) if self.lines else ""


class _Sink:
    def write(self, _s: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _bare_pyst2(*lines: str) -> pyst2.AGI:
    agi = pyst2.AGI.__new__(pyst2.AGI)
    agi.stdin, agi.stdout, agi.stderr = _Lines(*lines), _Sink(), _Sink()
    agi._got_sighup = False
    return agi


def test_pyst2_defect_agi_init_raises_off_the_main_thread() -> None:
    errors: list[BaseException] = []

    def construct() -> None:
        try:
            pyst2.AGI(stdin=_Lines(""), stdout=_Sink(), stderr=_Sink())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=construct)
    worker.start()
    worker.join(5)
    assert errors and isinstance(errors[0], ValueError)
    assert "main thread" in str(errors[0])


def test_pyst2_defect_520_then_eof_reads_forever() -> None:
    agi = _bare_pyst2("520-Invalid command syntax.  Proper usage follows:", "usage text")
    with pytest.raises(RuntimeError, match="1000 EOFs"):
        agi.get_result()


def test_pyst2_defect_one_line_520_swallows_the_next_reply() -> None:
    agi = _bare_pyst2("520 Invalid command syntax.  Proper usage not available.", "200 result=0")
    with pytest.raises(RuntimeError, match="1000 EOFs"):
        agi.get_result()
    assert agi.stdin.lines == []          # the next command's reply was read as usage text


@pytest.mark.parametrize("line", ["HANGUP", ""])
def test_pyst2_defect_hangup_and_eof_are_valueerror(line: str) -> None:
    with pytest.raises(ValueError):
        _bare_pyst2(line).get_result()


@pytest.mark.parametrize("line", [
    "100 result=0 Trying...",
    "511 Command Not Permitted on a dead channel or intercept routine",
])
def test_pyst2_defect_100_and_511_are_unknown_errors(line: str) -> None:
    with pytest.raises(pyst2.AGIUnknownError):
        _bare_pyst2(line).get_result()


def test_pyst2_defect_result_minus_one_raises_before_returning_the_parse() -> None:
    """A missing file (channel alive) and a hang-up look the same, endpos is lost."""
    with pytest.raises(pyst2.AGIAppError):
        _bare_pyst2("200 result=-1 endpos=0").get_result()


def test_pyst2_defect_quote_escapes_nothing() -> None:
    injected = _bare_pyst2()._quote('x"\nHANGUP')
    assert injected == '"x"\nHANGUP"'


def test_pyst2_defect_empty_result_loses_its_data() -> None:
    parsed = _bare_pyst2("200 result= (timeout)").get_result()
    assert parsed == {"result": ("", "")}


def test_pyst2_defect_fastagi_module_is_python2_only() -> None:
    with pytest.raises(ModuleNotFoundError, match="SocketServer"):
        __import__("asterisk.fastagi")


@pytest.mark.parametrize("value", ["0", "", "49", "-1", "1=2", "1)", "-2", "x\x0b"])
def test_plain_result_reads_as_pyst2s_grammar(value: str) -> None:
    """The shortcut for a bare ``200 result=N`` (issue 20) reads what ``re_kv`` reads."""
    line = f"200 result={value}"
    fields = {m["key"]: m["value"] for m in pyst2.re_kv.finditer(line[4:])}
    if fields.get("result") == "-1":
        with pytest.raises(AgiCommandError):
            parse_reply([line])
        return
    assert parse_reply([line]) == AgiResult(code=200, result=fields.get("result", ""),
                                            data="", extra={})
