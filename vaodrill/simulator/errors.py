"""HTTP-shaped errors of the simulator, rendered ASP.NET Web API style as ``{"Message": ...}``.

The engine raises these instead of returning status codes so the state machine stays free of HTTP plumbing,
while one exception handler in :mod:`vaodrill.simulator.app` turns each into exactly the response the contract
(docs/vao-api.md, section 3) promises.
"""

from __future__ import annotations


class SimError(Exception):
    """An error the simulator answers with ``status`` and ``{"Message": message}``."""

    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(SimError):
    """400: malformed body, unknown enum value, bad OData, no matching restore point."""

    status = 400


class Unauthorized(SimError):
    """401: missing, malformed, expired or unknown bearer token."""

    status = 401
    DENIED = "Authorization has been denied for this request."

    def __init__(self) -> None:
        super().__init__(self.DENIED, headers={"WWW-Authenticate": "Bearer"})


class NotFound(SimError):
    """404: unknown plan, site or scope, or a path this server does not serve."""

    status = 404


def no_route(path: str) -> NotFound:
    """The 404 ASP.NET Web API gives for a path it has no route for."""
    return NotFound(f"No HTTP resource was found that matches the request URI '{path}'.")


class Conflict(SimError):
    """The operation is not legal in the plan's current state (table 4.3).

    409 in the contract; a plan's ``illegal_status`` profile field makes it 400 or 500 (docs/vao-api.md, section 5).
    """

    status = 409

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status
