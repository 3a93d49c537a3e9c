"""GCP zonal evacuation (contract §10, `evacuate_zone`): traffic moved off one zone.

Before: each backend of the named global backend services whose group lies in the zone has
`capacityScaler` C (1.0 when unset).
After apply: each has `capacityScaler` 0, so the load balancer sends the zone nothing while its
instances keep running; a drain that would leave a service no capacity outside the zone is
refused before any change, and again at apply.
After restore: each has C again (the region evacuation's drain, with the zone as its place).
Nothing marks a backend (backend services carry no labels): the checkpoint alone restores it.
"""

from __future__ import annotations

from activities.gcp.evacuation import GcpRegionEvacuation, group_zone
from gameday.plan import Scope
from gameday.targets import GcpZoneTraffic


class GcpZonalEvacuation(GcpRegionEvacuation):
    """The backends of the zone drained; everything else as the region evacuation does it."""

    action = "evacuate_zone"
    Target = GcpZoneTraffic

    @staticmethod
    def place(scope: Scope) -> str:
        """Where the drained backends are: the zone."""
        return scope.zone or scope.region

    def inside(self, group: str, scope: Scope) -> bool:
        return group_zone(group) == scope.zone
