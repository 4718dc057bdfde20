"""One error tree for everything vaodrill can report.

    VaoError
    ├── VaoConnectionError          could not complete an exchange with the server
    │   ├── VaoConnectError         the request provably never reached the server (safe to resend)
    │   │   └── VaoTLSError         the certificate was not trusted
    │   ├── VaoTimeoutError         no answer in time: the server may have acted on it
    │   └── VaoResponseLost         the connection broke mid-exchange: the server may have acted on it
    ├── VaoResponseError            the server answered with an error status
    │   ├── VaoBadRequest 400 · VaoAuthError 401 · VaoForbidden 403 · VaoNotFound 404
    │   └── VaoConflict 409 · VaoRateLimited 429 · VaoServerError 5xx
    ├── VaoProtocolError            the answer was not what the contract promises (e.g. not JSON)
    └── DrillError                  a drill-level failure (precondition, halt, timeout, cleanup)

Messages are one line, carry the operation and the server's ``Message``, and never a password or token.
"""

from __future__ import annotations

import httpx


class VaoError(Exception):
    """Base of every vaodrill error."""


class VaoConnectionError(VaoError):
    """The exchange with the server did not complete."""

    #: Whether the server may have received (and acted on) the request. Writes are resent only when False.
    may_have_reached_server: bool = True


class VaoConnectError(VaoConnectionError):
    """The connection could not be made: the request never left this machine."""

    may_have_reached_server = False


class VaoTLSError(VaoConnectError):
    """The server's TLS certificate was rejected."""


class VaoTimeoutError(VaoConnectionError):
    """The server did not answer in time; it may still have processed the request."""


class VaoResponseLost(VaoConnectionError):
    """The connection dropped after the request was sent; it may have been processed."""


class VaoResponseError(VaoError):
    """The server answered with an error status."""

    def __init__(self, message: str, *, status_code: int, server_message: str | None = None,
                 operation: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message
        self.operation = operation
        self.retry_after = retry_after


class VaoBadRequest(VaoResponseError):
    """400: malformed body, unknown enum value, or no restore point at that date."""


class VaoAuthError(VaoResponseError):
    """401 (or a refused login): the credentials or token were not accepted."""


class VaoForbidden(VaoResponseError):
    """403: the account may not do this."""


class VaoNotFound(VaoResponseError):
    """404: no such plan."""


class VaoConflict(VaoResponseError):
    """409: the operation is not legal in the plan's current state."""


class VaoRateLimited(VaoResponseError):
    """429: the server asks us to slow down (see ``retry_after``)."""


class VaoServerError(VaoResponseError):
    """5xx: the server failed."""


class VaoProtocolError(VaoError):
    """The server's answer does not match the contract (non-JSON body, unexpected shape)."""


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


def server_message(response: httpx.Response) -> str | None:
    """The server's human text: ``Message`` (ASP.NET style), or an OAuth ``error_description``."""
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict):
        for key in ("Message", "message", "error_description", "error"):
            if isinstance(payload.get(key), str) and payload[key]:
                return " ".join(payload[key].split())
    return None


def from_response(response: httpx.Response, operation: str) -> VaoResponseError:
    """The error for a non-2xx answer, with the operation, the status and the server's message."""
    status = response.status_code
    message = server_message(response)
    retry_after = None
    if header := response.headers.get("Retry-After"):
        try:
            retry_after = max(0.0, float(header))
        except ValueError:
            retry_after = None
    text = f"{operation}: HTTP {status}"
    if message:
        text += f": {message}"
    return error_for_status(status)(text, status_code=status, server_message=message, operation=operation,
                                    retry_after=retry_after)


class PreconditionFailed(DrillError):
    """The plan cannot be run now (unknown, not Enabled, or in use): no Run was sent."""


class UnknownPlans(PreconditionFailed):
    """Plans of the drill that the server does not know: reported before any failover starts."""


class PlanHalted(DrillError):
    """The plan halted and its halt policy says stop."""


class PlanTimedOut(DrillError):
    """The plan did not finish its stage before the timeout."""


class PlanFailed(DrillError):
    """The stage ended badly (errors, or a state the drill did not expect)."""


class CleanupNotVerified(DrillError):
    """The undo could not be verified: the plan may still be failed over."""
