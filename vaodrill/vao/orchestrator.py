"""The seam between a drill and the server it drives: what a drill needs of an orchestrator, and which backend
speaks to a given URL.

The engine, the spec, the reports and the flows know only :class:`Orchestrator`. Two backends implement it on
the same plumbing (:class:`~vaodrill.vao.client.HttpApi`: one login, one error tree, one retry policy, the same size
caps, deadlines and redaction): :class:`~vaodrill.vao.client.VaoClient` for VAO's API v2 and
:class:`~vaodrill.vao.vro.VroClient` for Veeam Recovery Orchestrator's API v7.2, v7.21 and v13. Plans come back as
:class:`~vaodrill.vao.models.FailoverPlan` readings whatever the API, and every decision is made on their normalized
record (:meth:`FailoverPlan.status`).
"""

from __future__ import annotations

import re
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import httpx

from vaodrill.errors import VaoUsageError, one_line
from vaodrill.vao.client import VaoClient
from vaodrill.vao.models import ContinueOption, FailoverPlan
from vaodrill.vao.retry import RetryPolicy
from vaodrill.vao.vocabulary import Vocabulary
from vaodrill.vao.vro import VRO_VERSIONS, VroClient


class Orchestrator(Protocol):
    """What a drill needs of an orchestrator; every method raises only errors of :mod:`vaodrill.errors`."""

    api: str
    base_url: str
    vocabulary: Vocabulary
    max_response_bytes: int
    #: The one retry policy: the client's own calls, and what the engine waits on (its write slot).
    retry: RetryPolicy

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def token_url(self) -> str: ...

    @property
    def plans_path(self) -> str:
        """The plan list's path (``doctor`` probes it)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def aclose(self) -> None: ...

    async def list_plans(self) -> list[FailoverPlan]:
        """Every plan with its state, in ONE batched read (the poller's once-per-interval read)."""
        ...

    async def get_plan(self, plan_id: str) -> FailoverPlan: ...

    async def run_failover(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> None:
        """Start a failover to the restore point nearest before ``restore_point``. Never resent once sent."""
        ...

    def failover_request(
        self, plan_id: str, *, restore_point: str | None = None, execute_chained_plans: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The path and exact body :meth:`run_failover` sends."""
        ...

    def undo_path(self, plan_id: str) -> str: ...

    async def halt(self, plan_id: str, *, fullstop: bool = False) -> None: ...

    async def continue_plan(self, plan_id: str, option: ContinueOption | str) -> None: ...

    async def undo(self, plan_id: str) -> None: ...

    def readiness_request(self, plan_id: str) -> tuple[str, dict[str, Any]]:
        """The path and body :meth:`readiness_check` sends; a :class:`~vaodrill.errors.VaoUsageError` (nothing
        sent) where the API has no readiness check."""
        ...

    async def readiness_check(self, plan_id: str) -> None:
        """VRO's readiness check (a write: the plan runs it); the same error as :meth:`readiness_request`."""
        ...


_API_PATH = re.compile(r"/api/v(\d+(?:\.\d+)?)$", re.IGNORECASE)


def api_of(url: str) -> str:
    """``vro`` or ``v2`` from the URL's API path: ``/api/v13``, ``/api/v7.2``, ``/api/v7.21`` are VRO; ``/v2`` or
    no API path is VAO v2. Any other ``/api/vN`` is refused in one line (a version vaodrill does not speak)."""
    path = urlsplit(url).path.rstrip("/")
    if (match := _API_PATH.search(path)) is None:
        return "v2"
    if match[1] not in VRO_VERSIONS:
        raise VaoUsageError(
            f"the URL asks for API v{one_line(match[1], 20)}; vaodrill speaks VRO's "
            f"{', '.join('/api/v' + v for v in VRO_VERSIONS)} and VAO's /v2"
        )
    return "vro"


def backend_for(url: str, **options: Any) -> Orchestrator:
    """The one place a backend is chosen: by the server URL's API path (see :func:`api_of`)."""
    backend: type[VaoClient] | type[VroClient] = VroClient if api_of(url) == "vro" else VaoClient
    return backend(url, **options)


__all__ = ["Orchestrator", "api_of", "backend_for"]
