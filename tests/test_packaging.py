"""The built wheel, installed into a fresh venv beside someone else's package named ``tasks``: vaodrill adds no
``flows`` or ``tasks`` package to site-packages, ``vaodrill demo`` passes, and the flows load by the module-path
entrypoints the deployments use, with the other ``tasks`` still the one imported as ``tasks``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OTHER_TASKS = "WHO = 'somebody else'\n"
LOADS = """
import tasks
from prefect.flows import load_flow_from_entrypoint
names = [load_flow_from_entrypoint(e).name for e in ("vaodrill_prefect.flows.drill:dr_drill",
         "vaodrill_prefect.flows.failover:real_failover", "vaodrill_prefect.flows.drill:recover_drill")]
import tasks as again, vaodrill_prefect.tasks.blocks as blocks
print(names, tasks.WHO, again is tasks, blocks.__file__.startswith(tasks.__file__.rsplit('/tasks/', 1)[0]))
"""


def test_the_wheel_installs_beside_a_package_named_tasks_and_runs_the_demo(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("vaodrill-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {
        "vaodrill",
        "vaodrill_prefect",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }, tops
    assert "vaodrill_prefect/flows/drill.py" in zipfile.ZipFile(wheel).namelist()

    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "tasks").mkdir()
    (site / "tasks" / "__init__.py").write_text(OTHER_TASKS)
    # vaodrill's dependencies from this test's environment (no network); the wheel itself is installed alone
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (site / "flows").exists() and (site / "tasks" / "__init__.py").read_text() == OTHER_TASKS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAO_", "PREFECT_", "PYTHON"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    demo = subprocess.run(
        [home / "bin" / "vaodrill", "demo", "--report-dir", str(tmp_path / "reports")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    assert "PASSED" in demo.stdout
    loads = subprocess.run([python, "-c", LOADS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert loads.returncode == 0, loads.stderr
    assert loads.stdout.strip().endswith("['dr-drill', 'real-failover', 'recover-drill'] somebody else True True")
