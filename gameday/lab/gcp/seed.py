"""Build the GCP lab topology through the real google-cloud-compute client.

`seed_gcp(endpoint)` fills an empty project on an emulator (or anything speaking Compute Engine
REST) with: networks `shop-vpc` and `batch-vpc`; instances in us-central1-a/b/c in both networks
and in us-east1-b, most labelled `gameday=enabled` (`batch-us-central1-a-1` stopped before any
run: TERMINATED, as an instance someone shut down is); unmanaged instance groups
`web-us-central1-a`, `web-us-central1-b` and `web-us-east1-b`; a global backend service `web`
over those groups (capacityScaler 1.0); two ordinary firewall rules; and the regional managed
instance groups of `gameday.lab.gcp.groups_seed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp.groups_seed import seed_managed_groups
from gameday.lab.gcp.sqladmin import seed_sql

WEB_ZONES = ("us-central1-a", "us-central1-b", "us-east1-b")
CENTRAL_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c")


@dataclass(frozen=True)
class VM:
    name: str
    zone: str
    network: str
    labels: dict[str, str]
    tags: tuple[str, ...]
    running: bool = True


def lab_instances() -> list[VM]:
    """The seeded instances: per central zone two web, one api, one batch; some unlabelled; the
    batch instance of us-central1-a stopped."""
    vms: list[VM] = []
    for zone in CENTRAL_ZONES:
        vms += [
            VM(f"web-{zone}-1", zone, "shop-vpc", {"gameday": "enabled", "tier": "web"},
               ("http-server", "web")),
            VM(f"web-{zone}-2", zone, "shop-vpc", {"gameday": "enabled", "tier": "web"},
               ("http-server", "web")),
            VM(f"api-{zone}-1", zone, "shop-vpc", {"gameday": "enabled", "tier": "api"},
               ("api",)),
            VM(f"batch-{zone}-1", zone, "batch-vpc", {"gameday": "enabled"}, ("batch",),
               running=zone != "us-central1-a"),
            VM(f"legacy-{zone}-1", zone, "shop-vpc", {"team": "ops"}, ("ssh",)),
        ]
    vms.append(VM("bastion-us-central1-a", "us-central1-a", "batch-vpc", {}, ("ssh",)))
    vms += [VM(f"web-us-east1-b-{n}", "us-east1-b", "shop-vpc",
               {"gameday": "enabled", "tier": "web"}, ("http-server", "web")) for n in (1, 2)]
    return vms


class GcpClients:
    """The Compute Engine clients the lab's seeding (and the benchmark's topology) use."""

    def __init__(self, endpoint: str):
        options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=endpoint),
                                   "credentials": AnonymousCredentials()}
        self.networks = compute_v1.NetworksClient(**options)
        self.firewalls = compute_v1.FirewallsClient(**options)
        self.instances = compute_v1.InstancesClient(**options)
        self.groups = compute_v1.InstanceGroupsClient(**options)
        self.services = compute_v1.BackendServicesClient(**options)
        self.global_ops = compute_v1.GlobalOperationsClient(**options)
        self.zone_ops = compute_v1.ZoneOperationsClient(**options)

    def wait(self, project: str, op: compute_v1.Operation) -> None:
        """Wait for `op` through the emulator's own operations endpoints until it is DONE (a
        `wait` may answer before); raise if it failed."""
        done = op
        while True:
            if op.zone:
                done = self.zone_ops.wait(project=project, zone=op.zone.rsplit("/", 1)[1],
                                          operation=op.name)
            else:
                done = self.global_ops.wait(project=project, operation=op.name)
            if done.status == compute_v1.Operation.Status.DONE:
                break
        if done.error.errors:
            raise RuntimeError(f"{done.operation_type} {done.target_link} failed: "
                               f"{done.error.errors[0].message}")


def seed_gcp(endpoint: str, project: str = "gameday-lab") -> dict[str, Any]:
    """Create the lab topology in `project` (which must be empty) and summarise it."""
    clients = GcpClients(endpoint)
    for name in ("shop-vpc", "batch-vpc"):
        clients.wait(project, clients.networks.insert_unary(
            project=project, network_resource=compute_v1.Network(
                name=name, auto_create_subnetworks=True)))
    firewalls = [
        compute_v1.Firewall(name="shop-allow-http", network="global/networks/shop-vpc",
                            direction="INGRESS", priority=1000, target_tags=["http-server"],
                            source_ranges=["0.0.0.0/0"],
                            allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80", "443"])]),
        compute_v1.Firewall(name="batch-allow-internal", network="global/networks/batch-vpc",
                            direction="INGRESS", priority=65534, source_ranges=["10.128.0.0/9"],
                            allowed=[compute_v1.Allowed(I_p_protocol="all")]),
    ]
    for firewall in firewalls:
        clients.wait(project, clients.firewalls.insert_unary(project=project,
                                                             firewall_resource=firewall))
    vms = lab_instances()
    for vm in vms:
        clients.wait(project, clients.instances.insert_unary(
            project=project, zone=vm.zone, instance_resource=compute_v1.Instance(
                name=vm.name, machine_type=f"zones/{vm.zone}/machineTypes/e2-small",
                labels=vm.labels, tags=compute_v1.Tags(items=list(vm.tags)),
                network_interfaces=[compute_v1.NetworkInterface(
                    network=f"global/networks/{vm.network}")])))
    for vm in vms:
        if not vm.running:
            clients.wait(project, clients.instances.stop_unary(project=project, zone=vm.zone,
                                                               instance=vm.name))
    groups: dict[str, str] = {}
    for zone in WEB_ZONES:
        name = f"web-{zone}"
        clients.wait(project, clients.groups.insert_unary(
            project=project, zone=zone, instance_group_resource=compute_v1.InstanceGroup(
                name=name, named_ports=[compute_v1.NamedPort(name="http", port=80)])))
        members = [compute_v1.InstanceReference(instance=f"zones/{zone}/instances/{vm.name}")
                   for vm in vms if vm.zone == zone and vm.name.startswith("web-")]
        clients.wait(project, clients.groups.add_instances_unary(
            project=project, zone=zone, instance_group=name,
            instance_groups_add_instances_request_resource=compute_v1
            .InstanceGroupsAddInstancesRequest(instances=members)))
        groups[name] = clients.groups.get(project=project, zone=zone,
                                          instance_group=name).self_link
    clients.wait(project, clients.services.insert_unary(
        project=project, backend_service_resource=compute_v1.BackendService(
            name="web", protocol="HTTP", port_name="http", load_balancing_scheme="EXTERNAL",
            backends=[compute_v1.Backend(group=link, balancing_mode="UTILIZATION",
                                         capacity_scaler=1.0) for link in groups.values()])))
    zones: dict[str, int] = {}
    for vm in vms:
        zones[vm.zone] = zones.get(vm.zone, 0) + 1
    return {
        "project": project,
        "networks": ["shop-vpc", "batch-vpc"],
        "instances": len(vms),
        "gameday_instances": sum(1 for vm in vms if vm.labels.get("gameday") == "enabled"),
        "instances_per_zone": zones,
        "stopped_instances": [vm.name for vm in vms if not vm.running],
        "instance_groups": sorted(groups),
        "backend_services": ["web"],
        "firewalls": [firewall.name for firewall in firewalls],
        "managed_instance_groups": seed_managed_groups(endpoint, project),
        "sql_instances": seed_sql(endpoint, project),
    }
