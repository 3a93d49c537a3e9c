"""A Compute Engine REST API emulator for rehearsing GameDays with the real google-cloud-compute."""

from gameday.lab.gcp.emulator import ComputeEmulator

__all__ = ["ComputeEmulator"]
