"""The Compute emulator's regional managed instance groups and autoscalers through the real
google-cloud-compute clients: shapes, regional operations, fingerprints (412), autohealing
cleared by an empty policy, autoscaler modes, the failures Compute Engine reports, and a MIG's
members with its repair of a stopped one, which `defaultActionOnFailure` DO_NOTHING holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp import ComputeEmulator

PROJECT = "groups-lab"
REGION = "us-central1"
DONE = compute_v1.Operation.Status.DONE
Policy = compute_v1.InstanceGroupManagerAutoHealingPolicy
REPAIR_SECONDS = 1.0


class Clients:
    def __init__(self, url: str):
        options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=url),
                                   "credentials": AnonymousCredentials()}
        self.managers = compute_v1.RegionInstanceGroupManagersClient(**options)
        self.autoscalers = compute_v1.RegionAutoscalersClient(**options)
        self.aggregated = compute_v1.InstanceGroupManagersClient(**options)
        self.all_autoscalers = compute_v1.AutoscalersClient(**options)
        self.operations = compute_v1.RegionOperationsClient(**options)
        self.instances = compute_v1.InstancesClient(**options)
        self.zone_operations = compute_v1.ZoneOperationsClient(**options)
        self.networks = compute_v1.NetworksClient(**options)

    def done(self, op: compute_v1.Operation) -> compute_v1.Operation:
        assert op.region.endswith(f"/regions/{REGION}")
        while op.status != DONE:
            op = self.operations.wait(project=PROJECT, region=REGION, operation=op.name)
        return op

    def manager(self, name: str) -> compute_v1.InstanceGroupManager:
        return self.managers.get(project=PROJECT, region=REGION, instance_group_manager=name)

    def scaler(self, name: str) -> compute_v1.Autoscaler:
        return self.autoscalers.get(project=PROJECT, region=REGION, autoscaler=name)

    def patch_manager(self, name: str, fingerprint: str,
                      policies: list[Policy]) -> compute_v1.Operation:
        return self.managers.patch_unary(request=compute_v1.PatchRegionInstanceGroupManagerRequest(
            project=PROJECT, region=REGION, instance_group_manager=name,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(
                fingerprint=fingerprint, auto_healing_policies=policies)))

    def patch_mode(self, name: str, mode: str) -> compute_v1.Operation:
        return self.autoscalers.patch_unary(request=compute_v1.PatchRegionAutoscalerRequest(
            project=PROJECT, region=REGION, autoscaler=name,
            autoscaler_resource=compute_v1.Autoscaler(
                name=name, autoscaling_policy=compute_v1.AutoscalingPolicy(mode=mode))))

    def insert_manager(self, name: str, policies: list[Policy]) -> compute_v1.Operation:
        return self.managers.insert_unary(
            project=PROJECT, region=REGION,
            instance_group_manager_resource=compute_v1.InstanceGroupManager(
                name=name, base_instance_name=name, target_size=2,
                instance_template="global/instanceTemplates/t", auto_healing_policies=policies))

    def insert_scaler(self, name: str, target: str, mode: str = "ON") -> compute_v1.Operation:
        return self.autoscalers.insert_unary(
            project=PROJECT, region=REGION, autoscaler_resource=compute_v1.Autoscaler(
                name=name, target=target, autoscaling_policy=compute_v1.AutoscalingPolicy(
                    mode=mode, min_num_replicas=1, max_num_replicas=5)))


@pytest.fixture(scope="module")
def gcp() -> Iterator[Clients]:
    server = ComputeEmulator(host="127.0.0.1", port=0)
    server.repair_seconds = REPAIR_SECONDS
    server.start()
    yield Clients(server.url)
    server.stop()


def test_a_mig_and_its_autoscaler_as_compute_engine_shows_them(gcp: Clients) -> None:
    op = gcp.insert_manager("shape", [Policy(health_check="global/healthChecks/hc",
                                             initial_delay_sec=90)])
    assert (op.operation_type, op.status) == ("insert", compute_v1.Operation.Status.PENDING)
    assert gcp.done(op).error.errors == []
    manager = gcp.manager("shape")
    assert manager.self_link.endswith(f"/projects/{PROJECT}/regions/{REGION}/"
                                      "instanceGroupManagers/shape")
    assert [(p.health_check.split("/compute/v1/")[1], p.initial_delay_sec)
            for p in manager.auto_healing_policies] == [
        (f"projects/{PROJECT}/global/healthChecks/hc", 90)]
    assert manager.target_size == 2 and manager.fingerprint and not manager.status.autoscaler
    assert len(manager.distribution_policy.zones) == 4
    gcp.done(gcp.insert_scaler("shape-as", manager.self_link, "ONLY_SCALE_OUT"))
    scaler = gcp.scaler("shape-as")
    assert (scaler.target, scaler.autoscaling_policy.mode) == (manager.self_link, "ONLY_SCALE_OUT")
    assert scaler.autoscaling_policy.cpu_utilization.utilization_target == 0.6
    assert gcp.manager("shape").status.autoscaler == scaler.self_link
    listed = [m.name for m in gcp.managers.list(project=PROJECT, region=REGION)]
    assert "shape" in listed
    aggregated = {where: [m.name for m in scoped.instance_group_managers]
                  for where, scoped in gcp.aggregated.aggregated_list(project=PROJECT)}
    assert "shape" in aggregated[f"regions/{REGION}"]
    assert [a.name for a in gcp.autoscalers.list(project=PROJECT, region=REGION)
            if a.name == "shape-as"] == ["shape-as"]
    scalers = {where: [a.name for a in scoped.autoscalers]
               for where, scoped in gcp.all_autoscalers.aggregated_list(project=PROJECT)}
    assert "shape-as" in scalers[f"regions/{REGION}"] and "autoscalers" not in str(
        scalers.get("zones/us-central1-a"))


def test_autohealing_patch_checks_the_fingerprint_and_an_empty_policy_clears_it(
        gcp: Clients) -> None:
    gcp.done(gcp.insert_manager("heal", [Policy(health_check="global/healthChecks/hc",
                                                initial_delay_sec=60)]))
    before = gcp.manager("heal").fingerprint
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.patch_manager("heal", "c3RhbGU=", [Policy()])
    gcp.done(gcp.patch_manager("heal", before, [Policy()]))
    cleared = gcp.manager("heal")
    assert list(cleared.auto_healing_policies) == [] and cleared.fingerprint != before
    with pytest.raises(exceptions.PreconditionFailed):
        gcp.patch_manager("heal", before, [Policy(health_check="global/healthChecks/hc")])
    with pytest.raises(exceptions.BadRequest):
        gcp.patch_manager("heal", cleared.fingerprint, [
            Policy(health_check="global/healthChecks/a", initial_delay_sec=1),
            Policy(health_check="global/healthChecks/b", initial_delay_sec=2)])
    gcp.done(gcp.patch_manager("heal", cleared.fingerprint, [
        Policy(health_check="global/healthChecks/other", initial_delay_sec=30)]))
    assert [(p.health_check.rsplit("/", 1)[1], p.initial_delay_sec)
            for p in gcp.manager("heal").auto_healing_policies] == [("other", 30)]
    with pytest.raises(exceptions.NotFound):
        gcp.manager("nowhere")


def test_autoscaler_modes_patch_update_and_the_failures_operations_report(gcp: Clients) -> None:
    gcp.done(gcp.insert_manager("scaled", []))
    link = gcp.manager("scaled").self_link
    gcp.done(gcp.insert_scaler("scaled-as", link))
    assert gcp.scaler("scaled-as").autoscaling_policy.mode == "ON"
    gcp.done(gcp.patch_mode("scaled-as", "OFF"))
    scaler = gcp.scaler("scaled-as")
    assert (scaler.autoscaling_policy.mode, scaler.autoscaling_policy.max_num_replicas) == ("OFF", 5)
    with pytest.raises(exceptions.BadRequest):
        gcp.patch_mode("scaled-as", "SIDEWAYS")
    gcp.done(gcp.autoscalers.update_unary(request=compute_v1.UpdateRegionAutoscalerRequest(
        project=PROJECT, region=REGION, autoscaler="scaled-as",
        autoscaler_resource=compute_v1.Autoscaler(
            name="scaled-as", target=link, description="mine",
            autoscaling_policy=compute_v1.AutoscalingPolicy(mode="ONLY_SCALE_OUT",
                                                            max_num_replicas=9)))))
    scaler = gcp.scaler("scaled-as")
    assert (scaler.autoscaling_policy.mode, scaler.autoscaling_policy.max_num_replicas,
            scaler.description) == ("ONLY_SCALE_OUT", 9, "mine")
    second = gcp.done(gcp.insert_scaler("scaled-as-2", link))
    assert second.http_error_status_code == 400
    assert second.error.errors[0].code == "RESOURCE_ALREADY_AUTOSCALED"
    missing = gcp.done(gcp.insert_scaler("orphan", link.replace("/scaled", "/nowhere")))
    assert missing.http_error_status_code == 404
    in_use = gcp.done(gcp.managers.delete_unary(project=PROJECT, region=REGION,
                                                instance_group_manager="scaled"))
    assert in_use.error.errors[0].code == "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
    gcp.done(gcp.autoscalers.delete_unary(project=PROJECT, region=REGION, autoscaler="scaled-as"))
    gcp.done(gcp.managers.delete_unary(project=PROJECT, region=REGION,
                                       instance_group_manager="scaled"))
    with pytest.raises(exceptions.NotFound):
        gcp.scaler("scaled-as")
    with pytest.raises(exceptions.NotFound):
        gcp.manager("scaled")


def _member(gcp: Clients, name: str, zone: str, created_by: str) -> None:
    op = gcp.instances.insert_unary(project=PROJECT, zone=zone, instance_resource=compute_v1.Instance(
        name=name, metadata=compute_v1.Metadata(items=[compute_v1.Items(key="created-by",
                                                                        value=created_by)]),
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/lab")]))
    while op.status != DONE:
        op = gcp.zone_operations.wait(project=PROJECT, zone=zone, operation=op.name)
    assert op.error.errors == []


def _status(gcp: Clients, name: str, zone: str) -> str:
    return str(gcp.instances.get(project=PROJECT, zone=zone, instance=name).status)


def _set_on_failure(gcp: Clients, name: str, fingerprint: str, action: str) -> compute_v1.Operation:
    return gcp.managers.patch_unary(request=compute_v1.PatchRegionInstanceGroupManagerRequest(
        project=PROJECT, region=REGION, instance_group_manager=name,
        instance_group_manager_resource=compute_v1.InstanceGroupManager(
            fingerprint=fingerprint,
            instance_lifecycle_policy=compute_v1.InstanceGroupManagerInstanceLifecyclePolicy(
                default_action_on_failure=action))))


def test_members_are_repaired_after_a_stop_unless_the_mig_does_nothing(gcp: Clients) -> None:
    gcp.networks.insert_unary(project=PROJECT, network_resource=compute_v1.Network(
        name="lab", auto_create_subnetworks=True))
    gcp.done(gcp.insert_manager("fleet", [Policy(health_check="global/healthChecks/hc",
                                                 initial_delay_sec=60)]))
    manager = gcp.manager("fleet")
    assert manager.instance_lifecycle_policy.default_action_on_failure == "REPAIR"
    owner = f"projects/{PROJECT}/regions/{REGION}/instanceGroupManagers/fleet"
    _member(gcp, "fleet-a", "us-central1-a", owner)
    _member(gcp, "fleet-b", "us-central1-b", owner)
    _member(gcp, "stray", "us-central1-a", owner.replace("/fleet", "/other"))
    listed = gcp.managers.list_managed_instances(project=PROJECT, region=REGION,
                                                 instance_group_manager="fleet")
    assert [(m.name, m.instance_status, m.current_action) for m in listed] == [
        ("fleet-a", "RUNNING", "NONE"), ("fleet-b", "RUNNING", "NONE")]
    assert listed.managed_instances[0].instance.endswith("/zones/us-central1-a/instances/fleet-a")

    stop = gcp.instances.stop_unary(project=PROJECT, zone="us-central1-a", instance="fleet-a")
    gcp.zone_operations.wait(project=PROJECT, zone="us-central1-a", operation=stop.name)
    assert _status(gcp, "fleet-a", "us-central1-a") == "TERMINATED"
    deadline = time.monotonic() + 5 * REPAIR_SECONDS
    while _status(gcp, "fleet-a", "us-central1-a") != "RUNNING":
        assert time.monotonic() < deadline, "the MIG did not repair its stopped member"
        time.sleep(0.1)

    with pytest.raises(exceptions.PreconditionFailed):
        _set_on_failure(gcp, "fleet", "c3RhbGU=", "DO_NOTHING")
    with pytest.raises(exceptions.BadRequest):
        _set_on_failure(gcp, "fleet", manager.fingerprint, "SHRUG")
    gcp.done(_set_on_failure(gcp, "fleet", manager.fingerprint, "DO_NOTHING"))
    held = gcp.manager("fleet")
    assert held.instance_lifecycle_policy.default_action_on_failure == "DO_NOTHING"
    assert held.fingerprint != manager.fingerprint
    assert [p.initial_delay_sec for p in held.auto_healing_policies] == [60]
    stop = gcp.instances.stop_unary(project=PROJECT, zone="us-central1-b", instance="fleet-b")
    gcp.zone_operations.wait(project=PROJECT, zone="us-central1-b", operation=stop.name)
    time.sleep(REPAIR_SECONDS + 0.5)
    assert _status(gcp, "fleet-b", "us-central1-b") == "TERMINATED"
    gcp.done(gcp.patch_manager("fleet", held.fingerprint, [Policy()]))
    assert gcp.manager("fleet").instance_lifecycle_policy.default_action_on_failure == "DO_NOTHING"
    gcp.done(_set_on_failure(gcp, "fleet", gcp.manager("fleet").fingerprint, "REPAIR"))
    assert _status(gcp, "fleet-b", "us-central1-b") == "RUNNING"
