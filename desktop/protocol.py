"""Agent desktop protocol v1 (docs/agent-protocol.md): frames and rules, with no I/O.

The desktop speaks JSON over one websocket. What it receives is the event stream
of the v1 events protocol (docs/websocket-protocol.md: ``event``, ``snapshot``,
``pong``, ``error`` frames, sequence numbers, resume, drop-to-snapshot), limited to
its own topic ``agent:<id>``, plus a ``hello`` at connect and an ``ack`` or ``error``
for each request. What it sends are state requests, which become events of the one
agent state machine (agents/state.py), exactly like a feature code dialled from the
softphone. Kept apart from the websocket handler (desktop/routes.py) so every rule
about frames is tested without a socket (style.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from callflow.agents.events import (
    Actor,
    AgentEvent,
    AgentState,
    AskAcwExtension,
    EndAcw,
    LogOut,
    RequestState,
    SubmitWrapup,
)
from callflow.agents.state import MAX_ACW_ASK_REASON, MAX_WRAPUP_NOTES
from callflow.agents.transfers import (
    TARGET_KINDS,
    TARGET_VALUE,
    TRANSFER_MODES,
    ConsultStep,
    TransferMode,
    TransferTarget,
)
from callflow.desktop.scripts import (
    AddressError,
    CallerAddress,
    address_form,
    check_address,
    forbidden_phrases,
    load_pack,
    offered_scripts,
    phases_for_state,
)
from callflow.engine.policy import Policy, Reason
from callflow.engine.rules import enforces
from callflow.stream.protocol import (
    MAX_CLIENT_FRAME_BYTES,
    MAX_PING_ID_LENGTH,
    ClientFrameError,
    Ping,
    decode_client_json,
)

PROTOCOL_NAME = "callflow-agent-desktop"
PROTOCOL_VERSION = 1
REQUEST_TYPES = ("login", "ready", "busy", "not_ready", "end_acw", "wrapup", "logout",
                 "transfer", "transfer_complete", "transfer_cancel", "transfer_conference",
                 "acw_extend_request",
                 "escalate", "activity", "identity_pin")
#: Requests about the call, not the agent's state (desktop/feature.py answers them).
CALL_REQUEST_TYPES = ("transfer", "transfer_complete", "transfer_cancel",
                      "transfer_conference")
#: The warm transfer's next steps: join the caller to the consulted colleague, or not, or
#: all three together (a three-way conference, then ``complete`` or ``cancel`` again).
CONSULT_STEPS: dict[str, ConsultStep] = {"transfer_complete": "complete",
                                          "transfer_cancel": "cancel",
                                          "transfer_conference": "conference"}
MAX_TRANSFER_NOTE = 500  # the note that travels to the receiving desk (STD-049)
MAX_TARGET_LENGTH = 32
MAX_CALL_ID_LENGTH = 64
MAX_DISPOSITION_LENGTH = 32
MAX_EXTENSION_LENGTH = 32
MAX_REASON_LENGTH = 64
RequestId = str | int | None


@dataclass(frozen=True)
class DesktopRequest:
    """A state request from the desktop; ``id`` is echoed in its ack or error."""

    type: str  # one of REQUEST_TYPES
    id: RequestId = None
    reason: str = ""  # busy, not_ready
    extension: str = ""  # login: the desk the agent sits at (hot-desking)
    call_id: str = ""  # wrapup: the call the form is for
    disposition: str = ""  # wrapup: one of the Policy's dispositions (STD-092)
    notes: str = ""  # wrapup: the customer's feedback, problems and needs
    transfer: TransferAsk | None = None  # transfer: where, how, and the note
    service_page: bool = False  # activity: the desktop is open and visible (STD-102)


@dataclass(frozen=True)
class TransferAsk:
    """A ``transfer`` request as sent: ``mode`` blind or warm, the target, the note."""

    mode: TransferMode
    target: TransferTarget
    note: str = ""


@dataclass(frozen=True)
class AddressRequest:
    """How to address the caller (STD-020), from the desktop's surname field.

    Answered with a ``scripts`` frame whose words carry the new address form; it
    changes no agent state, so a read-only (QA) desktop may send it too."""

    caller: CallerAddress
    id: RequestId = None
    type: str = "address"


ClientMessage = DesktopRequest | AddressRequest | Ping


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _request_id(frame: dict[str, Any]) -> RequestId:
    value = frame.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ClientFrameError("bad_frame", "id must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_PING_ID_LENGTH:
        raise ClientFrameError("bad_frame", f"id longer than {MAX_PING_ID_LENGTH}")
    if isinstance(value, int) and not -(2**53) < value < 2**53:
        raise ClientFrameError("bad_frame", "id outside JavaScript's safe integers")
    return value


def _text_field(frame: dict[str, Any], key: str, limit: int, *, required: bool) -> str:
    value = frame.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ClientFrameError("bad_frame",
                               f"{frame.get('type')} needs {key!r}: a string of 1-{limit} chars")
    return value


def parse_desktop_frame(data: str | bytes) -> ClientMessage:
    """Validate one frame from a desktop; raises ``ClientFrameError`` with the reason.

    Unknown fields are ignored (a newer desktop may send more); a missing busy or
    not-ready reason is left to the state machine, which refuses it with
    ``reason_required`` like any other illegal request.
    """
    frame = decode_client_json(data)
    kind = frame.get("type")
    request_id = _request_id(frame)
    if kind == "ping":
        return Ping(request_id)
    if kind == "login":
        extension = _text_field(frame, "extension", MAX_EXTENSION_LENGTH, required=True)
        return DesktopRequest("login", request_id, extension=extension)
    if kind == "wrapup":
        notes = frame.get("notes", "")
        if not isinstance(notes, str) or len(notes) > MAX_WRAPUP_NOTES:
            raise ClientFrameError("bad_frame", f"wrapup notes: a string of at most "
                                                f"{MAX_WRAPUP_NOTES} chars")
        return DesktopRequest(
            "wrapup", request_id,
            call_id=_text_field(frame, "call_id", MAX_CALL_ID_LENGTH, required=True),
            disposition=_text_field(frame, "disposition", MAX_DISPOSITION_LENGTH,
                                    required=True), notes=notes)
    if kind == "address":
        return parse_address_request(frame, request_id)
    if kind == "transfer":
        return DesktopRequest("transfer", request_id, transfer=parse_transfer(frame))
    if kind in ("acw_extend_request", "escalate"):
        return parse_reasoned_request(frame, str(kind), request_id)
    if kind == "activity":
        return parse_activity(frame, request_id)
    if kind == "identity_pin":
        return parse_identity_pin(frame, request_id)
    if kind in CONSULT_STEPS:
        return parse_consult_step(str(kind), request_id)
    if kind in ("busy", "not_ready"):
        reason = _text_field(frame, "reason", MAX_REASON_LENGTH, required=False)
        return DesktopRequest(kind, request_id, reason=reason)
    if kind in REQUEST_TYPES:
        return DesktopRequest(str(kind), request_id)
    shown = kind if isinstance(kind, str) and len(kind) <= 32 else type(kind).__name__
    raise ClientFrameError("unknown_type", f"unknown frame type {shown!r}; known: ping, "
                           + ", ".join((*REQUEST_TYPES, "address")))


def parse_address_request(frame: dict[str, Any], request_id: RequestId) -> AddressRequest:
    """``{"type": "address", "surname": "王", "title": "mr", "declined": false}``.

    ``surname`` and ``title`` may be empty or absent (not known); ``declined`` says the
    caller would not give the surname. A bad field is refused whole (one error frame),
    the address the desktop had stays."""
    surname, title, declined = (frame.get("surname", ""), frame.get("title", ""),
                                frame.get("declined", False))
    if not isinstance(surname, str) or not isinstance(title, str):
        raise ClientFrameError("bad_frame", "address: surname and title are strings")
    if not isinstance(declined, bool):
        raise ClientFrameError("bad_frame", "address: declined is true or false")
    try:
        surname, title = check_address(surname, title)
    except AddressError as bad:
        raise ClientFrameError("bad_frame", f"address: {bad}") from None
    return AddressRequest(CallerAddress(surname, title, declined and not surname), request_id)


def parse_consult_step(kind: str, request_id: RequestId) -> DesktopRequest:
    """``{"type": "transfer_complete"}`` / ``{"type": "transfer_cancel"}`` /
    ``{"type": "transfer_conference"}``: the warm transfer under way is the agent's own,
    so the frame names nothing else (a call id sent along is ignored, never trusted)."""
    return DesktopRequest(kind, request_id)


def parse_transfer(frame: dict[str, Any]) -> TransferAsk:
    """``{"type": "transfer", "mode": "blind", "target": {"kind": "agent", "value":
    "1002"}, "note": "..."}``: every field checked and bounded, one clear error."""
    mode = frame.get("mode")
    if mode not in TRANSFER_MODES:
        raise ClientFrameError("bad_frame", "transfer needs 'mode': "
                               + " or ".join(TRANSFER_MODES))
    target = frame.get("target")
    if not isinstance(target, dict):
        raise ClientFrameError("bad_frame", "transfer needs 'target': {kind, value}")
    kind = target.get("kind")
    if kind not in TARGET_KINDS:
        raise ClientFrameError("bad_frame", "transfer target kind: one of "
                               + ", ".join(TARGET_KINDS))
    value = target.get("value", "")
    if not isinstance(value, str) or len(value) > MAX_TARGET_LENGTH \
            or (value and not TARGET_VALUE.fullmatch(value)):
        raise ClientFrameError("bad_frame", f"transfer target value: 1-{MAX_TARGET_LENGTH} "
                                            "letters, digits, '_', '.' or '-'")
    if not value and kind != "backoffice":
        raise ClientFrameError("bad_frame", f"a transfer to {kind!r} needs a target value")
    note = frame.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_TRANSFER_NOTE:
        raise ClientFrameError("bad_frame", f"transfer note: a string of at most "
                                            f"{MAX_TRANSFER_NOTE} chars")
    return TransferAsk(mode, TransferTarget(kind, value), note.strip())


#: The longest free-text reason of an ACW extension request or an escalation.
MAX_ASK_REASON_LENGTH = MAX_ACW_ASK_REASON


def parse_reasoned_request(frame: dict[str, Any], kind: str,
                           request_id: RequestId) -> DesktopRequest:
    """``acw_extend_request`` (STD-100) or ``escalate`` (STD-066): an optional reason of at
    most ``MAX_ASK_REASON_LENGTH`` characters; anything else is refused whole."""
    reason = frame.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_ASK_REASON_LENGTH:
        raise ClientFrameError("bad_frame", f"{kind} reason: a string of at most "
                                            f"{MAX_ASK_REASON_LENGTH} chars")
    return DesktopRequest(kind, request_id, reason=reason.strip())


def parse_identity_pin(frame: dict[str, Any], request_id: RequestId) -> DesktopRequest:
    """``{"type": "identity_pin"}``: take the caller of the agent's own live call to the
    PIN step (desktop/identity_pin.py). The frame names nothing else: the call is the one
    the agent is talking on, so no call id from the network is trusted."""
    del frame  # unknown fields are ignored, as for every request
    return DesktopRequest("identity_pin", request_id)


def identity_pin_ack_frame(request: DesktopRequest, state: str, asked: dict[str, Any],
                           seq: int) -> str:
    """The PIN step is asked for (``state`` is the agent's, on_call): the caller hears the
    PIN prompt next, the agent hold music; the outcome comes as an ``identity`` frame."""
    return _dumps(_with_id({"v": PROTOCOL_VERSION, "type": "ack", "request": request.type,
                            "state": state, "reason": "", "seq": seq,
                            "call_id": str(asked["call_id"]),
                            "pin_attempts": int(asked["pin_attempts"])}, request.id))


def parse_activity(frame: dict[str, Any], request_id: RequestId) -> DesktopRequest:
    """``activity`` (STD-102): the user gave input; ``service_page`` says whether the desktop
    is left visible (the service page). A boolean, nothing else."""
    page = frame.get("service_page", False)
    if not isinstance(page, bool):
        raise ClientFrameError("bad_frame", "activity service_page: true or false")
    return DesktopRequest("activity", request_id, service_page=page)


def agent_event(request: DesktopRequest, by: str) -> AgentEvent:
    """The state machine event of a request (login goes through Runtime.log_in instead)."""
    actor: Actor = "supervisor" if by == "supervisor" else "agent"
    if request.type == "ready":
        return RequestState(AgentState.READY, by=actor)
    if request.type == "busy":
        return RequestState(AgentState.BUSY, request.reason, by=actor)
    if request.type == "not_ready":
        return RequestState(AgentState.NOT_READY, request.reason, by=actor)
    if request.type == "end_acw":
        return EndAcw(by=actor)
    if request.type == "acw_extend_request":
        return AskAcwExtension(request.reason, by=actor)
    if request.type == "wrapup":
        return SubmitWrapup(request.call_id, request.disposition, request.notes, by=actor)
    if request.type == "logout":
        return LogOut(by=actor, reason="" if actor == "agent" else "supervisor")
    raise ValueError(f"{request.type!r} has no single agent event")


# --- server frames --------------------------------------------------------------------


def _with_id(frame: dict[str, Any], request_id: RequestId) -> dict[str, Any]:
    if request_id is not None:
        frame["id"] = request_id
    return frame


def ack_frame(request: DesktopRequest, state: str, reason: str, seq: int) -> str:
    """The request was applied; ``seq`` is the hub's last seq once its change is published."""
    return _dumps(_with_id({"v": PROTOCOL_VERSION, "type": "ack", "request": request.type,
                            "state": state, "reason": reason, "seq": seq}, request.id))


def transfer_ack_frame(request: DesktopRequest, state: str, destination: str, name: str,
                       seq: int) -> str:
    """The transfer is under way: the agent's part ended, the caller is told ``name``."""
    return _dumps(_with_id({"v": PROTOCOL_VERSION, "type": "ack", "request": request.type,
                            "state": state, "reason": "", "destination": destination,
                            "destination_name": name, "seq": seq}, request.id))


def error_frame(error: str, detail: str, request: DesktopRequest | None = None) -> str:
    """A refused frame or request; for a request, ``error`` is the StateError reason."""
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "error", "error": error,
                             "detail": detail}
    if request is not None:
        frame["request"] = request.type
        _with_id(frame, request.id)
    return _dumps(frame)


def _reasons(reasons: list[Reason], *, chosen_only: bool) -> list[dict[str, Any]]:
    return [{"code": r.code, "label_zh": r.label_zh, "label_en": r.label_en,
             "max_min": r.max_min, "approval_required": r.approval_required}
            for r in reasons if not (chosen_only and r.system)]


@enforces("STD-014", "STD-015", "STD-016",
          policy=("greetings.opening_template", "greetings.centre_name",
                  "greetings.agent_identity", "greetings.department"))
def opening_text(policy: Policy, language: str, agent_no: str, agent_name: str) -> str:
    """The opening the caller hears when this agent answers (STD-014, C-4), as shown."""
    greetings = policy.greetings
    english = language == "en"
    template = greetings.opening_template_en if english else greetings.opening_template
    identity = {"work_number": agent_no, "name": agent_name, "none": ""}
    return template.format(
        centre=greetings.centre_name_en if english else greetings.centre_name,
        agent_no=identity[greetings.agent_identity], agent_name=agent_name,
        department=greetings.department)


@enforces("STD-017", policy=("greetings.holiday_greetings_enabled", "greetings.holiday_greetings"))
def hello_frame(*, policy: Policy, language: str, agent_id: str, agent_name: str,
                username: str, role: str, apology_text: str, day: date,
                last_seq: int, server_time: float) -> str:
    """Everything a desktop needs before the first state: who, reasons, labels, scripts.

    ``scripts`` says what each greeting kind of a call (``normal``, ``holiday``,
    ``apology``; the ``greeting`` field of a ``call`` event) means in words: the
    opening the caller hears with the agent's number (STD-014), today's holiday wish
    (STD-017), and the late-answer apology the agent says (STD-009). ``server_time``
    (epoch seconds) lets the page tick its timers on the server's clock.
    """
    agents = policy.agents
    holiday = policy.greetings.holiday_greeting(day)
    labels = {state.value: getattr(agents.state_labels, state.value).model_dump()
              for state in AgentState}
    hold = policy.hold
    frame = {
        "v": PROTOCOL_VERSION, "type": "hello", "protocol": PROTOCOL_NAME,
        "agent_id": agent_id, "agent_name": agent_name, "username": username, "role": role,
        "language": language, "last_seq": last_seq, "server_time": round(server_time, 3),
        "reasons": {"busy": _reasons(agents.busy_reasons, chosen_only=False),
                    "not_ready": _reasons(agents.not_ready_reasons, chosen_only=True)},
        "labels": labels,
        "scripts": {
            "normal": opening_text(policy, language, agent_id, agent_name),
            "holiday": None if holiday is None else (
                holiday.greeting_en if language == "en" and holiday.greeting_en
                else holiday.greeting),
            "apology": apology_text,
        },
        "timers": {"acw_limit_s": agents.acw_limit_s, "acw_auto_ready": agents.acw_auto_ready,
                   "hold_reminder_s": hold.reminder_s,
                   "hold_reminder_repeat_s": hold.reminder_repeat_s,
                   "hold_limit_s": hold.limit_s,
                   "inactivity_logout_min": agents.inactivity_logout_min},
        "feature_codes": agents.feature_codes.codes(),
        "wrapup": {"dispositions": [d.model_dump() for d in policy.outbound.dispositions],
                   "required_outbound": policy.outbound.wrapup_required,
                   "required_inbound": policy.outbound.wrapup_inbound,
                   "max_notes": MAX_WRAPUP_NOTES},
        "max_frame_bytes": MAX_CLIENT_FRAME_BYTES,
        "script_panel": script_panel(language, CallerAddress()),
    }
    return _dumps(frame)



def script_panel(language: str, caller: CallerAddress) -> dict[str, Any]:
    """The script panel in the session's language, with the caller's address filled.

    ``by_state`` says which phases the panel opens in each agent state (the first one
    shown); ``scripts`` are in panel order with ``text`` ready to say; ``forbidden`` the
    phrases never said (STD-036). In the hello (no address yet) and in every
    ``script_panel`` frame that answers an ``address`` request."""
    pack = load_pack(language)
    return {
        "language": pack.language,
        "caller": {"surname": caller.surname, "title": caller.title,
                   "declined": caller.surname_declined},
        "address": address_form(pack.address, caller),
        "phases": [{"id": p, "label": label} for p, label in pack.phases.items()],
        "by_state": {state: list(phases_for_state(state))
                     for state in ("ringing", "on_call", "on_hold", "acw")},
        "scripts": offered_scripts(pack, caller),
        "forbidden": forbidden_phrases(pack),
    }


def script_panel_frame(language: str, caller: CallerAddress, request_id: RequestId = None
                       ) -> str:
    """The answer to an ``address`` request: the panel again, with the new address."""
    frame = {"v": PROTOCOL_VERSION, "type": "script_panel", "request": "address",
             **script_panel(language, caller)}
    return _dumps(_with_id(frame, request_id))
