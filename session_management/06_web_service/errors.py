"""Every error the service answers has one shape: ``{"error": "<what went wrong>"}``.

Two kinds add one field: a 422 lists the ``"problems"`` (one line per bad field), and a 500 carries the
``"id"`` under which the log holds the details. Which status a failure gets:

* 4xx: the request is wrong (bad JSON 400, no token 401, unknown id or route 404, wrong method 405,
  too large 413, invalid fields or parameters 422); retrying the same request will not help.
* 503 with ``Retry-After``: the database did not answer (refused, dropped, timed out). Only these.
* 500 with an id: anything else, a bug or a database error that is not an outage; the log line with that id
  has the error class and the driver's message, never the SQL parameters (they are users' messages).

`ErrorBody` is that shape as a pydantic model, and `documented()` puts it in the OpenAPI document for every
status a route can answer, so a client generated from ``/openapi.json`` reads ``error``, not FastAPI's ``detail``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

logger = logging.getLogger("lesson06")

UNAVAILABLE = "the database is unavailable; please retry shortly"
RETRY_AFTER_S = 5
# MySQL/MariaDB client and server codes that mean "no usable connection": can't connect, server gone or
# lost mid-query, too many connections, server shutting down.
_MYSQL_OUTAGE_CODES = {1040, 1053, 2002, 2003, 2005, 2006, 2013, 2055}
# PostgreSQL SQLSTATE classes / codes for the same: 08 connection exceptions, 53300 too many connections,
# 57P01-03 shutdown or cannot connect now, 57014 a statement cancelled by statement_timeout.
_POSTGRES_OUTAGE_STATES = {"53300", "57P01", "57P02", "57P03", "57014"}


class ErrorBody(BaseModel):
    """Every error's body. The optional fields are left out, never null (SkipJsonSchema keeps null out of the
    schema); extra="forbid" makes the schema say no other field is ever sent."""

    model_config = ConfigDict(extra="forbid")
    error: str
    problems: list[str] | SkipJsonSchema[None] = None  # 422: one line per invalid field or parameter
    id: str | SkipJsonSchema[None] = None  # 500: the id of the log line with the details


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return ErrorBody(error=message, **extra).model_dump(exclude_none=True)


# What each status means, as the OpenAPI document says it; the headers an answer carries with it.
WHEN = {
    400: "The body cannot be parsed at all (not UTF-8, JSON nested too deep).",
    401: "No bearer token, or an unknown one.",
    404: "Someone else's conversation, or one that does not exist (the two look the same).",
    405: "A method this path does not have; `Allow` lists the ones it has.",
    409: "This Idempotency-Key was already used with a different message.",
    413: "The body is larger than CHAT_MAX_BODY_BYTES.",
    422: "Invalid JSON, fields or parameters; `problems` has one line for each.",
    500: "A bug, or a database error that is not an outage; the log line with this `id` has the details.",
    503: "The database did not answer in time; retry after `Retry-After` seconds.",
}
HEADERS = {
    401: {"WWW-Authenticate": "Bearer"},
    405: {"Allow": "the path's methods, e.g. GET, DELETE"},
    503: {"Retry-After": "seconds to wait before retrying"},
}


def documented(*statuses: int, streaming: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its meaning, the error shape, and its headers.

    FastAPI files a response's ``model`` under the route's own media type; for the stream route that is
    ``text/event-stream``, while its errors are JSON, so there the schema is referenced under application/json.
    """
    shape: dict[str, Any] = ({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
                             if streaming else {"model": ErrorBody})
    return {status: {
        "description": WHEN[status], **shape,
        **({"headers": {name: {"description": what, "required": True, "schema": {"type": "string"}}
                        for name, what in HEADERS[status].items()}} if status in HEADERS else {}),
    } for status in sorted(statuses)}


def is_outage(error: BaseException) -> bool:
    """True when *error* says the database could not be reached or did not answer in time."""
    if isinstance(error, (OSError, TimeoutError, PoolTimeout, DisconnectionError)):  # TimeoutError: our deadline
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        original = error.orig
        if isinstance(original, (OSError, TimeoutError)) or isinstance(error.__cause__, (OSError, TimeoutError)):
            return True
        code = original.args[0] if original is not None and original.args else None
        if isinstance(code, int) and code in _MYSQL_OUTAGE_CODES:
            return True
        state = str(getattr(original, "sqlstate", "") or "")
        return state.startswith("08") or state in _POSTGRES_OUTAGE_STATES
    return False


def describe(error: BaseException) -> str:
    """The error class and the driver's first line, without SQL or parameters, for the log."""
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    first_line = (str(original).splitlines() or [""])[0][:300]
    return f"{type(error).__name__} ({type(original).__name__}: {first_line})"


def unavailable_response() -> JSONResponse:
    return JSONResponse(error_body(UNAVAILABLE), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def failure_response(error: BaseException, where: str) -> JSONResponse:
    """503 for an outage, else 500 with an id; either way one redacted log line."""
    if is_outage(error):
        logger.warning("database unavailable during %s: %s", where, describe(error))
        return unavailable_response()
    error_id = uuid.uuid4().hex[:12]
    logger.error("error %s during %s: %s", error_id, where, describe(error))
    return JSONResponse(error_body("internal error; quote this id when you report it", id=error_id), status_code=500)


def _problem(entry: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in entry.get("loc", ()) if part != "body")
    return f"{where}: {entry.get('msg', 'invalid')}" if where else str(entry.get("msg", "invalid"))


def allowed_methods(request: Request, fallback: str) -> str:
    """Every method the request's path has, as the OpenAPI document lists them (so the two agree by construction).

    Starlette's own ``Allow`` names only the first route that matched the path, and GET and DELETE on
    /api/conversations/{id} are two routes. HEAD comes with GET (Starlette answers it). A path the document does
    not describe (the page at /) keeps Starlette's answer, *fallback*.
    """
    for path, operations in request.app.openapi()["paths"].items():
        if compile_path(path)[0].match(request.scope["path"]):
            methods = {method.upper() for method in operations}
            return ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    return fallback


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the documented shape."""

    @app.exception_handler(HTTPException)  # Starlette's, so routing's own 404 and 405 are included
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if error.status_code != 400 else "the request body could not be parsed"
        headers = error.headers
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request, (headers or {}).get("Allow", ""))}
        return JSONResponse(error_body(str(message)), status_code=error.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = list(dict.fromkeys(_problem(entry) for entry in error.errors()))  # once each, in order
        return JSONResponse(error_body("invalid request", problems=problems), status_code=422)
