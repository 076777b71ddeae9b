"""Wire format v1 and token auth, without a socket (stream/protocol.py, api/auth.py)."""

from __future__ import annotations

import json
import logging

import pytest

from callflow.api.auth import SUPERVISOR, Principal, TokenAuth
from callflow.stream.protocol import (
    MAX_CLIENT_FRAME_BYTES,
    ClientFrameError,
    FrameEncoder,
    Ping,
    parse_auth_frame,
    parse_client_frame,
    pong_frame,
)


def test_an_event_is_encoded_once_for_every_client() -> None:
    encoder = FrameEncoder()
    message = {"seq": 7, "topic": "board", "payload": {"agent": "1001", "state": "ready"}}
    first = encoder.encode(message)
    assert encoder.encode(dict(message)) is first
    assert json.loads(first) == {"v": 1, "type": "event", "seq": 7, "topic": "board",
                                 "payload": {"agent": "1001", "state": "ready"}}


def test_the_encode_cache_is_bounded_oldest_out() -> None:
    encoder = FrameEncoder(cache_size=3)
    frames = [encoder.encode({"seq": s, "topic": "t", "payload": {}}) for s in range(1, 5)]
    assert encoder.encode({"seq": 4, "topic": "t", "payload": {}}) is frames[3]
    assert encoder.encode({"seq": 2, "topic": "t", "payload": {}}) is frames[1]
    again = encoder.encode({"seq": 1, "topic": "t", "payload": {}})
    assert again == frames[0] and again is not frames[0]


def test_snapshots_are_not_cached_and_a_bad_state_is_sent_empty(
        caplog: pytest.LogCaptureFixture) -> None:
    encoder = FrameEncoder()
    snapshot = {"type": "snapshot", "seq": 3, "reason": "overflow", "state": {"a": 1}}
    assert json.loads(encoder.encode(snapshot))["state"] == {"a": 1}
    with caplog.at_level(logging.ERROR):
        broken = json.loads(encoder.encode({**snapshot, "state": {"a": float("inf")}}))
    assert broken == {"v": 1, "type": "snapshot", "seq": 3, "reason": "overflow", "state": {}}
    assert "not JSON-encodable" in caplog.text


def test_non_json_payloads_become_an_error_frame_naming_the_gap() -> None:
    frame = json.loads(FrameEncoder().encode({"seq": 9, "topic": "board",
                                              "payload": {"x": object()}}))
    assert frame["type"] == "error"
    assert frame["error"] == "unencodable_event"
    assert "seq 9" in frame["detail"]


def test_ping_round_trip() -> None:
    assert parse_client_frame('{"type":"ping","id":"a"}') == Ping("a")
    assert parse_client_frame('{"type":"ping"}') == Ping()
    assert json.loads(pong_frame(Ping(5))) == {"v": 1, "type": "pong", "id": 5}


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    # 30 000 CJK characters are 90 000 bytes: over the limit though len() is not.
    text = json.dumps({"type": "ping", "id": "x", "pad": "久" * 30_000}, ensure_ascii=False)
    assert len(text) < MAX_CLIENT_FRAME_BYTES < len(text.encode())
    with pytest.raises(ClientFrameError) as refused:
        parse_client_frame(text)
    assert refused.value.error == "frame_too_large"
    assert refused.value.close_code == 1009


@pytest.mark.parametrize(("frame", "error"), [
    ("{", "bad_json"),
    ("[" * 60_000, "bad_json"),
    ('{"type": "ping", "id": ' + "[" * 30_000 + "]" * 30_000 + "}", "bad_json"),
    ("null", "bad_frame"),
    ('{"type": 1}', "unknown_type"),
    ('{"type": "' + "z" * 1000 + '"}', "unknown_type"),
    ('{"type": "ping", "id": 9007199254740993}', "bad_frame"),
    ('{"type": "ping", "id": 1.5}', "bad_frame"),
    (b"{}", "binary_not_supported"),
])
def test_bad_frames_are_named_and_keep_the_connection(frame: str | bytes, error: str) -> None:
    with pytest.raises(ClientFrameError) as refused:
        parse_client_frame(frame)
    assert refused.value.error == error
    assert refused.value.close_code is None
    assert len(refused.value.detail) < 200  # never echoes a huge input back


def test_the_first_frame_carries_the_token() -> None:
    assert parse_auth_frame('{"type": "auth", "token": "s2.abc"}') == "s2.abc"


@pytest.mark.parametrize(("frame", "error"), [
    ('{"type": "ping"}', "unknown_type"),
    ('{"token": "s2.abc"}', "unknown_type"),
    ('{"type": "auth"}', "bad_frame"),
    ('{"type": "auth", "token": ""}', "bad_frame"),
    ('{"type": "auth", "token": 7}', "bad_frame"),
    ('{"type": "auth", "token": "' + "x" * 513 + '"}', "bad_frame"),
    ("not json", "bad_json"),
    (b'{"type": "auth", "token": "s2.abc"}', "binary_not_supported"),
])
def test_a_first_frame_that_is_not_an_auth_frame_is_refused(frame: str | bytes,
                                                            error: str) -> None:
    with pytest.raises(ClientFrameError) as refused:
        parse_auth_frame(frame)
    assert refused.value.error == error


def test_the_deployment_token_is_a_supervisor_seeing_every_topic() -> None:
    auth = TokenAuth.deployment("a" * 32)
    assert auth.authenticate("a" * 32) is SUPERVISOR
    assert SUPERVISOR.may_see("agent:1001") and SUPERVISOR.may_see("board")
    for wrong in (None, "", "a" * 31, "a" * 33, "b" * 32, "ä" * 32, "\udcff" * 32):
        assert auth.authenticate(wrong) is None


def test_a_principal_with_topics_sees_only_those() -> None:
    agent = Principal(name="1001", role="agent", topics=frozenset({"agent:1001"}))
    auth = TokenAuth({"s" * 20: SUPERVISOR, "g" * 20: agent})
    assert auth.authenticate("g" * 20) is agent
    assert agent.may_see("agent:1001")
    assert not agent.may_see("agent:1002")
    assert not agent.may_see("board")


@pytest.mark.parametrize("token", ["", "short", "x" * 15])
def test_a_missing_or_weak_deployment_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        TokenAuth.deployment(token)
