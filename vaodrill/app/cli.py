"""The ``vaodrill`` command line: simulator, plans, doctor, validate, run, recover, verify, history, demo, cockpit,
serve.

Exit codes: 0 the drill passed, 1 it failed, 2 bad input or configuration (one line, never a traceback).
Connection settings: see :mod:`vaodrill.app.connect` (a flag over a block over the environment, field by field).
"""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from vaodrill.app.connect import (
    DEMO_TIME_SCALE,
    NO_OPTIONS,
    ConnectionOptions,
    VaoTimezone,
    connection,
    connection_options,
    resolve_settings,
)
from vaodrill.app.console import UserError, console, err_console
from vaodrill.app.inputs import load_spec_file
from vaodrill.app.running import confirm_real_failover, dry_run_drill, recover_runs, run_drill, warn_zone, who
from vaodrill.errors import VaoError, one_line

PACKAGE = Path(__file__).resolve().parent.parent  # vaodrill/
ROOT = PACKAGE.parent


def demo_drill() -> Path:
    """The demo drill: packaged with vaodrill (an installed wheel), or the checkout's deployments/drills."""
    packaged = PACKAGE / "demo" / "demo.yaml"
    return packaged if packaged.is_file() else ROOT / "deployments" / "drills" / "demo.yaml"


app = typer.Typer(
    name="vaodrill",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Scheduled, observable, provable DR drills for Veeam Availability Orchestrator, on Prefect.\n\n"
    "Exit codes: 0 passed, 1 drill failed, 2 bad input or configuration.",
)


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
    api: Annotated[
        SimulatedApi, typer.Option(help="VAO's v2, VRO's API (/api/token, /api/v13...) or both")
    ] = SimulatedApi.BOTH,
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

    serve(
        host=host,
        port=port,
        scenario=scenario,
        time_scale=time_scale,
        username=username,
        password=password,
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        api=api.value,
    )


@app.command()
@connection_options
def plans(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    vao: ConnectionOptions = NO_OPTIONS,
) -> None:
    """List the server's failover plans: name, id, state, in use, target RTO/RPO.

    Examples:
      vaodrill plans
      vaodrill plans --vao-url https://vao.corp:9899 --username 'CORP\\drill' --json
    """
    from vaodrill.app.show import list_plans, show_plans

    with connection(vao) as settings:
        found = asyncio.run(list_plans(settings))
    show_plans(found, settings.url, as_json=as_json)


@app.command()
@connection_options
def doctor(
    drill: Annotated[
        Path | None,
        typer.Option("--drill", help="Also require the plans of this drill spec to be runnable", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines")] = False,
    vao: ConnectionOptions = NO_OPTIONS,
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

    spec = load_spec_file(drill) if drill else None
    plans = [step.plan for step in spec.plans] if spec else None
    with connection(vao) as settings:
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
    from vaodrill.app.show import show_validation

    show_validation(drill, now, as_json=as_json, vao_timezone=vao_timezone)


RunId = Annotated[
    str | None,
    typer.Option(
        "--run-id",
        help="Resume this drill run from its journal (never sends a Run twice); default: a new run",
        show_default=False,
    ),
]
JournalDir = Annotated[
    Path | None,
    typer.Option(
        "--journal-dir",
        help="Where drill journals are kept [env VAODRILL_JOURNAL_DIR, default <report-dir>/journal]",
        show_default=False,
    ),
]
ReportDir = Annotated[Path, typer.Option("--report-dir", help="Where reports are written")]


@app.command()
@connection_options
def run(
    drill: Annotated[Path, typer.Argument(help="Drill spec (YAML)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="No POST at all: resolve, check, print the calls")] = False,
    report_dir: ReportDir = Path("reports"),
    run_id: RunId = None,
    journal_dir: JournalDir = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before a real failover")] = False,
    vao: ConnectionOptions = NO_OPTIONS,
) -> None:
    """Run a drill with live progress: a flow run if a Prefect API is configured (PREFECT_API_URL), else the engine.

    Exit codes: 0 passed, 1 failed, 2 bad input or credentials refused, 130/143 stopped by SIGINT/SIGTERM
    (the plans it failed over were undone first; a second Ctrl-C exits at once and prints what to recover).

    Examples:
      vaodrill run deployments/drills/demo.yaml
      vaodrill run my-drill.yaml --dry-run --vao-url https://vao:9899 --ca-bundle vao-ca.pem
      VAO_URL=https://vao:9899 VAO_USERNAME=drill VAO_PASSWORD=... vaodrill run real-dr.yaml --yes
    """
    spec = load_spec_file(drill)
    with connection(vao) as settings:
        warn_zone(spec.timezone, settings.server_timezone)
        if dry_run:
            asyncio.run(dry_run_drill(spec, settings))
            return
        approval = None
        if spec.mode == "failover" and not settings.simulated:
            approval = {
                "approver": who(),
                "change_ticket": "",
                "how": "--yes on the command line" if yes else confirm_real_failover(spec, settings),
            }
        code = run_drill(drill, spec, settings, report_dir, run_id=run_id, journal_dir=journal_dir, approval=approval)
    raise typer.Exit(code)


@app.command()
@connection_options
def recover(
    run_id: Annotated[
        str | None, typer.Argument(help="The drill run to recover; default: every unclosed run", show_default=False)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before undoing")] = False,
    report_dir: ReportDir = Path("reports"),
    journal_dir: JournalDir = None,
    vao: ConnectionOptions = NO_OPTIONS,
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
    settings = resolve_settings(vao)
    if settings is None:
        servers = sorted({str(r.opened.get("server")) for r in runs})
        raise UserError(
            f"recover needs the VAO server of these runs ({', '.join(servers)}): give --vao-url or "
            f"VAO_URL and credentials"
        )
    code = asyncio.run(recover_runs(runs, settings, yes))
    raise typer.Exit(code)


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run's report folder, e.g. reports/<drill>/<stamp>-<run>")],
    journal: Annotated[
        Path | None,
        typer.Option("--journal", help="The run's journal, when it was moved (default: where report.json says)"),
    ] = None,
) -> None:
    """Recompute a run's hashes: report files, evidence pack and the journal's hash chain.

    Exit 0 when everything matches, 1 naming the first line or file that does not. Tamper evidence, not a
    signature: sign evidence.html with your own tools to prove who wrote it.

    Examples:
      vaodrill verify reports/demo-app-stack/20261207T090859Z-7150a6df
    """
    from vaodrill.app.show import show_verification

    show_verification(run_dir, journal)


@app.command()
def history(
    report_dir: ReportDir = Path("reports"),
    drill: Annotated[
        list[str] | None, typer.Option("--drill", metavar="NAME", help="Only this drill (repeatable)")
    ] = None,
    plan: Annotated[
        list[str] | None, typer.Option("--plan", metavar="NAME", help="Only this plan (repeatable)")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="Only runs started from this date (ISO 8601)")
    ] = None,
    spec: Annotated[
        list[Path] | None,
        typer.Option(
            "--spec",
            metavar="FILE|DIR",
            help="Drill spec file or folder: its history policy and plans (repeatable; default policy: max_age 365d)",
        ),
    ] = None,
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
    from vaodrill.app.show import show_history

    show_history(
        report_dir,
        drills=drill or [],
        plans=plan or [],
        since=since,
        specs=spec or [],
        check=check,
        as_json=as_json,
        html=html,
    )


@app.command()
def demo(
    report_dir: ReportDir = Path("reports"),
    time_scale: Annotated[float, typer.Option(help="Simulated seconds per real second")] = DEMO_TIME_SCALE,
    api: Annotated[
        DemoApi, typer.Option(help="The simulator's API the drill speaks: VAO v2 or VRO (v13)")
    ] = DemoApi.V2,
) -> None:
    """The demo drill on an embedded simulator, in under a minute (a flow run if a Prefect API is configured).

    Examples:
      vaodrill demo
      vaodrill demo --api vro
      vaodrill demo --report-dir /tmp/drill-reports
    """
    drill = demo_drill()
    with connection(ConnectionOptions(), time_scale=time_scale, force_simulator=True, api=api.value) as settings:
        code = run_drill(drill, load_spec_file(drill), settings, report_dir)
    raise typer.Exit(code)


@app.command()
def cockpit(
    home: Annotated[Path, typer.Option(help="Where the cockpit keeps its Prefect server's home and logs")] = Path(
        ".cockpit"
    ),
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
@connection_options
def serve(
    vao: ConnectionOptions = NO_OPTIONS,
    limit: Annotated[int, typer.Option(help="Flow runs at once on this machine")] = 4,
    time_scale: Annotated[float, typer.Option(help="Simulator speed, when no VAO server is configured")] = 60.0,
    poll: Annotated[
        float,
        typer.Option(
            help="Seconds between two looks for runs to start (a Run pressed in the UI starts within this)",
            min=0.5,
            max=60,
        ),
    ] = 1.0,
) -> None:
    """Serve the deployments of deployments/ (scheduled, manual, approval-gated, recovery) from this machine.

    Needs a Prefect API (PREFECT_API_URL, e.g. from `prefect server start`); registers the 'VAO Server' block
    type there. The runs reach VAO through a 'VAO Server' block: the one named by --block, or, when options or
    VAO_* variables give or change the settings (flag over block over environment, field by field), the block
    'vaodrill-serve' saved from them; the VAO_* variables never reach the processes of the runs. With no server
    anywhere, an embedded simulator is started (demo scenario) so that every deployment's Quick Run works out
    of the box; against a real VAO the manual drill asks for a drill file instead of defaulting to the demo.

    Examples:
      export PREFECT_API_URL=http://127.0.0.1:4200/api   # the server's --port, if not 4200
      prefect server start --background && vaodrill serve
      vaodrill serve --block vao-prod --limit 2
    """
    from vaodrill.app.connect import served_block
    from vaodrill_prefect.flows.deployments import serve_all

    if block := served_block(vao):
        serve_all(limit=limit, block=block, poll_seconds=poll)
        return
    from pydantic import SecretStr

    from vaodrill.simulator import create_app
    from vaodrill.simulator.server import BackgroundServer
    from vaodrill_prefect.tasks.blocks import VaoServer

    with BackgroundServer(create_app("demo", time_scale=time_scale)) as server:
        err_console.print(
            f"[bold yellow]⚑ No VAO server configured: the served runs use an embedded simulator[/] "
            f"(demo scenario, time x{time_scale:g}) at {server.url}"
        )
        # the served runs reach it through a block, as they would a real server: nothing in their environment
        VaoServer(url=server.url, username="demo", password=SecretStr("demo"), simulated=True).save(
            SIMULATOR_BLOCK, overwrite=True
        )
        serve_all(limit=limit, block=SIMULATOR_BLOCK, simulated=True, poll_seconds=poll)


def main() -> None:
    """Entry point: every user error becomes one line and exit code 2."""
    from vaodrill.spec.loader import SpecError

    try:
        app()
    except (UserError, SpecError, VaoError, ValueError, OSError) as exc:
        err_console.print(f"[bold red]error:[/] {one_line(str(exc)) or type(exc).__name__}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
