"""The simulator over real sockets: BackgroundServer (uvicorn on loopback), dropped connections as a client
really sees them, HTTPS with a test CA, and the banner of ``serve()``."""

from __future__ import annotations

import http.client
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from tests.conftest import CONTROL_TIMEOUT
from tests.test_simulator_support import DEMO_IDS, PASSWORD, app_for
from vaodrill.simulator.server import BackgroundServer, serve

SQL = DEMO_IDS["SQL Tier"]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(app_for("demo", progression="tick")) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=CONTROL_TIMEOUT) as http:
        assert http.post("/_sim/reset").status_code == 200
        token = http.post(
            "/v2/Token", data={"grant_type": "password", "username": "demo", "password": PASSWORD}
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def test_url_is_loopback_with_the_bound_port(server: BackgroundServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port > 0


def test_a_drill_over_real_sockets(client: httpx.Client) -> None:
    assert client.post(f"/v2/FailoverPlans/{SQL}/Run", json={"mode": "FailoverNow"}).status_code == 200
    details = [client.get(f"/v2/FailoverPlans/{SQL}").json()["planStateDetails"] for _ in range(6)]
    assert details[-1] == "Complete, no errors, no warnings"
    assert client.post(f"/v2/FailoverPlans/{SQL}/Undo").status_code == 200
    for _ in range(6):
        plan = client.get(f"/v2/FailoverPlans/{SQL}").json()
    assert (plan["planState"], plan["planStateDetails"]) == ("Enabled", "Ready")


def test_loopback_requests_do_not_wait_for_delayed_acks(client: httpx.Client) -> None:
    """Without TCP_NODELAY on accepted sockets each answer took ~40 ms (Nagle + delayed ACK); now ~1 ms."""
    client.get("/v2/FailoverPlans")
    started = time.perf_counter()
    for _ in range(20):
        client.get(f"/v2/FailoverPlans/{SQL}")
    assert time.perf_counter() - started < 0.4  # 20 x 40 ms would be 0.8 s


def test_drop_before_is_a_protocol_error_and_nothing_happens(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.post(
        "/_sim/faults", json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "drop": "before", "count": 1}
    ).raise_for_status()
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"), pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/v2/FailoverPlans/{SQL}/Run", json={"mode": "FailoverNow"})
    record = client.get(f"/_sim/plans/{SQL}").json()
    assert (record["planState"], record["run_requests"]) == ("Enabled", 0)
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()], (
        "deliberate drops must not log tracebacks"
    )
    assert client.get("/v2/FailoverPlans").status_code == 200, "the server keeps serving after a drop"


def test_drop_after_is_a_protocol_error_but_the_plan_started(client: httpx.Client) -> None:
    client.post(
        "/_sim/faults", json={"method": "POST", "path": "/v2/FailoverPlans/*/Run", "drop": "after", "count": 1}
    ).raise_for_status()
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/v2/FailoverPlans/{SQL}/Run", json={"mode": "FailoverNow"})
    record = client.get(f"/_sim/plans/{SQL}").json()
    assert (record["planState"], record["run_requests"]) == ("Failover", 1)
    assert record["stages"][0]["status"] == "running"


def test_drop_on_a_read(client: httpx.Client) -> None:
    client.post(
        "/_sim/faults", json={"method": "GET", "path": "/v2/FailoverPlans", "drop": "after", "rate": 1.0}
    ).raise_for_status()
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v2/FailoverPlans")
    assert client.get(f"/v2/FailoverPlans/{SQL}").status_code == 200


def test_stop_releases_the_port() -> None:
    running = BackgroundServer(app_for("demo")).start()
    url = running.url
    assert httpx.get(f"{url}/_sim").status_code == 200
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_sim", timeout=2)


def test_startup_failure_is_raised(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(RuntimeError, match="did not start"):
        BackgroundServer(app_for("demo"), ssl_certfile=missing, ssl_keyfile=missing).start()
    with pytest.raises(ValueError, match="go together"):
        BackgroundServer(app_for("demo"), ssl_certfile=missing)


def test_https_with_a_test_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with BackgroundServer(app_for("demo"), ssl_certfile=certfile, ssl_keyfile=keyfile) as running:
        assert running.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=running.url, verify=context) as http:
            login = http.post("/v2/Token", data={"grant_type": "password", "username": "demo", "password": PASSWORD})
            assert login.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{running.url}/_sim")


def test_serve_prints_where_it_listens_and_how_to_log_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(self: uvicorn.Server, sockets: Any = None) -> None:
        seen["config"] = self.config

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.setenv("COLUMNS", "80")  # the curl commands must still come out whole
    serve(port=9911, time_scale=60, username="LAB\\drill", password="pw-123", progression="tick")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:9911/v2" in out
    assert "LAB\\drill" in out and "pw-123" in out
    assert (
        "curl -s -X POST http://127.0.0.1:9911/v2/Token -d grant_type=password "
        "--data-urlencode 'username=LAB\\drill' --data-urlencode password=pw-123\n"
    ) in out
    assert "60x" in out and "tick" in out
    config = seen["config"]
    assert (config.host, config.port, config.access_log) == ("127.0.0.1", 9911, False)
    sim = config.app.state.sim
    assert (sim.time_scale, sim.progression, sim.username) == (60, "tick", "LAB\\drill")


def test_serve_rejects_half_a_tls_pair() -> None:
    with pytest.raises(ValueError, match="go together"):
        serve(certfile="cert.pem")


def test_serve_resolves_the_veeam_docs_scenario_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vaodrill simulator --scenario veeam-docs`` passes the name through to serve()."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.setdefault("config", self.config))
    serve(port=9912, scenario="veeam-docs")
    out = capsys.readouterr().out
    assert "scenario veeam-docs (7 plans)" in out
    assert "child client: client_id drill-tool  client_secret drill-tool-secret" in out
    plans = seen["config"].app.state.sim.summary()["plans"]
    assert {p["planState"] for p in plans} == {"Verified", "NotVerified", "Enabled", "Disabled"}


def test_an_idle_connection_stays_open_longer_than_a_client_keeps_it_in_its_pool(server: BackgroundServer) -> None:
    """A client reuses a connection idle up to 5 s (httpx's pool): the simulator must not close it then, or a Run
    sent on it is lost unread (as a real server, it keeps idle connections for minutes)."""
    url = httpx.URL(server.url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=CONTROL_TIMEOUT)
    try:
        for idle in (6, 0):  # 6 s: the idle time under test, past the client pool's 5 s
            connection.request("GET", "/_sim/plans")
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
            time.sleep(idle)
    finally:
        connection.close()
