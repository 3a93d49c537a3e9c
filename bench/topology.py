"""Build a benchmark topology of N target resources over the three clouds of a running lab.

N is split into thirds: AWS subnets in us-east-1a (one VPC per `SUBNETS_PER_VPC` subnets, created
without tags: the GameDay targets them by `vpc_ids`, which spares moto's slow tag-filter scans),
GCP instances in us-central1-a (network `bench-vpc`, label `gameday=enabled`) and Azure VMs with
one NIC each in eastus zone 1 (resource group `bench`, tag `gameday=enabled`). Everything goes
through the real SDKs (boto3, google-cloud-compute, azure-mgmt-*), a few calls at a time, with a
progress print and the time each cloud took.

The SDKs read the lab's endpoints from the environment: call `os.environ.update(lab_env)` first
(`python -m bench.topology --n 300` does it for the lab in `GAMEDAY_LAB_DIR`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from google.cloud import compute_v1

from gameday.lab.azure.clients import connect as azure_connect
from gameday.lab.azure.seed import create_resource_group
from gameday.lab.gcp.seed import GcpClients

ACCOUNT = "123456789012"
REGION = "us-east-1"
AWS_ZONE = "us-east-1a"
SUBNETS_PER_VPC = 200
GCP_PROJECT = "gameday-lab"
GCP_ZONE = "us-central1-a"
GCP_NETWORK = "bench-vpc"
AZURE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
AZURE_GROUP = "bench"
AZURE_REGION = "eastus"
AZURE_ZONE = "1"
THREADS = 8
"""Calls in flight while building: the servers are threaded; more only adds contention."""


@dataclass
class Topology:
    n: int
    aws_vpcs: list[str] = field(default_factory=list)
    aws_subnets: list[str] = field(default_factory=list)
    gcp_instances: list[str] = field(default_factory=list)
    azure_vms: list[str] = field(default_factory=list)
    azure_nics: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split(n: int) -> tuple[int, int, int]:
    """N as (aws, gcp, azure), the remainder going to the first clouds."""
    base, extra = divmod(n, 3)
    return base + (extra > 0), base + (extra > 1), base


def _progress(what: str, done: int, total: int, started: float) -> None:
    if done == total or done % max(1, total // 10) == 0:
        print(f"  {what}: {done}/{total} ({time.monotonic() - started:.1f}s)", flush=True)


def _run_all(what: str, jobs: Iterable[Callable[[], Any]], total: int) -> list[Any]:
    """Run the jobs THREADS at a time, in order of results, printing progress."""
    started = time.monotonic()
    results: list[Any] = []
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bench-build") as pool:
        for done, result in enumerate(pool.map(lambda job: job(), jobs), start=1):
            results.append(result)
            _progress(what, done, total, started)
    return results


# --- AWS --------------------------------------------------------------------------------------


def build_aws(count: int, topology: Topology) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpcs = (count + SUBNETS_PER_VPC - 1) // SUBNETS_PER_VPC
    for index in range(vpcs):
        vpc = ec2.create_vpc(CidrBlock=f"10.{100 + index}.0.0/16")["Vpc"]["VpcId"]
        topology.aws_vpcs.append(vpc)
    ec2.create_tags(Resources=topology.aws_vpcs, Tags=[{"Key": "Name", "Value": "bench"}])

    def subnet(i: int) -> Callable[[], str]:
        vpc, slot = topology.aws_vpcs[i // SUBNETS_PER_VPC], i % SUBNETS_PER_VPC
        return lambda: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{100 + i // SUBNETS_PER_VPC}."
                                         f"{slot}.0/24", AvailabilityZone=AWS_ZONE)["Subnet"]["SubnetId"]

    topology.aws_subnets = _run_all("aws subnets", (subnet(i) for i in range(count)), count)


# --- GCP --------------------------------------------------------------------------------------


def build_gcp(count: int, topology: Topology, endpoint: str) -> None:
    clients = GcpClients(endpoint)
    network = compute_v1.Network(name=GCP_NETWORK, auto_create_subnetworks=True)
    clients.wait(GCP_PROJECT, clients.networks.insert_unary(project=GCP_PROJECT,
                                                            network_resource=network))

    def instance(i: int) -> Callable[[], str]:
        name = f"bench-{i:05d}"

        def make() -> str:
            clients.wait(GCP_PROJECT, clients.instances.insert_unary(
                project=GCP_PROJECT, zone=GCP_ZONE, instance_resource=compute_v1.Instance(
                    name=name, machine_type=f"zones/{GCP_ZONE}/machineTypes/e2-small",
                    labels={"gameday": "enabled"}, tags=compute_v1.Tags(items=["bench"]),
                    network_interfaces=[compute_v1.NetworkInterface(
                        network=f"global/networks/{GCP_NETWORK}")])))
            return name
        return make

    topology.gcp_instances = _run_all("gcp instances", (instance(i) for i in range(count)), count)


# --- Azure ------------------------------------------------------------------------------------


def build_azure(count: int, topology: Topology, endpoint: str, ca_bundle: str) -> None:
    clients = azure_connect(endpoint, ca_bundle, AZURE_SUBSCRIPTION)
    try:
        create_resource_group(clients, AZURE_SUBSCRIPTION, AZURE_GROUP, AZURE_REGION)
        vnet = clients.network.virtual_networks.begin_create_or_update(AZURE_GROUP, "bench-vnet", {
            "location": AZURE_REGION,
            "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                           "subnets": [{"name": "app",
                                        "properties": {"addressPrefix": "10.0.0.0/16"}}]},
        }).result()
        subnet_id = vnet.subnets[0].id

        def vm(i: int) -> Callable[[], tuple[str, str]]:
            name = f"bench-{i:05d}"

            def make() -> tuple[str, str]:
                nic = clients.network.network_interfaces.begin_create_or_update(
                    AZURE_GROUP, f"{name}-nic0", {
                        "location": AZURE_REGION,
                        "properties": {"ipConfigurations": [
                            {"name": "ipconfig1", "properties": {"subnet": {"id": subnet_id}}}]},
                    }).result()
                clients.compute.virtual_machines.begin_create_or_update(AZURE_GROUP, name, {
                    "location": AZURE_REGION, "zones": [AZURE_ZONE], "tags": {"gameday": "enabled"},
                    "properties": {
                        "hardwareProfile": {"vmSize": "Standard_B2s"},
                        "storageProfile": {"imageReference": {
                            "publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                            "sku": "server", "version": "latest"}},
                        "osProfile": {"computerName": name, "adminUsername": "azureuser"},
                        "networkProfile": {"networkInterfaces": [
                            {"id": nic.id, "properties": {"primary": True}}]},
                    },
                }).result()
                return name, nic.id
            return make

        made = _run_all("azure vms", (vm(i) for i in range(count)), count)
        topology.azure_vms = [name for name, _ in made]
        topology.azure_nics = [nic for _, nic in made]
    finally:
        clients.close()


def build(n: int, env: dict[str, str] | None = None) -> Topology:
    """N targets over the three clouds of the lab whose variables are in `env` (or os.environ)."""
    env = dict(os.environ if env is None else env)
    aws, gcp, azure = split(n)
    topology = Topology(n=n)
    print(f"building N={n}: {aws} AWS subnets, {gcp} GCP instances, {azure} Azure VMs", flush=True)
    for cloud, make in (
        ("aws", lambda: build_aws(aws, topology)),
        ("gcp", lambda: build_gcp(gcp, topology, env["GAMEDAY_GCP_ENDPOINT"])),
        ("azure", lambda: build_azure(azure, topology, env["GAMEDAY_AZURE_ENDPOINT"],
                                      env["GAMEDAY_AZURE_CA_BUNDLE"])),
    ):
        started = time.monotonic()
        make()
        topology.seconds[cloud] = round(time.monotonic() - started, 2)
        print(f"  {cloud} built in {topology.seconds[cloud]:.1f}s", flush=True)
    return topology


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.topology --n N`: build into the running lab (`gameday lab up --empty`)."""
    import argparse
    import json

    from gameday.lab.manager import Lab

    parser = argparse.ArgumentParser(prog="python -m bench.topology", description=main.__doc__)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.update(Lab.default().status()["env"])
    topology = build(args.n)
    json.dump({"n": topology.n, "seconds": topology.seconds, "aws_vpcs": topology.aws_vpcs},
              sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
