"""A customer's class over HTTP (STD-123): the row of ``tickets.deadlines_by_class`` their
next tickets run. The board's customer-class form (``board/static/customers.js``) uses it.

* ``GET /api/v1/customer-classes?number=`` — the Policy's classes and the default; with
  ``number`` (3-20 digits) also the customer who calls from it (header, numbers, class;
  404 ``no_customer``). Never the personal fields (STD-078).
* ``PUT /api/v1/customers/{id}/class`` ``{"customer_class": "vip"}`` — set it. A class the
  Policy does not list is one 422 ``unknown_customer_class`` naming those it does; the
  change is audited as ``customer.class`` (who, old, new). Tickets already logged keep
  their class (their clocks never move); the next ticket of this customer runs the new
  one (``engine/tickets.py reclassed``).

Roles: supervisor, admin, department manager (STD-148: the manager coordinates the
centre's tickets); others get 403. Every body is untrusted: one clear error, nothing
written.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Request

from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.engine import tickets as core
from callflow.errors import CallflowError
from callflow.store import tickets as store_tickets

if TYPE_CHECKING:
    from callflow.feature import FeatureServices
    from callflow.tickets.feature import TicketsFeature

CLASS_ROLES = ("supervisor", "admin", "department_manager")
NUMBER = re.compile(r"[0-9]{3,20}")
MAX_ID = 2**31 - 1
#: Any JSON (None when absent): the route checks its shape itself, with one clear error.
JSON_BODY = Body(default=None)


def customer_class_router(feature: TicketsFeature) -> APIRouter:
    router = APIRouter(tags=["tickets"])

    def service() -> FeatureServices:
        try:
            return feature.service
        except CallflowError:
            raise api_error(503, "not_ready", "the service is starting") from None

    @router.get("/api/v1/customer-classes",
                summary="The customer classes (STD-123) and a customer's, by number")
    def classes(request: Request, number: str | None = None) -> dict[str, Any]:
        require(request, *CLASS_ROLES)
        tp = service().policy.tickets
        out: dict[str, Any] = {"classes": list(tp.deadlines_by_class),
                               "default": tp.default_customer_class}
        if number is not None:
            if not NUMBER.fullmatch(number):
                raise api_error(422, "bad_number", "number: 3-20 digits")
            found = service().store.read(store_tickets.customer_by_number, number)
            if found is None:
                raise api_error(404, "no_customer", f"no customer calls from {number}")
            out["customer"] = found
        return out

    @router.put("/api/v1/customers/{customer_id}/class",
                summary="Set a customer's class: their next tickets' deadlines (audited)")
    def set_class(request: Request, customer_id: str, raw: Any = JSON_BODY
                  ) -> dict[str, Any]:
        principal = require(request, *CLASS_ROLES)
        if not customer_id.isdigit() or len(customer_id) > 10 or int(customer_id) > MAX_ID:
            raise api_error(422, "bad_id",
                            f"a customer id is a positive number, got {customer_id[:20]!r}")
        if not isinstance(raw, dict):
            raise api_error(422, "bad_body", "the body must be a JSON object "
                            '{"customer_class": "<class>"}')
        unknown = sorted(set(raw) - {"customer_class"})
        if unknown:
            raise api_error(422, "unknown_field",
                            f"unknown fields {unknown}; allowed: customer_class")
        policy = service().policy
        wanted = raw.get("customer_class")
        if isinstance(wanted, str):
            wanted = wanted[:64]  # the error names it; a class is at most 16 characters

        def decide(old: str) -> str:
            return core.reclassed(old, wanted, policy)

        try:
            done = service().store.run(store_tickets.set_customer_class, int(customer_id),
                                       principal.name,
                                       service().clock.wall().astimezone(UTC), decide)
        except core.TicketError as exc:
            raise api_error(422, "unknown_customer_class", str(exc)) from None
        if done is None:
            raise api_error(404, "not_found", f"no customer {customer_id}")
        old, customer = done
        return {"customer": customer, "old": old}

    return router
