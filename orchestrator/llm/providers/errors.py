"""One error policy for every HTTP provider: which failures are retried, which are fatal.

The SDKs raise their own exception trees; the adapters reduce them to an HTTP status
(or a transport failure) and call :func:`from_status` / :func:`transport_error`, so the
retry rules are written once:

* timeouts, connection errors, 408, 409, 425, 429, 500, 502, 503, 504 and 529
  (Anthropic's "overloaded") are transient: the client retries them with backoff,
  waiting at least what ``Retry-After`` (or ``retry-after-ms``) says;
* 400, 401, 403, 404, 422 and any other status are permanent: not retried;
* 401, 403 and 404 are fatal for the model (bad key, no access, no such model): the
  client marks it unhealthy for the rest of the run and routing skips it.

Messages are scrubbed of the key by the caller (:func:`~.secrets.scrub`) and cut short.
"""

from __future__ import annotations

import email.utils
import time

from .base import ProviderError

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
FATAL_STATUS = frozenset({401, 403, 404})

_STATUS_NAMES = {
    400: "BadRequest",
    401: "AuthenticationError",
    403: "PermissionDenied",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    413: "RequestTooLarge",
    422: "UnprocessableEntity",
    425: "TooEarly",
    429: "RateLimited",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
    529: "Overloaded",
}
_MAX_MESSAGE = 300


def status_error_type(status: int) -> str:
    return _STATUS_NAMES.get(status, f"HTTP{status}")


def parse_retry_after(headers: object) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date);
    ``headers``: whatever the SDK put on its response (anything with ``get``), or None."""
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def sdk_detail(exc: BaseException) -> str:
    """The server's own error message from an SDK status error (its JSON ``error.message``
    when there is one), not the SDK's "Error code: 429 - {...}" dump."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return message
    return str(getattr(exc, "message", "") or "")


def from_status(provider: str, model: str, status: int, detail: str = "", *, headers: object = None) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error answer (``detail`` already scrubbed)."""
    error_type = status_error_type(status)
    message = f"{provider} {model}: HTTP {status} {error_type}"
    if detail:
        message += f": {detail[:_MAX_MESSAGE]}"
    transient = status in TRANSIENT_STATUS
    return ProviderError(
        message,
        transient=transient,
        status_code=status,
        retry_after=parse_retry_after(headers) if transient else None,
        fatal_for_model=status in FATAL_STATUS,
        error_type=error_type,
    )


def transport_error(provider: str, model: str, exc: BaseException, timeout: float) -> ProviderError | None:
    """A transient error for a timeout or connection failure; None for anything else.

    Matched by class name through the MRO because the SDKs wrap two HTTP stacks
    (``httpx`` and ``httpx2``) whose exception classes are distinct."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {
        "TimeoutError",
        "APITimeoutError",
        "TimeoutException",
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
    }:
        return ProviderError(
            f"{provider} {model}: timed out after {timeout:.1f}s", transient=True, error_type="TimeoutError"
        )
    if names & {
        "APIConnectionError",
        "ConnectError",
        "NetworkError",
        "TransportError",
        "RemoteProtocolError",
        "ConnectionError",
        "OSError",
    }:
        return ProviderError(
            f"{provider} {model}: connection failed ({type(exc).__name__})",
            transient=True,
            error_type="ConnectionError",
        )
    return None


def malformed(provider: str, model: str, what: str) -> ProviderError:
    """A 2xx answer the adapter cannot read (proxy error pages, truncated bodies).

    Transient: such answers usually come from a flaky hop; N of them in a row still mark
    the model unhealthy through the client's consecutive-failure rule."""
    return ProviderError(
        f"{provider} {model}: malformed response ({what[:120]})", transient=True, error_type="MalformedResponse"
    )
