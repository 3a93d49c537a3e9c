"""The cloud permissions the activities need: the one list in code, and the proof that it is exact.

`infra/terraform/` grants exactly these sets (tests/test_terraform.py checks it), and
`required_permissions` derives, by reading the source of every module of each cloud's package
(`activities/<cloud>/*.py`, never running it), the SDK operations they call and the permissions
each needs. So a call added without its permission, or a permission kept after its last call
went, fails a test instead of a GameDay. Test tooling: the product never imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ACTIVITIES = Path(__file__).resolve().parents[2] / "activities"

CLOUD_MODULES: dict[str, tuple[str, ...]] = {
    cloud: tuple(sorted(f"{cloud}/{path.name}" for path in (ACTIVITIES / cloud).glob("*.py")))
    for cloud in ("aws", "gcp", "azure")
}
"""The modules whose SDK calls each cloud's permission set must cover (activities/<name>): every
module of the cloud's package, so a new fault module is covered without being listed."""

# --- AWS: IAM actions -------------------------------------------------------------------------

AWS_ACTIONS: frozenset[str] = frozenset({
    # every resolve and apply_evacuate_region: the credentials' account must be the target's
    "sts:GetCallerIdentity",
    # a target in another account: its target role (granted to the worker only, on
    # var.target_role_arns; infra/terraform/aws/target-account makes those roles)
    "sts:AssumeRole",
    # resolve_blackhole_zone / _region: the zones and matching subnets
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeSubnets",
    # resolve, prepare, restore_blackhole_zone: each subnet's ACL, gameday's ACLs by tag
    "ec2:DescribeNetworkAcls",
    # apply_blackhole_zone: the deny-all ACL, created with its tags (CreateTags at creation)
    "ec2:CreateNetworkAcl",
    "ec2:CreateTags",
    "ec2:CreateNetworkAclEntry",
    # apply_ and restore_blackhole_zone: move each subnet onto gameday's ACL and back
    "ec2:ReplaceNetworkAclAssociation",
    # restore_blackhole_zone: delete gameday's ACLs
    "ec2:DeleteNetworkAcl",
    # resolve, prepare, apply and restore_evacuate_region: the weighted records
    "route53:ListHostedZones",
    "route53:ListResourceRecordSets",
    "route53:ChangeResourceRecordSets",
    # sweep: the regions to look in, when GAMEDAY_SWEEP_AWS_REGIONS names none
    "ec2:DescribeRegions",
    # stop_instances (and its sweep): the zone's instances, their groups and the groups' processes
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceAttribute",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeAutoScalingGroups",
    # apply_ and restore_stop_instances: gameday's marks (ec2:CreateTags is above), the stop and
    # the start, the groups' holds and their HealthCheck/ReplaceUnhealthy processes
    "ec2:DeleteTags",
    "ec2:StopInstances",
    "ec2:StartInstances",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
    # failover_database (and its sweep): the named clusters, their instances' zones
    "rds:DescribeDBClusters",
    "rds:DescribeDBInstances",
    # apply_ and restore_failover_database: gameday's marks on the cluster, the failover and back
    "rds:AddTagsToResource",
    "rds:RemoveTagsFromResource",
    "rds:FailoverDBCluster",
    # apply_ and restore_deny_capacity (and its sweep): each named group's subnets narrowed and
    # put back (its tags, AZRebalance and the subnets' zones use the calls above)
    "autoscaling:UpdateAutoScalingGroup",
    # evacuate_zone (and its sweep): ARC zonal shift of the named load balancers (zone ids with
    # DescribeAvailabilityZones above)
    "arc-zonal-shift:GetManagedResource",
    "arc-zonal-shift:ListZonalShifts",
    "arc-zonal-shift:StartZonalShift",
    "arc-zonal-shift:CancelZonalShift",
    # partition_regions (and its sweep): route tables, what leads to the peer regions (peerings,
    # transit gateway peerings, the peer regions' VPC ranges), the copies with their routes (tags
    # at creation: ec2:CreateTags above), the subnets moved onto them and back, the copies deleted
    "ec2:DescribeRouteTables",
    "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeTransitGatewayPeeringAttachments",
    "ec2:DescribeVpcs",
    "ec2:CreateRouteTable",
    "ec2:CreateRoute",
    "ec2:AssociateRouteTable",
    "ec2:ReplaceRouteTableAssociation",
    "ec2:DisassociateRouteTable",
    "ec2:DeleteRouteTable",
})

# --- GCP: IAM permissions of a custom role -----------------------------------------------------

GCP_PERMISSIONS: frozenset[str] = frozenset({
    # resolve_blackhole_zone / _region: the zone exists or the region's zones, matching instances
    "compute.zones.get",
    "compute.zones.list",
    "compute.instances.list",
    # apply_ and restore_blackhole_zone: read-modify-write of each instance's network tags
    "compute.instances.get",
    "compute.instances.setTags",
    # apply_ and restore_blackhole_zone: the deny rules (a rule change is a network policy change)
    "compute.firewalls.create",
    "compute.firewalls.delete",
    "compute.networks.updatePolicy",
    # every *_evacuate_region: read the backend services, patch the backends' capacityScaler;
    # a patch re-submits every backend, and Compute checks `use` on each backend's group
    "compute.backendServices.get",
    "compute.backendServices.update",
    "compute.instanceGroups.use",
    "compute.networkEndpointGroups.use",
    # sweep: gameday's deny rules and tags left by runs that are over (instances.list above)
    "compute.firewalls.list",
    "compute.firewalls.get",
    # apply_ and restore_stop_instances, sweep: mark (labels) and power each instance off and on
    "compute.instances.setLabels",
    "compute.instances.stop",
    "compute.instances.start",
    # every mutation: poll its operation until DONE
    "compute.zoneOperations.get",
    "compute.globalOperations.get",
    # *_deny_capacity: each regional MIG's autohealing (restore names its health check again)
    # and its autoscaler's mode, read and patched; their regional operations polled;
    # *_stop_instances (activities/gcp/groups_hold.py): the defaultActionOnFailure of each
    # regional MIG whose members it stops, read and patched, the same calls
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.update",
    "compute.healthChecks.useReadOnly",
    "compute.autoscalers.get",
    "compute.autoscalers.update",
    "compute.regionOperations.get",
    # *_failover_database and sweep: Cloud SQL instances read (operations.get needs
    # cloudsql.instances.get too), labelled (a patch is an update) and failed over
    "cloudsql.instances.get",
    "cloudsql.instances.list",
    "cloudsql.instances.update",
    "cloudsql.instances.failover",
    # resolve_partition_regions: the network's subnets and their ranges, in every region (the
    # deny rules are the firewall calls above)
    "compute.subnetworks.list",
})

# --- Azure: actions of a custom role definition ------------------------------------------------

AZURE_ACTIONS: frozenset[str] = frozenset({
    # resolve_blackhole_zone: the VMs of the resource group; sweep: every NIC and NSG listed
    # (the reads below) in the scopes the role is assigned on; *_stop_instances: each VM with its
    # instance view, and sweep every VM
    "Microsoft.Compute/virtualMachines/read",
    # apply and restore_stop_instances, sweep: gameday's tags on a VM (PATCH), its power-off
    # without shutdown, its start
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/powerOff/action",
    "Microsoft.Compute/virtualMachines/start/action",
    # resolve, prepare, apply and restore_blackhole_zone: each VM's NICs, read-modify-write
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/networkInterfaces/write",
    # a NIC write passes ARM's linked-access check on everything the NIC refers to: the NSG it
    # gets (gameday's, or its own on restore) and the subnet, public IP, load balancer pools and
    # rules, application security groups and gateway pools it keeps
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/publicIPAddresses/join/action",
    "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
    "Microsoft.Network/loadBalancers/inboundNatRules/join/action",
    "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action",
    "Microsoft.Network/applicationGateways/backendAddressPools/join/action",
    # prepare, apply and restore_blackhole_zone: gameday's deny-all NSG
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/networkSecurityGroups/write",
    "Microsoft.Network/networkSecurityGroups/delete",
    # every *_evacuate_region: the profiles and their endpoints, of any endpoint type
    "Microsoft.Network/trafficManagerProfiles/read",
    "Microsoft.Network/trafficManagerProfiles/azureEndpoints/read",
    "Microsoft.Network/trafficManagerProfiles/azureEndpoints/write",
    "Microsoft.Network/trafficManagerProfiles/externalEndpoints/read",
    "Microsoft.Network/trafficManagerProfiles/externalEndpoints/write",
    "Microsoft.Network/trafficManagerProfiles/nestedEndpoints/read",
    "Microsoft.Network/trafficManagerProfiles/nestedEndpoints/write",
    # *_failover_database, sweep: each flexible server (and every one of the subscription), its
    # gameday tags (PATCH), the restart with planned failover
    "Microsoft.DBforPostgreSQL/flexibleServers/read",
    "Microsoft.DBforPostgreSQL/flexibleServers/write",
    "Microsoft.DBforPostgreSQL/flexibleServers/restart/action",
    # *_deny_capacity, sweep: each named scale set (and every one of the subscription), its
    # gameday tags and automatic repairs policy (PATCH); the autoscale settings of its resource
    # group (and of the subscription), their tags and `enabled` (PATCH)
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/write",
    "Microsoft.Insights/autoscalesettings/read",
    "Microsoft.Insights/autoscalesettings/write",
    # *_partition_regions: the region's VNets with their peerings, the peer VNets' locations;
    # gameday's two deny rules on each subnet NSG, and its marks on the NSG (tags PATCH)
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/networkSecurityGroups/securityRules/read",
    "Microsoft.Network/networkSecurityGroups/securityRules/write",
    "Microsoft.Network/networkSecurityGroups/securityRules/delete",
    # *_evacuate_zone, sweep: each named load balancer (and every one of the subscription),
    # written back whole with its members' admin states and gameday's tags; the write passes
    # ARM's linked-access check on what the load balancer refers to: its frontends' subnets and
    # public IPs, and the VNets of IP-based pool members
    "Microsoft.Network/loadBalancers/read",
    "Microsoft.Network/loadBalancers/write",
    "Microsoft.Network/virtualNetworks/joinLoadBalancer/action",
    # every zone step (activities/azure/zones.py): the subscription's physical zones, by List
    # Locations; refused where the role is assigned on resource groups only (zones then lease by
    # their logical name)
    "Microsoft.Resources/subscriptions/locations/read",
})

GRANTED: dict[str, frozenset[str]] = {
    "aws": AWS_ACTIONS,
    "gcp": GCP_PERMISSIONS,
    "azure": AZURE_ACTIONS,
}

# --- SDK operations -> permissions ------------------------------------------------------------

AWS_EXTRA: dict[tuple[str, str], frozenset[str]] = {
    # tags given at creation are authorised as ec2:CreateTags (with ec2:CreateAction)
    ("ec2:CreateNetworkAcl", "TagSpecifications"): frozenset({"ec2:CreateTags"}),
    ("ec2:CreateRouteTable", "TagSpecifications"): frozenset({"ec2:CreateTags"}),
}
"""Permissions an AWS call needs beyond its own action, when made with the given keyword."""

_ENDPOINT_TYPES = ("azureEndpoints", "externalEndpoints", "nestedEndpoints")

GCP_CALLS: dict[str, frozenset[str]] = {
    "ZonesClient.get": frozenset({"compute.zones.get"}),
    "ZonesClient.list": frozenset({"compute.zones.list"}),
    "InstancesClient.list": frozenset({"compute.instances.list"}),
    "InstancesClient.aggregated_list": frozenset({"compute.instances.list"}),
    "InstancesClient.get": frozenset({"compute.instances.get"}),
    "InstancesClient.set_tags_unary": frozenset({"compute.instances.setTags"}),
    "InstancesClient.set_labels_unary": frozenset({"compute.instances.setLabels"}),
    "InstancesClient.stop_unary": frozenset({"compute.instances.stop"}),
    "InstancesClient.start_unary": frozenset({"compute.instances.start"}),
    "FirewallsClient.get": frozenset({"compute.firewalls.get"}),
    "SubnetworksClient.aggregated_list": frozenset({"compute.subnetworks.list"}),
    "FirewallsClient.list": frozenset({"compute.firewalls.list"}),
    "FirewallsClient.insert_unary": frozenset({"compute.firewalls.create",
                                               "compute.networks.updatePolicy"}),
    "FirewallsClient.delete_unary": frozenset({"compute.firewalls.delete",
                                               "compute.networks.updatePolicy"}),
    "BackendServicesClient.get": frozenset({"compute.backendServices.get"}),
    "BackendServicesClient.list": frozenset({"compute.backendServices.list"}),
    "BackendServicesClient.patch_unary": frozenset({"compute.backendServices.update",
                                                    "compute.instanceGroups.use",
                                                    "compute.networkEndpointGroups.use"}),
    "ZoneOperationsClient.get": frozenset({"compute.zoneOperations.get"}),
    "ZoneOperationsClient.wait": frozenset({"compute.zoneOperations.get"}),
    "GlobalOperationsClient.get": frozenset({"compute.globalOperations.get"}),
    "GlobalOperationsClient.wait": frozenset({"compute.globalOperations.get"}),
    "RegionInstanceGroupManagersClient.get": frozenset({"compute.instanceGroupManagers.get"}),
    "RegionInstanceGroupManagersClient.patch_unary": frozenset({
        "compute.instanceGroupManagers.update", "compute.healthChecks.useReadOnly"}),
    "RegionAutoscalersClient.get": frozenset({"compute.autoscalers.get"}),
    "RegionAutoscalersClient.patch_unary": frozenset({"compute.autoscalers.update"}),
    "RegionOperationsClient.wait": frozenset({"compute.regionOperations.get"}),
    "sqladmin.instances.get": frozenset({"cloudsql.instances.get"}),
    "sqladmin.instances.list": frozenset({"cloudsql.instances.list"}),
    "sqladmin.instances.patch": frozenset({"cloudsql.instances.update"}),
    "sqladmin.instances.failover": frozenset({"cloudsql.instances.failover"}),
    "sqladmin.operations.get": frozenset({"cloudsql.instances.get"}),
}
"""google-cloud-compute `<client class>.<method>` -> the IAM permissions it needs."""

_NIC_JOINS = frozenset({
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/publicIPAddresses/join/action",
    "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
    "Microsoft.Network/loadBalancers/inboundNatRules/join/action",
    "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action",
    "Microsoft.Network/applicationGateways/backendAddressPools/join/action",
})

AZURE_CALLS: dict[str, frozenset[str]] = {
    "SubscriptionClient.subscriptions.list_locations": frozenset({
        "Microsoft.Resources/subscriptions/locations/read"}),
    "ComputeManagementClient.virtual_machines.list": frozenset({
        "Microsoft.Compute/virtualMachines/read"}),
    "ComputeManagementClient.virtual_machines.get": frozenset({
        "Microsoft.Compute/virtualMachines/read"}),
    "ComputeManagementClient.virtual_machines.list_all": frozenset({
        "Microsoft.Compute/virtualMachines/read"}),
    # a PATCH of tags only: no NIC, disk or other linked resource is referenced by the body
    "ComputeManagementClient.virtual_machines.begin_update": frozenset({
        "Microsoft.Compute/virtualMachines/write"}),
    "ComputeManagementClient.virtual_machines.begin_power_off": frozenset({
        "Microsoft.Compute/virtualMachines/powerOff/action"}),
    "ComputeManagementClient.virtual_machines.begin_start": frozenset({
        "Microsoft.Compute/virtualMachines/start/action"}),
    "NetworkManagementClient.network_interfaces.get": frozenset({
        "Microsoft.Network/networkInterfaces/read"}),
    "NetworkManagementClient.network_interfaces.list": frozenset({
        "Microsoft.Network/networkInterfaces/read"}),
    "NetworkManagementClient.network_interfaces.list_all": frozenset({
        "Microsoft.Network/networkInterfaces/read"}),
    "NetworkManagementClient.network_interfaces.begin_create_or_update": frozenset({
        "Microsoft.Network/networkInterfaces/write"}) | _NIC_JOINS,
    "NetworkManagementClient.network_security_groups.get": frozenset({
        "Microsoft.Network/networkSecurityGroups/read"}),
    "NetworkManagementClient.network_security_groups.list": frozenset({
        "Microsoft.Network/networkSecurityGroups/read"}),
    "NetworkManagementClient.network_security_groups.list_all": frozenset({
        "Microsoft.Network/networkSecurityGroups/read"}),
    "NetworkManagementClient.network_security_groups.begin_create_or_update": frozenset({
        "Microsoft.Network/networkSecurityGroups/write"}),
    "NetworkManagementClient.network_security_groups.begin_delete": frozenset({
        "Microsoft.Network/networkSecurityGroups/delete"}),
    # partition_regions (and its sweep): VNets read, the NSG's marks, its rules one by one
    "NetworkManagementClient.virtual_networks.list": frozenset({
        "Microsoft.Network/virtualNetworks/read"}),
    "NetworkManagementClient.virtual_networks.get": frozenset({
        "Microsoft.Network/virtualNetworks/read"}),
    "NetworkManagementClient.network_security_groups.update_tags": frozenset({
        "Microsoft.Network/networkSecurityGroups/write"}),
    "NetworkManagementClient.security_rules.get": frozenset({
        "Microsoft.Network/networkSecurityGroups/securityRules/read"}),
    "NetworkManagementClient.security_rules.begin_create_or_update": frozenset({
        "Microsoft.Network/networkSecurityGroups/securityRules/write"}),
    "NetworkManagementClient.security_rules.begin_delete": frozenset({
        "Microsoft.Network/networkSecurityGroups/securityRules/delete"}),
    # evacuate_zone (and its sweep): load balancers read and written back whole
    "NetworkManagementClient.load_balancers.get": frozenset({
        "Microsoft.Network/loadBalancers/read"}),
    "NetworkManagementClient.load_balancers.list_all": frozenset({
        "Microsoft.Network/loadBalancers/read"}),
    "NetworkManagementClient.load_balancers.begin_create_or_update": frozenset({
        "Microsoft.Network/loadBalancers/write",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/publicIPAddresses/join/action",
        "Microsoft.Network/virtualNetworks/joinLoadBalancer/action"}),
    "TrafficManagerManagementClient.profiles.get": frozenset({
        "Microsoft.Network/trafficManagerProfiles/read"}),
    # the endpoint type is a runtime value: any of the three
    "TrafficManagerManagementClient.endpoints.get": frozenset(
        f"Microsoft.Network/trafficManagerProfiles/{kind}/read" for kind in _ENDPOINT_TYPES),
    "TrafficManagerManagementClient.endpoints.update": frozenset(
        f"Microsoft.Network/trafficManagerProfiles/{kind}/write" for kind in _ENDPOINT_TYPES),
    # failover_database (and its sweep): the flexible servers, their tags, the restart
    "PostgreSQLManagementClient.servers.get": frozenset({
        "Microsoft.DBforPostgreSQL/flexibleServers/read"}),
    "PostgreSQLManagementClient.servers.list_by_subscription": frozenset({
        "Microsoft.DBforPostgreSQL/flexibleServers/read"}),
    "PostgreSQLManagementClient.servers.begin_update": frozenset({
        "Microsoft.DBforPostgreSQL/flexibleServers/write"}),
    "PostgreSQLManagementClient.servers.begin_restart": frozenset({
        "Microsoft.DBforPostgreSQL/flexibleServers/restart/action"}),
    # deny_capacity (and its sweep): scale sets and autoscale settings, read and patched; a PATCH
    # of tags and automaticRepairsPolicy refers to no other resource
    "ComputeManagementClient.virtual_machine_scale_sets.get": frozenset({
        "Microsoft.Compute/virtualMachineScaleSets/read"}),
    "ComputeManagementClient.virtual_machine_scale_sets.list_all": frozenset({
        "Microsoft.Compute/virtualMachineScaleSets/read"}),
    "ComputeManagementClient.virtual_machine_scale_sets.begin_update": frozenset({
        "Microsoft.Compute/virtualMachineScaleSets/write"}),
    "MonitorManagementClient.autoscale_settings.get": frozenset({
        "Microsoft.Insights/autoscalesettings/read"}),
    "MonitorManagementClient.autoscale_settings.list_by_resource_group": frozenset({
        "Microsoft.Insights/autoscalesettings/read"}),
    "MonitorManagementClient.autoscale_settings.list_by_subscription": frozenset({
        "Microsoft.Insights/autoscalesettings/read"}),
    "MonitorManagementClient.autoscale_settings.update": frozenset({
        "Microsoft.Insights/autoscalesettings/write"}),
}
"""azure-mgmt `<client class>.<operation group>.<method>` -> the role actions it needs."""


# --- static analysis of the activity modules ------------------------------------------------


@dataclass(frozen=True, order=True)
class SdkCall:
    """One SDK operation named in an activity module's source, where, and with which keywords."""

    module: str
    line: int
    operation: str
    """aws: `ec2:CreateNetworkAcl`; gcp: `InstancesClient.set_tags_unary`;
    azure: `NetworkManagementClient.network_interfaces.get`."""
    keywords: frozenset[str] = field(default=frozenset(), compare=False)

    def __str__(self) -> str:
        return f"activities/{self.module}:{self.line}: {self.operation}"


def parse(source: str, filename: str) -> ast.Module:
    """`ast.parse`, asked again when CPython 3.11 reports a spurious "AST constructor recursion
    depth mismatch" (cpython#106905: threads running beside the parse, as the suite's workers do)."""
    for attempt in range(3):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


class UnmappedCall(LookupError):
    """An SDK operation that the tables above do not know: add its permissions."""


def sdk_calls(cloud: str, sources: dict[str, str] | None = None) -> list[SdkCall]:
    """The SDK operations named in the cloud's activity modules (or in `sources`, module name ->
    source text), found by reading the source."""
    if sources is None:
        sources = {name: (ACTIVITIES / name).read_text() for name in CLOUD_MODULES[cloud]}
    trees = {module: parse(source, module) for module, source in sources.items()}
    found: set[SdkCall] = set()
    if cloud == "aws":
        for module, tree in trees.items():
            found.update(_aws_calls(module, tree))
        return sorted(found)
    # the clients dataclass (`Compute`, `ArmClients`) is defined in one module, used in the others
    holder = "Compute" if cloud == "gcp" else "ArmClients"
    fields = {name: kind for tree in trees.values()
              for name, kind in _client_fields(tree, holder).items()}
    finder = _gcp_calls if cloud == "gcp" else _azure_calls
    for module, tree in trees.items():
        found.update(finder(module, tree, fields))
        if cloud == "gcp":
            found.update(_sqladmin_calls(module, tree))
        if cloud == "azure":
            found.update(_azure_client_calls(module, tree))
    return sorted(found)


def permissions_of(cloud: str, call: SdkCall) -> frozenset[str]:
    """The permissions one SDK call needs; UnmappedCall when no table knows the operation."""
    if cloud == "aws":
        needed = {call.operation}
        for (operation, keyword), extra in AWS_EXTRA.items():
            if operation == call.operation and keyword in call.keywords:
                needed |= extra
        return frozenset(needed)
    table = GCP_CALLS if cloud == "gcp" else AZURE_CALLS
    if call.operation not in table:
        raise UnmappedCall(f"{call}: no permission is known for this {cloud} operation; add it "
                           f"to tests/support/permissions.py")
    return table[call.operation]


def required_permissions(cloud: str,
                         calls: Iterable[SdkCall] | None = None) -> dict[SdkCall, frozenset[str]]:
    """Each SDK call of the cloud's activity modules and the permissions it needs."""
    return {call: permissions_of(cloud, call)
            for call in (sdk_calls(cloud) if calls is None else calls)}


# aws: boto3 clients, known by the service they were made for


@cache
def _boto_operations(service: str) -> dict[str, str]:
    """snake_case client method -> IAM action (`ec2:PascalCase`), from botocore's own model."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    prefix = model.signing_name or model.endpoint_prefix
    return {xform_name(name): f"{prefix}:{name}" for name in model.operation_names}


@cache
def _boto_services() -> frozenset[str]:
    import botocore.session

    return frozenset(botocore.session.get_session().get_available_services())


def _aws_calls(module: str, tree: ast.Module) -> Iterator[SdkCall]:
    services = _boto_services()
    # a client is a parameter named as its service (`ec2`, `route53`), or a name bound from
    # `self.client("sts", ...)`, `boto3.client("sts")`, `self.ec2(region)`
    clients = {node.arg: node.arg for node in ast.walk(tree)
               if isinstance(node, ast.arg) and node.arg in services}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            service = _client_service(node.value, services)
            if service:
                clients[node.targets[0].id] = service
    # the keywords a method is called with: `client.method(K=...)`, `call("X", client.method, K=...)`
    keywords: dict[int, frozenset[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            given = frozenset(k.arg for k in node.keywords if k.arg)
            for part in (node.func, *node.args):
                keywords[id(part)] = keywords.get(id(part), frozenset()) | given
    for node in ast.walk(tree):
        # client.method, called or handed on
        if isinstance(node, ast.Attribute):
            service = _receiver_service(node.value, clients, services)
            action = _boto_operations(service).get(node.attr) if service else None
            if action:
                yield SdkCall(module, node.lineno, action, keywords.get(id(node), frozenset()))
        # api.pages(client, "operation", ...) and client.get_paginator("operation")
        if isinstance(node, ast.Call):
            name = _callee_name(node.func)
            given = frozenset(k.arg for k in node.keywords if k.arg)
            if name == "pages" and len(node.args) >= 2:
                client, operation = node.args[0], node.args[1]
            elif name == "get_paginator" and isinstance(node.func, ast.Attribute) and node.args:
                client, operation = node.func.value, node.args[0]
            else:
                continue
            service = _receiver_service(client, clients, services)
            if service and isinstance(operation, ast.Constant) and isinstance(operation.value, str):
                action = _boto_operations(service).get(operation.value)
                if action is None:
                    raise UnmappedCall(f"activities/{module}:{node.lineno}: {operation.value} is "
                                       f"not an operation of {service}")
                yield SdkCall(module, node.lineno, action, given)


def _receiver_service(node: ast.expr, clients: dict[str, str],
                      services: frozenset[str]) -> str | None:
    """The service of a client expression: a known client name, or a factory call."""
    if isinstance(node, ast.Name):
        return clients.get(node.id)
    return _client_service(node, services)


def _client_service(value: ast.expr, services: frozenset[str]) -> str | None:
    """`self.client("sts", ...)`, `boto3.client("sts")`, `self.ec2(region)` -> the service."""
    if not isinstance(value, ast.Call):
        return None
    name = _callee_name(value.func)
    if name == "client" and value.args and isinstance(value.args[0], ast.Constant) \
            and value.args[0].value in services:
        return str(value.args[0].value)
    if name in services:
        return name
    return None


# gcp and azure: a dataclass of clients, its fields annotated with the client classes


def _client_fields(tree: ast.Module, holder: str) -> dict[str, str]:
    """Field name -> client class name of the dataclass `holder` (e.g. `instances` ->
    `InstancesClient`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == holder:
            return {item.target.id: _last_name(item.annotation)
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    return {}


def _holders(tree: ast.Module, holder: str) -> set[str]:
    """Names that hold a `holder`: arguments annotated with it, and names bound from a call of a
    clients factory (`compute = self._clients()`, `with conn.clients(s) as arm`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None \
                and _last_name(node.annotation) == holder:
            names.add(node.arg)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and (_callee_name(node.value.func) or "").endswith("clients"):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.withitem) and isinstance(node.context_expr, ast.Call) \
                and (_callee_name(node.context_expr.func) or "").endswith("clients") \
                and isinstance(node.optional_vars, ast.Name):
            names.add(node.optional_vars.id)
    return names


def _gcp_calls(module: str, tree: ast.Module, fields: dict[str, str]) -> Iterator[SdkCall]:
    holders = _holders(tree, "Compute")
    for node in ast.walk(tree):
        # compute.<client>.<method>
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr in fields and _is_holder(node.value.value, holders):
            yield SdkCall(module, node.lineno, f"{fields[node.value.attr]}.{node.attr}")


def _sqladmin_calls(module: str, tree: ast.Module) -> Iterator[SdkCall]:
    """gcp: google-api-python-client's Cloud SQL Admin calls, `<service>.<collection>().<method>`
    -> `sqladmin.<collection>.<method>`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) and not node.value.args \
                and node.value.func.attr in ("instances", "operations") \
                and isinstance(node.value.func.value, ast.Name):
            yield SdkCall(module, node.lineno, f"sqladmin.{node.value.func.attr}.{node.attr}")


def _azure_calls(module: str, tree: ast.Module, fields: dict[str, str]) -> Iterator[SdkCall]:
    holders = _holders(tree, "ArmClients")
    for node in ast.walk(tree):
        # arm.<client>.<operation group>.<method>
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Attribute) \
                and node.value.value.attr in fields \
                and _is_holder(node.value.value.value, holders):
            client = fields[node.value.value.attr]
            yield SdkCall(module, node.lineno, f"{client}.{node.value.attr}.{node.attr}")


def _azure_client_calls(module: str, tree: ast.Module) -> Iterator[SdkCall]:
    """azure: calls on one client held alone, outside `ArmClients`: a name annotated with its
    class (`client: PostgreSQLManagementClient = ...`, or an argument) -> `client.<group>.<method>`."""
    held: dict[str, str] = {}
    for node in ast.walk(tree):
        annotation = node.annotation if isinstance(node, ast.arg | ast.AnnAssign) else None
        name = node.arg if isinstance(node, ast.arg) else (
            node.target.id if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            else None)
        if annotation is not None and name and _last_name(annotation).endswith(
                ("ManagementClient", "SubscriptionClient")):
            held[name] = _last_name(annotation)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id in held:
            yield SdkCall(module, node.lineno,
                          f"{held[node.value.value.id]}.{node.value.attr}.{node.attr}")


# ast helpers


def _is_holder(node: ast.expr, holders: set[str]) -> bool:
    """A name that holds the clients, or a call of a clients factory (`self._clients()`)."""
    if isinstance(node, ast.Name):
        return node.id in holders
    return isinstance(node, ast.Call) and (_callee_name(node.func) or "").endswith("clients")


def _callee_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _last_name(annotation: ast.expr) -> str:
    """`compute_v1.InstancesClient` -> `InstancesClient`; a string annotation is parsed."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.rsplit(".", 1)[-1]
    if isinstance(annotation, ast.Attribute):
        return annotation.attr
    if isinstance(annotation, ast.Name):
        return annotation.id
    return ""
