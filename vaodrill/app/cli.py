"""The ``vaodrill`` command line: simulator, plans, validate, run, demo, serve.

Exit codes: 0 the drill passed, 1 it failed, 2 bad input or configuration (one line, never a traceback).
Connection settings, highest precedence first: command-line options, a Prefect block (``--block``), the
``VAO_*`` environment variables; with none of them, commands use an embedded simulator and say so.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vaodrill.errors import UnknownPlans, VaoAuthError, VaoConnectionError, VaoError
from vaodrill.vao.connection import ConnectionSettings

#: Failures that are the user's to fix (exit 2), as opposed to a drill that ran and failed (exit 1).
USER_ERRORS = (UnknownPlans, VaoAuthError, VaoConnectionError)

def _console(*, stderr: bool) -> Console:
    """Never hard-wrapped lines; in a pipe or a CI log, tables as wide as their content (not 80 columns)."""
    made = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 1000
    return made


console = _console(stderr=False)
err_console = _console(stderr=True)

PACKAGE = Path(__file__).resolve().parent.parent  # vaodrill/
ROOT = PACKAGE.parent


def demo_drill() -> Path:
    """The demo drill: packaged with vaodrill (an installed wheel), or the checkout's deployments/drills."""
    packaged = PACKAGE / "demo" / "demo.yaml"
    return packaged if packaged.is_file() else ROOT / "deployments" / "drills" / "demo.yaml"

DEMO_TIME_SCALE = 120.0

app = typer.Typer(
    name="vaodrill", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Scheduled, observable, provable DR drills for Veeam Availability Orchestrator, on Prefect.\n\n"
         "Exit codes: 0 passed, 1 drill failed, 2 bad input or configuration.",
)


class UserError(Exception):
    """Bad input or configuration: printed as one line, exit code 2."""


# -- connection options ---------------------------------------------------------------------------------


@dataclass
class ConnectionOptions:
    vao_url: str | None = None
    username: str | None = None
    password: str | None = None
    vao_timezone: str | None = None
    ca_bundle: str | None = None
    block: str | None = None
    client_id: str | None = None
    password_stdin: bool = False
    allow_insecure_http: bool = False


VaoUrl = Annotated[str | None, typer.Option("--vao-url", help="VAO base URL, e.g. https://vao:9899 [env VAO_URL]",
                                            show_default=False)]
Username = Annotated[str | None, typer.Option("--username", help="VAO user [env VAO_USERNAME]", show_default=False)]
Password = Annotated[str | None, typer.Option(
    "--password", show_default=False,
    help="VAO password. Avoid: any user of this machine can read it in the process list; prefer the prompt, "
         "--password-stdin, VAO_PASSWORD_FILE or VAO_PASSWORD")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password (or, with --client-id, "
                                             "the client secret) from the first line of stdin")]
ClientId = Annotated[str | None, typer.Option("--client-id", help="Log in as this child client (client_credentials); "
                                              "the secret comes from --password-stdin, the prompt or "
                                              "VAO_CLIENT_SECRET [env VAO_CLIENT_ID]", show_default=False)]
AllowInsecureHttp = Annotated[bool, typer.Option("--allow-insecure-http", help="Send credentials over plain http:// "
                                                 "to a host that is not this machine [env VAO_ALLOW_INSECURE_HTTP]")]
VaoTimezone = Annotated[str | None, typer.Option("--vao-timezone", help="IANA zone of the VAO server clock "
                                                 "[env VAO_TIMEZONE, default UTC]", show_default=False)]
CaBundle = Annotated[str | None, typer.Option("--ca-bundle", help="PEM file to trust for VAO's certificate "
                                              "[env VAO_CA_BUNDLE]", show_default=False)]
BlockName = Annotated[str | None, typer.Option("--block", help="Name of a saved 'VAO Server' Prefect block",
                                               show_default=False)]


def resolve_settings(options: ConnectionOptions) -> ConnectionSettings | None:
    """Merge CLI options over a block over the environment, field by field; None means "no server given".

    A secret missing from all of them is read from stdin (``--password-stdin``) or asked for at the terminal.
    """
    layers: list[dict[str, Any]] = []
    env = ConnectionSettings.from_env()
    if env is not None:
        layers.append(env.model_dump())
    if options.block:
        layers.append(_load_block(options.block).model_dump())
    cli: dict[str, Any] = {
        "url": options.vao_url, "username": options.username, "client_id": options.client_id,
        "password": SecretStr(options.password) if options.password is not None else None,
        "server_timezone": options.vao_timezone, "ca_bundle": options.ca_bundle,
        "allow_insecure_http": True if options.allow_insecure_http else None}
    layers.append({k: v for k, v in cli.items() if v is not None})
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    if "url" not in merged:
        if any(merged.get(k) for k in ("username", "password", "ca_bundle", "client_id")):
            raise UserError("VAO credentials given but no URL: add --vao-url or set VAO_URL")
        return None
    secret_key = "client_secret" if merged.get("client_id") else "password"
    if not _secret_given(merged.get(secret_key)) and (
            secret := _read_secret(options, "client secret" if secret_key == "client_secret" else "password")):
        merged[secret_key] = SecretStr(secret)
    merged.setdefault("username", "")
    merged.setdefault("password", SecretStr(""))
    try:
        return ConnectionSettings(**merged)
    except ValidationError as exc:
        raise UserError(f"bad connection settings: {_first_error(exc)}") from None


def _secret_given(value: Any) -> bool:
    return isinstance(value, SecretStr) and bool(value.get_secret_value())


def _read_secret(options: ConnectionOptions, what: str) -> str | None:
    """The first line of stdin with --password-stdin; else a hidden prompt when a person is at the terminal."""
    if options.password_stdin:
        line = sys.stdin.readline(4096).rstrip("\r\n")
        if not line:
            raise UserError(f"--password-stdin: no {what} on stdin")
        return line
    if sys.stdin.isatty() and sys.stderr.isatty():
        return str(typer.prompt(f"VAO {what}", hide_input=True, err=True))
    return None


def _load_block(name: str) -> ConnectionSettings:
    from tasks.blocks import VaoServer  # Prefect is needed only when a block is named

    try:
        block = cast(VaoServer, VaoServer.load(name))
    except ValueError as exc:
        raise UserError(f"no 'VAO Server' block named {name!r} ({_one_line(str(exc))})") from None
    return block.settings()


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


@contextmanager
def connection(options: ConnectionOptions, *, time_scale: float = DEMO_TIME_SCALE,
               force_simulator: bool = False, api: str = "v2") -> Iterator[ConnectionSettings]:
    """The configured VAO server, or an embedded simulator (demo scenario) announced by a banner; ``api``: the
    simulator's API a drill speaks (``v2``, or ``vro`` at ``/api/v13``)."""
    settings = None if force_simulator else resolve_settings(options)
    if settings is not None:
        yield settings
        return
    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer

    with BackgroundServer(create_app("demo", time_scale=time_scale)) as server:
        url = f"{server.url}/api/v13" if api == "vro" else server.url
        err_console.print(f"[bold yellow]⚑ No VAO server configured: using the embedded simulator[/] "
                          f"(demo scenario, time x{time_scale:g}) at {url}")
        yield ConnectionSettings(url=url, username="demo", password=SecretStr("demo"), simulated=True)


# -- commands -------------------------------------------------------------------------------------------


class DemoApi(StrEnum):
    V2 = "v2"
    VRO = "vro"


class SimulatedApi(StrEnum):
    V2 = "v2"
    VRO = "vro"
    BOTH = "both"


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (VAO's default is 9899)")] = 9899,
    scenario: Annotated[str, typer.Option(help="'demo', 'veeam-docs' or a scenario YAML file")] = "demo",
    time_scale: Annotated[float, typer.Option(help="Simulated seconds per real second")] = 1.0,
    username: Annotated[str, typer.Option(help="Accepted user name")] = "demo",
    password: Annotated[str, typer.Option(help="Accepted password")] = "demo",
    cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS")] = None,
    key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    api: Annotated[SimulatedApi, typer.Option(help="VAO's v2, VRO's API (/api/token, /api/v13...) or both")]
    = SimulatedApi.BOTH,
) -> None:
    """Serve a simulated VAO REST API v2 and VRO REST API (with a control plane under /_sim/).

    A drill given the URL speaks VAO v2; given the URL ending in /api/v13 (or /api/v7.2, /api/v7.21), VRO.

    Examples:
      vaodrill simulator
      vaodrill simulator --api vro --port 9898
      vaodrill simulator --time-scale 60 --port 9899
      vaodrill simulator --scenario my-site.yaml --cert cert.pem --key key.pem
    """
    if (cert is None) != (key is None):
        raise UserError("--cert and --key go together")
    if time_scale <= 0:
        raise UserError("--time-scale must be greater than 0")
    from vaodrill.simulator.server import serve

    serve(host=host, port=port, scenario=scenario, time_scale=time_scale, username=username, password=password,
          certfile=str(cert) if cert else None, keyfile=str(key) if key else None, api=api.value)


@app.command()
def plans(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    vao_url: VaoUrl = None, username: Username = None, password: Password = None,
    vao_timezone: VaoTimezone = None, ca_bundle: CaBundle = None, block: BlockName = None,
    client_id: ClientId = None, password_stdin: PasswordStdin = False, allow_insecure_http: AllowInsecureHttp = False,
) -> None:
    """List the server's failover plans: name, id, state, in use, target RTO/RPO.

    Examples:
      vaodrill plans
      vaodrill plans --vao-url https://vao.corp:9899 --username 'CORP\\drill' --json
    """
    options = ConnectionOptions(vao_url, username, password, vao_timezone, ca_bundle, block, client_id,
                                password_stdin, allow_insecure_http)
    with connection(options) as settings:
        found = asyncio.run(_list_plans(settings))
    if as_json:
        console.print_json(json.dumps([{
            "name": p.name, "id": p.id, "state": p.state_raw or p.state.value, "details": p.state_details,
            "in_use": p.in_use, "target_rto_minutes": p.target_rto, "target_rpo_minutes": p.target_rpo,
        } for p in found]))
        return
    table = Table(title=f"Failover plans on {settings.url}")
    for column in ("Plan", "Id", "State", "In use", "Target RTO", "Target RPO"):
        table.add_column(column)
    for p in found:
        table.add_row(p.name, p.id, p.describe_state(), "yes" if p.in_use else "no",
                      f"{p.target_rto} min" if p.target_rto is not None else "—",
                      f"{p.target_rpo} min" if p.target_rpo is not None else "—")
    console.print(table)


async def _list_plans(settings: ConnectionSettings) -> list[Any]:
    async with settings.client() as client:
        return await client.list_plans()


def _load_spec(path: Path) -> Any:
    from vaodrill.spec.model import load_spec

    return load_spec(path)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    import pendulum

    try:
        parsed = pendulum.parse(value)
    except Exception:
        raise UserError(f"--now: not an ISO 8601 instant: {value!r}") from None
    if not isinstance(parsed, datetime):
        raise UserError(f"--now: not an instant: {value!r}")
    return parsed


@app.command()
def doctor(
    drill: Annotated[Path | None, typer.Option("--drill", help="Also require the plans of this drill spec to be "
                                               "runnable", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines")] = False,
    vao_url: VaoUrl = None, username: Username = None, password: Password = None,
    vao_timezone: VaoTimezone = None, ca_bundle: CaBundle = None, block: BlockName = None,
    client_id: ClientId = None, password_stdin: PasswordStdin = False, allow_insecure_http: AllowInsecureHttp = False,
) -> None:
    """Check a VAO server before the first drill, with reads only (it never POSTs to a plan).

    TLS and the CA bundle, login and refresh, the plan list, the single-plan GET's shape, each plan's state and
    whether vaodrill would run it, OData, the server's clock, the server time zone.
    Exit codes: 0 all good, 1 something would stop a drill, 2 cannot connect or bad input.

    Examples:
      vaodrill doctor --vao-url https://vao.corp:9899 --username 'CORP\\drill'
      vaodrill doctor --drill deployments/drills/app-stack-monthly.yaml --json
    """
    from vaodrill.app.doctor import diagnose, render, to_json

    spec = _load_spec(drill) if drill else None
    plans = [step.plan for step in spec.plans] if spec else None
    options = ConnectionOptions(vao_url, username, password, vao_timezone, ca_bundle, block, client_id,
                                password_stdin, allow_insecure_http)
    with connection(options) as settings:
        diagnosis = asyncio.run(diagnose(settings, plans=plans, drill_timezone=spec.timezone if spec else None))
    if as_json:
        console.print_json(json.dumps(to_json(diagnosis)))
    else:
        render(diagnosis, console)
    raise typer.Exit(diagnosis.exit_code)


@app.command()
def validate(
    drill: Annotated[Path, typer.Argument(help="Drill spec (YAML)")],
    now: Annotated[str | None, typer.Option(help="Evaluate restore-point rules at this instant (ISO 8601)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    vao_timezone: VaoTimezone = None,
) -> None:
    """Check a drill spec; show the plan order and the restore-point date each plan would request.

    Dates are shown as sent to VAO: the server's wall time (zone from --vao-timezone / VAO_TIMEZONE).

    Examples:
      vaodrill validate deployments/drills/demo.yaml
      vaodrill validate my-drill.yaml --now 2026-11-29T01:00:00+01:00 --vao-timezone Europe/Berlin --json
    """
    from vaodrill.spec.restore_points import restore_point_date

    spec = _load_spec(drill)
    server_tz = vao_timezone or os.environ.get("VAO_TIMEZONE") or "UTC"
    moment = _parse_now(now)
    warning = _warn_zone(spec.timezone, server_tz)
    rows = []
    for step in spec.topological_order():
        date, resolved = restore_point_date(spec.rule_for(step), now=moment, drill_tz=spec.timezone,
                                            server_tz=server_tz)
        rows.append({"plan": step.plan, "after": list(step.after), "rule": resolved.rule,
                     "restore_point": date, "seed": resolved.seed, "notes": list(resolved.notes)})
    if as_json:
        console.print_json(json.dumps({"drill": spec.name, "mode": spec.mode, "now": moment.isoformat(),
                                       "server_timezone": server_tz, "warnings": [warning] if warning else [],
                                       "plans": rows}))
        return
    console.print(f"[green]✓[/] {drill}: drill [bold]{spec.name}[/] ({spec.mode} mode), {len(rows)} plans, "
                  f"restore points as of {moment.isoformat()} in server time ({server_tz})")
    table = Table()
    for column in ("#", "Plan", "After", "Rule", "restorePointRule.date", "Notes"):
        table.add_column(column)
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), row["plan"], ", ".join(row["after"]) or "—", row["rule"], row["restore_point"],
                      Text("\n".join(row["notes"]) or "—"))
    console.print(table)


RunId = Annotated[str | None, typer.Option("--run-id", help="Resume this drill run from its journal (never sends a "
                                          "Run twice); default: a new run", show_default=False)]
JournalDir = Annotated[Path | None, typer.Option("--journal-dir", help="Where drill journals are kept "
                                                 "[env VAODRILL_JOURNAL_DIR, default <report-dir>/journal]",
                                                 show_default=False)]
ReportDir = Annotated[Path, typer.Option("--report-dir", help="Where reports are written")]


@app.command()
def run(
    drill: Annotated[Path, typer.Argument(help="Drill spec (YAML)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="No POST at all: resolve, check, print the calls")]
    = False,
    report_dir: ReportDir = Path("reports"),
    run_id: RunId = None,
    journal_dir: JournalDir = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before a real failover")] = False,
    vao_url: VaoUrl = None, username: Username = None, password: Password = None,
    vao_timezone: VaoTimezone = None, ca_bundle: CaBundle = None, block: BlockName = None,
    client_id: ClientId = None, password_stdin: PasswordStdin = False, allow_insecure_http: AllowInsecureHttp = False,
) -> None:
    """Run a drill with live progress: a flow run if a Prefect API is configured (PREFECT_API_URL), else the engine.

    Exit codes: 0 passed, 1 failed, 2 bad input or credentials refused, 130/143 stopped by SIGINT/SIGTERM
    (the plans it failed over were undone first; a second Ctrl-C exits at once and prints what to recover).

    Examples:
      vaodrill run deployments/drills/demo.yaml
      vaodrill run my-drill.yaml --dry-run --vao-url https://vao:9899 --ca-bundle vao-ca.pem
      VAO_URL=https://vao:9899 VAO_USERNAME=drill VAO_PASSWORD=... vaodrill run real-dr.yaml --yes
    """
    spec = _load_spec(drill)
    options = ConnectionOptions(vao_url, username, password, vao_timezone, ca_bundle, block, client_id,
                                password_stdin, allow_insecure_http)
    with connection(options) as settings:
        _warn_zone(spec.timezone, settings.server_timezone)
        if dry_run:
            asyncio.run(_dry_run(spec, settings))
            return
        approval = None
        if spec.mode == "failover" and not settings.simulated:
            approval = {"approver": _who(), "change_ticket": "",
                        "how": "--yes on the command line" if yes else _confirm_real_failover(spec, settings)}
        code = _run_drill(drill, spec, settings, report_dir, run_id=run_id, journal_dir=journal_dir,
                          approval=approval)
    raise typer.Exit(code)


def _warn_zone(drill_zone: str, server_zone: str) -> str | None:
    """The server-zone warning on stderr before anything is sent; returned for ``--json``."""
    from vaodrill.spec.restore_points import timezone_warning

    if warning := timezone_warning(drill_zone, server_zone):
        err_console.print(f"[bold yellow]⚠ {escape(warning)}[/]", highlight=False)
    return warning


def _who() -> str:
    """The account that approved at this terminal (a container may have no name for it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _confirm_real_failover(spec: Any, settings: ConnectionSettings) -> str:
    """The drill's name typed at the terminal, or a one-line refusal; how it was approved, for the journal."""
    if not sys.stdin.isatty():
        raise UserError(f"drill {spec.name} is a REAL failover on {settings.url}: confirm with --yes")
    answer = typer.prompt(f"REAL failover of {len(spec.plans)} plans on {settings.url} (no undo). "
                          f"Type the drill name ({spec.name}) to proceed")
    if answer.strip() != spec.name:
        raise UserError("not confirmed: nothing was failed over")
    return "the drill's name typed at the terminal"


async def _dry_run(spec: Any, settings: ConnectionSettings) -> None:
    from vaodrill.engine.drill import dry_run

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
            err_console.print(f"[bold yellow]⚑ {name}: stopping the drill; undoing what it failed over "
                              f"(send it again to exit at once)[/]")
            if signals.running:
                for drill in list(signals.running):
                    drill.stop(f"stopped by {name}", kind="signal")
            else:
                self.main.cancel()
            return
        plans = [(d.run_id, name) for d in signals.running for name in d.may_be_failed_over()]
        if plans:
            err_console.print(f"[bold red]✗ exiting now; plans possibly still failed over: "
                              f"{', '.join(p for _, p in plans)}[/]")
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
    hints = {Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml"): "PREFECT_API_URL",
             Path(".env"): "PREFECT_API_URL", Path("prefect.toml"): "", Path("pyproject.toml"): "[tool.prefect"}
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


def _run_drill(drill: Path, spec: Any, settings: ConnectionSettings, report_dir: Path, *, run_id: str | None = None,
               journal_dir: Path | None = None, approval: dict[str, str] | None = None) -> int:
    """Run the drill in this process with a live view; returns the exit code.

    With a Prefect API configured, the drill is a ``dr-drill`` flow run reported there (the UI, events,
    automations); without one, the engine runs the drill alone: the same steps, journal and report, without
    the 2 s of Prefect imports and a server nobody could look at.
    """
    from vaodrill.app.live import LiveView
    from vaodrill.engine import signals
    from vaodrill.journal import check_run_id
    from vaodrill.report.model import report_directory, summary_table

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
                return await _flow_run(drill, settings, report_dir, run_id, journal_dir, approval)
            return await _engine_run(drill, spec, settings, report_dir, run_id, journal_dir, approval)
        finally:
            signals.release()

    with LiveView(console) as view:
        try:
            state = asyncio.run(main())
        except asyncio.CancelledError:
            state = None
    report = view.report
    stopped_by = handler.first if handler else None
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
        err_console.print(f"[bold red]✗ PLANS LEFT FAILED OVER: {', '.join(p.plan for p in report.left_failed_over)}"
                          f" — recover with: vaodrill recover {report.run_id}[/]")
    if files.exists():
        console.print(f"Reports: {files}")
    if report.stopped == "signal" and stopped_by is not None:
        return 128 + stopped_by
    if report.stopped == "auth":
        return 2
    return 0 if report.verdict == "passed" else 1


async def _engine_run(drill: Path, spec: Any, settings: ConnectionSettings, report_dir: Path, run_id: str | None,
                      journal_dir: Path | None, approval: dict[str, str] | None) -> Any:
    from uuid import uuid4

    from vaodrill.engine import progress, signals
    from vaodrill.engine.drill import Drill

    engine = Drill(spec, settings, run_id=run_id or str(uuid4()), report_dir=report_dir,
                   journal_dir=journal_dir, observers=[progress.bus], spec_file=str(drill.resolve()),
                   approval=approval)
    signals.running.add(engine)
    try:
        return await engine.run()
    finally:
        signals.running.discard(engine)


async def _flow_run(drill: Path, settings: ConnectionSettings, report_dir: Path, run_id: str | None,
                    journal_dir: Path | None, approval: dict[str, str] | None) -> Any:
    """The ``dr-drill`` flow run, after one read of the server: a wrong URL or password exits 2 before any
    Prefect run exists."""
    await _list_plans(settings)
    from flows.drill import DrillRequest, dr_drill, local_settings

    request = DrillRequest(drill_file=str(drill), report_dir=str(report_dir), run_id=run_id, approval=approval,
                           journal_dir=str(journal_dir) if journal_dir is not None else None)
    with local_settings(settings):
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
    for key in ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL",
                "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL"):
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
        return _one_line(line)


def _engine_log_to_console() -> None:
    """As with Prefect's run logs, the console belongs to the live view: only CRITICAL records (plans left failed
    over) reach it, as single lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    engine_log = logging.getLogger("vaodrill")
    engine_log.handlers = [handler]
    engine_log.setLevel(logging.CRITICAL)
    engine_log.propagate = False


@app.command()
def recover(
    run_id: Annotated[str | None, typer.Argument(help="The drill run to recover; default: every unclosed run",
                                                 show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before undoing")] = False,
    report_dir: ReportDir = Path("reports"),
    journal_dir: JournalDir = None,
    vao_url: VaoUrl = None, username: Username = None, password: Password = None,
    vao_timezone: VaoTimezone = None, ca_bundle: CaBundle = None, block: BlockName = None,
    client_id: ClientId = None, password_stdin: PasswordStdin = False, allow_insecure_http: AllowInsecureHttp = False,
) -> None:
    """Undo what crashed or killed drill runs may have left failed over, from their journals.

    Lists the unclosed runs, reads each plan's state on the server and shows what it will do (halt a failover
    still running, undo, wait for an undo), asks, then does it and verifies each plan is clean.
    Exit codes: 0 every plan verified clean (or nothing to do), 1 some plan is not, 2 bad input.

    Examples:
      vaodrill recover
      vaodrill recover 3f2a9c1e-... --yes
    """
    from vaodrill.journal import Journal, default_journal_dir, open_journals

    directory = journal_dir or default_journal_dir(report_dir)
    if run_id is not None:
        state = Journal(directory, run_id).read()
        runs = [state] if state.is_open else []
        if not state.is_open:
            console.print(f"[green]✓[/] run {run_id} closed its journal: nothing to recover")
    else:
        runs = open_journals(directory)
        if not runs:
            console.print(f"[green]✓[/] no unclosed drill run in {directory}: nothing to recover")
    if not runs:
        return
    options = ConnectionOptions(vao_url, username, password, vao_timezone, ca_bundle, block, client_id,
                                password_stdin, allow_insecure_http)
    settings = resolve_settings(options)
    if settings is None:
        servers = sorted({str(r.opened.get("server")) for r in runs})
        raise UserError(f"recover needs the VAO server of these runs ({', '.join(servers)}): give --vao-url or "
                        f"VAO_URL and credentials")
    code = asyncio.run(_recover(runs, settings, yes))
    raise typer.Exit(code)


async def _recover(runs: list[Any], settings: ConnectionSettings, yes: bool) -> int:
    from vaodrill.engine.drill import recover, survey

    surveys = []
    for journal in runs:
        if str(journal.opened.get("server", "")).rstrip("/") != settings.url.rstrip("/"):
            err_console.print(f"[yellow]skipping run {journal.run_id}: it ran against {journal.opened.get('server')}"
                              f", not {settings.url}[/]")
            continue
        survey_ = await survey(journal, settings)
        surveys.append(survey_)
        console.print(f"[bold]Run {journal.run_id}[/] (drill {journal.drill}, {journal.mode} mode, journal "
                      f"{journal.path}):")
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
            err_console.print(f"[yellow]run {survey_.journal.run_id} was a REAL failover: its plans are left as "
                              f"they are[/]")
    return 0 if clean else 1


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run's report folder, e.g. reports/<drill>/<stamp>-<run>")],
    journal: Annotated[Path | None, typer.Option("--journal", help="The run's journal, when it was moved "
                                                 "(default: where report.json says)")] = None,
) -> None:
    """Recompute a run's hashes: report files, evidence pack and the journal's hash chain.

    Exit 0 when everything matches, 1 naming the first line or file that does not. Tamper evidence, not a
    signature: sign evidence.html with your own tools to prove who wrote it.

    Examples:
      vaodrill verify reports/demo-app-stack/20261207T090859Z-7150a6df
    """
    from vaodrill.report.verify import VerifyError, verify_run

    try:
        result = verify_run(run_dir, journal)
    except VerifyError as exc:
        raise UserError(str(exc)) from None
    for ok, text in result.checks:
        console.print(Text.assemble(("✓ " if ok else "✗ ", "green" if ok else "bold red"), text))
    for note in result.notes:
        console.print(Text.assemble(("note: ", "yellow"), note))
    problem = result.first_problem
    if problem:
        err_console.print(Text.assemble(("NOT VERIFIED: ", "bold red"), problem))
        raise typer.Exit(1)
    console.print(Text("VERIFIED: every hash matches", style="bold green"))


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--since: not a date: {value!r} (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _policies(paths: list[Path]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Each drill spec's history policy and plans, from files or folders of *.yaml."""
    files = [f for p in paths for f in (sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])]
    specs = [_load_spec(f) for f in files]
    return {s.name: s.history for s in specs}, {s.name: [step.plan for step in s.plans] for s in specs}


@app.command()
def history(
    report_dir: ReportDir = Path("reports"),
    drill: Annotated[list[str] | None, typer.Option("--drill", metavar="NAME",
                                                    help="Only this drill (repeatable)")] = None,
    plan: Annotated[list[str] | None, typer.Option("--plan", metavar="NAME",
                                                   help="Only this plan (repeatable)")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="DATE",
                                              help="Only runs started from this date (ISO 8601)")] = None,
    spec: Annotated[list[Path] | None, typer.Option("--spec", metavar="FILE|DIR", help="Drill spec file or folder: "
                                                    "its history policy and plans (repeatable; default policy: "
                                                    "max_age 365d)")] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 naming each overdue or regressed plan")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page")] = None,
) -> None:
    """Drills over time: per drill and plan the runs, passes, last passed drill, RTO trend and margin.

    Reads the report.json files under the report directory (an index of them is kept in ~/.cache/vaodrill).
    Files that are not readable drill reports are skipped with one warning line each.

    Examples:
      vaodrill history
      vaodrill history --plan 'SQL Tier' --since 2026-01-01 --html history.html
      vaodrill history --check --spec deployments/drills     # in cron or CI: exit 1 when a plan is overdue
    """
    from vaodrill.report.history import load_history
    from vaodrill.report.history_view import history_html, history_json, history_table

    policies, expected = _policies(spec or [])
    found = load_history(report_dir, drills=drill or [], plans=plan or [], since=_since(since),
                         policies=policies, expected=expected)
    for skipped in found.skipped:
        err_console.print(Text(f"warning: skipped {skipped.path}: {skipped.reason}", style="yellow"))
    if html is not None:
        html.write_text(history_html(found, str(report_dir)), encoding="utf-8")
    if as_json:
        print(json.dumps(history_json(found, str(report_dir)), ensure_ascii=False))  # compact: 5 x faster
    elif found.plans:
        sys.stdout.write(history_table(found, colour=console.is_terminal and not console.no_color))
    else:
        err_console.print(f"no drill reports under {report_dir}")
    if check:
        flagged = found.flagged()
        for p in flagged:
            err_console.print(Text(f"{p.drill} / {p.plan}: " + "; ".join(
                f"{word} ({why})" for word, why in (("overdue", p.overdue), ("regressed", p.regressed)) if why),
                style="bold red"))
        if flagged:
            raise typer.Exit(1)


@app.command()
def demo(
    report_dir: ReportDir = Path("reports"),
    time_scale: Annotated[float, typer.Option(help="Simulated seconds per real second")] = DEMO_TIME_SCALE,
    api: Annotated[DemoApi, typer.Option(help="The simulator's API the drill speaks: VAO v2 or VRO (v13)")]
    = DemoApi.V2,
) -> None:
    """The demo drill on an embedded simulator, in under a minute (a flow run if a Prefect API is configured).

    Examples:
      vaodrill demo
      vaodrill demo --api vro
      vaodrill demo --report-dir /tmp/drill-reports
    """
    drill = demo_drill()
    with connection(ConnectionOptions(), time_scale=time_scale, force_simulator=True, api=api.value) as settings:
        code = _run_drill(drill, _load_spec(drill), settings, report_dir)
    raise typer.Exit(code)


@app.command()
def cockpit(
    home: Annotated[Path, typer.Option(help="Where the cockpit keeps its Prefect server's home and logs")] = Path(
        ".cockpit"),
) -> None:
    """The Prefect UI with the demo drill in it: a local Prefect server, the deployments served against the
    embedded simulator, the demo drill as a flow run; Ctrl-C stops everything it started.

    Examples:
      vaodrill cockpit
    """
    from vaodrill.app.cockpit import CockpitError, run

    try:
        run(home, say=lambda line: err_console.print(f"[bold]cockpit:[/] {line}"))
    except CockpitError as exc:
        raise UserError(str(exc)) from None


#: The 'VAO Server' block ``vaodrill serve`` saves for its embedded simulator.
SIMULATOR_BLOCK = "embedded-simulator"


@app.command()
def serve(
    limit: Annotated[int, typer.Option(help="Flow runs at once on this machine")] = 4,
    block: BlockName = None,
    time_scale: Annotated[float, typer.Option(help="Simulator speed, when no VAO server is configured")] = 60.0,
    poll: Annotated[float, typer.Option(help="Seconds between two looks for runs to start (a Run pressed in the "
                                             "UI starts within this)", min=0.5, max=60)] = 1.0,
) -> None:
    """Serve the deployments of deployments/ (scheduled, manual, approval-gated, recovery) from this machine.

    Needs a Prefect API (PREFECT_API_URL, e.g. from `prefect server start`); registers the 'VAO Server' block
    type there. The runs reach VAO through the 'VAO Server' block named by --block, else the VAO_* variables;
    with neither, an embedded simulator is started (demo scenario) so that every deployment's Quick Run works out
    of the box; against a real VAO the manual drill asks for a drill file instead of defaulting to the demo.

    Examples:
      export PREFECT_API_URL=http://127.0.0.1:4200/api   # the server's --port, if not 4200
      prefect server start --background && vaodrill serve
      vaodrill serve --block vao-prod --limit 2
    """
    from flows.deployments import serve_all

    if block or os.environ.get("VAO_URL"):
        serve_all(limit=limit, block=block, poll_seconds=poll)
        return
    from pydantic import SecretStr

    from tasks.blocks import VaoServer
    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer

    with BackgroundServer(create_app("demo", time_scale=time_scale)) as server:
        err_console.print(f"[bold yellow]⚑ No VAO server configured: the served runs use an embedded simulator[/] "
                          f"(demo scenario, time x{time_scale:g}) at {server.url}")
        # the served runs reach it through a block, as they would a real server: nothing in their environment
        VaoServer(url=server.url, username="demo", password=SecretStr("demo")).save(SIMULATOR_BLOCK, overwrite=True)
        serve_all(limit=limit, block=SIMULATOR_BLOCK, simulated=True, poll_seconds=poll)


def main() -> None:
    """Entry point: every user error becomes one line and exit code 2."""
    from vaodrill.spec.model import SpecError

    try:
        app()
    except (UserError, SpecError, VaoError, ValueError, OSError) as exc:
        err_console.print(f"[bold red]error:[/] {_one_line(str(exc)) or type(exc).__name__}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
