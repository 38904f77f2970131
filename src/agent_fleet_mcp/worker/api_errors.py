"""SDK exceptions -> one actionable line for the orchestrator (`error` event ``kind`` + ``message``).

The SDK has already retried what is retryable (429, 5xx, 529, connection errors; ``max_retries`` from
``AGENT_FLEET_MAX_RETRIES``, default 2). The retries actually taken are read from the last attempt's
``x-stainless-retry-count`` header. An error inside a stream (``event: error`` after a 200) is classified by its
``error.type``.
"""

from __future__ import annotations

from typing import Any


class ApiFailure(Exception):
    """The model request failed for good; the turn ends with ``reason: api_error``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _retries(exc: Any) -> int:
    try:
        return int(exc.request.headers.get("x-stainless-retry-count", "0"))
    except (AttributeError, ValueError, RuntimeError):
        return 0


def _after(n: int) -> str:
    return f" after {n} {'retry' if n == 1 else 'retries'}"


def describe_api_error(exc: Exception, *, base_url: str, model: str) -> ApiFailure:
    import anthropic

    n = _retries(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return ApiFailure("timeout", f"request to {base_url} timed out{_after(n)}")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        detail = str(cause) or type(cause).__name__
        return ApiFailure("connection", f"cannot reach {base_url}: {detail}{_after(n)}")
    if not isinstance(exc, anthropic.APIStatusError):
        return ApiFailure("api", f"API error: {exc}")
    status = exc.status_code
    etype: str = str(exc.type or "")
    detail = exc.api_message or str(exc)
    if status == 401 or etype == "authentication_error":
        return ApiFailure("auth", "authentication failed (401): check ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN")
    if status == 403 or etype == "permission_error":
        return ApiFailure("permission", f"permission denied (403): {detail}; check the key's access to {model!r}")
    if status == 429 or etype == "rate_limit_error":
        return ApiFailure("rate_limit", f"rate limited{_after(n)}: {detail}; wait, or run fewer agents at once")
    if status == 529 or etype == "overloaded_error":
        return ApiFailure("overloaded", f"the API is overloaded (529){_after(n)}: try again in a few minutes")
    if status == 404 or etype == "not_found_error":
        return ApiFailure("not_found", f"not found (404): {detail}; check the model name {model!r}")
    if status == 413 or etype == "request_too_large":
        return ApiFailure("too_large", f"request too large (413): {detail}; start a new agent or shorten input")
    if status == 400 or etype == "invalid_request_error":
        return ApiFailure("bad_request", f"request rejected (400): {detail}")
    if status >= 500 or etype == "api_error":
        code = status if status >= 500 else 500
        return ApiFailure("server", f"API server error ({code}){_after(n)}: {detail}")
    return ApiFailure("api", f"API error ({status}): {detail}")
