"""Custom-mode subnetworks in the GCP Compute emulator, through google-cloud-compute: insert
(with secondary ranges; answered with its regional operation), get, list, aggregatedList,
overlapping ranges in one network refused 400, an unknown network 404, delete."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from tests.support.servers import Servers

PROJECT = "subnets-lab"


def _clients(servers: Servers) -> tuple[compute_v1.SubnetworksClient, compute_v1.NetworksClient]:
    options = {"client_options": ClientOptions(api_endpoint=servers.gcp.url),
               "credentials": AnonymousCredentials()}
    return compute_v1.SubnetworksClient(**options), compute_v1.NetworksClient(**options)


def _subnet(name: str, cidr: str, *secondary: str) -> compute_v1.Subnetwork:
    return compute_v1.Subnetwork(
        name=name, network=f"projects/{PROJECT}/global/networks/custom", ip_cidr_range=cidr,
        secondary_ip_ranges=[compute_v1.SubnetworkSecondaryRange(range_name=f"pods-{i}",
                                                                 ip_cidr_range=r)
                             for i, r in enumerate(secondary)])


def test_custom_subnetworks_are_served_and_checked(servers: Servers) -> None:
    servers.reset_gcp()
    subnets, networks = _clients(servers)
    networks.insert_unary(project=PROJECT, network_resource=compute_v1.Network(
        name="custom", auto_create_subnetworks=False))
    subnets.insert_unary(project=PROJECT, region="us-central1",
                   subnetwork_resource=_subnet("app", "10.0.0.0/24", "10.4.0.0/20"))
    subnets.insert_unary(project=PROJECT, region="us-east1",
                   subnetwork_resource=_subnet("east", "10.1.0.0/24"))

    got = subnets.get(project=PROJECT, region="us-central1", subnetwork="app")
    assert (got.ip_cidr_range, [r.ip_cidr_range for r in got.secondary_ip_ranges]) == (
        "10.0.0.0/24", ["10.4.0.0/20"])
    assert got.network.endswith(f"projects/{PROJECT}/global/networks/custom")
    assert [s.name for s in subnets.list(project=PROJECT, region="us-central1")] == ["app"]
    listed = {(scope, s.name) for scope, scoped in subnets.aggregated_list(project=PROJECT)
              for s in scoped.subnetworks}
    assert listed == {("regions/us-central1", "app"), ("regions/us-east1", "east")}

    with pytest.raises(exceptions.BadRequest) as overlap:
        subnets.insert_unary(project=PROJECT, region="europe-west1",
                       subnetwork_resource=_subnet("again", "10.4.1.0/24"))
    assert "conflicts with existing subnetwork 'app' in region 'us-central1'" in str(overlap.value)
    with pytest.raises(exceptions.NotFound):
        subnets.insert_unary(project=PROJECT, region="us-east1", subnetwork_resource=compute_v1.Subnetwork(
            name="lost", network=f"projects/{PROJECT}/global/networks/nowhere",
            ip_cidr_range="10.9.0.0/24"))

    subnets.delete_unary(project=PROJECT, region="us-east1", subnetwork="east")
    with pytest.raises(exceptions.NotFound):
        subnets.get(project=PROJECT, region="us-east1", subnetwork="east")
