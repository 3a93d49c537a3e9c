"""GCP faults with google-cloud-compute: one module per fault (`blackhole`, `evacuation`), the
sweeper (`sweep`), and the plumbing they share (`api`). The registry (`activities.registry`)
makes them activities."""

from activities.gcp.api import Compute, compute_clients
from activities.gcp.blackhole import GcpZoneBlackhole, blackhole_tag, deny_rule_name
from activities.gcp.evacuation import GcpRegionEvacuation
from activities.gcp.sweep import UNKNOWN_RUN, GcpSweeper

__all__ = ["UNKNOWN_RUN", "Compute", "GcpRegionEvacuation", "GcpSweeper", "GcpZoneBlackhole",
           "blackhole_tag", "compute_clients", "deny_rule_name"]
