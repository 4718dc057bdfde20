"""Running a drill from the command line: in this process with a live view, through the engine alone or as a
``dr-drill`` flow run when a Prefect API is configured; its signals, its approval and its recovery."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from vaodrill.app.console import USER_ERRORS, UserError, console, err_console
from vaodrill.errors import VaoError, one_line
from vaodrill.vao.connection import ConnectionSettings


def warn_zone(drill_zone: str, server_zone: str) -> str | None:
    """The server-zone warning on stderr before anything is sent; returned for ``--json``."""
    from vaodrill.spec.zones import timezone_warning

    if warning := timezone_warning(drill_zone, server_zone):
        err_console.print(f"[bold yellow]⚠ {escape(warning)}[/]", highlight=False)
    return warning


def who() -> str:
    """The account that approved at this terminal (a container may have no name for it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def confirm_real_failover(spec: Any, settings: ConnectionSettings) -> str:
    """The drill's name typed at the terminal, or a one-line refusal; how it was approved, for the journal."""
    if not sys.stdin.isatty():
        raise UserError(f"drill {spec.name} is a REAL failover on {settings.url}: confirm with --yes")
    answer = typer.prompt(
        f"REAL failover of {len(spec.plans)} plans on {settings.url} (no undo). "
        f"Type the drill name ({spec.name}) to proceed"
    )
    if answer.strip() != spec.name:
        raise UserError("not confirmed: nothing was failed over")
    return "the drill's name typed at the terminal"


async def dry_run_drill(spec: Any, settings: ConnectionSettings) -> None:
    from vaodrill.engine.recovery import dry_run

    calls = await dry_run(spec, settings)
    console.print(f"[bold]Dry run of {spec.name}[/] on {settings.url}: no POST was sent.")
    for call in calls:
        mark = "[green]✓[/]" if call.ok else "[red]✗[/]"
        console.print(f"{mark} {call.plan}: {call.note}")
        if call.request:
            console.print(f"    would send: {call.request}")
    if not all(c.ok for c in calls):
        raise typer.Exit(1)


class _Signals:
    """First SIGINT/SIGTERM: stop the drill cleanly (undo, report). Second: exit now, naming what to recover."""

    def __init__(self, main: asyncio.Task[Any]) -> None:
        self.main = main
        self.first: int | None = None

    def __call__(self, signum: int) -> None:
        from vaodrill.engine import signals

        name = signal.Signals(signum).name
        if self.first is None:
            self.first = signum
            err_console.print(
                f"[bold yellow]⚑ {name}: stopping the drill; undoing what it failed over "
                f"(send it again to exit at once)[/]"
            )
            if signals.running:
                for drill in list(signals.running):
                    drill.stop(f"stopped by {name}", kind="signal")
            else:
                self.main.cancel()
            return
        plans = [(d.run_id, name) for d in signals.running for name in d.may_be_failed_over()]
        if plans:
            err_console.print(
                f"[bold red]✗ exiting now; plans possibly still failed over: {', '.join(p for _, p in plans)}[/]"
            )
            for run_id in sorted({r for r, _ in plans}):
                err_console.print(f"  recover them with: vaodrill recover {run_id}")
        else:
            err_console.print("[bold red]✗ exiting now[/]")
        sys.stderr.flush()
        os._exit(128 + (self.first or signum))


def prefect_api_configured() -> bool:
    """Whether Prefect has an API to report to (``PREFECT_API_URL`` in the environment, the active profile or a
    settings file here). Prefect's own answer costs about 2 s of imports: it is asked only when a file could
    configure one."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    hints = {
        Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml"): "PREFECT_API_URL",
        Path(".env"): "PREFECT_API_URL",
        Path("prefect.toml"): "",
        Path("pyproject.toml"): "[tool.prefect",
    }
    if not any(_file_contains(path, marker) for path, marker in hints.items()):
        return False
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _file_contains(path: Path, marker: str) -> bool:
    try:
        if not path.is_file():
            return False
        with path.open(encoding="utf-8", errors="replace") as f:
            return marker in f.read(1_000_000)
    except OSError:
        return False


def run_drill(
    drill: Path,
    spec: Any,
    settings: ConnectionSettings,
    report_dir: Path,
    *,
    run_id: str | None = None,
    journal_dir: Path | None = None,
    approval: dict[str, str] | None = None,
) -> int:
    """Run the drill in this process with a live view; returns the exit code.

    With a Prefect API configured, the drill is a ``dr-drill`` flow run reported there (the UI, events,
    automations); without one, the engine runs the drill alone: the same steps, journal and report, without
    the 2 s of Prefect imports and a server nobody could look at.
    """
    from vaodrill.app.live import LiveView
    from vaodrill.engine import signals
    from vaodrill.journal import check_run_id

    if run_id is not None:
        check_run_id(run_id)
    through_prefect = prefect_api_configured()
    if through_prefect:
        _quiet_prefect()
    else:
        _engine_log_to_console()
    handler: _Signals | None = None

    async def main() -> Any:
        nonlocal handler
        handler = _Signals(asyncio.current_task())  # type: ignore[arg-type]
        signals.handle(handler)
        try:
            if through_prefect:
                return await _flow_run(drill, spec, settings, report_dir, run_id, journal_dir, approval)
            return await _engine_run(drill, spec, settings, report_dir, run_id, journal_dir, approval)
        finally:
            signals.release()

    with LiveView(console) as view:
        try:
            state = asyncio.run(main())
        except asyncio.CancelledError:
            state = None
    return _ending(view.report, state, handler.first if handler else None, report_dir)


def _ending(report: Any, state: Any, stopped_by: int | None, report_dir: Path) -> int:
    """The drill's summary on the terminal and its exit code; a drill that never ran is a one-line error."""
    from vaodrill.report.model import report_directory
    from vaodrill.report.terminal import summary_table

    if report is None:
        if stopped_by is not None:
            err_console.print("[bold red]interrupted before any failover[/]")
            return 128 + stopped_by
        error = _state_error(state) if state is not None and state.is_failed() else None
        if isinstance(error, (*USER_ERRORS, VaoError, ValueError)):
            raise error  # bad input or configuration: one line, exit 2
        raise UserError(f"the drill did not run: {state.message if state else 'cancelled'}")
    console.print()
    console.print(summary_table(report))
    files = report_directory(report, report_dir)
    verdict = "[bold green]PASSED[/]" if report.verdict == "passed" else "[bold red]FAILED[/]"
    console.print(f"Drill {report.drill}: {verdict}" + (f" — {report.reason}" if report.reason else ""))
    if report.left_failed_over:
        err_console.print(
            f"[bold red]✗ PLANS LEFT FAILED OVER: {', '.join(p.plan for p in report.left_failed_over)}"
            f" — recover with: vaodrill recover {report.run_id}[/]"
        )
    if files.exists():
        console.print(f"Reports: {files}")
    if report.stopped == "signal" and stopped_by is not None:
        return 128 + stopped_by
    if report.stopped == "auth":
        return 2
    return 0 if report.verdict == "passed" else 1


async def _engine_run(
    drill: Path,
    spec: Any,
    settings: ConnectionSettings,
    report_dir: Path,
    run_id: str | None,
    journal_dir: Path | None,
    approval: dict[str, str] | None,
) -> Any:
    from uuid import uuid4

    from vaodrill.engine import progress, signals
    from vaodrill.engine.drill import Drill

    engine = Drill(
        spec,
        settings,
        run_id=run_id or str(uuid4()),
        report_dir=report_dir,
        journal_dir=journal_dir,
        observers=[progress.bus],
        spec_file=str(drill.resolve()),
        approval=approval,
    )
    signals.running.add(engine)
    try:
        return await engine.run()
    finally:
        signals.running.discard(engine)


async def _flow_run(
    drill: Path,
    spec: Any,
    settings: ConnectionSettings,
    report_dir: Path,
    run_id: str | None,
    journal_dir: Path | None,
    approval: dict[str, str] | None,
) -> Any:
    """The ``dr-drill`` flow run; its request carries all it needs: the spec read here, and the settings as a
    ``VaoServer`` block held in memory (the API stores the request with the secrets masked). The flow's engine
    logs in once; a wrong URL or password ends the run at once with that one line (exit 2)."""
    from vaodrill_prefect.flows.drill import DrillRequest, dr_drill
    from vaodrill_prefect.tasks.blocks import VaoServer

    request = DrillRequest(
        drill_file=str(drill),
        report_dir=str(report_dir),
        run_id=run_id,
        approval=approval,
        journal_dir=str(journal_dir) if journal_dir is not None else None,
        spec=spec,
        vao_block=VaoServer.of(settings),
    )
    return await dr_drill(request=request, return_state=True)


def _state_error(state: Any) -> BaseException | None:
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:
        return exc
    return result if isinstance(result, BaseException) else None


def _quiet_prefect() -> None:
    """The console belongs to the live view: Prefect's run logs (tracebacks included) go to the Prefect UI only.

    Only CRITICAL records (e.g. plans left failed over) still reach the terminal; no telemetry is sent.
    """
    for key in (
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL",
    ):
        os.environ[key] = "CRITICAL"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")


class _OneLine(logging.Formatter):
    """A log record as one line: the exception's type and message, never its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line += f": {type(error).__name__}: {error}"
        return one_line(line)


def _engine_log_to_console() -> None:
    """As with Prefect's run logs, the console belongs to the live view: only CRITICAL records (plans left failed
    over) reach it, as single lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    engine_log = logging.getLogger("vaodrill")
    engine_log.handlers = [handler]
    engine_log.setLevel(logging.CRITICAL)
    engine_log.propagate = False


async def recover_runs(runs: list[Any], settings: ConnectionSettings, yes: bool) -> int:
    from vaodrill.engine.recovery import recover, survey

    surveys = []
    for journal in runs:
        if str(journal.opened.get("server", "")).rstrip("/") != settings.url.rstrip("/"):
            err_console.print(
                f"[yellow]skipping run {journal.run_id}: it ran against {journal.opened.get('server')}"
                f", not {settings.url}[/]"
            )
            continue
        survey_ = await survey(journal, settings)
        surveys.append(survey_)
        console.print(
            f"[bold]Run {journal.run_id}[/] (drill {journal.drill}, {journal.mode} mode, journal {journal.path}):"
        )
        if not survey_.plans:
            console.print("  no plan was failed over by this run")
        for p in survey_.plans:
            console.print(f"  {p.name}: {p.state} -> {p.action}")
    if not surveys:
        return 1
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("recover changes plans on VAO: confirm with --yes")
        if not typer.confirm("Proceed?"):
            raise UserError("not confirmed: nothing was changed")
    clean = True
    for survey_ in surveys:
        recovery = await recover(survey_.journal, settings, surveyed=survey_)
        for p in recovery.plans:
            ok = p.outcome == "clean"
            clean = clean and ok
            console.print(f"{'[green]✓' if ok else '[red]✗'}[/] {p.name}: {p.outcome or p.action}")
        if survey_.journal.mode != "drill" and survey_.plans:
            clean = False
            err_console.print(
                f"[yellow]run {survey_.journal.run_id} was a REAL failover: its plans are left as they are[/]"
            )
    return 0 if clean else 1
