"""Running a plan's application checks: after VAO reports the failover complete, before dependents start.

Each check is tried until it passes or its deadline (counted from the failover's completion) passes, each attempt
bounded by its ``timeout`` and followed by ``retry_every`` before the next. Checks only read: a GET, a TCP
connect, a name lookup, or a program the drill author wrote. A ``command`` runs without a shell, in its own process
group (killed whole at its timeout), with a minimal environment: ``PATH``, ``LANG`` and the drill, plan and run ids;
never the drill's own environment, so never a VAO password or client secret.

The plan's checks run together; the first critical one to fail ends the others at once (the plan fails and its
undo must not wait), and so does a stop of the drill (the caller's cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from vaodrill.errors import PlanFailed
from vaodrill.report.checks import CheckResult
from vaodrill.spec.checks import Check

__all__ = ["CheckFailed", "CheckRun", "check_environment", "failed_critical", "run_checks", "verified_at"]

#: The most of an HTTP body read to match ``body`` / ``body_regex``.
MAX_BODY = 1 << 20
#: The PATH a command check gets (its program may also be given with a full path).
CHECK_PATH = "/usr/local/bin:/usr/bin:/bin"
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]+")


class CheckFailed(PlanFailed):
    """A critical check did not pass by its deadline; the message names it."""


@dataclass(frozen=True)
class CheckRun:
    """Where the checks of one plan run: ids for a command's environment, the VAO server for ``{vao}``."""

    drill: str
    run_id: str
    plan: str
    plan_id: str
    vao_url: str


def check_environment(run: CheckRun, check: Check) -> dict[str, str]:
    """The whole environment of a command check: nothing inherited, so no credential can leak into it."""
    return {
        "PATH": CHECK_PATH,
        "LANG": "C.UTF-8",
        "VAODRILL_DRILL": run.drill,
        "VAODRILL_RUN_ID": run.run_id,
        "VAODRILL_PLAN": run.plan,
        "VAODRILL_PLAN_ID": run.plan_id,
        "VAODRILL_CHECK": check.label,
    }


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _vao_parts(vao_url: str) -> tuple[str, str]:
    """The VAO server's origin and host, what ``{vao}`` and ``{vao_host}`` stand for."""
    parts = urlsplit(vao_url)
    return f"{parts.scheme}://{parts.netloc}", parts.hostname or "localhost"


async def _http(check: Check, run: CheckRun) -> str | None:
    url = check.target.replace("{vao}", _vao_parts(run.vao_url)[0], 1)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=check.ca_bundle) if check.ca_bundle else True
    async with (
        httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=None) as client,
        client.stream("GET", url) as response,
    ):
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= MAX_BODY:
                break
    if response.status_code != check.expected_status:
        return f"HTTP {response.status_code} (expected {check.expected_status})"
    text = body[:MAX_BODY].decode("utf-8", errors="replace")
    if check.body is not None and check.body not in text:
        return f"HTTP {response.status_code}, but the body does not contain {check.body!r}"
    if check.body_regex is not None and re.search(check.body_regex, text) is None:
        return f"HTTP {response.status_code}, but the body does not match {check.body_regex!r}"
    return None


async def _tcp(check: Check, run: CheckRun) -> str | None:
    host, _, port = check.target.replace("{vao_host}", _vao_parts(run.vao_url)[1]).rpartition(":")
    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _dns(check: Check, run: CheckRun) -> str | None:
    name = check.target.replace("{vao_host}", _vao_parts(run.vao_url)[1])
    infos = await asyncio.get_running_loop().getaddrinfo(name, None)
    found = {str(info[4][0]) for info in infos}
    missing = [a for a in check.addresses if a not in found]
    if missing:
        return f"{name} resolves to {', '.join(sorted(found))}, not {', '.join(missing)}"
    return None


async def _command(check: Check, run: CheckRun) -> str | None:
    assert check.command is not None
    process = await asyncio.create_subprocess_exec(
        *check.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=check_environment(run, check),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        output = b""
        while chunk := await process.stdout.read(65536):  # all of it (a full pipe would block the program)
            output = (output + chunk)[:4096]  # the start of it is enough to quote
        code = await process.wait()
    finally:
        if process.returncode is None:  # timed out or cancelled: the program and whatever it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if code != 0:
        said = _short(output.decode("utf-8", errors="replace"), 200)
        return f"exit {code}" + (f": {said}" if said else "")
    return None


_PROBES = {"http": _http, "tcp": _tcp, "dns": _dns, "command": _command}


async def _attempt(check: Check, run: CheckRun) -> str | None:
    """None if the check passes now, else why not; bounded by its timeout."""
    try:
        async with asyncio.timeout(check.timeout.total_seconds()):
            return await _PROBES[check.kind](check, run)
    except TimeoutError:
        return f"no answer within {check.timeout.total_seconds():g}s (timeout)"
    except (OSError, httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, UnicodeError, ValueError) as exc:
        return _short(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))


async def _until_deadline(
    check: Check, run: CheckRun, completed_at: datetime, results: dict[str, CheckResult]
) -> CheckResult:
    """Attempts until one passes or the deadline passes; ``results`` always holds the latest state."""
    result = results[check.label]
    deadline = (
        time.monotonic()
        + check.deadline.total_seconds()
        - max(0.0, (datetime.now(completed_at.tzinfo) - completed_at).total_seconds())
    )
    while True:
        why = await _attempt(check, run)
        result.attempts += 1
        if why is None:
            result.status, result.message = "passed", None
            result.passed_at = result.ended_at = datetime.now(completed_at.tzinfo)
            result.seconds_after_complete = round((result.passed_at - completed_at).total_seconds(), 3)
            return result
        result.message = why
        pause = min(check.retry_every.total_seconds(), deadline - time.monotonic())
        if pause <= 0 or time.monotonic() + pause + 0.001 >= deadline:
            result.status, result.ended_at = "failed", datetime.now(completed_at.tzinfo)
            result.message = f"{why} (deadline {check.deadline.total_seconds():g}s after the failover completed)"
            return result
        await asyncio.sleep(pause)


async def run_checks(checks: Sequence[Check], run: CheckRun, completed_at: datetime) -> list[CheckResult]:
    """Every check's result, in spec order; a critical failure stops the others (they are ``not_run``).

    Cancelled (the drill stops), it re-raises after ending every attempt; the results so far are then lost to the
    caller, who records the plan as interrupted.
    """
    results = {
        c.label: CheckResult(name=c.label, kind=c.kind, target=c.target, critical=c.critical, status="not_run")
        for c in checks
    }
    tasks = {asyncio.ensure_future(_until_deadline(c, run, completed_at, results)): c for c in checks}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.result().status == "failed" and tasks[t].critical for t in done):
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for result in results.values():
        if result.status == "not_run":
            result.ended_at = datetime.now(completed_at.tzinfo)
            result.message = "stopped: a critical check of this plan failed"
    return list(results.values())


def verified_at(results: Sequence[CheckResult]) -> datetime | None:
    """When the last critical check passed; None when one did not pass, or there is none."""
    critical = [r for r in results if r.critical]
    if not critical or any(r.passed_at is None for r in critical):
        return None
    return max(r.passed_at for r in critical if r.passed_at is not None)


def failed_critical(results: Sequence[CheckResult]) -> CheckResult | None:
    return next((r for r in results if r.critical and r.status == "failed"), None)
