"""The desktop's ``transfer`` request: every field checked and bounded (STD-049)."""

from __future__ import annotations

import json

import pytest

from callflow.agents.transfers import TransferTarget
from callflow.desktop.protocol import (
    MAX_TRANSFER_NOTE,
    DesktopRequest,
    parse_desktop_frame,
    transfer_ack_frame,
)
from callflow.stream.protocol import ClientFrameError


def frame(**fields: object) -> str:
    return json.dumps({"type": "transfer", "id": 7, **fields})


def test_a_blind_transfer_to_an_agent_with_a_note() -> None:
    request = parse_desktop_frame(frame(mode="blind", target={"kind": "agent", "value": "1002"},
                                        note="  客户要改地址 "))
    assert isinstance(request, DesktopRequest) and request.transfer is not None
    assert (request.type, request.id) == ("transfer", 7)
    assert request.transfer.mode == "blind"
    assert request.transfer.target == TransferTarget("agent", "1002")
    assert request.transfer.note == "客户要改地址"


def test_the_back_office_needs_no_value() -> None:
    request = parse_desktop_frame(frame(mode="warm", target={"kind": "backoffice"}))
    assert isinstance(request, DesktopRequest) and request.transfer is not None
    assert request.transfer.target == TransferTarget("backoffice", "")


@pytest.mark.parametrize("fields", [
    {"target": {"kind": "agent", "value": "1002"}},  # no mode
    {"mode": "consult", "target": {"kind": "agent", "value": "1002"}},
    {"mode": "blind"},  # no target
    {"mode": "blind", "target": "1002"},
    {"mode": "blind", "target": {"kind": "moon", "value": "1"}},
    {"mode": "blind", "target": {"kind": "agent"}},
    {"mode": "blind", "target": {"kind": "agent", "value": 1002}},
    {"mode": "blind", "target": {"kind": "queue", "value": "a" * 33}},
    {"mode": "blind", "target": {"kind": "external", "value": "1;Hangup()"}},
    {"mode": "blind", "target": {"kind": "agent", "value": "1002"}, "note": 5},
    {"mode": "blind", "target": {"kind": "agent", "value": "1002"},
     "note": "x" * (MAX_TRANSFER_NOTE + 1)},
])
def test_bad_transfer_frames_get_one_clear_error(fields: dict[str, object]) -> None:
    with pytest.raises(ClientFrameError) as refused:
        parse_desktop_frame(frame(**fields))
    assert refused.value.error == "bad_frame"
    assert "transfer" in str(refused.value)


def test_the_ack_says_where_the_caller_goes() -> None:
    request = DesktopRequest("transfer", "x1")
    ack = json.loads(transfer_ack_frame(request, "acw", "queue:vip", "贵宾部", 42))
    assert ack == {"v": 1, "type": "ack", "request": "transfer", "state": "acw", "reason": "",
                   "destination": "queue:vip", "destination_name": "贵宾部", "seq": 42,
                   "id": "x1"}


@pytest.mark.parametrize("kind", ["transfer_complete", "transfer_cancel"])
def test_the_warm_transfers_second_step_names_nothing_else(kind: str) -> None:
    request = parse_desktop_frame(json.dumps({"type": kind, "id": 9, "call_id": "x" * 999}))
    assert isinstance(request, DesktopRequest)
    assert (request.type, request.id, request.call_id, request.transfer) == (kind, 9, "", None)


def test_a_bad_id_on_the_second_step_is_refused() -> None:
    with pytest.raises(ClientFrameError) as refused:
        parse_desktop_frame(json.dumps({"type": "transfer_complete", "id": [1]}))
    assert refused.value.error == "bad_frame"
