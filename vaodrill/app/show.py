"""What the read-only commands print: the plan list, a checked spec, a verified run, the drills over time.

``cli.py`` keeps each command's options and help; the functions here take what it parsed, print it (a table for
people, JSON for machines) and raise ``typer.Exit(1)`` where the command's answer is no.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from vaodrill.app.console import UserError, console, err_console
from vaodrill.app.inputs import history_policies, load_spec_file, parse_now, since_date
from vaodrill.app.running import warn_zone
from vaodrill.spec.model import DrillSpec
from vaodrill.vao.connection import ConnectionSettings
from vaodrill.vao.models import FailoverPlan


async def list_plans(settings: ConnectionSettings) -> list[FailoverPlan]:
    async with settings.client() as client:
        return await client.list_plans()


def show_plans(found: list[FailoverPlan], url: str, *, as_json: bool) -> None:
    """Name, id, state, in use, target RTO/RPO of each plan."""
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "id": p.id,
                        "state": p.state_raw or p.state.value,
                        "details": p.state_details,
                        "in_use": p.in_use,
                        "target_rto_minutes": p.target_rto,
                        "target_rpo_minutes": p.target_rpo,
                    }
                    for p in found
                ]
            )
        )
        return
    table = Table(title=f"Failover plans on {url}")
    for column in ("Plan", "Id", "State", "In use", "Target RTO", "Target RPO"):
        table.add_column(column)
    for p in found:
        table.add_row(
            p.name,
            p.id,
            p.describe_state(),
            "yes" if p.in_use else "no",
            f"{p.target_rto} min" if p.target_rto is not None else "—",
            f"{p.target_rpo} min" if p.target_rpo is not None else "—",
        )
    console.print(table)


def show_validation(drill: Path, now: str | None, *, as_json: bool, vao_timezone: str | None) -> None:
    """The spec's plan order and the restore-point date each plan would request, in the server's wall time."""
    spec = load_spec_file(drill)
    server_tz = vao_timezone or os.environ.get("VAO_TIMEZONE") or "UTC"
    moment = parse_now(now)
    warning = warn_zone(spec.timezone, server_tz)
    rows = _validation_rows(spec, moment, server_tz)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "drill": spec.name,
                    "mode": spec.mode,
                    "now": moment.isoformat(),
                    "server_timezone": server_tz,
                    "warnings": [warning] if warning else [],
                    "plans": rows,
                }
            )
        )
        return
    console.print(
        f"[green]✓[/] {drill}: drill [bold]{spec.name}[/] ({spec.mode} mode), {len(rows)} plans, "
        f"restore points as of {moment.isoformat()} in server time ({server_tz})"
    )
    table = Table()
    for column in ("#", "Plan", "After", "Rule", "restorePointRule.date", "Notes"):
        table.add_column(column)
    for i, row in enumerate(rows, 1):
        table.add_row(
            str(i),
            row["plan"],
            ", ".join(row["after"]) or "—",
            row["rule"],
            row["restore_point"],
            Text("\n".join(row["notes"]) or "—"),
        )
    console.print(table)


def _validation_rows(spec: DrillSpec, moment: datetime, server_tz: str) -> list[dict[str, Any]]:
    """Each plan in DAG order with the restore-point date its rule resolves to at ``moment``."""
    from vaodrill.spec.restore_points import restore_point_date

    rows = []
    for step in spec.topological_order():
        date, resolved = restore_point_date(
            spec.rule_for(step), now=moment, drill_tz=spec.timezone, server_tz=server_tz
        )
        rows.append(
            {
                "plan": step.plan,
                "after": list(step.after),
                "rule": resolved.rule,
                "restore_point": date,
                "seed": resolved.seed,
                "notes": list(resolved.notes),
            }
        )
    return rows


def show_verification(run_dir: Path, journal: Path | None) -> None:
    """Each hash checked, ✓ or ✗; exit 1 naming the first that does not match."""
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


def show_history(
    report_dir: Path,
    *,
    drills: list[str],
    plans: list[str],
    since: str | None,
    specs: list[Path],
    check: bool,
    as_json: bool,
    html: Path | None,
) -> None:
    """The trend table (or JSON, or an HTML page); with ``check``, exit 1 naming each overdue or regressed plan."""
    from vaodrill.report.history import load_history
    from vaodrill.report.history_view import history_html, history_json, history_table

    policies, expected = history_policies(specs)
    found = load_history(
        report_dir, drills=drills, plans=plans, since=since_date(since), policies=policies, expected=expected
    )
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
    if not check:
        return
    flagged = found.flagged()
    for p in flagged:
        flags = (("overdue", p.overdue), ("regressed", p.regressed))
        err_console.print(
            Text(
                f"{p.drill} / {p.plan}: " + "; ".join(f"{word} ({why})" for word, why in flags if why), style="bold red"
            )
        )
    if flagged:
        raise typer.Exit(1)
