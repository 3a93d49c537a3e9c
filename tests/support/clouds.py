"""One shape per cloud for the scenario suite: seed, name a zone fault, snapshot, inject faults.

The scenario suite (tests/test_scenarios.py) drives every cloud the same way through a `CloudLab`;
each cloud's lab is a small class here, registered in `CLOUD_LABS`.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from gameday.lab.faults import FaultRule
from tests.support.gameday import ACCOUNT
from tests.support.servers import Servers


class CloudLab(Protocol):
    cloud: str
    apply_call: str
    """Fault-rule match for the per-resource mutation that apply makes."""
    restore_call: str
    """Fault-rule match for the per-resource mutation that restore makes."""

    def seed(self) -> None: ...
    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]: ...
    def target_count(self) -> int: ...
    def snapshot(self) -> Any: ...
    def blackholed(self) -> bool:
        """Every target of `zone_step` is under the fault (cut off, stopped...), and nothing else
        is."""
    def faults(self, *rules: FaultRule, seed: int = 0) -> None: ...
    def calls(self, match: str) -> list[dict[str, Any]]: ...
    def add_target(self) -> str:
        """Create, through the cloud's API, one more resource that `zone_step` targets."""


class LabBase:
    """What every lab does alike: inject the cloud endpoint's fault rules, read the calls it
    answered."""

    cloud: str

    def __init__(self, servers: Servers):
        self.servers = servers

    def faults(self, *rules: FaultRule, seed: int = 0) -> None:
        getattr(self.servers, f"{self.cloud}_faults")(*rules, seed=seed)

    def calls(self, match: str) -> list[dict[str, Any]]:
        return [c for c in getattr(self.servers, f"{self.cloud}_calls")() if match in c["key"]]


class AwsLab(LabBase):
    """The AWS lab seeded as `make lab` seeds it; its fault is the zone blackhole (the other AWS
    faults' labs start from the same seed)."""

    cloud = "aws"
    apply_call = "ReplaceNetworkAclAssociation"
    restore_call = "ReplaceNetworkAclAssociation"

    def __init__(self, servers: Servers):
        super().__init__(servers)
        self.topology: dict[str, Any] = {}

    def seed(self) -> None:
        from gameday.lab.aws import seed_aws

        self.servers.reset_aws()
        self.topology = seed_aws()

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "blackhole_zone",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                       "zone": "us-east-1a", "tags": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> list[str]:
        subnets = self.topology["subnets"]["us-east-1a"]
        return subnets[:-2] + subnets[-1:]  # all but the untagged ops subnet

    def target_count(self) -> int:
        return len(self._targets())

    def snapshot(self) -> Any:
        from gameday.lab.aws import acl_snapshot

        return acl_snapshot()

    def blackholed(self) -> bool:
        snapshot = self.snapshot()
        acls, associations = snapshot["acls"], snapshot["associations"]
        cut = {s for s, acl in associations.items() if acls[acl]["tags"].get("gameday:run")}
        return cut == set(self._targets())

    def add_target(self) -> str:
        import boto3

        ec2 = boto3.client("ec2", region_name="us-east-1")
        subnet = ec2.create_subnet(
            VpcId=self.topology["vpcs"]["shop"], CidrBlock="10.0.201.0/24",
            AvailabilityZone="us-east-1a", TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                {"Key": "gameday", "Value": "enabled"}, {"Key": "Name", "Value": "late"}]}])
        return str(subnet["Subnet"]["SubnetId"])


class GcpLab(LabBase):
    cloud = "gcp"
    apply_call = "/setTags"
    restore_call = "/setTags"
    project = "gameday-lab"
    zone = "us-central1-a"

    def seed(self) -> None:
        from gameday.lab.gcp.seed import seed_gcp

        self.servers.reset_gcp()
        seed_gcp(self.servers.gcp.url, self.project)

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "blackhole_zone",
            "target": {"cloud": "gcp", "project": self.project, "zone": self.zone,
                       "labels": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> dict[str, str]:
        """Target instance → its network name."""
        from gameday.lab.gcp.seed import lab_instances

        return {vm.name: vm.network for vm in lab_instances()
                if vm.zone == self.zone and vm.labels.get("gameday") == "enabled"}

    def target_count(self) -> int:
        return len(self._targets())

    def _get(self, path: str) -> dict[str, Any]:
        url = f"{self.servers.gcp.url}/compute/v1/projects/{self.project}/{path}"
        response = httpx.get(url, params={"maxResults": 500})
        response.raise_for_status()
        return response.json()

    def snapshot(self) -> Any:
        """Every instance's tags and labels, and every firewall rule, as the API shows them."""
        instances = {}
        for scope in self._get("aggregated/instances")["items"].values():
            for instance in scope.get("instances", []):
                instances[instance["name"]] = {"tags": instance["tags"].get("items", []),
                                               "labels": instance.get("labels", {})}
        firewalls = {rule["name"]: rule for rule in self._get("global/firewalls")["items"]}
        return {"instances": instances, "firewalls": firewalls}

    def blackholed(self) -> bool:
        snapshot = self.snapshot()
        tagged: dict[str, set[str]] = {}
        for name, instance in snapshot["instances"].items():
            for tag in instance["tags"]:
                if tag.startswith("gameday-"):
                    tagged.setdefault(tag, set()).add(name)
        if len(tagged) != 1:
            return False
        [(tag, names)] = tagged.items()
        targets = self._targets()
        if names != set(targets):
            return False
        denies = {(rule["network"].rsplit("/", 1)[-1], rule["direction"])
                  for rule in snapshot["firewalls"].values()
                  if rule.get("targetTags") == [tag] and rule["priority"] == 0
                  and rule.get("denied") == [{"IPProtocol": "all"}]}
        wanted = {(network, direction) for network in targets.values()
                  for direction in ("INGRESS", "EGRESS")}
        return denies == wanted

    def add_target(self) -> str:
        base = f"{self.servers.gcp.url}/compute/v1/projects/{self.project}"
        network = f"https://www.googleapis.com/compute/v1/projects/{self.project}/global/networks/shop-vpc"
        response = httpx.post(f"{base}/zones/{self.zone}/instances", json={
            "name": "late-web", "labels": {"gameday": "enabled", "tier": "web"},
            "machineType": f"zones/{self.zone}/machineTypes/e2-small",
            "networkInterfaces": [{"network": network}], "tags": {"items": ["web"]}})
        response.raise_for_status()
        return "late-web"


class AzureLab(LabBase):
    cloud = "azure"
    subscription = "00000000-0000-0000-0000-000000000000"
    resource_group = "shop"
    zone = "1"
    apply_call = (f"PUT /subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
                  "Microsoft.Network/networkInterfaces/")
    restore_call = apply_call

    def _connect(self) -> Any:
        from gameday.lab.azure.clients import connect

        assert self.servers.azure is not None
        return connect(self.servers.azure.url, self.servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                       self.subscription)

    def seed(self) -> None:
        from gameday.lab.azure.seed import seed_azure

        assert self.servers.azure is not None
        self.servers.reset_azure()
        seed_azure(self.servers.azure.url, self.servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                   self.subscription, self.resource_group)

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "blackhole_zone",
            "target": {"cloud": "azure", "subscription": self.subscription,
                       "resource_group": self.resource_group, "region": "eastus",
                       "zone": self.zone, "tags": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> set[str]:
        from gameday.lab.azure.seed import VMS

        return {f"{vm}-nic{i}" for vm, zone, enabled, nics in VMS
                if zone == self.zone and enabled for i in range(nics)}

    def target_count(self) -> int:
        return len(self._targets())

    def snapshot(self) -> Any:
        """Every NIC's NSG association and tags, and every NSG with its tags and rules."""
        clients = self._connect()
        try:
            nics = {
                nic.name: {"nsg": nic.network_security_group.id.lower()
                           if nic.network_security_group else None,
                           "tags": dict(nic.tags or {})}
                for nic in clients.network.network_interfaces.list_all()
            }
            nsgs = {
                nsg.name: {
                    "tags": dict(nsg.tags or {}),
                    "flush": bool(nsg.flush_connection),
                    "rules": sorted(
                        (r.name, str(r.direction), str(r.access), r.priority, str(r.protocol),
                         r.source_address_prefix, r.source_port_range,
                         r.destination_address_prefix, r.destination_port_range)
                        for r in nsg.security_rules or []),
                }
                for nsg in clients.network.network_security_groups.list_all()
            }
        finally:
            clients.close()
        return {"nics": nics, "nsgs": nsgs}

    def blackholed(self) -> bool:
        snapshot = self.snapshot()
        gameday = {name for name, nsg in snapshot["nsgs"].items()
                   if nsg["tags"].get("gameday-managed-by") == "gameday"}
        if not gameday or not all(snapshot["nsgs"][n]["flush"] for n in gameday):
            return False
        cut = {name for name, nic in snapshot["nics"].items()
               if nic["nsg"] and nic["nsg"].rsplit("/", 1)[-1] in gameday}
        return cut == self._targets()

    def add_target(self) -> str:
        clients = self._connect()
        try:
            subnet = clients.network.network_interfaces.get(
                "shop", "web-1-nic0").ip_configurations[0].subnet.id
            nic = clients.network.network_interfaces.begin_create_or_update("shop", "late-1-nic0", {
                "location": "eastus", "properties": {"ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]}}).result()
            clients.compute.virtual_machines.begin_create_or_update("shop", "late-1", {
                "location": "eastus", "zones": [self.zone], "tags": {"gameday": "enabled"},
                "properties": {"hardwareProfile": {"vmSize": "Standard_B2s"},
                               "networkProfile": {"networkInterfaces": [{"id": nic.id}]}}}).result()
            return str(nic.id)
        finally:
            clients.close()


CLOUD_LABS: dict[str, type] = {"aws": AwsLab, "gcp": GcpLab, "azure": AzureLab}
"""The zone blackhole of each cloud: the labs every scenario runs against."""

ACTION_LABS: dict[str, str] = {
    "aws-stop_instances": "tests.support.power_aws:AwsPowerLab",
    "gcp-stop_instances": "tests.support.power_gcp:GcpPowerLab",
    "gcp-deny_capacity": "tests.support.capacity_gcp:GcpCapacityLab",
    "azure-stop_instances": "tests.support.power_azure:AzurePowerLab",
    "azure-deny_capacity": "tests.support.capacity_azure:AzureCapacityLab",
    "aws-failover_database": "tests.support.failover_aws:AwsFailoverLab",
    "gcp-failover_database": "tests.support.failover_gcp:GcpFailoverLab",
    "azure-failover_database": "tests.support.failover_azure:AzureFailoverLab",
    "aws-deny_capacity": "tests.support.capacity_aws:AwsCapacityLab",
    "aws-evacuate_zone": "tests.support.zonal_shift_aws:AwsZonalShiftLab",
    "gcp-evacuate_zone": "tests.support.zonal_evacuation_gcp:GcpZonalEvacuationLab",
    "gcp-partition_regions": "tests.support.partition_gcp:GcpPartitionLab",
    "azure-partition_regions": "tests.support.partition_azure:AzurePartitionLab",
    "aws-partition_regions": "tests.support.partition_aws:AwsPartitionLab",
    "azure-evacuate_zone": "tests.support.zonal_evacuation_azure:AzureZonalEvacuationLab",
}
"""Each further (cloud, action) as a `CloudLab` whose `zone_step` names that action: the scenarios
that hold for every fault (exact restore after success, abort, cancel, a refused apply, throttled
restore, guardrails, SIGKILL) run against these too. Loaded by name (`action_lab`)."""


def action_lab(name: str) -> type:
    import importlib

    module, cls = ACTION_LABS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def traffic_snapshot(servers: Servers) -> dict[str, Any]:
    """What an `evacuate_region` changes, as each cloud's API shows it: every Route 53 record set,
    every backend service of the lab's GCP project, every endpoint of the lab's Traffic Manager
    profiles (the zone labs' `snapshot()` covers what a blackhole changes)."""
    from gameday.lab.aws.seed import route53_snapshot

    url = f"{servers.gcp.url}/compute/v1/projects/{GcpLab.project}/global/backendServices"
    response = httpx.get(url, params={"maxResults": 500})
    response.raise_for_status()
    services = {s["name"]: sorted((b["group"], b.get("capacityScaler"), b.get("balancingMode"))
                                  for b in s.get("backends", []))
                for s in response.json().get("items", [])}
    clients = AzureLab(servers)._connect()
    try:
        profiles = {
            profile.name: {e.name: (str(e.endpoint_status), e.weight, e.priority, e.endpoint_location)
                           for e in profile.endpoints or []}
            for profile in clients.traffic.profiles.list_by_resource_group(AzureLab.resource_group)
        }
    finally:
        clients.close()
    return {"aws": route53_snapshot(), "gcp": services, "azure": profiles}
