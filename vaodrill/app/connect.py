"""The VAO connection of every command: its options, defined once, and the settings built from them.

Precedence, field by field (:meth:`ConnectionSettings.resolve`, the same for the flows): a command-line option
over the 'VAO Server' block named by ``--block`` over the ``VAO_*`` environment variables. A secret missing from
all three is read from stdin (``--password-stdin``) or asked for at the terminal. With no URL anywhere, commands
use an embedded simulator and say so.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Annotated, Any, cast

import typer
from pydantic import SecretStr

from vaodrill.app.console import UserError, err_console
from vaodrill.errors import VaoUsageError, one_line
from vaodrill.vao.connection import ConnectionSettings

DEMO_TIME_SCALE = 120.0

VaoTimezone = Annotated[
    str | None,
    typer.Option(
        "--vao-timezone", help="IANA zone of the VAO server clock [env VAO_TIMEZONE, default UTC]", show_default=False
    ),
]
BlockName = Annotated[
    str | None, typer.Option("--block", help="Name of a saved 'VAO Server' Prefect block", show_default=False)
]


@dataclass(frozen=True)
class ConnectionOptions:
    """The connection options of one command, as typed (None: not given)."""

    vao_url: Annotated[
        str | None,
        typer.Option("--vao-url", help="VAO base URL, e.g. https://vao:9899 [env VAO_URL]", show_default=False),
    ] = None
    username: Annotated[
        str | None, typer.Option("--username", help="VAO user [env VAO_USERNAME]", show_default=False)
    ] = None
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            show_default=False,
            help="VAO password. Avoid: any user of this machine can read it in the process list; prefer the prompt, "
            "--password-stdin, VAO_PASSWORD_FILE or VAO_PASSWORD",
        ),
    ] = None
    vao_timezone: VaoTimezone = None
    ca_bundle: Annotated[
        str | None,
        typer.Option(
            "--ca-bundle", help="PEM file to trust for VAO's certificate [env VAO_CA_BUNDLE]", show_default=False
        ),
    ] = None
    block: BlockName = None
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            help="Log in as this child client (client_credentials); the secret comes from "
            "--password-stdin, the prompt or VAO_CLIENT_SECRET [env VAO_CLIENT_ID]",
            show_default=False,
        ),
    ] = None
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password (or, with --client-id, the client secret) from the first line of stdin",
        ),
    ] = False
    allow_insecure_http: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-http",
            help="Send credentials over plain http:// to a host that is not this machine [env VAO_ALLOW_INSECURE_HTTP]",
        ),
    ] = False

    def flags(self) -> dict[str, Any]:
        """The settings' fields these options give."""
        return {
            "url": self.vao_url,
            "username": self.username,
            "client_id": self.client_id,
            "password": SecretStr(self.password) if self.password is not None else None,
            "server_timezone": self.vao_timezone,
            "ca_bundle": self.ca_bundle,
            "allow_insecure_http": True if self.allow_insecure_http else None,
        }


#: A command's options when none is given (typer hands the decorated command its own).
NO_OPTIONS = ConnectionOptions()
F = Callable[..., Any]


def connection_options(command: F) -> F:
    """Give a command the connection options (one definition for every command), handed to it as ``vao``."""
    names = [f.name for f in fields(ConnectionOptions)]
    hints = inspect.get_annotations(ConnectionOptions, eval_str=True)
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "vao"]
    added = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(ConnectionOptions)
    ]

    def with_options(*args: Any, **kwargs: Any) -> Any:
        vao = ConnectionOptions(**{name: kwargs.pop(name) for name in names})
        return command(*args, vao=vao, **kwargs)

    with_options.__name__, with_options.__doc__ = command.__name__, command.__doc__
    with_options.__module__, with_options.__qualname__ = command.__module__, command.__qualname__
    with_options.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    return with_options


def resolve_settings(options: ConnectionOptions) -> ConnectionSettings | None:
    """The settings these options, their block and the environment give; None means "no server given"."""
    block = _load_block(options.block) if options.block else None
    try:
        settings = ConnectionSettings.resolve(flags=options.flags(), block=block, env=os.environ)
    except VaoUsageError as exc:
        raise UserError(str(exc)) from None
    if settings is None:
        return None
    secret = "client_secret" if settings.client_id else "password"
    given = getattr(settings, secret)
    if (given is None or not given.get_secret_value()) and (typed := _read_secret(options, secret.replace("_", " "))):
        return ConnectionSettings.resolve(
            flags={**options.flags(), secret: SecretStr(typed)}, block=block, env=os.environ
        )
    return settings


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


def served_block(options: ConnectionOptions) -> str | None:
    """The 'VAO Server' block the runs ``vaodrill serve`` starts use (None: no server anywhere).

    The settings are resolved as for every command; when a flag or a ``VAO_*`` variable changed the named block's,
    they are saved as the block :data:`SERVE_BLOCK`. The ``VAO_*`` variables are then dropped from this process's
    environment: the flow-run processes it starts inherit it, and get their connection from the block alone."""
    settings = resolve_settings(options)
    for key in [key for key in os.environ if key.startswith("VAO_")]:
        del os.environ[key]
    if settings is None:
        return None
    if options.block and _load_block(options.block).model_dump() == settings.model_dump():
        return options.block
    from vaodrill_prefect.tasks.blocks import VaoServer

    VaoServer.of(settings).save(SERVE_BLOCK, overwrite=True)
    return SERVE_BLOCK


#: The 'VAO Server' block ``vaodrill serve`` saves when its settings come from flags or the environment.
SERVE_BLOCK = "vaodrill-serve"


def _load_block(name: str) -> ConnectionSettings:
    from vaodrill_prefect.tasks.blocks import VaoServer  # Prefect is needed only when a block is named

    try:
        return cast(VaoServer, VaoServer.load(name))
    except ValueError as exc:
        raise UserError(f"no usable 'VAO Server' block named {name!r} ({one_line(str(exc))})") from None


@contextmanager
def connection(
    options: ConnectionOptions, *, time_scale: float = DEMO_TIME_SCALE, force_simulator: bool = False, api: str = "v2"
) -> Iterator[ConnectionSettings]:
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
        err_console.print(
            f"[bold yellow]⚑ No VAO server configured: using the embedded simulator[/] "
            f"(demo scenario, time x{time_scale:g}) at {url}"
        )
        yield ConnectionSettings(url=url, username="demo", password=SecretStr("demo"), simulated=True)
