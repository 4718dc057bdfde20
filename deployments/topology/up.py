#!/usr/bin/env python3
"""vaodrill's scale-out topology on one machine: PostgreSQL, ``prefect server start``, a process work pool, N
``prefect worker start`` processes, one VAO simulator per VAO server, and everything Prefect needs around them.

    python deployments/topology/up.py up [--dir DIR] [--workers 2] [--servers 5] [--database postgres|sqlite]
    python deployments/topology/up.py down --dir DIR

``up`` leaves it running (pids in ``DIR/topology.json``) and prints what to export; ``down`` stops it all.
The same building blocks (:class:`Topology`, :func:`write_scenario`, :func:`write_drill`) start it for
``tests/e2e/test_scale_out.py`` and ``benchmarks/scale_bench.py``. Real hosts: see README.md next to this file.

What gets created, and why:

- PostgreSQL from Debian's binaries (``initdb``/``pg_ctl`` in DIR, a free port, its socket in DIR, the
  ``prefect`` database with ``pg_trgm``): SQLite locks under several writers.
- ``prefect server start`` on it, with all services: the triggers service runs the two automations below.
- Work pool ``dr-pool`` (type process) and deployments through ``prefect deploy``: ``recover-crashed`` exactly as
  ``deployments/prefect.yaml`` declares it, plus one ``dr-drill`` deployment per drill, on the same pool with the
  same job variables (``VAODRILL_WRITE_LIMIT=vao-writes-{host}``).
- Per VAO server: a ``vaodrill simulator`` on its own loopback address (127.0.0.2, .3, ...: the limit is per
  host), a ``VAO Server`` block and a global concurrency limit ``vao-writes-<host>``.
- Automations: "crash zombie drill runs" (no heartbeat for ``zombie_after`` seconds -> Crashed) and the
  crashed-run automation of ``deployments/automations.yaml`` (its run-deployment action, on recover-crashed).
- Workers with ``VAODRILL_JOURNAL_DIR`` on one shared directory and flow heartbeats on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("VAODRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
POOL = "dr-pool"  # the work pool of deployments/prefect.yaml
RECOVERY_DEPLOYMENT = "recover-drill/recover-crashed"
CRASHED_AUTOMATION = "vaodrill - drill run crashed"
LIMIT_TEMPLATE = "vao-writes-{host}"  # VAODRILL_WRITE_LIMIT in deployments/prefect.yaml
SIM_USER = SIM_PASSWORD = "demo"
_OWN_PREFIXES = ("PREFECT_", "VAO_", "VAODRILL_")


class TopologyError(RuntimeError):
    """A part that did not come up (its log's last lines are in the message)."""


# -- processes ------------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect/VAO/vaodrill variables (no stray API URL or credentials), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log {path}: {exc}>"
    return f"--- last {lines} lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Proc:
    """A child in its own session, output in a log file; ``stop`` works from another process (pid + start time)."""

    name: str
    pid: int
    log: str
    started: int  # clock ticks after boot: with the pid, says it is still our process

    @classmethod
    def spawn(cls, name: str, argv: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path = REPO) -> Proc:
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _children.append(popen)
        return cls(name, popen.pid, str(log), _start_time(popen.pid))

    def alive(self) -> bool:
        """Running (not a zombie) and still the process we started (pids are reused)."""
        return _running(self.pid, self.started)

    def tree(self) -> list[int]:
        """This process and all its descendants (flow runs of a worker run in their own sessions)."""
        parents: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rsplit(")", 1)[-1].split()[1])
                parents.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, []))
        return found

    def kill_tree(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL this process, its group and every descendant at once: a host that died.

        Returns once every one of them has exited (a SIGKILL is delivered, not carried out, by ``kill``).
        """
        tree = {pid: _start_time(pid) for pid in self.tree()} if self.alive() else {}
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while left := [pid for pid, started in tree.items() if _running(pid, started)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: processes {left} still running {timeout:.0f}s after SIGKILL")
            _reap()
            time.sleep(0.01)
        _reap()
        return list(tree)

    def stop(self, grace: float = 10.0) -> None:
        stop_all([self], grace)

    def tail(self, lines: int = 40) -> str:
        return tail(Path(self.log), lines)


def stop_all(procs: Iterable[Proc], grace: float = 10.0) -> None:
    """SIGTERM to each group at once, then SIGKILL to whatever is left of each tree after ``grace``."""
    trees = {proc.pid: {pid: _start_time(pid) for pid in proc.tree()} for proc in procs if proc.alive()}
    live = [proc for proc in procs if proc.pid in trees]
    for proc in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(proc.alive() for proc in live) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.1)
    for proc in procs:
        for pid, started in trees.get(proc.pid, {}).items():
            if _start_time(pid) == started:  # still the process we saw (pids are reused)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _reap()


_children: list[subprocess.Popen[bytes]] = []
_save_lock = threading.Lock()


def _reap() -> None:
    for popen in list(_children):
        if popen.poll() is not None:
            _children.remove(popen)


def _running(pid: int, started: int) -> bool:
    """Still the process that started at ``started`` and not yet a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return stat[0] != "Z" and int(stat[19]) == started


def _start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (0 when gone): a pid and its start time name one process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def wait_for(check: Any, *, timeout: float, what: str, proc: Proc | None = None, interval: float = 0.25) -> Any:
    """Poll ``check()`` until truthy; a dead ``proc`` or the deadline raises with the log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if result := check():
                return result
        if proc is not None and not proc.alive():
            raise TopologyError(f"{proc.name} exited while waiting for {what}\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TopologyError(f"timed out after {timeout:g}s waiting for {what}\n{proc.tail() if proc else ''}")
        time.sleep(interval)


def run(
    argv: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 180
) -> str:
    done = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise TopologyError(f"{what} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A throw-away cluster: data, socket and log in ``directory``; trust auth on 127.0.0.1 only."""

    directory: str
    port: int
    user: str | None  # the OS user running it (postgres refuses to run as root)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/prefect"

    def _as_owner(self, argv: list[str]) -> list[str]:
        """As the cluster's owner; ``runuser`` lives in sbin, which a non-login root shell may not have on PATH."""
        if not self.user:
            return argv
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
        return [runuser, "-u", self.user, "--", *argv]

    @classmethod
    def start(cls, root: Path) -> Postgres:
        if not (PG_BIN / "initdb").exists():
            raise TopologyError(
                f"no PostgreSQL binaries in {PG_BIN} (apt-get install postgresql, or set VAODRILL_PG_BIN)"
            )
        user = None
        if os.geteuid() == 0:  # initdb refuses root; a directory outside pytest's 0700 tree that it can own
            user = "postgres"
            entry = pwd.getpwnam(user)
            directory = Path(tempfile.mkdtemp(prefix="vaodrill-pg-"))
            os.chown(directory, entry.pw_uid, entry.pw_gid)
            (root / "pg").symlink_to(directory)
        else:
            directory = root / "pg"
            directory.mkdir()
        pg = cls(str(directory), free_port(), user)
        data, log = directory / "data", directory / "postgres.log"
        run(
            pg._as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            what="initdb",
            cwd=directory,
        )
        options = f"-p {pg.port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(
            pg._as_owner(
                [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
            ),
            what="pg_ctl start",
            cwd=directory,
        )
        psql = [
            str(PG_BIN / "psql"),
            "-h",
            str(directory),
            "-p",
            str(pg.port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
        ]
        run([*psql, "-d", "postgres", "-c", "CREATE DATABASE prefect"], what="CREATE DATABASE")
        run([*psql, "-d", "prefect", "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm"], what="CREATE EXTENSION")
        return pg

    def stop(self) -> None:
        data = Path(self.directory) / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(
                self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                check=False,
                timeout=60,
                cwd=self.directory,
            )
        if self.user:
            shutil.rmtree(self.directory, ignore_errors=True)


# -- scenarios and drills -----------------------------------------------------------------------------------------


def write_scenario(
    path: Path, name: str, plans: Iterable[str], *, failover: float = 60, undo: float = 30, steps: int = 3
) -> Path:
    """A simulator scenario with these plan names (durations in simulated seconds)."""
    scenario = {
        "name": name,
        "description": f"vaodrill scale-out site {name}",
        "timezone": "UTC",
        "defaults": {"failover_duration": failover, "undo_duration": undo, "steps": steps, "target_rto": 30},
        "plans": [{"name": plan} for plan in plans],
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def write_drill(
    path: Path, name: str, plans: Sequence[str], *, chains: int = 4, poll: str = "1s", max_parallel: int | None = None
) -> Path:
    """A drill of ``plans`` as ``chains`` parallel chains (each plan after the previous one of its chain)."""
    steps: list[dict[str, Any]] = []
    for i, plan in enumerate(plans):
        step: dict[str, Any] = {"plan": plan}
        if i >= chains:
            step["after"] = [plans[i - chains]]
        steps.append(step)
    spec: dict[str, Any] = {
        "name": name,
        "description": f"scale-out drill {name}",
        "mode": "drill",
        "timezone": "UTC",
        "restore_point": "latest",
        "poll_interval": poll,
        "give_up_after": "2m",
        "plans": steps,
    }
    if max_parallel:
        spec["max_parallel"] = max_parallel
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def limit_name(host: str) -> str:
    """The write limit of a VAO server host, as the drills' write gate names it."""
    from vaodrill_prefect.tasks.vao import write_limit_name

    return write_limit_name(LIMIT_TEMPLATE, host)


# -- the topology ---------------------------------------------------------------------------------------------


@dataclass
class VaoServer:
    """One simulated VAO server: its address, its block and its write limit."""

    host: str
    port: int
    block: str
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def limit(self) -> str:
        return limit_name(self.host)


@dataclass
class DrillDeployment:
    """``dr-drill/<name>``: one drill file against one VAO server block."""

    name: str
    drill_file: str
    block: str


@dataclass
class Settings:
    database: str = "postgres"  # or "sqlite": Prefect's default, for comparison
    workers: int = 2
    worker_limit: int = 6  # flow runs at once per worker
    write_limit: int = 2  # Run/Undo/Halt POSTs at once per VAO server
    heartbeat: int = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY (Prefect's minimum is 30)
    zombie_after: int = 60  # no heartbeat for this long: the run is marked Crashed
    worker_poll: float = 2.0  # PREFECT_WORKER_QUERY_SECONDS (default 10)
    #: Longest wait before asking again for a full write limit's slot (Prefect's default 30 s, scaled down from
    #: the limit's average occupancy, starts at 2 s): a POST holds its slot well under a second.
    slot_wait: float = 1.0
    time_scale: float = 60.0  # of the simulators
    ui: bool = True


@dataclass
class Topology:
    """Everything ``up`` started, enough for ``down`` (also from another process, via ``topology.json``)."""

    root: Path
    settings: Settings = field(default_factory=Settings)
    postgres: Postgres | None = None
    api_url: str = ""
    server: Proc | None = None
    servers: list[VaoServer] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per bring-up step

    @property
    def journal_dir(self) -> Path:
        """Shared by every worker (NFS or similar on real hosts)."""
        return self.root / "shared" / "journal"

    @property
    def report_dir(self) -> Path:
        return self.root / "shared" / "reports"

    @property
    def state_file(self) -> Path:
        return self.root / "topology.json"

    def client_env(self, **extra: str) -> dict[str, str]:
        """A Prefect client (CLI, worker) of this server; its own PREFECT_HOME."""
        settings = {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.root / "client-home"),
            "VAODRILL_HOME": str(REPO),
        }
        return clean_env(**{**settings, **extra})

    def client(self) -> Any:
        from prefect.client.orchestration import PrefectClient

        return PrefectClient(self.api_url)

    def save(self) -> None:
        state = {
            "root": str(self.root),
            "api_url": self.api_url,
            "settings": asdict(self.settings),
            "postgres": asdict(self.postgres) if self.postgres else None,
            "processes": [asdict(p) for p in self._procs()],
            "servers": [{"url": s.url, "block": s.block, "limit": s.limit} for s in self.servers],
            "deployments": self.deployments,
        }
        with _save_lock:
            self.state_file.write_text(json.dumps(state, indent=2))

    def _procs(self) -> list[Proc]:
        return [*self.workers, *(s.proc for s in self.servers), *([self.server] if self.server else [])]

    # -- bring-up steps, in order ---------------------------------------------------------------------------

    def start_database(self) -> str:
        if self.settings.database == "sqlite":
            return f"sqlite+aiosqlite:///{self.root / 'server-home' / 'prefect.db'}"
        self.postgres = Postgres.start(self.root)
        self.save()
        return self.postgres.url

    def start_server(self, database_url: str) -> None:
        home = self.root / "server-home"
        home.mkdir(exist_ok=True)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        env = clean_env(
            PREFECT_HOME=str(home),
            PREFECT_API_DATABASE_CONNECTION_URL=database_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED=str(self.settings.ui).lower(),
            PREFECT_SERVER_UI_API_URL=self.api_url,
            PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS=f"{self.settings.slot_wait:g}",
        )
        argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        self.server = Proc.spawn("prefect server", argv, env=env, log=self.root / "server.log", cwd=self.root)
        self.save()
        wait_for(
            lambda: httpx.get(f"{self.api_url}/health", timeout=5).json() is True,
            timeout=240,
            what="prefect server start (/api/health)",
            proc=self.server,
        )

    def start_simulators(self, scenarios: Sequence[str | Path]) -> None:
        """One ``vaodrill simulator`` per scenario, on 127.0.0.2, 127.0.0.3, ... (one write limit each)."""
        for i, scenario in enumerate(scenarios):
            host = f"127.0.0.{i + 2}"
            port = free_port(host)
            argv = [
                str(BIN / "vaodrill"),
                "simulator",
                "--host",
                host,
                "--port",
                str(port),
                "--scenario",
                str(scenario),
                "--time-scale",
                f"{self.settings.time_scale:g}",
                "--username",
                SIM_USER,
                "--password",
                SIM_PASSWORD,
            ]
            proc = Proc.spawn(f"simulator {host}", argv, env=clean_env(), log=self.root / f"sim-{host}.log")
            self.servers.append(VaoServer(host, port, f"vao-{host.replace('.', '-')}", proc))
        self.save()
        for server in self.servers:
            wait_for(
                lambda s=server: httpx.get(f"{s.url}/_sim", timeout=5).status_code == 200,
                timeout=60,
                what=f"the simulator on {server.url}",
                proc=server.proc,
            )

    async def configure(self) -> None:
        """Work pool, the block types, one block and one write limit per VAO server of this topology (idempotent)."""
        from pydantic import SecretStr

        from vaodrill_prefect.tasks.blocks import VaoServer as VaoServerBlock
        from vaodrill_prefect.tasks.blocks import register_block_types

        await self.create_pool_and_limits([s.host for s in self.servers])
        async with self.client() as client:
            await register_block_types(client)  # the run forms' block picker, also with no server configured
            for server in self.servers:
                block = VaoServerBlock(
                    url=server.url, username=SIM_USER, password=SecretStr(SIM_PASSWORD), server_timezone="UTC"
                )
                await block.asave(server.block, overwrite=True, client=client)

    async def create_pool_and_limits(self, hosts: Iterable[str]) -> None:
        """The process work pool and ``vao-writes-<host>`` for each VAO server host (existing ones are kept)."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists
        from prefect.workers.process import ProcessWorker

        async with self.client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
                    )
                )
            for host in hosts:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=limit_name(host), limit=self.settings.write_limit)
                    )

    def deploy(self, drills: Sequence[DrillDeployment]) -> None:
        """``prefect deploy`` of recover-crashed (as in deployments/prefect.yaml) and one deployment per drill."""
        from vaodrill_prefect.tasks.blocks import block_ref

        project = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
        recovery = next(d for d in project["deployments"] if d["name"] == "recover-crashed")
        drill_template = next(d for d in project["deployments"] if d["name"] == "manual-drill")
        entries = [recovery]
        for drill in drills:
            entries.append(
                {
                    **drill_template,
                    "name": drill.name,
                    "description": f"{drill.drill_file} on {drill.block}",
                    "tags": ["dr", "scale-out"],
                    "parameters": {
                        "request": {
                            "drill_file": drill.drill_file,
                            "vao_block": block_ref(drill.block),
                            "report_dir": str(self.report_dir),
                        }
                    },
                }
            )
        project["deployments"] = entries
        project.pop("definitions", None)
        prefect_file = self.root / "prefect.yaml"
        prefect_file.write_text(yaml.safe_dump(project, sort_keys=False))
        run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
            what="prefect deploy",
            env=self.client_env(),
            timeout=300,
        )
        self.deployments = [RECOVERY_DEPLOYMENT, *(f"dr-drill/{d.name}" for d in drills)]
        self.save()

    async def create_automations(self) -> None:
        """Zombie runs are marked Crashed; a crashed drill run starts recover-crashed (automations.yaml)."""
        from datetime import timedelta

        from prefect.client.schemas.objects import StateType
        from prefect.events.actions import ChangeFlowRunState
        from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
        from prefect.events.schemas.events import ResourceSpecification

        terminal = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
        zombie = AutomationCore(
            name="vaodrill - crash zombie flow runs",
            description=f"No heartbeat for {self.settings.zombie_after}s: the process running the flow is gone.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *terminal},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=self.settings.zombie_after),
            ),
            actions=[
                ChangeFlowRunState(state=StateType.CRASHED, message=f"No heartbeat for {self.settings.zombie_after}s")
            ],
        )
        project = yaml.safe_load((REPO / "deployments" / "automations.yaml").read_text())
        crashed = next(a for a in project["automations"] if a["name"] == CRASHED_AUTOMATION)
        async with self.client() as client:
            recovery = await client.read_deployment_by_name(RECOVERY_DEPLOYMENT)
            # the notification action needs a block of yours; the recovery action is the file's, with the id
            crashed["actions"] = [
                {**a, "deployment_id": str(recovery.id)} for a in crashed["actions"] if a["type"] == "run-deployment"
            ]
            existing = {a.name for a in await client.read_automations()}
            for automation in (zombie, AutomationCore.model_validate(crashed)):
                if automation.name not in existing:
                    await client.create_automation(automation)

    def start_workers(self, count: int | None = None) -> None:
        for _ in range(self.settings.workers if count is None else count):
            name = f"worker-{len(self.workers) + 1}"
            home = self.root / f"{name}-home"
            home.mkdir()
            env = self.client_env(
                PREFECT_HOME=str(home),
                VAODRILL_JOURNAL_DIR=str(self.journal_dir),
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(self.settings.heartbeat),
                PREFECT_WORKER_QUERY_SECONDS=f"{self.settings.worker_poll:g}",
            )
            argv = [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                POOL,
                "--name",
                name,
                "--limit",
                str(self.settings.worker_limit),
                "--type",
                "process",
            ]
            self.workers.append(Proc.spawn(name, argv, env=env, log=self.root / f"{name}.log"))
        self.save()
        for worker in self.workers:
            wait_for(
                lambda w=worker: "started!" in Path(w.log).read_text(errors="replace"),
                timeout=120,
                what=f"{worker.name} to poll {POOL}",
                proc=worker,
            )

    async def up(self, scenarios: Sequence[str | Path], drills: Sequence[DrillDeployment]) -> None:
        """The whole bring-up; ``down()`` on failure. Block names: ``vao-127-0-0-2`` for the first scenario..."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()

        def lap(step: str) -> None:
            self.timings[step] = round(time.monotonic() - started - sum(self.timings.values()), 1)

        try:
            database = await asyncio.to_thread(self.start_database)
            lap("database")
            await asyncio.gather(
                asyncio.to_thread(self.start_server, database), asyncio.to_thread(self.start_simulators, scenarios)
            )
            lap("server+simulators")
            await self.configure()

            async def deploy() -> None:
                await asyncio.to_thread(self.deploy, drills)
                await self.create_automations()

            await asyncio.gather(deploy(), asyncio.to_thread(self.start_workers))
            lap("deploy+workers")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        stop_all(self._procs())
        if self.postgres:
            self.postgres.stop()

    @classmethod
    def load(cls, root: Path) -> Topology:
        state = json.loads((root / "topology.json").read_text())
        topology = cls(
            root,
            Settings(**state["settings"]),
            api_url=state["api_url"],
            postgres=Postgres(**state["postgres"]) if state["postgres"] else None,
        )
        topology.workers = [Proc(**p) for p in state["processes"]]  # all of them: down() only stops
        return topology


# -- command line -------------------------------------------------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    root = Path(args.dir or tempfile.mkdtemp(prefix="vaodrill-topology-")).resolve()
    if (root / "topology.json").exists():
        raise TopologyError(f"{root} already holds a topology: `{Path(__file__).name} down --dir {root}` first")
    settings = Settings(database=args.database, workers=args.workers, write_limit=args.write_limit)
    topology = Topology(root, settings)
    scenario = args.scenario
    drills = [
        DrillDeployment(f"{Path(args.drill).stem}-{i + 2}", str(Path(args.drill).resolve()), f"vao-127-0-0-{i + 2}")
        for i in range(args.servers)
    ]
    started = time.monotonic()
    asyncio.run(topology.up([scenario] * args.servers, drills))
    ui = topology.api_url.removesuffix("/api")
    steps = ", ".join(f"{step} {seconds:g}s" for step, seconds in topology.timings.items())
    print(
        f"up in {time.monotonic() - started:.0f}s ({steps}): {root}\n"
        f"  Prefect API   export PREFECT_API_URL={topology.api_url}   (UI {ui})\n"
        f"  database      {topology.postgres.url if topology.postgres else settings.database}\n"
        f"  workers       {', '.join(w.name for w in topology.workers)} on pool {POOL} "
        f"(journals in {topology.journal_dir})"
    )
    for server in topology.servers:
        print(f"  VAO server    {server.url}  block {server.block}  limit {server.limit}={settings.write_limit}")
    print("  deployments   " + ", ".join(topology.deployments))
    print(
        f"try:  PREFECT_API_URL={topology.api_url} {BIN / 'prefect'} deployment run dr-drill/{drills[0].name}\n"
        f"stop: {sys.executable} {Path(__file__).resolve()} down --dir {root}"
    )
    return 0


def _configure(args: argparse.Namespace) -> int:
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise TopologyError("set PREFECT_API_URL to your Prefect server's API (https://prefect.corp.example/api)")
    settings = Settings(write_limit=args.write_limit, zombie_after=args.zombie_after)
    if settings.zombie_after <= settings.heartbeat:
        raise TopologyError(f"--zombie-after must exceed the {settings.heartbeat}s heartbeat (60 or more is safe)")
    topology = Topology(Path.cwd(), settings, api_url=api_url)

    async def configure() -> None:
        await topology.create_pool_and_limits(args.vao_host)
        await topology.create_automations()

    try:
        asyncio.run(configure())
    except Exception as exc:  # the API's answer, in one line
        raise TopologyError(f"configuring {api_url}: {type(exc).__name__}: {exc}") from None
    print(
        f"pool {POOL}; limits {', '.join(limit_name(h) for h in args.vao_host)} = {args.write_limit}; "
        f"automations: zombie runs Crashed after {args.zombie_after}s, crashed drill runs -> {RECOVERY_DEPLOYMENT}"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    if not (root / "topology.json").is_file():
        raise TopologyError(f"{root}: no topology.json (not a directory made by `up`)")
    Topology.load(root).down()
    print(f"stopped: {root}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything and leave it running")
    up.add_argument("--dir", help="working directory (default: a new temporary one)")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--servers", type=int, default=5, choices=range(1, 200), metavar="N", help="VAO simulators")
    up.add_argument("--write-limit", type=int, default=2, help="POSTs at once per VAO server")
    up.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    up.add_argument("--scenario", default="demo", help="simulator scenario of every server")
    up.add_argument(
        "--drill", default=str(REPO / "deployments/drills/demo.yaml"), help="drill file deployed once per server"
    )
    down = commands.add_parser("down", help="stop what `up --dir DIR` started")
    down.add_argument("--dir", required=True)
    configure = commands.add_parser(
        "configure",
        help="real hosts: pool, write limits and automations on the "
        "server at $PREFECT_API_URL (after `prefect deploy` of recover-crashed)",
    )
    configure.add_argument(
        "--vao-host", action="append", required=True, help="host name of a VAO server, as in its URL (repeat for each)"
    )
    configure.add_argument("--write-limit", type=int, default=2, help="POSTs at once per VAO server")
    configure.add_argument(
        "--zombie-after", type=int, default=60, help="seconds without a flow heartbeat before a run is marked Crashed"
    )
    args = parser.parse_args(argv)
    try:
        return {"up": _up, "down": _down, "configure": _configure}[args.command](args)
    except (TopologyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
