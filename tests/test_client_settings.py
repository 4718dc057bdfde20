"""Connection settings: plain http only on loopback (or by explicit opt-in, then a warning), child clients, the
password from a file, the VaoServer block; secrets never shown."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from vaodrill.errors import VaoAuthError, VaoUsageError
from vaodrill.simulator import create_app
from vaodrill.simulator.profiles import ChildClient
from vaodrill.simulator.scenario import load_scenario
from vaodrill.simulator.server import BackgroundServer
from vaodrill.vao.connection import ConnectionSettings, is_loopback
from vaodrill_prefect.tasks.blocks import VaoServer

CHILD = ChildClient(client_id="drill-tool", client_secret=SecretStr("child-s3cret"))


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The simulator on loopback over plain http, with a child client."""
    scenario = load_scenario("demo").model_copy(update={"clients": [CHILD]})
    with BackgroundServer(create_app(scenario)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        yield server.url


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.0.0.1", False),
        ("vao.corp.example", False),
        ("localhost.evil.example", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("url", ["http://vao.corp.example:9899", "http://10.1.2.3:9899"])
def test_plain_http_beyond_loopback_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="refusing to send credentials over plain http://"):
        ConnectionSettings(url=url, username="u", password=SecretStr("p"))


def test_plain_http_by_opt_in_warns_every_time_a_client_is_built(caplog: pytest.LogCaptureFixture) -> None:
    settings = ConnectionSettings(
        url="http://vao.corp.example:9899", username="u", password=SecretStr("p"), allow_insecure_http=True
    )
    with caplog.at_level(logging.WARNING, logger="vaodrill.connection"):
        settings.client()
        settings.client()
        ConnectionSettings(url="https://vao.corp.example:9899", username="u").client()
        ConnectionSettings(url="http://127.0.0.1:9899", username="u").client()
    warnings = [r.getMessage() for r in caplog.records if r.name == "vaodrill.connection"]
    assert len(warnings) == 2 and all("plain http:// to vao.corp.example" in w for w in warnings)


async def test_the_embedded_simulator_on_loopback_needs_no_opt_in(server_url: str) -> None:
    settings = ConnectionSettings(url=server_url, username="demo", password=SecretStr("demo"), simulated=True)
    async with settings.client() as vao:
        assert await vao.list_plans()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"client_id": "tool"}, "client_id and client_secret go together"),
        ({"client_secret": SecretStr("s")}, "client_id and client_secret go together"),
        ({"url": "https://admin:pw@vao:9899"}, "must not hold credentials"),
        ({"url": "ftp://vao:9899"}, "must start with https://"),
        ({"url": "https://vao:99999"}, "not a usable VAO URL"),
        ({"url": "https://:9899"}, "has no host"),
        ({"timeout": 0}, "greater than 0"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"url": "https://vao:9899", "username": "u", "password": SecretStr("p")}
    with pytest.raises(ValidationError, match=message) as caught:
        ConnectionSettings(**{**fields, **changes})  # type: ignore[arg-type]
    assert "pw@" not in str(caught.value)


async def test_child_client_from_the_environment(server_url: str) -> None:
    settings = ConnectionSettings.from_env(
        {"VAO_URL": server_url, "VAO_CLIENT_ID": "drill-tool", "VAO_CLIENT_SECRET": "child-s3cret"}
    )
    assert settings is not None and settings.client_id == "drill-tool"
    async with settings.client() as vao:
        assert await vao.list_plans()
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(settings.client())
    assert "child-s3cret" not in shown


async def test_password_file(tmp_path: Path, server_url: str) -> None:
    secret = tmp_path / "vao-password"
    secret.write_text("demo\n")
    settings = ConnectionSettings.from_env(
        {"VAO_URL": server_url, "VAO_USERNAME": "demo", "VAO_PASSWORD_FILE": str(secret)}
    )
    assert settings is not None and settings.password.get_secret_value() == "demo"
    async with settings.client() as vao:
        assert await vao.list_plans()
    secret.write_text("wrong-one\r\n")
    settings = ConnectionSettings.from_env(
        {"VAO_URL": server_url, "VAO_USERNAME": "demo", "VAO_PASSWORD_FILE": str(secret)}
    )
    assert settings is not None
    async with settings.client() as vao:
        with pytest.raises(VaoAuthError) as caught:
            await vao.list_plans()
    assert "wrong-one" not in str(caught.value)


def test_password_file_problems_are_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100_000)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    cases = {
        str(tmp_path / "missing"): "is not a regular file",
        str(tmp_path): "is not a regular file",
        str(fifo): "is not a regular file",  # never opened: a FIFO would hang
        str(big): "larger than 64 KiB",
        str(binary): "not UTF-8",
    }
    for path, message in cases.items():
        with pytest.raises(VaoUsageError, match=message) as caught:
            ConnectionSettings.from_env({"VAO_URL": "https://vao:9899", "VAO_PASSWORD_FILE": path})
        assert "\n" not in str(caught.value)
    with pytest.raises(VaoUsageError, match="not both"):
        ConnectionSettings.from_env({"VAO_URL": "https://vao:9899", "VAO_PASSWORD": "p", "VAO_PASSWORD_FILE": str(big)})


def test_environment_flags_and_errors() -> None:
    base = {"VAO_URL": "http://vao.corp.example:9899", "VAO_USERNAME": "u", "VAO_PASSWORD": "hunter2"}
    with pytest.raises(VaoUsageError, match="refusing to send credentials over plain http://") as caught:
        ConnectionSettings.from_env(base)
    assert "\n" not in str(caught.value) and "hunter2" not in str(caught.value)
    settings = ConnectionSettings.from_env({**base, "VAO_ALLOW_INSECURE_HTTP": "true", "VAO_VERIFY_TLS": "off"})
    assert settings is not None and settings.allow_insecure_http and not settings.verify_tls
    with pytest.raises(VaoUsageError, match="VAO_ALLOW_INSECURE_HTTP must be true or false"):
        ConnectionSettings.from_env({**base, "VAO_ALLOW_INSECURE_HTTP": "please"})
    assert ConnectionSettings.from_env({}) is None


async def test_block_with_a_child_client(server_url: str) -> None:
    block = VaoServer(url=server_url, client_id="drill-tool", client_secret=SecretStr("child-s3cret"))
    assert "child-s3cret" not in repr(block) and not hasattr(block, "get_client")
    async with block.settings().client() as vao:
        assert await vao.list_plans()
    with pytest.raises(ValidationError, match="plain http://"):  # the block is the settings: checked as made
        VaoServer(url="http://vao.corp.example:9899", username="u", password=SecretStr("p"))
    insecure = VaoServer(
        url="http://vao.corp.example:9899", username="u", password=SecretStr("p"), allow_insecure_http=True
    )
    assert insecure.settings().allow_insecure_http and insecure.timeout == insecure.settings().timeout
