"""HTTP side of the identity gate and the customer record (issue 18, STD-077..STD-079).

* ``POST /api/v1/customers``, ``PUT /api/v1/customers/{id}`` (supervisor, admin): create
  or edit a customer; the PIN is hashed before it reaches the store and is never
  returned; each edit is attributed in ``audit_log`` (STD-079).
* ``GET /api/v1/identity/calls/{call_id}`` (the call's agent, supervisor, admin): the
  header, the identity status, the names of the hidden fields.
* ``POST /api/v1/identity/calls/{call_id}/verify`` ``{"method": "questions"}``: the
  agent marks the caller verified after asking the business's questions.
* ``POST /api/v1/identity/calls/{call_id}/reveal`` ``{"fields": [...]}``: personal
  fields, only after verification (409 ``not_verified`` before); audited either way.
* ``GET /api/v1/identity/reveals`` (supervisor, admin, qa): the reveal audit.

Every body is checked by a strict model (unknown keys, wrong types, overlong strings:
one 422); a refusal is one error body and changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.engine import identity
from callflow.errors import StateError
from callflow.store import customers

if TYPE_CHECKING:
    from callflow.desktop.feature import AgentDesktop
    from callflow.desktop.identity import IdentityGate

CALL_ROLES = ("agent", "supervisor", "admin")
EDIT_ROLES = ("supervisor", "admin")
AUDIT_ROLES = ("supervisor", "admin", "qa")
_STATUS = {"not_found": 404, "not_your_call": 403, "no_customer": 404,
           "unknown_field": 422, "not_verified": 409, "method_not_allowed": 409,
           "bad_pin": 422}
NUMBER = r"^[0-9]{3,20}$"


class CustomerBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    surname: str | None = Field(default=None, min_length=1, max_length=64)
    given_name: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=32)
    account: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=255)
    id_tail: str | None = Field(default=None, max_length=8)
    numbers: list[str] | None = Field(default=None, max_length=5)
    pin: str | None = Field(default=None, max_length=12)


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    method: Literal["questions"]


class RevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    fields: list[str] = Field(default_factory=list, max_length=len(identity.PERSONAL_FIELDS))


def _refused(exc: StateError) -> Exception:
    return api_error(_STATUS.get(exc.reason, 409), exc.reason, exc.detail or exc.reason)


def identity_router(desk: AgentDesktop) -> APIRouter:
    router = APIRouter(tags=["identity"])

    def gate() -> IdentityGate:
        gate = desk.identity
        if gate is None:
            raise api_error(503, "not_ready", "the service is starting")
        return gate

    def acting(request: Request) -> tuple[str, str | None]:
        """(login name, agent id or None for supervisors and admins)."""
        principal = require(request, *CALL_ROLES)
        if principal.role != "agent":
            return principal.name, None
        own = [t.removeprefix("agent:") for t in principal.topics or () if t.startswith("agent:")]
        if len(own) != 1:
            raise api_error(403, "no_agent", "this login is no agent's")
        return principal.name, own[0]

    async def save(request: Request, body: CustomerBody,
                   customer_id: int | None) -> dict[str, Any]:
        principal = require(request, *EDIT_ROLES)
        services = gate().services
        fields = {k: v for k, v in body.model_dump(exclude={"numbers", "pin"}).items()
                  if v is not None}
        if customer_id is None and "surname" not in fields:
            raise api_error(422, "surname_required", "a new customer needs a surname")
        numbers = body.numbers
        if numbers is not None:
            bad = [n for n in numbers if not re.fullmatch(NUMBER, n)]
            if bad or len(set(numbers)) != len(numbers):
                raise api_error(422, "bad_number", "numbers: distinct strings of 3-20 digits")
        pin_hash = None
        if body.pin is not None:
            try:
                pin_hash = await asyncio.to_thread(identity.hash_pin, body.pin,
                                                   services.policy)
            except identity.IdentityError as exc:
                raise api_error(422, exc.code, str(exc)) from None
        try:
            saved = await asyncio.to_thread(
                services.store.run, customers.save_customer, principal.name,
                datetime.now(UTC), fields, numbers, pin_hash, customer_id)
        except customers.CustomerConflict as exc:
            raise api_error(409, "number_taken", str(exc)) from None
        if saved is None:
            raise api_error(404, "not_found", f"no customer {customer_id}")
        return saved

    @router.post("/api/v1/customers", status_code=201, summary="Create a customer (audited)")
    async def create_customer(request: Request, body: CustomerBody) -> dict[str, Any]:
        return await save(request, body, None)

    @router.put("/api/v1/customers/{customer_id}", summary="Edit a customer (audited)")
    async def update_customer(request: Request, customer_id: int,
                              body: CustomerBody) -> dict[str, Any]:
        return await save(request, body, customer_id)

    @router.get("/api/v1/identity/calls/{call_id}",
                summary="The caller's header and identity status (no personal data)")
    async def call_identity(request: Request, call_id: str) -> dict[str, Any]:
        _name, agent = acting(request)
        try:
            return await gate().view(call_id, agent)
        except StateError as exc:
            raise _refused(exc) from None

    @router.post("/api/v1/identity/calls/{call_id}/verify",
                 summary="Mark the caller verified by questions")
    async def verify(request: Request, call_id: str, body: VerifyBody) -> dict[str, Any]:
        name, agent = acting(request)
        try:
            return gate().verify_by_questions(call_id, agent, name)
        except StateError as exc:
            raise _refused(exc) from None

    @router.post("/api/v1/identity/calls/{call_id}/reveal",
                 summary="Personal fields of a verified caller (audited)")
    async def reveal(request: Request, call_id: str, body: RevealBody) -> dict[str, Any]:
        name, agent = acting(request)
        try:
            return await gate().reveal(call_id, agent, name, [f[:32] for f in body.fields])
        except StateError as exc:
            raise _refused(exc) from None

    @router.get("/api/v1/identity/reveals", summary="Who saw which personal data, newest first")
    async def reveals(request: Request,
                      limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        require(request, *AUDIT_ROLES)
        return {"reveals": await gate().reveals(limit)}

    return router
