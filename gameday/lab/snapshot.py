"""A flat view of everything a GameDay can change in the lab, read through the real APIs.

`lab_view(env)` maps readable keys (`aws subnet shop-web-us-east-1a-0 acl`) to values, so the demo
can show what a fault changed and prove that the restore put back exactly what was there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "shop"
PROJECT = "gameday-lab"


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _name(tags: list[dict[str, str]], default: str) -> str:
    return next((t["Value"] for t in tags if t["Key"] == "Name"), default)


def _destination(route: dict[str, Any]) -> str:
    return str(route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
               or route.get("DestinationPrefixListId") or "?")


def aws_view() -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    view: dict[str, str] = {}
    subnets = {s["SubnetId"]: _name(s.get("Tags", []), "") for s in ec2.describe_subnets()["Subnets"]}
    for acl in ec2.describe_network_acls()["NetworkAcls"]:
        label = _name(acl.get("Tags", []), "default" if acl.get("IsDefault") else acl["NetworkAclId"])
        for association in acl["Associations"]:
            name = subnets.get(association["SubnetId"])
            if name:  # moto's default VPC is not part of the lab
                view[f"aws subnet {name} acl"] = label
    # partition_regions: each lab subnet's route table (explicit, or `main` implicitly) and
    # every named route table's routes
    for table in ec2.describe_route_tables()["RouteTables"]:
        tags = {t["Key"]: t["Value"] for t in table.get("Tags", [])}
        label = tags.get("Name", table["RouteTableId"]) + (" (gameday)" if "gameday:run" in tags
                                                           else "")
        for association in table.get("Associations", []):
            name = subnets.get(association.get("SubnetId", ""))
            if name:
                view[f"aws subnet {name} route table"] = label
        if "Name" in tags:
            view[f"aws route-table {label} routes"] = ",".join(sorted(
                _destination(r) + ">" + next((str(v) for k, v in r.items()
                                              if k.endswith("Id") and v), "?")
                for r in table.get("Routes", [])))
    for reservation in ec2.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            marked = " (gameday)" if "gameday:run" in tags else ""
            name = tags.get("Name", instance["InstanceId"])
            view[f"aws instance {name} state"] = instance["State"]["Name"] + marked
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]:
        view[f"aws group {group['AutoScalingGroupName']} suspended"] = ",".join(
            sorted(p["ProcessName"] for p in group.get("SuspendedProcesses", []))) or "none"
        # deny_capacity: the group's subnets in order, and gameday's marks on it
        view[f"aws group {group['AutoScalingGroupName']} subnets"] = ",".join(
            subnets.get(s, s) for s in (group.get("VPCZoneIdentifier") or "").split(",") if s)
        view[f"aws group {group['AutoScalingGroupName']} gameday tags"] = ",".join(
            sorted(t["Key"] for t in group.get("Tags", []) if t["Key"].startswith("gameday:"))) \
            or "none"
    rds = boto3.client("rds", region_name="us-east-1")
    for cluster in rds.describe_db_clusters()["DBClusters"]:
        tags = {t["Key"]: t["Value"] for t in cluster.get("TagList", [])}
        writer = next((m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]
                       if m["IsClusterWriter"]), "none")
        marked = " (gameday)" if "gameday:run" in tags else ""
        view[f"aws db-cluster {cluster['DBClusterIdentifier']} writer"] = writer + marked
    route53 = boto3.client("route53", region_name="us-east-1")
    for zone in route53.list_hosted_zones()["HostedZones"]:
        for record in route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]:
            if "Weight" in record:
                view[f"aws dns {record['Name']} {record['SetIdentifier']} weight"] = str(record["Weight"])
    return view


def gcp_view(endpoint: str) -> dict[str, str]:
    base = f"{endpoint.rstrip('/')}/compute/v1/projects/{PROJECT}"
    view: dict[str, str] = {}
    with httpx.Client(timeout=30, trust_env=False) as http:
        instances = http.get(f"{base}/aggregated/instances").json().get("items", {})
        for scope in instances.values():
            for instance in scope.get("instances", []):
                view[f"gcp instance {instance['name']} tags"] = ",".join(
                    sorted(instance.get("tags", {}).get("items", [])))
                view[f"gcp instance {instance['name']} status"] = instance["status"]
                view[f"gcp instance {instance['name']} labels"] = ",".join(
                    f"{k}={v}" for k, v in sorted(instance.get("labels", {}).items()))
        for rule in http.get(f"{base}/global/firewalls").json().get("items", []):
            view[f"gcp firewall {rule['name']}"] = f"priority {rule['priority']} {rule['direction']}"
            if rule.get("description", "").startswith("gameday fault"):  # partition_regions' cut
                view[f"gcp firewall {rule['name']} ranges"] = (
                    f"{','.join(rule.get('sourceRanges', []))} -> "
                    f"{','.join(rule.get('destinationRanges', []))}")
        for service in http.get(f"{base}/global/backendServices").json().get("items", []):
            for backend in service.get("backends", []):
                group = backend["group"].rsplit("/", 1)[-1]
                view[f"gcp backend {service['name']}/{group} capacityScaler"] = str(
                    backend.get("capacityScaler", 1.0))
        for scope in http.get(f"{base}/aggregated/instanceGroupManagers").json().get(
                "items", {}).values():  # managed groups: autohealing, then the autoscaler's mode
            for mig in scope.get("instanceGroupManagers", []):
                view[f"gcp mig {mig['name']} autohealing"] = ",".join(
                    f"{p.get('healthCheck', '').rsplit('/', 1)[-1]}@{p.get('initialDelaySec')}s"
                    for p in mig.get("autoHealingPolicies", [])) or "none"
        for scope in http.get(f"{base}/aggregated/autoscalers").json().get("items", {}).values():
            for scaler in scope.get("autoscalers", []):
                view[f"gcp autoscaler {scaler['name']} mode"] = scaler["autoscalingPolicy"]["mode"]
        sql = f"{endpoint.rstrip('/')}/v1/projects/{PROJECT}/instances"
        for db in http.get(sql).json().get("items", []):  # Cloud SQL: primary zone, state, labels
            view[f"gcp sql {db['name']} primary"] = f"{db.get('gceZone')} {db.get('state')}"
            view[f"gcp sql {db['name']} labels"] = ",".join(
                f"{k}={v}" for k, v in sorted(db.get("settings", {}).get("userLabels", {}).items()))
    return view


def azure_view(endpoint: str, ca_bundle: str) -> dict[str, str]:
    from gameday.lab.azure.clients import connect

    clients = connect(endpoint, ca_bundle, SUBSCRIPTION)
    view: dict[str, str] = {}
    try:
        for nic in clients.network.network_interfaces.list(RESOURCE_GROUP):
            nsg = nic.network_security_group.id.rsplit("/", 1)[-1] if nic.network_security_group else "none"
            view[f"azure nic {nic.name} nsg"] = nsg
        for nsg in clients.network.network_security_groups.list(RESOURCE_GROUP):
            view[f"azure nsg {nsg.name}"] = f"{len(nsg.security_rules or [])} rules"
        for vm in clients.compute.virtual_machines.list(RESOURCE_GROUP, expand="instanceView"):
            statuses = (vm.instance_view.statuses or []) if vm.instance_view else []
            power = next((s.code.split("/", 1)[1] for s in statuses
                          if (s.code or "").startswith("PowerState/")), "unknown")
            marked = sorted(k for k in vm.tags or {} if k.startswith("gameday-"))
            view[f"azure vm {vm.name} power"] = power + (f" ({', '.join(marked)})" if marked else "")
        for vmss in clients.compute.virtual_machine_scale_sets.list(RESOURCE_GROUP):  # repairs
            policy = vmss.automatic_repairs_policy
            marked = sorted(k for k in vmss.tags or {} if k.startswith("gameday-"))
            view[f"azure vmss {vmss.name} repairs"] = (
                ("on" if policy and policy.enabled else "off")
                + (f" {policy.grace_period} {getattr(policy.repair_action, 'value', '')}"
                   if policy else "")
                + (f" ({', '.join(marked)})" if marked else ""))
        from gameday.lab.azure.autoscale import monitor_client

        monitor = monitor_client(endpoint, ca_bundle, SUBSCRIPTION)
        try:  # autoscale settings: enabled, and gameday's marks
            for setting in monitor.autoscale_settings.list_by_resource_group(RESOURCE_GROUP):
                marked = sorted(k for k in setting.tags or {} if k.startswith("gameday-"))
                view[f"azure autoscale {setting.name} enabled"] = str(bool(setting.enabled)).lower() + (
                    f" ({', '.join(marked)})" if marked else "")
        finally:
            monitor.close()
        for lb in clients.network.load_balancers.list(RESOURCE_GROUP):  # evacuate_zone
            marked = sorted(k for k in lb.tags or {} if k in ("gameday-evacuate-run",
                                                                "gameday-evacuate-step"))
            for pool in lb.backend_address_pools or []:
                for member in pool.load_balancer_backend_addresses or []:
                    view[f"azure lb {lb.name}/{pool.name}/{member.name} admin state"] = (
                        str(getattr(member.admin_state, "value", member.admin_state) or "unset")
                        + (f" ({', '.join(marked)})" if marked else ""))
        for profile in clients.traffic.profiles.list_by_resource_group(RESOURCE_GROUP):
            for endpoint_ in profile.endpoints or []:
                view[f"azure traffic {profile.name}/{endpoint_.name} status"] = str(
                    endpoint_.endpoint_status)
        from gameday.lab.azure.postgres import server_snapshot  # failover_database: the primary

        for name, server in server_snapshot(endpoint, ca_bundle, SUBSCRIPTION, RESOURCE_GROUP).items():
            marked = sorted(k for k in server["tags"] if k.startswith("gameday-"))
            view[f"azure postgres {name} primary"] = (
                f"zone {server['zone']} {server['state']}"
                + (f" ({', '.join(marked)})" if marked else ""))
    finally:
        clients.close()
    return view


def lab_view(env: dict[str, str]) -> dict[str, str]:
    with _environment(env):
        view = aws_view()
    view.update(gcp_view(env["GAMEDAY_GCP_ENDPOINT"]))
    view.update(azure_view(env["GAMEDAY_AZURE_ENDPOINT"], env["GAMEDAY_AZURE_CA_BUNDLE"]))
    return view


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, before, after) for every key whose value differs, appeared or disappeared."""
    keys = sorted(set(before) | set(after))
    return [(k, before.get(k, "-"), after.get(k, "-")) for k in keys if before.get(k) != after.get(k)]
