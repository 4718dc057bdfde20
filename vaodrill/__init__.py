"""vaodrill: disaster-recovery drills for Veeam Availability Orchestrator, as code.

Layers, each importing only those below it: ``app`` (the command line and its views), ``engine`` (runs a drill),
``report`` (what a run proves), ``spec`` (what a drill asks), ``vao`` (talks to VAO/VRO); ``errors`` and
``journal`` under them all. ``simulator`` stands in for a VAO server.
"""

__version__ = "0.1.0"
