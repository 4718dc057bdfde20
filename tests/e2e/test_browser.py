"""The Prefect UI shows the finished drill: headless Chromium driven over the Chrome DevTools protocol.

Opens the flow run page of the drill run (shared with test_deployment_run.py), waits for the rendered text,
takes screenshots, then the run's Artifacts tab and the Markdown report artifact's own page. Chromium is
Debian's ``/usr/bin/chromium``; without it this test FAILS (it is not skipped): run ``.ci/install-chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from websockets.asyncio.client import ClientConnection, connect

from .conftest import FinishedRun, PrefectServer, Process, clean_env, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1400, 1000
DRILL = "demo-app-stack"


class Page:
    """One browser tab over CDP: navigate, read the rendered text, take screenshots."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # skip the events until our answer
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method} failed: {message['error']}")
                return message.get("result", {})

    async def goto(self, url: str) -> None:
        result = await self.call("Page.navigate", url=url)
        assert not result.get("errorText"), f"navigation to {url} failed: {result['errorText']}"

    async def text(self) -> str:
        result = await self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                 returnByValue=True)
        return result.get("result", {}).get("value") or ""

    async def click(self, label: str) -> None:
        """Click the first tab, button or link whose visible text is exactly ``label``."""
        expression = (
            "(() => { const el = Array.from(document.querySelectorAll('[role=tablist] li, [role=tab], button, a'))"
            f".find(e => e.innerText && e.innerText.trim() === {json.dumps(label)});"
            " if (!el) return false; el.click(); return true; })()")
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert result.get("result", {}).get("value") is True, f"nothing to click labelled {label!r}"

    async def link_href(self, text: str) -> str | None:
        """The href of the first link whose visible text contains ``text``."""
        expression = (f"(() => {{ const a = Array.from(document.querySelectorAll('a'))"
                      f".find(e => e.innerText.includes({json.dumps(text)})); return a ? a.href : null; }})()")
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for_text(self, needles: list[str], *, timeout: float, shot: Path) -> str:
        """Poll the rendered text until it contains every needle; on timeout fail with the text and a shot."""
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            missing = [n for n in needles if n not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                await self.screenshot(shot)
                pytest.fail(f"the page never showed {missing} within {timeout:g}s (screenshot {shot}); "
                            f"its text was:\n{text[:3000]}", pytrace=False)
            await asyncio.sleep(0.25)

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))
        return path


class Chromium:
    """Headless Chromium with remote debugging on a free loopback port, in a throwaway profile."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.profile = workdir / "chromium-profile"
        self.process: Process | None = None
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> Page:
        self.profile.mkdir()
        argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
                f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
        self.process = Process("chromium", argv, env=clean_env(HOME=str(self.workdir)),
                               cwd=self.workdir, log_path=self.workdir / "chromium.log")
        active = self.profile / "DevToolsActivePort"  # Chromium writes the port it bound here

        def port() -> int | None:
            if not self.process.alive():
                pytest.fail(f"chromium exited with {self.process.popen.returncode}\n{self.process.tail()}",
                            pytrace=False)
            lines = active.read_text().splitlines() if active.exists() else []
            return int(lines[0]) if lines and lines[0].strip().isdigit() else None

        debug_port = wait_until(port, timeout=30, what="Chromium's DevTools port", diagnose=self.process.tail)
        targets = httpx.get(f"http://127.0.0.1:{debug_port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await connect(page["webSocketDebuggerUrl"], max_size=None, ping_interval=None)
        tab = Page(self.ws)
        await tab.call("Page.enable")
        await tab.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                       mobile=False)
        return tab

    async def __aexit__(self, *exc_info: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.process is not None:
            self.process.stop(grace=5)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def test_flow_run_page_shows_the_drill(drill_run: FinishedRun, prefect_server: PrefectServer,
                                             tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-chromium (installs Debian's chromium package)",
                    pytrace=False)
    assert drill_run.flow_run.state.is_completed(), "the drill run did not complete (see test_deployment_run)"
    async with prefect_server.client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[drill_run.flow_run_id])))
    report = next(a for a in artifacts if a.key == f"drill-{DRILL}-report")

    run_url = f"{prefect_server.url}/runs/flow-run/{drill_run.flow_run_id}"
    shots = {name: tmp_path / f"{name}.png" for name in ("flow-run", "artifacts-tab", "report-artifact")}
    async with Chromium(tmp_path) as page:
        await page.goto(run_url)
        # header (name, state, flow, deployment) and the run's logs (the Logs tab is the default one)
        await page.wait_for_text([drill_run.flow_run.name, "Completed", "dr-drill", "manual-drill",
                                  f"Drill {DRILL} (drill mode"], timeout=60, shot=shots["flow-run"])
        await page.screenshot(shots["flow-run"])

        await page.click("Artifacts")
        await page.wait_for_text([f"drill-{DRILL}-report", f"drill-{DRILL}-plans"], timeout=30,
                                 shot=shots["artifacts-tab"])
        await page.screenshot(shots["artifacts-tab"])

        await page.goto(f"{prefect_server.url}/artifacts/artifact/{report.id}")
        text = await page.wait_for_text([f"drill-{DRILL}-report", "Core Network", "Reporting"], timeout=30,
                                        shot=shots["report-artifact"])
        await page.screenshot(shots["report-artifact"])
        assert "passed" in text.lower(), text[:3000]
        # the drill timeline, embedded as an SVG data URI, is rendered by the UI (a decoded, sized image)
        drawn = await page.call("Runtime.evaluate", returnByValue=True, expression=(
            "Array.from(document.images).filter(i => i.src.startsWith('data:image/svg+xml') && i.complete"
            " && i.naturalWidth > 100).length"))
        assert drawn.get("result", {}).get("value", 0) >= 1, "the timeline image is not shown in the report artifact"

        # the report's "Flow run" link (flow_run.ui_url at run time) leads back to the run page
        link = await page.link_href(str(drill_run.flow_run_id))
        assert link, "the report artifact has no link to its flow run"
        await page.goto(link)
        await page.wait_for_text([drill_run.flow_run.name, "Completed"], timeout=30,
                                 shot=tmp_path / "report-link.png")

    for name, shot in shots.items():
        width, height = png_size(shot)
        assert (width, height) == (WIDTH, HEIGHT), (name, width, height)
        assert shot.stat().st_size > 20_000, f"{shot} is suspiciously small for a rendered page"
        print(f"\nscreenshot {name}: {shot}")
