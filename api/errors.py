"""The API's one error body, and the handlers that give every refusal that body.

Every answer that is not a success reads ``{"detail": {"error": <code>, "message":
<words>, ...}}``: ``error`` is a stable snake_case code a client branches on,
``message`` says what is wrong in words a page can show, and a route may add fields
(``retry_after_s``, the existing ``task``...). Routes raise ``api_error``; what
FastAPI and Starlette raise themselves (an unknown path, a body that does not parse,
a string ``HTTPException``) is rewritten here into the same shape, and a database
that cannot answer is a 503, not a 500.

The OpenAPI document says so for every operation (``document_errors``): any 4xx and a
503 carry ``ErrorBody``, and the bearer scheme is declared, so clients, Swagger UI
and the schemathesis run in the tests all hold the API to one contract.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from callflow.errors import StoreError

log = logging.getLogger(__name__)

ERROR_CODE = r"^[a-z][a-z0-9_]*$"
#: Validation problems listed in a 422 at most (a fuzzed body can have thousands).
MAX_LISTED_PROBLEMS = 20


class ErrorDetail(BaseModel):
    """What went wrong: a code to branch on and words to show; routes may add fields."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(pattern=ERROR_CODE, description="stable code, e.g. not_found")
    message: str = Field(description="what is wrong, in words a page can show")


class ErrorBody(BaseModel):
    """Every error the API answers."""

    detail: ErrorDetail


def api_error(status: int, error: str, message: str, *,
              headers: dict[str, str] | None = None, **extra: Any) -> HTTPException:
    """The exception a route raises to refuse a request (the body is ``ErrorBody``)."""
    return HTTPException(status, {"error": error, "message": message, **extra},
                         headers=headers)


def _code(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return "".join(c if c.isalnum() else "_" for c in phrase.lower()).strip("_")


def _body(status: int, detail: object) -> dict[str, Any]:
    if isinstance(detail, dict) and isinstance(detail.get("error"), str) \
            and isinstance(detail.get("message"), str):
        return {"detail": detail}
    return {"detail": {"error": _code(status), "message": str(detail)}}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(_body(exc.status_code, exc.detail), status_code=exc.status_code,
                        headers=exc.headers)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                 "type": str(e.get("type", ""))} for e in exc.errors()[:MAX_LISTED_PROBLEMS]]
    words = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:3])
    return JSONResponse(jsonable_encoder({"detail": {
        "error": "invalid_request", "message": words or "the request is not valid",
        "problems": problems}}), status_code=422)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("request refused, the database did not answer: %s", exc)
    return JSONResponse({"detail": {"error": "store_unavailable",
                                    "message": "the database is not answering; retry shortly"}},
                        status_code=503, headers={"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal of ``app`` in ``ErrorBody`` form."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreError, _store_unavailable)


def document_errors(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document name ``ErrorBody`` for every error it can answer."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_error_bodies(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_error_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if (status[0] in "45" and status != "503") or status == "422":
                    response["content"] = content
            responses.setdefault("4XX", {"description": "refused: see `detail.error`",
                                         "content": content})
            responses.setdefault("503", {"description": "starting, or the database is not "
                                                        "answering", "content": content})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "a session token from POST /api/v1/session, or the deployment "
                       "token; never in a URL"}}
    spec["security"] = [{"bearer": []}]
    return spec
