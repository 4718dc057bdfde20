"""A stateful simulator of the Veeam Availability Orchestrator REST API v2 (contract: docs/vao-api.md).

Nobody on the project has a VAO server, so the client, the drills and the demo all run against this::

    from vaodrill.simulator import create_app
    app = create_app("demo", progression="tick")       # an ASGI app; app.state.sim is the Simulator

    from vaodrill.simulator.server import BackgroundServer
    with BackgroundServer(app) as server:               # real uvicorn on a free loopback port
        ...  # talk to server.url

The simulated API lives under ``/v2`` (and ``/Token``); a test control plane lives under ``/_sim``.
No Prefect imports here: the simulator stands alone.
"""

from .app import create_app
from .engine import Simulator
from .scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from .traffic import ConnectionDropped

__all__ = [
    "ConnectionDropped",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "builtin_scenarios",
    "create_app",
    "load_scenario",
]
