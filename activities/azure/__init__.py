"""Azure faults with azure-mgmt: one module per fault (`blackhole`, `evacuation`), the sweeper
(`sweep`), and the plumbing they share (`api`). The registry (`activities.registry`) makes them
activities."""

from activities.azure.api import (
    MAX_TAG_VALUE,
    TAG_MANAGED,
    TAG_RESTORE,
    TAG_RUN,
    ArmClients,
    AzureConnection,
    StaticTokenCredential,
)
from activities.azure.blackhole import AzureZoneBlackhole, from_restore_tag, gameday_nsg_name, restore_tag
from activities.azure.evacuation import AzureRegionEvacuation
from activities.azure.sweep import UNKNOWN_RUN, AzureSweeper

__all__ = ["MAX_TAG_VALUE", "TAG_MANAGED", "TAG_RESTORE", "TAG_RUN", "UNKNOWN_RUN", "ArmClients",
           "AzureConnection", "AzureRegionEvacuation", "AzureSweeper", "AzureZoneBlackhole",
           "StaticTokenCredential", "from_restore_tag", "gameday_nsg_name", "restore_tag"]
