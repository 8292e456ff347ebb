"""Every error leaves the gateway in one shape, with an honest status."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import APIError, server_error
from ..wire import ErrorBody, ErrorDetail, to_json

log = structlog.get_logger("vidgate.api")

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


def error_response(exc: APIError) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.retryable is not None:
        # The OpenAI SDK retries 409/429/5xx unless told otherwise.
        headers["x-should-retry"] = "true" if exc.retryable else "false"
    body = ErrorBody(error=ErrorDetail(message=exc.message, type=exc.type, param=exc.param, code=exc.code))
    return JSONResponse(to_json(body), status_code=exc.status, headers=headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    if exc.status >= 500:
        log.warning("request_failed", status=exc.status, code=exc.code, error=exc.message)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_TYPES.get(exc.status_code, "http_error")
    message = "Unknown endpoint." if exc.status_code == 404 else str(exc.detail)
    return error_response(
        APIError(
            message,
            exc.status_code,
            "invalid_request_error",
            None,
            code,
            retryable=False,
            headers=dict(exc.headers or {}),
        )
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(
        server_error(
            "The gateway hit an internal error; the request id is in x-request-id.", "internal_error", retryable=True
        )
    )


async def client_disconnected(request: Request, exc: Exception) -> Response:
    # The client hung up mid-request: nothing is wrong here and nobody reads the answer.
    log.info("client_disconnected", path=request.url.path)
    return Response(status_code=400)
