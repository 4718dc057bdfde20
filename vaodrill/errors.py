"""One error tree for everything vaodrill can report.

    VaoError
    ├── VaoUsageError               a request or setting that cannot be sent as given (bad URL, plan id, credentials)
    ├── VaoConnectionError          could not complete an exchange with the server
    │   ├── VaoConnectError         the request provably never reached the server (safe to resend)
    │   │   └── VaoTLSError         the certificate was not trusted
    │   ├── VaoTimeoutError         no complete answer within the deadline: the server may have acted on it
    │   └── VaoResponseLost         the connection broke mid-exchange: the server may have acted on it
    ├── VaoResponseError            the server answered with an error status
    │   ├── VaoBadRequest 400 · VaoAuthError 401 · VaoForbidden 403 · VaoNotFound 404
    │   ├── VaoConflict 409 · VaoRateLimited 429 · VaoServerError 5xx
    │   └── VaoRedirected 3xx       redirects are never followed; the message names the target
    ├── VaoProtocolError            the answer was not what the contract promises (not JSON, too large, bad shape)
    └── DrillError                  a drill-level failure (precondition, halt, timeout, cleanup, aborted)

A plan operation the server refuses (e.g. Run on a Disabled plan) may come back as 409, 400 or 500 depending on
the server (docs/vao-api.md, section 5): treat any ``VaoResponseError`` with a ``server_message`` on a plan operation as
a refusal with that text. Nothing may rely on ``VaoConflict`` (409) alone.

``VaoConnectionError.may_have_reached_server`` says whether a write may have been acted on; it is False for
failures before the request left (a connection never made, or a login that failed before the request was sent).

Messages are one line (at most a few hundred characters, no control characters), carry the operation and the
server's ``Message``, and never a password, secret or token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx

#: Longest server text quoted in a message.
MESSAGE_CHARS = 300


def one_line(text: str, limit: int | None = MESSAGE_CHARS) -> str:
    """``text`` on one printable line of at most ``limit`` characters (``None``: uncut); server text can hold
    anything. The one text-shortening helper: every message, log line and report cell goes through it."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    line = " ".join(cleaned.split())
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


class VaoError(Exception):
    """Base of every vaodrill error."""


class VaoUsageError(VaoError, ValueError):
    """vaodrill was asked for something that cannot be sent: a bad URL or plan id, missing credentials."""


class VaoConnectionError(VaoError):
    """The exchange with the server did not complete."""

    #: Whether the server may have received (and acted on) the request. Writes are resent only when False.
    may_have_reached_server: bool = True

    def __init__(self, message: str, *, may_have_reached_server: bool | None = None) -> None:
        super().__init__(message)
        if may_have_reached_server is not None:
            self.may_have_reached_server = may_have_reached_server


class VaoConnectError(VaoConnectionError):
    """The connection could not be made: the request never left this machine."""

    may_have_reached_server = False


class VaoTLSError(VaoConnectError):
    """The server's TLS certificate was rejected."""


class VaoTimeoutError(VaoConnectionError):
    """No complete answer within the deadline; the server may still have processed the request."""


class VaoResponseLost(VaoConnectionError):
    """The connection dropped after the request was sent; it may have been processed."""


class VaoResponseError(VaoError):
    """The server answered with an error status (a refusal: ``server_message`` holds its reason)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        server_message: str | None = None,
        operation: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message
        self.operation = operation
        self.retry_after = retry_after


class VaoBadRequest(VaoResponseError):
    """400: malformed body, unknown enum value, no restore point at that date, or an illegal operation."""


class VaoAuthError(VaoResponseError):
    """401 (or a refused login): the credentials or token were not accepted."""


class VaoForbidden(VaoResponseError):
    """403: the account may not do this."""


class VaoNotFound(VaoResponseError):
    """404: no such plan, or no such route (nothing ran)."""


class VaoConflict(VaoResponseError):
    """409: the operation is not legal in the plan's current state (other servers say 400 or 500)."""


class VaoRateLimited(VaoResponseError):
    """429: the server asks us to slow down (see ``retry_after``)."""


class VaoServerError(VaoResponseError):
    """5xx: the server failed, or refused an operation (then ``server_message`` says why)."""


class VaoRedirected(VaoResponseError):
    """3xx: the server points elsewhere; vaodrill never follows (the URL is probably wrong)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        location: str | None,
        server_message: str | None = None,
        operation: str = "",
    ) -> None:
        super().__init__(message, status_code=status_code, server_message=server_message, operation=operation)
        self.location = location


class VaoProtocolError(VaoError):
    """The server's answer does not match the contract (non-JSON body, too large, unexpected shape)."""


class DrillError(VaoError):
    """A drill-level failure: a plan failed its precondition, halted, timed out or was not cleaned up."""


STATUS_ERRORS: dict[int, type[VaoResponseError]] = {
    400: VaoBadRequest,
    401: VaoAuthError,
    403: VaoForbidden,
    404: VaoNotFound,
    409: VaoConflict,
    429: VaoRateLimited,
}


def error_for_status(status_code: int) -> type[VaoResponseError]:
    """The leaf class for an HTTP status (5xx share one leaf; unknown codes get the base class)."""
    if status_code >= 500:
        return VaoServerError
    return STATUS_ERRORS.get(status_code, VaoResponseError)


def parse_json(body: bytes) -> object:
    """JSON from a body; ValueError for anything that is not JSON (also absurdly deep nesting)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def server_message(body: bytes) -> str | None:
    """The server's human text: ``Message`` (ASP.NET style), or an OAuth ``error_description``."""
    try:
        payload = parse_json(body)
    except ValueError:
        return None
    if isinstance(payload, dict):
        for key in ("Message", "message", "error_description", "error"):
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                return one_line(value)
    return None


def _retry_after(header: str | None) -> float | None:
    try:
        seconds = float(header) if header else math.nan
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def safe_location(location: str) -> str:
    """A redirect target fit for a message: no user info, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return "an unparsable location"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    return repr(one_line(shown, 200))


def from_status(
    status: int, headers: Mapping[str, str], body: bytes, operation: str, *, redact: Callable[[str], str] | None = None
) -> VaoResponseError:
    """The error for a non-2xx answer, with the operation, the status and the server's message.

    ``redact`` removes secrets the server may have echoed in its message.
    """
    message = server_message(body)
    if message and redact is not None:
        message = redact(message)
    text = f"{operation}: HTTP {status}"
    if 300 <= status < 400:
        location = headers.get("location")
        target = f"redirect to {safe_location(location)}" if location else "redirect without a Location"
        return VaoRedirected(
            f"{text}: {target} not followed (is the VAO URL right?)",
            location=location,
            status_code=status,
            server_message=message,
            operation=operation,
        )
    if message:
        text += f": {message}"
    return error_for_status(status)(
        text,
        status_code=status,
        server_message=message,
        operation=operation,
        retry_after=_retry_after(headers.get("retry-after")),
    )


class RedirectStopped(httpx.HTTPError):
    """Raised by the client's response hook for a 3xx answer, before httpx parses its Location (a hostile
    Location makes httpx raise); :func:`from_exception` turns it into :class:`VaoRedirected`."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: redirect not followed")
        self.status_code = response.status_code
        self.headers = response.headers


def from_exception(exc: BaseException, operation: str, *, sent: bool, deadline: float | None = None) -> VaoError:
    """Map an httpx exception (or the deadline's TimeoutError) onto the tree.

    ``sent`` says whether the request itself had been handed to the transport; when it had not (the failure
    came from the login before it), the server cannot have acted on it.
    """
    if isinstance(exc, RedirectStopped):
        return from_status(exc.status_code, exc.headers, b"", operation)
    reason = one_line(str(exc) or type(exc).__name__, 200)
    error: VaoError
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return VaoUsageError(f"{operation}: the URL cannot be used ({reason})")
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in reason:
        return VaoTLSError(f"{operation}: the server's TLS certificate is not trusted (use a CA bundle)")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.ProxyError):
        return VaoConnectError(f"{operation}: cannot connect to the server ({reason})")
    if isinstance(exc, httpx.DecodingError):
        return VaoProtocolError(f"{operation}: the answer's content encoding is broken ({reason})")
    if isinstance(exc, httpx.TooManyRedirects):
        return VaoProtocolError(f"{operation}: redirects are not followed ({reason})")
    if isinstance(exc, httpx.TimeoutException):
        error = VaoTimeoutError(f"{operation}: no answer in time ({type(exc).__name__})")
    elif isinstance(exc, TimeoutError):
        within = f"{round(deadline, 1):g} s" if deadline is not None else "the deadline"
        error = VaoTimeoutError(f"{operation}: no complete answer within {within}")
    else:  # ReadError, WriteError, CloseError, protocol errors, stream errors, any other httpx error
        error = VaoResponseLost(f"{operation}: connection lost before the answer ({reason})")
    if not sent:
        error.may_have_reached_server = False
    return error


# -- drill-level failures (raised by the engine, not the client) ------------------------------------------------


class PreconditionFailed(DrillError):
    """The plan cannot be run now (unknown, not runnable, or in use): no Run was sent."""


class UnknownPlans(PreconditionFailed):
    """Plans of the drill that the server does not know: reported before any failover starts."""


class PlanHalted(DrillError):
    """The plan halted and its halt policy says stop."""


class PlanTimedOut(DrillError):
    """The plan did not finish its stage before the timeout."""


class PlanFailed(DrillError):
    """The stage ended badly (errors, or a state the drill did not expect)."""


class RunNotStarted(PlanFailed):
    """The Run provably started nothing (never sent, or refused by the server): there is nothing to undo."""


class CleanupNotVerified(DrillError):
    """The undo could not be verified: the plan may still be failed over."""


class DrillAborted(DrillError):
    """The drill stopped waiting: ``kind`` is ``auth`` (credentials refused), ``unreachable`` (the server failed
    for longer than ``give_up_after``), ``signal`` (SIGINT/SIGTERM) or ``cancelled``. Cleanup is still attempted."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
