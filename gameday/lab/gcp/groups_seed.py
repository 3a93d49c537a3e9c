"""The lab's regional managed instance groups, built through the real google-cloud-compute client.

`seed_managed_groups(endpoint, project)` adds, in us-central1: MIG `web-mig` (target size 3,
autohealing on health check `web-http` after 120 s) with autoscaler `web-mig-autoscaler` (mode ON,
2 to 6 replicas), and MIG `api-mig` (target size 2, autohealing on `api-tcp` after 300 s) with
autoscaler `api-mig-autoscaler` (mode ONLY_SCALE_OUT, 2 to 4 replicas). Both repair failed members
(`defaultActionOnFailure` REPAIR). `web-mig` has two members (`MIG_MEMBERS`), running in
us-central1-a and us-central1-b in `shop-vpc` with the label `gameday=managed` (not `enabled`:
the zone faults of the scenario suite keep their seeded targets); `api-mig` has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp.instances import project_number

REGION = "us-central1"


@dataclass(frozen=True)
class SeededGroup:
    name: str
    size: int
    health_check: str
    initial_delay: int
    mode: str
    replicas: tuple[int, int]


MIG_MEMBERS = (("web-mig-h7x2", "us-central1-a"), ("web-mig-q4m9", "us-central1-b"))
"""(name, zone) of each member of `web-mig`."""
MEMBER_LABELS = {"gameday": "managed", "pool": "web-mig"}

MANAGED_GROUPS = (
    SeededGroup("web-mig", 3, "web-http", 120, "ON", (2, 6)),
    SeededGroup("api-mig", 2, "api-tcp", 300, "ONLY_SCALE_OUT", (2, 4)),
)


class GroupClients:
    """The regional MIG, autoscaler and operations clients, for one endpoint."""

    def __init__(self, endpoint: str):
        options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=endpoint),
                                   "credentials": AnonymousCredentials()}
        self.managers = compute_v1.RegionInstanceGroupManagersClient(**options)
        self.autoscalers = compute_v1.RegionAutoscalersClient(**options)
        self.operations = compute_v1.RegionOperationsClient(**options)
        self.instances = compute_v1.InstancesClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)

    def wait(self, project: str, region: str, op: compute_v1.Operation) -> None:
        while op.status != compute_v1.Operation.Status.DONE:
            op = self.operations.wait(project=project, region=region, operation=op.name)
        if op.error.errors:
            raise RuntimeError(f"{op.operation_type} {op.target_link} failed: "
                               f"{op.error.errors[0].message}")


def seed_managed_groups(endpoint: str, project: str) -> list[str]:
    """Create `MANAGED_GROUPS` with their autoscalers in `project`; their names."""
    clients = GroupClients(endpoint)
    for group in MANAGED_GROUPS:
        clients.wait(project, REGION, clients.managers.insert_unary(
            project=project, region=REGION,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(
                name=group.name, base_instance_name=group.name, target_size=group.size,
                instance_template=f"global/instanceTemplates/{group.name}-template",
                auto_healing_policies=[compute_v1.InstanceGroupManagerAutoHealingPolicy(
                    health_check=f"global/healthChecks/{group.health_check}",
                    initial_delay_sec=group.initial_delay)])))
        link = clients.managers.get(project=project, region=REGION,
                                    instance_group_manager=group.name).self_link
        clients.wait(project, REGION, clients.autoscalers.insert_unary(
            project=project, region=REGION, autoscaler_resource=compute_v1.Autoscaler(
                name=f"{group.name}-autoscaler", target=link,
                autoscaling_policy=compute_v1.AutoscalingPolicy(
                    mode=group.mode, min_num_replicas=group.replicas[0],
                    max_num_replicas=group.replicas[1],
                    cpu_utilization=compute_v1.AutoscalingPolicyCpuUtilization(
                        utilization_target=0.6)))))
    created_by = (f"projects/{project_number(project)}/regions/{REGION}/"
                  "instanceGroupManagers/web-mig")
    for name, zone in MIG_MEMBERS:
        op = clients.instances.insert_unary(
            project=project, zone=zone, instance_resource=compute_v1.Instance(
                name=name, machine_type=f"zones/{zone}/machineTypes/e2-small",
                labels=MEMBER_LABELS, tags=compute_v1.Tags(items=["http-server"]),
                metadata=compute_v1.Metadata(items=[compute_v1.Items(
                    key="created-by", value=created_by)]),
                network_interfaces=[compute_v1.NetworkInterface(
                    network="global/networks/shop-vpc")]))
        while op.status != compute_v1.Operation.Status.DONE:
            op = clients.zone_operations.wait(project=project, zone=zone, operation=op.name)
        if op.error.errors:
            raise RuntimeError(f"inserting {name} failed: {op.error.errors[0].message}")
    return [group.name for group in MANAGED_GROUPS]
