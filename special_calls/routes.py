"""Desktop actions on a live call: the special-call scripts and the closing (issue 6).

An agent acts only on their own call (STD-110 judges *their* release; a script plays
on *their* caller); a supervisor may act for the call's agent. Every refusal says why
(``{"error": reason, "message": ...}``) and changes nothing.

* ``POST /api/v1/calls/{call_id}/special`` ``{"procedure": "silent" | "quiet_line" |
  "noisy_line" | "wrong_number" | "nuisance"}`` — the system plays the script and
  releases (STD-056..060, STD-067, STD-112);
* ``POST /api/v1/calls/{call_id}/nuisance`` — one more scope statement; after the
  Policy's count the final action runs (STD-064/065, C-2);
* ``POST /api/v1/calls/{call_id}/closing`` — the goodbye was said: a release after the
  grace is compliant (STD-111, C-6);
* ``POST /api/v1/calls/{call_id}/hold`` / ``.../retrieve`` — the system holds the caller
  (music, neither side hears the other) and takes them back (STD-039..041); a hold the
  softphone made is taken back on the softphone (``softphone_hold``);
* ``POST /api/v1/calls/{call_id}/callback`` ``{"note": "..."}`` — "call back instead"
  (STD-042): a callback task for the caller, owned by the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.errors import StateError

if TYPE_CHECKING:
    from callflow.special_calls.feature import SpecialCallsFeature

ROLES = ("agent", "supervisor", "admin")
_STATUS = {"not_found": 404, "not_your_call": 403, "unknown_procedure": 422,
           "unknown_action": 422, "no_number": 422}


class SpecialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    procedure: Literal["silent", "quiet_line", "noisy_line", "wrong_number", "nuisance"]


class CallbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=500)


def _agent_of(principal: Principal) -> str | None:
    """An agent's work number (their only topic is ``agent:<id>``); None for supervisors."""
    if principal.topics is None:
        return None
    return next((t.split(":", 1)[1] for t in sorted(principal.topics)
                 if t.startswith("agent:")), "")


def calls_router(feature: SpecialCallsFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1/calls", tags=["calls"])

    def act(request: Request, call_id: str, action: str, procedure: str = "",
            note: str = "") -> dict[str, Any]:
        try:
            _ = feature.service  # refused while the feature is not started
        except Exception:
            raise api_error(503, "not_ready", "the service is starting") from None
        principal = require(request, *ROLES)
        agent = _agent_of(principal) if principal.role == "agent" else None
        if agent == "":
            raise api_error(403, "no_agent", "no agent login")
        try:
            return feature.act(call_id, agent, action, procedure, note)
        except StateError as exc:
            raise api_error(_STATUS.get(exc.reason, 409), exc.reason,
                            exc.detail or exc.reason) from None

    @router.post("/{call_id}/special", summary="Run a special-call script")
    async def special(request: Request, call_id: str, body: SpecialRequest) -> dict[str, Any]:
        return act(request, call_id, "start", body.procedure)

    @router.post("/{call_id}/nuisance", summary="One nuisance scope statement (C-2)")
    async def nuisance(request: Request, call_id: str) -> dict[str, Any]:
        return act(request, call_id, "nuisance")

    @router.post("/{call_id}/closing", summary="The closing was said (STD-111)")
    async def closing(request: Request, call_id: str) -> dict[str, Any]:
        return act(request, call_id, "closing")

    @router.post("/{call_id}/hold", summary="Put the caller on hold (STD-039..041)")
    async def hold(request: Request, call_id: str) -> dict[str, Any]:
        return act(request, call_id, "hold")

    @router.post("/{call_id}/retrieve", summary="Take the caller off hold")
    async def retrieve(request: Request, call_id: str) -> dict[str, Any]:
        return act(request, call_id, "retrieve")

    @router.post("/{call_id}/callback", summary="Call back instead (STD-042)")
    async def callback(request: Request, call_id: str,
                       body: CallbackRequest | None = None) -> dict[str, Any]:
        return act(request, call_id, "callback", note=body.note if body else "")

    return router
