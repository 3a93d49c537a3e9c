"""`ComputeEmulator`: the Compute Engine v1 REST API subset gameday and gcloud use, over HTTP.

Point the real client at it with
`client_options=ClientOptions(api_endpoint=emulator.url)` and `credentials=AnonymousCredentials()`.
Any project id is accepted; zones and regions come from `gameday.lab.gcp.catalogue`. Self links use
`https://www.googleapis.com/compute/v1/` (like the real API); references in request bodies may
be full URLs with any prefix, `global/networks/N`-style partial paths or bare names. gcloud
works against it with the configuration of `gameday.lab.gcp.gcloud` (its batch endpoint is served by
`gameday.lab.gcp.batch`); docs/lab.md lists what is served and the test that proves it.

Known deviations from Compute Engine:
- a mutation takes effect when its operation is created; the operation then reads PENDING →
  RUNNING → DONE (see `gameday.lab.gcp.operations`); `wait` returns DONE at once;
- a bad reference (an instance's or firewall's network, a group member, a backend's group)
  and deleting a network or group still in use fail the operation, not the HTTP call;
- setTags, setLabels and backend-service patch/update answer 412 for a missing fingerprint too;
- auto-mode networks have one read-only subnetwork per region; custom subnetworks are inserted
  and deleted (`gameday.lab.gcp.subnetworks`), with no patch, expandIpCidrRange or IPv6;
  instances' addresses come from the region's auto-mode range in insertion order and keep
  counting past the /20;
- a power operation (stop, start, suspend, resume) shows its instance STOPPING, STAGING or
  SUSPENDING for `power_seconds` (30 s by default), then lands whether or not anyone polls it;
  by default reading its operation DONE (`get` twice, or `wait`) hurries it, as for every
  operation; with `polls_hurry = False` it keeps Compute Engine's timing (RUNNING until done,
  `wait` answered when DONE or after a few seconds); a start goes straight to STAGING (no
  PROVISIONING), and reset is instant;
- managed instance groups and autoscalers are regional only (zonal lists are served empty); a
  MIG's members are the instances whose `created-by` names it, a stopped one is started again
  after `repair_seconds` while the MIG repairs; templates and health checks are unchecked links
  (`gameday.lab.gcp.groups`);
- region quotas are fixed, generous limits with usage counted from the project's resources;
- only zonal unmanaged instance groups; backend services accept only zonal groups;
- `orderBy` is ignored (lists keep insertion order); see `gameday.lab.gcp.filters` for `filter`;
- `requestId` must be a UUID and makes every mutation idempotent per project, forever.
"""

from __future__ import annotations

from gameday.lab.gcp.balancing import BalancingApi
from gameday.lab.gcp.batch import BatchApi
from gameday.lab.gcp.groups import GroupsApi
from gameday.lab.gcp.iam import IamApi
from gameday.lab.gcp.locations import LocationsApi
from gameday.lab.gcp.sqladmin import SqlAdminApi


class ComputeEmulator(BatchApi, BalancingApi, GroupsApi, SqlAdminApi, IamApi, LocationsApi):
    """Networks, subnetworks, firewalls, instances, instance groups, backend services, zones,
    regions and operations, the batch endpoint, with fault injection and the `/_emulator/`
    admin API of `gameday.lab.emulator`."""

    def register(self) -> None:
        self.register_locations()
        self.register_networking()
        self.register_instances()
        self.register_balancing()
        self.register_groups()
        self.register_sqladmin()
        self.register_iam()
