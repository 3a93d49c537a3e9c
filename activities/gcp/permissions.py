"""`gcp.check_permissions`: may the worker's live credentials make the plan's mutating calls?

One Resource Manager `projects.testIamPermissions` per project, made as the project's calls are
(its `GAMEDAY_GCP_IMPERSONATE` service account, when named), asking for the IAM permissions
of every call the project's steps' apply and restore would make (`MUTATING`); each one not in the
answer is missing. Compute Engine has no dry run, but every permission gameday needs is granted
on the project (or inherited by it), so this one question covers them all. Read-only.
"""

from __future__ import annotations

import functools
from typing import Any

from google.auth.credentials import AnonymousCredentials, Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from activities.base import beat
from activities.gcp.api import reached_as
from activities.gcp.impersonation import project_credentials
from gameday.errors import CloudError
from gameday.permissions import Permission, PermissionReport, gathered
from gameday.plan import PermissionCheck

_FIREWALLS = ("compute.firewalls.create", "compute.firewalls.delete",
              "compute.networks.updatePolicy")
_GROUP_HOLD = ("compute.instanceGroupManagers.update", "compute.healthChecks.useReadOnly")
_BACKENDS = ("compute.backendServices.update", "compute.instanceGroups.use",
             "compute.networkEndpointGroups.use")

MUTATING: dict[str, tuple[str, ...]] = {
    "blackhole_zone": ("compute.instances.setTags", *_FIREWALLS),
    "blackhole_region": ("compute.instances.setTags", *_FIREWALLS),
    "evacuate_region": _BACKENDS,
    "evacuate_zone": _BACKENDS,
    "stop_instances": ("compute.instances.setLabels", "compute.instances.stop",
                       "compute.instances.start", *_GROUP_HOLD),
    "deny_capacity": ("compute.autoscalers.update", *_GROUP_HOLD),
    "failover_database": ("cloudsql.instances.update", "cloudsql.instances.failover"),
    "partition_regions": _FIREWALLS,
}
"""The IAM permissions of the calls each action's apply and restore make (its sweep makes the
same): the one list `gameday plan` checks."""


@functools.lru_cache(maxsize=64)
def _service(endpoint: str | None, service_account: str | None = None) -> Any:
    """Resource Manager v1 (google-api-python-client, its bundled discovery document): the lab's
    endpoint anonymously, else Google as `service_account` (impersonated) or, without one, with
    Application Default Credentials."""
    if endpoint:
        credentials: Credentials = AnonymousCredentials()
        return build("cloudresourcemanager", "v1", static_discovery=True, credentials=credentials,
                     client_options={"api_endpoint": endpoint})
    return build("cloudresourcemanager", "v1", static_discovery=True,
                 credentials=project_credentials(service_account))


class GcpPermissions:
    """The live check; the connection argument is the GCP faults' (unused: another API)."""

    def __init__(self, connection: Any = None):
        self.connection = connection

    def check(self, request: PermissionCheck) -> PermissionReport:
        wanted: dict[str, set[str]] = {}
        for step in request.steps:
            wanted.setdefault(step.scope.account, set()).update(MUTATING.get(step.action, ()))
        missing: list[Permission] = []
        for project, permissions in sorted(wanted.items()):
            held = self._held(project, sorted(permissions))
            missing += [Permission(cloud="gcp", account=project, permission=p)
                        for p in permissions - held]
        return PermissionReport(missing=gathered(missing))

    def _held(self, project: str, permissions: list[str]) -> set[str]:
        beat()
        # the permissions asked about are those of whoever the project's calls are made as
        service = _service(*reached_as(project))
        try:
            answer = service.projects().testIamPermissions(
                resource=project, body={"permissions": permissions}).execute(num_retries=0)
        except HttpError as exc:
            status = int(getattr(exc.resp, "status", 0) or 0)
            raise CloudError(f"GCP refused testIamPermissions on project {project}: {exc}",
                             retryable=status == 429 or status >= 500) from exc
        return set(answer.get("permissions", []))
