"""GCP evacuate_zone against the Compute emulator, through the real activities: the zone's
backends drained and each capacityScaler restored exactly (a repeated apply or restore changes
nothing more), refusals in one sentence before any change, and the overlap with a region
evacuation of the same service. The scenario suite (tests/test_scenarios.py -k gcp-evacuate_zone)
runs the rest (abort, cancel, watchdog, SIGKILL, throttled restore) through its lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.cloud import compute_v1
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from gameday.lab.gcp.seed import GcpClients
from gameday.plan import FaultRequest, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import EvacuateZoneStep, Guardrails
from tests.support.gameday import runbook
from tests.support.servers import Servers
from tests.support.zonal_evacuation_gcp import SERVICES, ZONE, GcpZonalEvacuationLab
from workflows.planning import overlap_problems

PROJECT = GcpZonalEvacuationLab.project
RUN = "zonal-evacuation-test-run"
GUARDRAILS = Guardrails(gcp_projects=[PROJECT])


@pytest.fixture
def lab(servers: Servers) -> Iterator[GcpZonalEvacuationLab]:
    lab = GcpZonalEvacuationLab(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture(scope="module")
def gcp() -> CloudActivities:
    return CloudActivities("gcp")


def _step(services: list[str], zone: str = ZONE) -> EvacuateZoneStep:
    return EvacuateZoneStep.model_validate({
        "id": "drain-zone", "action": "evacuate_zone",
        "target": {"cloud": "gcp", "project": PROJECT, "zone": zone,
                   "backend_services": services}})


def _resolve(gcp: CloudActivities, services: list[str], zone: str = ZONE) -> ResolvedStep:
    return gcp.by_name["gcp.resolve_evacuate_zone"](
        StepRequest(run_id=RUN, step=_step(services, zone), guardrails=GUARDRAILS))


def _prepared(gcp: CloudActivities, services: list[str]) -> FaultRequest:
    checkpoint = gcp.by_name["gcp.prepare_evacuate_zone"](PrepareRequest(
        run_id=RUN, step=_step(services), resolved=_resolve(gcp, services),
        guardrails=GUARDRAILS))
    return FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)


def _refusal(call) -> str:
    with pytest.raises(ApplicationError) as refused:
        call()
    assert refused.value.non_retryable
    return str(refused.value)


def test_the_zone_is_drained_and_each_scaler_restored_exactly(lab, gcp):
    before = lab.snapshot()
    plan = _resolve(gcp, SERVICES)
    assert sorted((r.detail["backend_service"], r.name, r.detail["capacity_scaler"])
                  for r in plan.resources) == [("web", "web-us-central1-a", "1.0"),
                                               ("web-canary", "web-us-central1-a", "0.5")]
    request = _prepared(gcp, SERVICES)
    assert request.checkpoint.resources == 2

    applied = gcp.by_name["gcp.apply_evacuate_zone"](request)
    assert (applied.changed, applied.unchanged) == (2, 0)
    assert lab.blackholed()
    again = gcp.by_name["gcp.apply_evacuate_zone"](request)
    assert (again.changed, again.unchanged) == (0, 2)

    restored = gcp.by_name["gcp.restore_evacuate_zone"](request)
    assert (restored.changed, restored.unchanged) == (2, 0)
    assert lab.snapshot() == before  # 0.5 is 0.5 again, not the default 1.0
    repeated = gcp.by_name["gcp.restore_evacuate_zone"](request)
    assert (repeated.changed, repeated.unchanged) == (0, 2)
    assert lab.snapshot() == before


def test_a_zone_without_backends_and_an_unknown_service_are_refused(lab, gcp):
    before = lab.snapshot()
    sentence = _refusal(lambda: _resolve(gcp, SERVICES, zone="us-central1-c"))
    assert "no backend of web, web-canary has its group in us-central1-c" in sentence
    sentence = _refusal(lambda: _resolve(gcp, ["nope"]))
    assert "backend service nope does not exist in project gameday-lab" in sentence
    assert lab.snapshot() == before


def test_a_drain_that_would_leave_a_service_no_capacity_is_refused_before_any_change(lab, gcp):
    """`solo` has its only backend in the zone: draining it would leave it nothing to serve."""
    clients = GcpClients(lab.servers.gcp.url)
    group = clients.groups.get(project=PROJECT, zone=ZONE, instance_group=f"web-{ZONE}").self_link
    clients.wait(PROJECT, clients.services.insert_unary(
        project=PROJECT, backend_service_resource=compute_v1.BackendService(
            name="solo", protocol="HTTP", port_name="http", load_balancing_scheme="EXTERNAL",
            backends=[compute_v1.Backend(group=group, balancing_mode="UTILIZATION")])))
    before = lab.snapshot()
    sentence = _refusal(lambda: _resolve(gcp, ["web", "solo"]))
    assert sentence.endswith(f"evacuating {ZONE} would leave backend service solo no capacity: "
                             f"no backend outside {ZONE} has capacityScaler > 0")
    assert lab.snapshot() == before


def test_a_capacity_gone_elsewhere_after_the_plan_is_refused_at_apply(lab, gcp):
    """Someone drains web's other backends after prepare: the apply re-checks and changes
    nothing rather than leave web no capacity."""
    request = _prepared(gcp, ["web"])
    clients = GcpClients(lab.servers.gcp.url)
    service = clients.services.get(project=PROJECT, backend_service="web")
    backends = [compute_v1.Backend(b) for b in service.backends]
    for backend in backends:
        if ZONE not in backend.group:
            backend.capacity_scaler = 0.0
    clients.wait(PROJECT, clients.services.patch_unary(
        project=PROJECT, backend_service="web", backend_service_resource=compute_v1.BackendService(
            backends=backends, fingerprint=service.fingerprint)))
    before = lab.snapshot()
    sentence = _refusal(lambda: gcp.by_name["gcp.apply_evacuate_zone"](request))
    assert "would leave backend service web no capacity" in sentence
    assert lab.snapshot() == before


def test_a_zonal_and_a_regional_evacuation_of_one_service_may_not_run_together(lab, gcp):
    """Both change the service's traffic: the second would checkpoint the first's drain."""
    together = runbook({"parallel": [
        {"id": "drain-region", "action": "evacuate_region", "duration": "1m", "target": {
            "cloud": "gcp", "project": PROJECT, "region": "us-central1",
            "backend_services": ["web"]}},
        {"id": "drain-zone", "action": "evacuate_zone", "duration": "1m", "target": {
            "cloud": "gcp", "project": PROJECT, "zone": ZONE, "backend_services": ["web"]}}]})
    region_step, zone_step = together.steps[0].parallel
    resolved = [gcp.by_name[f"gcp.resolve_{step.action}"](
        StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS)) for step in (region_step, zone_step)]
    [problem] = overlap_problems(together, resolved)
    assert problem.startswith("steps drain-region and drain-zone would both change 1 resources")
