"""vaodrill: disaster-recovery drills for Veeam Availability Orchestrator, as code."""

from vaodrill.client import VaoClient
from vaodrill.connection import ConnectionSettings
from vaodrill.errors import VaoError

__all__ = ["ConnectionSettings", "VaoClient", "VaoError"]
__version__ = "0.1.0"
