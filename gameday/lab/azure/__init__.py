"""An Azure Resource Manager emulator (https) for rehearsing GameDays with the real Azure SDKs."""

from gameday.lab.azure.certs import make_certificate
from gameday.lab.azure.emulator import ResourceManagerEmulator

__all__ = ["ResourceManagerEmulator", "make_certificate"]
