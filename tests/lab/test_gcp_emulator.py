"""Conformance of the Compute Engine emulator (`gameday.lab.gcp`) with the real google-cloud-compute client.

Every client here is built exactly as gameday builds one against the lab: an `http://` api_endpoint
and anonymous credentials, default (REST) transport.

The `.result()` trap: a non-unary call returns an ExtendedOperation whose `.result()` polls through
an operations client the SDK builds itself, without our `client_options`, so it would call
https://compute.googleapis.com. `test_result_polls_google_unless_wired` shows that and the two safe
patterns: `*_unary` plus `wait` on our own operations clients, or wiring our operations clients into
`client.transport._extended_operations_services` before calling `.result()`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.future import polling
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp import ComputeEmulator
from gameday.lab.gcp.filters import FilterError, compile_filter
from gameday.lab.gcp.groups_seed import MIG_MEMBERS
from gameday.lab.gcp.seed import seed_gcp

PROJECT = "gameday-lab"
FAST_POLLING = polling.DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.05)
ZONE = "us-central1-a"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ComputeEmulator]:
    server = ComputeEmulator(host="127.0.0.1", port=0).start()
    yield server
    server.stop()


def admin(emulator: ComputeEmulator, method: str, action: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{emulator.url}/_emulator/{action}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


class Clients:
    def __init__(self, url: str):
        self.options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=url),
                                        "credentials": AnonymousCredentials()}
        self.zones = compute_v1.ZonesClient(**self.options)
        self.regions = compute_v1.RegionsClient(**self.options)
        self.networks = compute_v1.NetworksClient(**self.options)
        self.firewalls = compute_v1.FirewallsClient(**self.options)
        self.instances = compute_v1.InstancesClient(**self.options)
        self.groups = compute_v1.InstanceGroupsClient(**self.options)
        self.services = compute_v1.BackendServicesClient(**self.options)
        self.global_ops = compute_v1.GlobalOperationsClient(**self.options)
        self.zone_ops = compute_v1.ZoneOperationsClient(**self.options)

    def wait(self, op: compute_v1.Operation) -> compute_v1.Operation:
        if op.zone:
            return self.zone_ops.wait(project=PROJECT, zone=op.zone.rsplit("/", 1)[1],
                                      operation=op.name)
        return self.global_ops.wait(project=PROJECT, operation=op.name)

    def network(self, name: str = "shop-vpc") -> None:
        done = self.wait(self.networks.insert_unary(
            project=PROJECT, network_resource=compute_v1.Network(name=name)))
        assert not done.error.errors

    def instance(self, name: str, zone: str = ZONE, network: str = "shop-vpc",
                 labels: dict[str, str] | None = None, tags: list[str] | None = None
                 ) -> compute_v1.Operation:
        return self.wait(self.instances.insert_unary(
            project=PROJECT, zone=zone, instance_resource=compute_v1.Instance(
                name=name, labels=labels or {}, tags=compute_v1.Tags(items=tags or []),
                network_interfaces=[compute_v1.NetworkInterface(
                    network=f"global/networks/{network}")])))

    def firewall(self, name: str, **fields: Any) -> compute_v1.Firewall:
        fields.setdefault("network", "global/networks/shop-vpc")
        fields.setdefault("denied", [compute_v1.Denied(I_p_protocol="all")])
        return compute_v1.Firewall(name=name, **fields)


@pytest.fixture
def gcp(emulator: ComputeEmulator) -> Clients:
    admin(emulator, "POST", "reset")
    return Clients(emulator.url)


# --- zones, regions, operations ----------------------------------------------------------------


def test_zones_and_regions(gcp: Clients) -> None:
    zones = {zone.name: zone for zone in gcp.zones.list(project=PROJECT)}
    for name in ("us-central1-a", "us-central1-f", "us-east1-d", "europe-west1-b", "asia-east1-c"):
        assert zones[name].status == "UP"
    zone = gcp.zones.get(project=PROJECT, zone="us-east1-c")
    assert zone.region.endswith("/projects/gameday-lab/regions/us-east1")
    assert zone.self_link.endswith("/projects/gameday-lab/zones/us-east1-c")
    region = gcp.regions.get(project=PROJECT, region="us-central1")
    assert [z.rsplit("/", 1)[1] for z in region.zones] == [
        "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]
    assert "europe-west1" in {r.name for r in gcp.regions.list(project=PROJECT)}
    with pytest.raises(exceptions.NotFound):
        gcp.zones.get(project=PROJECT, zone="mars-north1-a")
    with pytest.raises(exceptions.NotFound):
        gcp.instances.list(project=PROJECT, zone="mars-north1-a")


def test_operation_goes_pending_running_done(gcp: Clients) -> None:
    op = gcp.networks.insert_unary(project=PROJECT,
                                   network_resource=compute_v1.Network(name="shop-vpc"))
    assert op.status == compute_v1.Operation.Status.PENDING
    assert op.operation_type == "insert" and op.kind == "compute#operation" and op.id
    assert op.target_link.endswith("/projects/gameday-lab/global/networks/shop-vpc")
    assert op.self_link.endswith(f"/global/operations/{op.name}")
    read = [gcp.global_ops.get(project=PROJECT, operation=op.name).status for _ in range(3)]
    assert read == [compute_v1.Operation.Status.RUNNING, compute_v1.Operation.Status.DONE,
                    compute_v1.Operation.Status.DONE]
    assert gcp.global_ops.get(project=PROJECT, operation=op.name).progress == 100
    assert op.name in {o.name for o in gcp.global_ops.list(project=PROJECT)}

    zonal = gcp.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=compute_v1
                                       .Instance(name="vm-1", network_interfaces=[
                                           compute_v1.NetworkInterface(network="global/networks/"
                                                                       "shop-vpc")]))
    assert zonal.zone.endswith(f"/zones/{ZONE}")
    done = gcp.zone_ops.wait(project=PROJECT, zone=ZONE, operation=zonal.name)
    assert done.status == compute_v1.Operation.Status.DONE and not done.error.errors
    assert zonal.name in {o.name for o in gcp.zone_ops.list(project=PROJECT, zone=ZONE)}
    with pytest.raises(exceptions.NotFound):
        gcp.zone_ops.get(project=PROJECT, zone="us-east1-b", operation=zonal.name)


def test_result_polls_google_unless_wired(gcp: Clients) -> None:
    """`.result()` is NOT safe by default: the SDK's own operations client targets Google."""
    gcp.network()
    internal = gcp.firewalls.transport._global_operations_client
    assert "googleapis.com" in internal.api_endpoint

    # Safe pattern: wire operations clients built with our options, then `.result()` polls us.
    firewalls = compute_v1.FirewallsClient(**gcp.options)
    firewalls.transport._extended_operations_services["global_operations"] = gcp.global_ops
    operation = firewalls.insert(project=PROJECT, firewall_resource=gcp.firewall("deny-all"))
    assert operation.result(timeout=10, polling=FAST_POLLING) is None
    assert operation.done()

    instances = compute_v1.InstancesClient(**gcp.options)
    instances.transport._extended_operations_services["zone_operations"] = gcp.zone_ops
    failing = instances.insert(project=PROJECT, zone=ZONE, instance_resource=compute_v1.Instance(
        name="vm-x", network_interfaces=[compute_v1.NetworkInterface(network="missing-vpc")]))
    with pytest.raises(exceptions.NotFound):
        failing.result(timeout=10, polling=FAST_POLLING)


def test_regional_operations_endpoints(gcp: Clients) -> None:
    regional = compute_v1.RegionOperationsClient(**gcp.options)
    assert list(regional.list(project=PROJECT, region="us-central1")) == []
    with pytest.raises(exceptions.NotFound):
        regional.get(project=PROJECT, region="us-central1", operation="operation-none")
    with pytest.raises(exceptions.NotFound):
        regional.list(project=PROJECT, region="atlantis1")


# --- networks ----------------------------------------------------------------------------------


def test_networks_round_trip(gcp: Clients) -> None:
    gcp.network("shop-vpc")
    gcp.network("batch-vpc")
    network = gcp.networks.get(project=PROJECT, network="shop-vpc")
    assert network.self_link.endswith("/projects/gameday-lab/global/networks/shop-vpc")
    assert int(network.id) > 0
    assert {n.name for n in gcp.networks.list(project=PROJECT)} == {"shop-vpc", "batch-vpc"}
    with pytest.raises(exceptions.Conflict):
        gcp.networks.insert_unary(project=PROJECT,
                                  network_resource=compute_v1.Network(name="batch-vpc"))
    deleted = gcp.wait(gcp.networks.delete_unary(project=PROJECT, network="batch-vpc"))
    assert not deleted.error.errors
    with pytest.raises(exceptions.NotFound):
        gcp.networks.get(project=PROJECT, network="batch-vpc")


def test_network_in_use_fails_its_delete_operation(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-1")
    done = gcp.wait(gcp.networks.delete_unary(project=PROJECT, network="shop-vpc"))
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.error.errors[0].code == "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
    assert done.http_error_status_code == 400 and done.http_error_message
    assert gcp.networks.get(project=PROJECT, network="shop-vpc").name == "shop-vpc"


# --- instances ---------------------------------------------------------------------------------


def test_instance_shape_and_deterministic_addresses(gcp: Clients) -> None:
    gcp.network("shop-vpc")
    gcp.network("batch-vpc")
    gcp.instance("vm-1", labels={"gameday": "enabled"}, tags=["web"])
    gcp.instance("vm-2")
    gcp.instance("vm-3", network="batch-vpc")
    gcp.instance("vm-4", zone="us-east1-b")
    vm = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert vm.status == "RUNNING" and int(vm.id) > 0 and vm.creation_timestamp
    assert vm.self_link.endswith(f"/projects/gameday-lab/zones/{ZONE}/instances/vm-1")
    assert vm.zone.endswith(f"/projects/gameday-lab/zones/{ZONE}")
    assert dict(vm.labels) == {"gameday": "enabled"}
    assert list(vm.tags.items) == ["web"] and vm.tags.fingerprint
    nic = vm.network_interfaces[0]
    assert nic.network.endswith("/projects/gameday-lab/global/networks/shop-vpc")
    assert (nic.name, nic.network_i_p) == ("nic0", "10.128.0.2")

    def address(zone: str, name: str) -> str:
        return gcp.instances.get(project=PROJECT, zone=zone, instance=name) \
            .network_interfaces[0].network_i_p

    assert address(ZONE, "vm-2") == "10.128.0.3"
    assert address(ZONE, "vm-3") == "10.128.0.2"
    assert address("us-east1-b", "vm-4") == "10.142.0.2"
    with pytest.raises(exceptions.Conflict):
        gcp.instances.insert_unary(project=PROJECT, zone=ZONE,
                                   instance_resource=compute_v1.Instance(name="vm-1"))


def test_instance_list_filters_and_aggregated_list(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("web-1", labels={"gameday": "enabled", "tier": "web"}, tags=["http"])
    gcp.instance("web-2", labels={"gameday": "enabled"})
    gcp.instance("db-1", labels={"gameday": "disabled"})
    gcp.instance("web-9", zone="us-central1-b", labels={"gameday": "enabled"})

    def names(flt: str) -> set[str]:
        request = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=flt)
        return {vm.name for vm in gcp.instances.list(request=request)}

    assert names("labels.gameday = enabled") == {"web-1", "web-2"}
    assert names("labels.gameday=enabled") == {"web-1", "web-2"}
    assert names('labels.gameday = "enabled"') == {"web-1", "web-2"}
    assert names("name = db-1") == {"db-1"}
    assert names("name != db-1") == {"web-1", "web-2"}
    assert names("name eq web-.*") == {"web-1", "web-2"}
    assert names("(labels.gameday = enabled) (labels.tier = web)") == {"web-1"}
    assert names("labels.tier:*") == {"web-1"}
    assert names("tags.items = http") == {"web-1"}
    assert names("(name = db-1) OR (labels.tier = web)") == {"db-1", "web-1"}
    assert names("") == {"web-1", "web-2", "db-1"}
    with pytest.raises(exceptions.BadRequest):
        names("labels.gameday =")

    request = compute_v1.AggregatedListInstancesRequest(project=PROJECT,
                                                        filter="labels.gameday = enabled")
    found = {(scope, vm.name) for scope, scoped in gcp.instances.aggregated_list(request=request)
             for vm in scoped.instances}
    assert found == {(f"zones/{ZONE}", "web-1"), (f"zones/{ZONE}", "web-2"),
                     ("zones/us-central1-b", "web-9")}


def test_list_pages_through_max_results(gcp: Clients) -> None:
    gcp.network()
    for index in range(5):
        gcp.instance(f"vm-{index}")
    request = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, max_results=2)
    pager = gcp.instances.list(request=request)
    assert [vm.name for vm in pager] == [f"vm-{index}" for index in range(5)]
    first = gcp.instances.list(request=request)
    assert len(first.items) == 2 and first.next_page_token
    aggregated = compute_v1.AggregatedListInstancesRequest(project=PROJECT, max_results=2)
    assert sum(len(s.instances) for _, s in gcp.instances.aggregated_list(request=aggregated)) == 5


def test_instance_delete(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-1")
    op = gcp.wait(gcp.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm-1"))
    assert op.operation_type == "delete" and not op.error.errors
    with pytest.raises(exceptions.NotFound):
        gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    with pytest.raises(exceptions.NotFound):
        gcp.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm-1")


def test_set_tags_checks_the_fingerprint(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-1", tags=["web"])
    before = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").tags
    op = gcp.instances.set_tags_unary(
        project=PROJECT, zone=ZONE, instance="vm-1", tags_resource=compute_v1.Tags(
            items=["web", "gameday-blackhole"], fingerprint=before.fingerprint))
    assert op.operation_type == "setTags" and not gcp.wait(op).error.errors
    after = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").tags
    assert list(after.items) == ["web", "gameday-blackhole"]
    assert after.fingerprint != before.fingerprint
    for stale in (before.fingerprint, None):
        with pytest.raises(exceptions.PreconditionFailed) as caught:
            gcp.instances.set_tags_unary(project=PROJECT, zone=ZONE, instance="vm-1",
                                         tags_resource=compute_v1.Tags(items=[],
                                                                       fingerprint=stale))
        assert caught.value.errors[0]["reason"] == "conditionNotMet"
    gcp.instances.set_tags_unary(project=PROJECT, zone=ZONE, instance="vm-1",
                                 tags_resource=compute_v1.Tags(items=["web"],
                                                               fingerprint=after.fingerprint))
    restored = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").tags
    assert list(restored.items) == ["web"] and restored.fingerprint not in (
        before.fingerprint, after.fingerprint)


def test_set_labels_checks_the_label_fingerprint(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-1", labels={"gameday": "enabled"})
    vm = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    gcp.wait(gcp.instances.set_labels_unary(
        project=PROJECT, zone=ZONE, instance="vm-1",
        instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
            labels={"gameday": "enabled", "gameday-run": "wf-1"},
            label_fingerprint=vm.label_fingerprint)))
    changed = gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert dict(changed.labels) == {"gameday": "enabled", "gameday-run": "wf-1"}
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.instances.set_labels_unary(
            project=PROJECT, zone=ZONE, instance="vm-1",
            instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                labels={}, label_fingerprint=vm.label_fingerprint))


# --- firewalls ---------------------------------------------------------------------------------


def test_firewall_round_trip(gcp: Clients) -> None:
    gcp.network()
    rule = gcp.firewall("gameday-deny-ingress", priority=0, direction="INGRESS",
                        target_tags=["gameday-blackhole"], source_ranges=["0.0.0.0/0"],
                        description="gameday run wf-1 step s1")
    op = gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=rule)
    assert not gcp.wait(op).error.errors
    egress = gcp.firewall("gameday-deny-egress", priority=0, direction="EGRESS",
                          target_tags=["gameday-blackhole"], destination_ranges=["0.0.0.0/0"],
                          denied=[compute_v1.Denied(I_p_protocol="tcp", ports=["1-65535"])])
    gcp.wait(gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=egress))
    got = gcp.firewalls.get(project=PROJECT, firewall="gameday-deny-ingress")
    assert (got.priority, got.direction, list(got.target_tags)) == (0, "INGRESS",
                                                                    ["gameday-blackhole"])
    assert got.denied[0].I_p_protocol == "all" and not got.allowed
    assert list(got.source_ranges) == ["0.0.0.0/0"]
    assert got.network.endswith("/projects/gameday-lab/global/networks/shop-vpc")
    assert got.self_link.endswith("/global/firewalls/gameday-deny-ingress")
    out = gcp.firewalls.get(project=PROJECT, firewall="gameday-deny-egress")
    assert out.direction == "EGRESS" and list(out.destination_ranges) == ["0.0.0.0/0"]
    assert list(out.denied[0].ports) == ["1-65535"]

    with pytest.raises(exceptions.Conflict) as caught:
        gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=rule)
    assert caught.value.errors[0]["reason"] == "alreadyExists"

    gcp.wait(gcp.firewalls.patch_unary(project=PROJECT, firewall="gameday-deny-ingress",
                                       firewall_resource=compute_v1.Firewall(priority=10)))
    patched = gcp.firewalls.get(project=PROJECT, firewall="gameday-deny-ingress")
    assert patched.priority == 10 and list(patched.target_tags) == ["gameday-blackhole"]

    gcp.wait(gcp.firewalls.delete_unary(project=PROJECT, firewall="gameday-deny-ingress"))
    with pytest.raises(exceptions.NotFound):
        gcp.firewalls.get(project=PROJECT, firewall="gameday-deny-ingress")
    with pytest.raises(exceptions.NotFound):
        gcp.firewalls.delete_unary(project=PROJECT, firewall="gameday-deny-ingress")


def test_firewall_insert_is_idempotent_by_request_id(gcp: Clients) -> None:
    gcp.network()
    request_id = str(uuid.uuid4())

    def insert(request_id: str) -> compute_v1.Operation:
        return gcp.firewalls.insert_unary(request=compute_v1.InsertFirewallRequest(
            project=PROJECT, firewall_resource=gcp.firewall("fw-1"), request_id=request_id))

    first = insert(request_id)
    again = insert(request_id)
    assert again.name == first.name
    assert gcp.wait(again).status == compute_v1.Operation.Status.DONE
    with pytest.raises(exceptions.Conflict):
        insert(str(uuid.uuid4()))


def test_firewall_list_filters(gcp: Clients) -> None:
    gcp.network()
    for name, description in (("gameday-wf-1-a", "gameday run wf-1"),
                              ("gameday-wf-2-a", "gameday run wf-2"), ("allow-http", "web")):
        gcp.wait(gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=gcp.firewall(
            name, description=description)))

    def names(flt: str) -> set[str]:
        request = compute_v1.ListFirewallsRequest(project=PROJECT, filter=flt)
        return {fw.name for fw in gcp.firewalls.list(request=request)}

    assert names("name = allow-http") == {"allow-http"}
    assert names("name eq gameday-.*") == {"gameday-wf-1-a", "gameday-wf-2-a"}
    assert names('name eq "gameday-wf-1-.*"') == {"gameday-wf-1-a"}
    assert names("name = gameday-*") == {"gameday-wf-1-a", "gameday-wf-2-a"}
    assert names("description:wf-2") == {"gameday-wf-2-a"}
    assert names('description = "gameday run wf-1"') == {"gameday-wf-1-a"}
    assert names("priority = 1000") == {"gameday-wf-1-a", "gameday-wf-2-a", "allow-http"}


def test_firewall_on_missing_network_fails_its_operation(gcp: Clients) -> None:
    op = gcp.firewalls.insert_unary(project=PROJECT,
                                    firewall_resource=gcp.firewall("fw", network="nowhere"))
    done = gcp.wait(op)
    assert done.error.errors[0].code == "RESOURCE_NOT_FOUND"
    assert done.http_error_status_code == 404
    with pytest.raises(exceptions.NotFound):
        gcp.firewalls.get(project=PROJECT, firewall="fw")


# --- instance groups and backend services -----------------------------------------------------


def _group(gcp: Clients, name: str, zone: str, members: list[str]) -> str:
    gcp.wait(gcp.groups.insert_unary(project=PROJECT, zone=zone,
                                     instance_group_resource=compute_v1.InstanceGroup(name=name)))
    gcp.wait(gcp.groups.add_instances_unary(
        project=PROJECT, zone=zone, instance_group=name,
        instance_groups_add_instances_request_resource=compute_v1.InstanceGroupsAddInstancesRequest(
            instances=[compute_v1.InstanceReference(instance=f"zones/{zone}/instances/{vm}")
                       for vm in members])))
    return gcp.groups.get(project=PROJECT, zone=zone, instance_group=name).self_link


def test_instance_groups(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-1")
    gcp.instance("vm-2")
    link = _group(gcp, "web-us-central1-a", ZONE, ["vm-1", "vm-2"])
    group = gcp.groups.get(project=PROJECT, zone=ZONE, instance_group="web-us-central1-a")
    assert group.size == 2 and group.self_link == link and group.zone.endswith(f"/zones/{ZONE}")
    assert group.network.endswith("/global/networks/shop-vpc")
    assert [g.name for g in gcp.groups.list(project=PROJECT, zone=ZONE)] == ["web-us-central1-a"]
    members = gcp.groups.list_instances(
        project=PROJECT, zone=ZONE, instance_group="web-us-central1-a",
        instance_groups_list_instances_request_resource=compute_v1
        .InstanceGroupsListInstancesRequest(instance_state="ALL"))
    assert [m.instance.rsplit("/", 1)[1] for m in members] == ["vm-1", "vm-2"]
    assert {m.status for m in members} == {"RUNNING"}

    again = gcp.wait(gcp.groups.add_instances_unary(
        project=PROJECT, zone=ZONE, instance_group="web-us-central1-a",
        instance_groups_add_instances_request_resource=compute_v1.InstanceGroupsAddInstancesRequest(
            instances=[compute_v1.InstanceReference(instance=f"zones/{ZONE}/instances/vm-404")])))
    assert again.http_error_status_code == 404 and again.error.errors
    gcp.wait(gcp.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm-2"))
    assert gcp.groups.get(project=PROJECT, zone=ZONE, instance_group="web-us-central1-a").size == 1


def test_backend_service_patch_round_trips_zero_capacity(gcp: Clients) -> None:
    gcp.network()
    gcp.instance("vm-a")
    gcp.instance("vm-b", zone="us-east1-b")
    links = [_group(gcp, "web-us-central1-a", ZONE, ["vm-a"]),
             _group(gcp, "web-us-east1-b", "us-east1-b", ["vm-b"])]
    gcp.wait(gcp.services.insert_unary(project=PROJECT, backend_service_resource=compute_v1
                                       .BackendService(name="web", backends=[
                                           compute_v1.Backend(group=link, capacity_scaler=1.0,
                                                              balancing_mode="UTILIZATION")
                                           for link in links])))
    service = gcp.services.get(project=PROJECT, backend_service="web")
    assert [b.group for b in service.backends] == links
    assert [b.capacity_scaler for b in service.backends] == [1.0, 1.0] and service.fingerprint
    assert [s.name for s in gcp.services.list(project=PROJECT)] == ["web"]

    backends = [compute_v1.Backend(group=b.group, balancing_mode=b.balancing_mode,
                                   capacity_scaler=0.0 if "us-central1" in b.group else 1.0)
                for b in service.backends]
    op = gcp.services.patch_unary(project=PROJECT, backend_service="web",
                                  backend_service_resource=compute_v1.BackendService(
                                      backends=backends, fingerprint=service.fingerprint))
    assert op.operation_type == "patch" and not gcp.wait(op).error.errors
    patched = gcp.services.get(project=PROJECT, backend_service="web")
    assert [b.capacity_scaler for b in patched.backends] == [0.0, 1.0]
    assert "capacity_scaler" in patched.backends[0]
    assert patched.fingerprint != service.fingerprint

    with pytest.raises(exceptions.PreconditionFailed):
        gcp.services.patch_unary(project=PROJECT, backend_service="web",
                                 backend_service_resource=compute_v1.BackendService(
                                     backends=backends, fingerprint=service.fingerprint))
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.services.patch_unary(project=PROJECT, backend_service="web",
                                 backend_service_resource=compute_v1.BackendService(
                                     backends=backends))

    patched.backends[0].capacity_scaler = 1.0
    gcp.wait(gcp.services.update_unary(project=PROJECT, backend_service="web",
                                       backend_service_resource=patched))
    restored = gcp.services.get(project=PROJECT, backend_service="web")
    assert [b.capacity_scaler for b in restored.backends] == [1.0, 1.0]
    assert restored.protocol == "HTTP"


# --- faults and the call log ------------------------------------------------------------------


def test_injected_faults_and_call_log(emulator: ComputeEmulator, gcp: Clients) -> None:
    gcp.network()
    admin(emulator, "DELETE", "calls")
    admin(emulator, "POST", "faults", {"rules": [
        {"match": "POST /compute/v1/projects/gameday-lab/global/firewalls", "status": 429,
         "count": 1, "retry_after": 2},
        {"match": "DELETE /compute/v1/", "status": 503, "count": 1},
    ]})
    with pytest.raises(exceptions.TooManyRequests) as throttled:
        gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=gcp.firewall("fw"))
    assert throttled.value.errors[0]["reason"] == "rateLimitExceeded"
    assert throttled.value.response.headers["Retry-After"] == "2"
    gcp.wait(gcp.firewalls.insert_unary(project=PROJECT, firewall_resource=gcp.firewall("fw")))
    with pytest.raises(exceptions.ServiceUnavailable):
        gcp.firewalls.delete_unary(project=PROJECT, firewall="fw")
    admin(emulator, "POST", "faults", {"rules": [{"match": "GET ", "status": 503, "count": 1}]})
    assert gcp.firewalls.get(project=PROJECT, firewall="fw").name == "fw"  # the SDK retried

    calls = admin(emulator, "GET", "calls")["calls"]
    keys = [(call["key"], call["status"], call["injected"]) for call in calls]
    assert keys[0] == ("POST /compute/v1/projects/gameday-lab/global/firewalls", 429, True)
    assert keys[1] == ("POST /compute/v1/projects/gameday-lab/global/firewalls", 200, False)
    assert ("DELETE /compute/v1/projects/gameday-lab/global/firewalls/fw", 503, True) in keys
    assert keys[-2:] == [("GET /compute/v1/projects/gameday-lab/global/firewalls/fw", 503, True),
                         ("GET /compute/v1/projects/gameday-lab/global/firewalls/fw", 200, False)]


def test_concurrent_mutations_are_all_applied(gcp: Clients) -> None:
    gcp.network()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ops = list(pool.map(lambda n: gcp.instance(f"vm-{n}"), range(40)))
    assert all(not op.error.errors for op in ops)
    vms = list(gcp.instances.list(project=PROJECT, zone=ZONE))
    assert len({vm.network_interfaces[0].network_i_p for vm in vms}) == 40


def test_module_serves_in_the_foreground() -> None:
    process = subprocess.Popen([sys.executable, "-m", "gameday.lab.gcp", "--host", "127.0.0.1",
                                "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        zones = compute_v1.ZonesClient(client_options=ClientOptions(api_endpoint=url),
                                       credentials=AnonymousCredentials())
        assert zones.get(project=PROJECT, zone=ZONE).name == ZONE
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- seed ----------------------------------------------------------------------------------------


def test_seed_builds_the_lab_topology(emulator: ComputeEmulator, gcp: Clients) -> None:
    summary = seed_gcp(emulator.url, PROJECT)
    assert summary["instances"] == 18 and summary["gameday_instances"] == 14
    vms = [vm for _, scoped in gcp.instances.aggregated_list(project=PROJECT)
           for vm in scoped.instances]
    assert len(vms) == 18 + len(MIG_MEMBERS)  # and web-mig's members, labelled gameday=managed
    request = compute_v1.AggregatedListInstancesRequest(project=PROJECT,
                                                        filter="labels.gameday = enabled")
    assert sum(len(s.instances) for _, s in gcp.instances.aggregated_list(request=request)) == 14
    networks = {vm.network_interfaces[0].network.rsplit("/", 1)[1] for vm in vms}
    assert networks == {"shop-vpc", "batch-vpc"}
    zones = {vm.zone.rsplit("/", 1)[1] for vm in vms}
    assert zones == {"us-central1-a", "us-central1-b", "us-central1-c", "us-east1-b"}
    assert any(vm.labels.get("tier") == "web" for vm in vms)
    assert all(vm.tags.items for vm in vms)
    sizes = {name: gcp.groups.get(project=PROJECT, zone=name.removeprefix("web-"),
                                  instance_group=name).size
             for name in ("web-us-central1-a", "web-us-central1-b", "web-us-east1-b")}
    assert sizes == {"web-us-central1-a": 2, "web-us-central1-b": 2, "web-us-east1-b": 2}
    service = gcp.services.get(project=PROJECT, backend_service="web")
    assert sorted(b.group.rsplit("/", 1)[1] for b in service.backends) == sorted(sizes)
    assert {b.capacity_scaler for b in service.backends} == {1.0}
    assert {fw.name for fw in gcp.firewalls.list(project=PROJECT)} == set(summary["firewalls"])


# --- the filter language on its own -------------------------------------------------------------


def test_filter_language() -> None:
    vm = {"name": "web-1", "labels": {"gameday": "enabled"}, "priority": 100,
          "tags": {"items": ["a", "b"]}, "canIpForward": False}
    assert compile_filter("labels.gameday = enabled")(vm)
    assert not compile_filter("labels.gameday = disabled")(vm)
    assert compile_filter("labels.missing != x")(vm)
    assert compile_filter("priority < 1000 AND priority >= 100")(vm)
    assert compile_filter("canIpForward = false")(vm)
    assert compile_filter("NOT (name = db-1)")(vm)
    assert compile_filter("tags.items = b")(vm)
    assert compile_filter("(name = x) OR (name = web-1) AND (labels.gameday:enab)")(vm)
    assert not compile_filter("name ne web-.*")(vm)
    for broken in ("name", "(name = x", "name = 'x", "name eq ("):
        with pytest.raises(FilterError):
            compile_filter(broken)
