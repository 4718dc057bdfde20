"""vaodrill: disaster-recovery drills for Veeam Availability Orchestrator, as code."""
