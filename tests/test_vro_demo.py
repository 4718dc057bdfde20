"""``vaodrill demo --api vro``: the demo drill end to end over the embedded simulator's VRO API (engine path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VAODRILL = str(Path(sys.executable).parent / "vaodrill")


def test_the_demo_passes_over_vro(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_API"))}
    result = subprocess.run([VAODRILL, "demo", "--api", "vro", "--report-dir", str(tmp_path)], env=env | {
        "COLUMNS": "200"}, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "/api/v13" in result.stderr and "Drill demo-app-stack: PASSED" in result.stdout
    assert result.stdout.count("verified") == 6
    assert list(tmp_path.glob("demo-app-stack/*/report.json"))
