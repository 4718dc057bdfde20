"""From pressing Run in the Prefect UI to the first Run POST, with ``vaodrill serve``: a benchmark, not a test.

    python benchmarks/serve_latency.py [--runs 5] [--poll 1] [--time-scale 300] [--json FILE] [--log-dir DIR]

It starts what a user starts: ``prefect server start`` (SQLite in a fresh PREFECT_HOME, a free port), a demo
simulator in this process, and ``vaodrill serve`` (the CLI of this venv, ``VAO_*`` pointing at the simulator,
``PREFECT_API_URL`` at the server). Then ``--runs`` times, one after the other: it creates a flow run of the
``manual-drill`` deployment as the UI's Run button does (``create_flow_run_from_deployment`` with the run form's
values: the deployment's parameters, the typed demo drill file, the form's default report directory) and waits
for the run to end and for ``serve`` to have no flow-run process left. Every figure is read afterwards from the
record of the parts that saw it (the simulator's request log, the run's states on the Prefect API), so waiting
here does not steal the CPU it measures:

- ``total``: from just before the create call to the simulator's first Run POST of that run;
- ``create``: the create call itself;
- ``pickup``: created -> Pending (``serve``'s poll found the run);
- ``start``: Pending -> Running (the flow-run process: Python, Prefect and vaodrill imports, the flow engine);
- ``login``: Running -> the run's first VAO request (the flow body's own set-up);
- ``first Run``: first VAO request -> first Run POST (the drill: plans read, restore points, precondition);
- ``load``: the 1-minute load average when the run was created (the machine may be shared).

Everything it starts runs in its own process group and is stopped (also on Ctrl-C, SIGTERM or an error), and
every process of ``serve``'s tree is killed by id if it outlived its group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from drill_bench import PrefectServer
from rich.console import Console
from rich.table import Table

from vaodrill.simulator import create_app
from vaodrill.simulator.server import BackgroundServer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DRILL = REPO_ROOT / "deployments" / "drills" / "demo.yaml"
DEPLOYMENT = "dr-drill/manual-drill"
USERNAME = PASSWORD = "demo"
SPLITS = ("create", "pickup", "start", "login", "first_run")
"""The parts of ``total``, in order (``create`` overlaps ``pickup``: the run can be picked up before it returns)."""


# -- processes --------------------------------------------------------------------------------------------------


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...; the start time is index 19)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(root: int) -> set[tuple[int, str]]:
    """The processes below ``root`` (its children, theirs, ...) as (pid, start time), read from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = _stat(entry.name)
            except (OSError, IndexError):  # ended meanwhile
                continue
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    stack = list(children.get(root, []))
    while stack:
        process = stack.pop()
        found.add(process)
        stack += children.get(process[0], [])
    return found


def _kill(pid: int, started_at: str) -> None:
    """SIGKILL ``pid`` if it is still the process that started at ``started_at`` (not a reused pid)."""
    with contextlib.suppress(OSError, IndexError):
        if _stat(pid)[19] == started_at:
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def started(argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in its own session, output to ``log``; on exit SIGTERM to its group, SIGKILL after 20 s, then
    SIGKILL to every process of its tree that left the group (a flow-run process in a session of its own)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            tree = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid, started_at in tree:
                _kill(pid, started_at)
            proc.wait()


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds like Ctrl-C: every context manager stops its part


# -- one run -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    index: int
    flow_run_id: str
    state: str
    total: float | None  # None: no Run POST (the run failed before it)
    create: float
    pickup: float | None
    start: float | None
    login: float | None
    first_run: float | None
    load: float  # the 1-minute load average when the run was created


def _epoch(at: str | datetime | None) -> float | None:
    if at is None:
        return None
    return (datetime.fromisoformat(at) if isinstance(at, str) else at).timestamp()


def _gap(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


async def one_run(
    index: int,
    client: Any,
    sim: httpx.Client,
    deployment: Any,
    parameters: dict[str, Any],
    serve_pid: int,
    idle: set[tuple[int, str]],
    timeout: float,
) -> Run:
    """Create a run as the UI does, wait for its end and for ``serve`` to be idle, then read its figures."""
    sim.post("/_sim/reset", json={}).raise_for_status()
    sim.delete("/_sim/requests").raise_for_status()
    load = os.getloadavg()[0]
    before = time.time()
    flow_run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    created = time.time()
    deadline = time.monotonic() + timeout
    while not (flow_run.state and flow_run.state.is_final()):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"run {index}: flow run {flow_run.id} not finished after {timeout:g} s "
                f"({flow_run.state.name if flow_run.state else 'no state'})"
            )
        await asyncio.sleep(0.5)
        flow_run = await client.read_flow_run(flow_run.id)
    while descendants(serve_pid) - idle and time.monotonic() < deadline:  # the flow-run process exits
        await asyncio.sleep(0.2)
    states = await client.read_flow_run_states(flow_run.id)
    pending = min((_epoch(s.timestamp) or 0.0 for s in states if s.type.value == "PENDING"), default=None)
    running = _epoch(flow_run.start_time)
    log = sim.get("/_sim/requests").json()
    first_request = _epoch(log[0]["at"]) if log else None
    runs = [
        e
        for e in log
        if e["method"] == "POST" and e["path"].startswith("/v2/FailoverPlans/") and e["path"].endswith("/Run")
    ]
    first_run = _epoch(runs[0]["at"]) if runs else None
    return Run(
        index=index,
        flow_run_id=str(flow_run.id),
        state=flow_run.state.name,
        total=_gap(before, first_run),
        create=created - before,
        pickup=_gap(before, pending),
        start=_gap(pending, running),
        login=_gap(running, first_request),
        first_run=_gap(first_request, first_run),
        load=load,
    )


def form_values(deployment: Any, drill_file: Path) -> dict[str, Any]:
    """What the custom-run form sends: the deployment's parameters as its values (the served block), the drill
    file typed in, and every other field's default (the form writes the schema's defaults into its values)."""
    request = dict((deployment.parameters or {}).get("request") or {})
    request.setdefault("report_dir", "reports")
    return {"request": {**request, "drill_file": str(drill_file)}}


# -- the benchmark ------------------------------------------------------------------------------------------------


async def measure(
    api_url: str,
    sim: httpx.Client,
    serve: subprocess.Popen[bytes],
    serve_log: Path,
    runs: int,
    drill_file: Path,
    timeout: float,
    console: Console,
) -> list[Run]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api_url) as client:
        deadline = time.monotonic() + 180
        while True:  # serve registers the block type, saves its block, then creates the deployments
            if serve.poll() is not None:
                raise RuntimeError(f"vaodrill serve exited with {serve.returncode}:\n{_tail(serve_log)}")
            with contextlib.suppress(Exception):
                deployment = await client.read_deployment_by_name(DEPLOYMENT)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {DEPLOYMENT} deployment after 180 s:\n{_tail(serve_log)}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # serve's first polls and its run namer settle
        idle = descendants(serve.pid)
        parameters = form_values(deployment, drill_file)
        results: list[Run] = []
        for index in range(1, runs + 1):
            run = await one_run(index, client, sim, deployment, parameters, serve.pid, idle, timeout)
            console.print(f"run {index}: {run.state}, first Run POST after {_fmt(run.total)} s")
            results.append(run)
        return results


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary(runs: Sequence[Run]) -> dict[str, dict[str, float | None]]:
    """p50 (the median) and max of every figure, over the runs that have it."""
    out: dict[str, dict[str, float | None]] = {}
    for key in ("total", *SPLITS, "load"):
        values = [v for v in (getattr(run, key) for run in runs) if v is not None]
        out[key] = {"p50": statistics.median(values) if values else None, "max": max(values, default=None)}
    return out


def table(runs: Sequence[Run], stats: dict[str, dict[str, float | None]], poll: float, load: str) -> Table:
    result = Table(title=f"pressing Run -> first Run POST, vaodrill serve --poll {poll:g} (seconds; load {load})")
    result.add_column("run")
    result.add_column("state")
    for header in ("total", "create", "pickup", "start", "login", "first Run", "load"):
        result.add_column(header, justify="right")
    for run in runs:
        result.add_row(str(run.index), run.state, *(_fmt(getattr(run, key)) for key in ("total", *SPLITS, "load")))
    for stat in ("p50", "max"):
        result.add_row(stat, "", *(_fmt(stats[key][stat]) for key in ("total", *SPLITS, "load")), style="bold")
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pressing Run in the Prefect UI -> first Run POST, with serve")
    parser.add_argument("--runs", type=int, default=5, help="flow runs, one after the other (default 5)")
    parser.add_argument("--poll", type=float, default=1.0, help="vaodrill serve --poll (default: serve's, 1 s)")
    parser.add_argument(
        "--time-scale", type=float, default=300.0, help="simulator speed (default 300: the demo drill takes about 5 s)"
    )
    parser.add_argument("--drill-file", type=Path, default=DEMO_DRILL, help="the drill file typed in the form")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one run may take to end")
    parser.add_argument("--json", type=Path, help="write the runs, their p50/max and the load average here")
    parser.add_argument("--log-dir", type=Path, help="keep serve's and the server's logs here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.time_scale <= 0 or args.timeout <= 0:
        parser.error("--runs, --time-scale and --timeout must be positive")
    if not args.drill_file.is_file():
        parser.error(f"no drill file at {args.drill_file}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=shutil.get_terminal_size((140, 24)).columns)
    vaodrill = Path(sys.executable).parent / "vaodrill"
    signal.signal(signal.SIGTERM, _terminated)
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp,
        BackgroundServer(
            create_app("demo", time_scale=args.time_scale, username=USERNAME, password=PASSWORD)
        ) as simulator,
        httpx.Client(base_url=simulator.url, timeout=30) as sim,
        PrefectServer(Path(tmp) / "prefect") as prefect,
    ):
        logs = args.log_dir or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        work = Path(tmp) / "work"  # serve's working directory: the form's default report dir lands here
        work.mkdir()
        # Python as a user has it: compiled modules cached (serve's own imports write them before the first run)
        env = {k: v for k, v in prefect.env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {
            "VAO_URL": simulator.url,
            "VAO_USERNAME": USERNAME,
            "VAO_PASSWORD": PASSWORD,
            "VAO_TIMEZONE": "UTC",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        with started(
            [str(vaodrill), "serve", "--poll", str(args.poll)], env=env, cwd=work, log=logs / "serve.log"
        ) as serve:
            runs = asyncio.run(
                measure(
                    prefect.url,
                    sim,
                    serve,
                    logs / "serve.log",
                    args.runs,
                    args.drill_file.resolve(),
                    args.timeout,
                    console,
                )
            )
    load_after = os.getloadavg()
    load = f"1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} cores"
    stats = summary(runs)
    console.print(table(runs, stats, args.poll, load))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "poll_s": args.poll,
                    "time_scale": args.time_scale,
                    "load_average": {"before": load_before, "after": load_after},
                    "cores": os.cpu_count(),
                    "runs": [asdict(run) for run in runs],
                    "summary": stats,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0 if all(run.total is not None for run in runs) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything it started is stopped by now
        print("interrupted: no figures", file=sys.stderr)
        sys.exit(130)
