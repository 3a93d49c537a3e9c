"""The GCP module against the Compute Engine emulator: the plain classes directly, and the region
evacuation end to end through a real Temporal run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import compute_v1
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.gcp import (
    Compute,
    GcpRegionEvacuation,
    GcpZoneBlackhole,
    blackhole_tag,
    compute_clients,
    deny_rule_name,
)
from activities.gcp.api import call as _call
from activities.gcp.api import translated as _translated
from activities.registry import FaultAdapter
from activities.throttle import BUCKETS, STALL_VARIABLE
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.lab.faults import FaultRule
from gameday.lab.gcp.seed import seed_gcp
from gameday.plan import Checkpoint, FaultRequest, PrepareRequest, StepRequest
from gameday.runbook import BlackholeZoneStep, EvacuateRegionStep, Guardrails
from tests.support.gameday import abort, approve, phase_is, runbook, start, step_state, wait_for
from tests.support.servers import Servers

PROJECT = "gameday-lab"
ZONE = "us-central1-a"
RUN = "gcp-test-run"
GUARDRAILS = Guardrails(gcp_projects=[PROJECT])
TARGETS = {"web-us-central1-a-1", "web-us-central1-a-2", "api-us-central1-a-1",
           "batch-us-central1-a-1"}
NAME = r"[a-z]([-a-z0-9]*[a-z0-9])?"


@pytest.fixture
def gcp(servers: Servers) -> Iterator[Compute]:
    """A freshly seeded lab project; the clients gameday itself uses."""
    servers.reset_gcp()
    seed_gcp(servers.gcp.url, PROJECT)
    BUCKETS.clear()  # no test inherits another's throttled buckets
    yield compute_clients()
    servers.gcp_faults()


def _wait(compute: Compute, operation: compute_v1.Operation) -> None:
    if operation.zone:
        done = compute.zone_operations.wait(project=PROJECT, zone=operation.zone.rsplit("/", 1)[1],
                                            operation=operation.name)
    else:
        done = compute.global_operations.wait(project=PROJECT, operation=operation.name)
    assert not done.error.errors, done.error


def _tags(compute: Compute, name: str) -> list[str]:
    return list(compute.instances.get(project=PROJECT, zone=ZONE, instance=name).tags.items)


def _add_tag(compute: Compute, name: str, tag: str) -> None:
    instance = compute.instances.get(project=PROJECT, zone=ZONE, instance=name)
    _wait(compute, compute.instances.set_tags_unary(
        project=PROJECT, zone=ZONE, instance=name, tags_resource=compute_v1.Tags(
            items=[*instance.tags.items, tag], fingerprint=instance.tags.fingerprint)))


def _firewalls(compute: Compute) -> dict[str, compute_v1.Firewall]:
    return {rule.name: rule for rule in compute.firewalls.list(project=PROJECT)}


def _scalers(compute: Compute, service: str = "web") -> dict[str, float]:
    found = compute.backend_services.get(project=PROJECT, backend_service=service)
    return {b.group.rsplit("/", 1)[1]: round(b.capacity_scaler, 6) for b in found.backends}


def _set_scaler(compute: Compute, group: str, value: float, service: str = "web") -> None:
    found = compute.backend_services.get(project=PROJECT, backend_service=service)
    backends = []
    for backend in found.backends:
        changed = compute_v1.Backend(backend)
        if backend.group.endswith(f"/{group}"):
            changed.capacity_scaler = value
        backends.append(changed)
    _wait(compute, compute.backend_services.patch_unary(
        project=PROJECT, backend_service=service, backend_service_resource=compute_v1
        .BackendService(backends=backends, fingerprint=found.fingerprint)))


def _zone_step(zone: str = ZONE, step_id: str = "zone-outage") -> BlackholeZoneStep:
    return BlackholeZoneStep.model_validate({
        "id": step_id, "action": "blackhole_zone",
        "target": {"cloud": "gcp", "project": PROJECT, "zone": zone,
                   "labels": {"gameday": "enabled"}},
    })


def _evacuation_step(region: str = "us-central1", duration: str | None = None,
                     services: tuple[str, ...] = ("web",)) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "evacuate-central", "action": "evacuate_region",
        "target": {"cloud": "gcp", "project": PROJECT, "region": region,
                   "backend_services": list(services)},
    }
    if duration:
        step["duration"] = duration
    return step


def _blackhole_prepared(step: BlackholeZoneStep | None = None) -> tuple[GcpZoneBlackhole, Checkpoint]:
    fault = GcpZoneBlackhole()
    step = step or _zone_step()
    resolved = fault.resolve(StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=step, resolved=resolved,
                                              guardrails=GUARDRAILS))
    return fault, checkpoint


def _evacuation_prepared(**fields: Any) -> tuple[GcpRegionEvacuation, Checkpoint]:
    fault = GcpRegionEvacuation()
    step = EvacuateRegionStep.model_validate(_evacuation_step(**fields))
    resolved = fault.resolve(StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=step, resolved=resolved,
                                              guardrails=GUARDRAILS))
    return fault, checkpoint


# --- blackhole_zone -----------------------------------------------------------------------------


def test_blackhole_tags_the_targets_behind_deny_rules_and_restores(gcp: Compute) -> None:
    fault, checkpoint = _blackhole_prepared()
    tag = blackhole_tag(RUN, "zone-outage")
    before = {name: _tags(gcp, name) for name in TARGETS | {"legacy-us-central1-a-1"}}
    rules_before = set(_firewalls(gcp))
    request = FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)

    applied = fault.apply(request)
    again = fault.apply(request)

    assert (applied.changed, again.changed, again.unchanged) == (4, 0, 4)
    assert {n for n in before if tag in _tags(gcp, n)} == TARGETS
    made = {name: rule for name, rule in _firewalls(gcp).items() if name not in rules_before}
    assert len(made) == 4  # ingress and egress in shop-vpc and batch-vpc
    for rule in made.values():
        assert rule.priority == 0 and list(rule.target_tags) == [tag]
        assert [d.I_p_protocol for d in rule.denied] == ["all"]
        assert RUN in rule.description and "zone-outage" in rule.description
        ranges = rule.source_ranges if rule.direction == "INGRESS" else rule.destination_ranges
        assert list(ranges) == ["0.0.0.0/0"]
    assert {(r.network.rsplit("/", 1)[1], r.direction) for r in made.values()} == {
        (net, way) for net in ("shop-vpc", "batch-vpc") for way in ("INGRESS", "EGRESS")}

    restored = fault.restore(request)
    assert fault.restore(request).unchanged == 4
    assert restored.changed == 4
    assert {name: _tags(gcp, name) for name in before} == before
    assert set(_firewalls(gcp)) == rules_before


def test_restore_keeps_a_tag_added_during_the_fault(gcp: Compute) -> None:
    fault, checkpoint = _blackhole_prepared()
    request = FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)
    fault.apply(request)
    _add_tag(gcp, "web-us-central1-a-1", "added-by-oncall")

    fault.restore(request)

    assert _tags(gcp, "web-us-central1-a-1") == ["http-server", "web", "added-by-oncall"]


def test_an_instance_deleted_during_the_fault_does_not_break_restore(gcp: Compute) -> None:
    fault, checkpoint = _blackhole_prepared()
    request = FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)
    rules_before = set(_firewalls(gcp))
    fault.apply(request)
    _wait(gcp, gcp.instances.delete_unary(project=PROJECT, zone=ZONE,
                                          instance="api-us-central1-a-1"))

    result = fault.restore(request)

    assert result.changed == 3
    assert any("api-us-central1-a-1" in note for note in result.notes)
    assert _tags(gcp, "web-us-central1-a-2") == ["http-server", "web"]
    assert set(_firewalls(gcp)) == rules_before


def test_a_stale_fingerprint_on_set_tags_is_reread_and_retried(gcp: Compute,
                                                              servers: Servers) -> None:
    fault, checkpoint = _blackhole_prepared()
    servers.gcp_faults(FaultRule(match="/setTags", status=412, code="conditionNotMet", count=2))

    result = fault.apply(FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS))

    assert result.changed == 4
    set_tags = [c for c in servers.gcp_calls() if c["key"].endswith("/setTags")]
    assert [c["status"] for c in set_tags if c["injected"]] == [412, 412]
    tag = blackhole_tag(RUN, "zone-outage")
    assert all(tag in _tags(gcp, name) for name in TARGETS)
    fault.restore(FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS))


def test_a_zone_that_does_not_exist_is_a_clear_target_not_found(gcp: Compute) -> None:
    step = _zone_step(zone="us-central1-z")
    with pytest.raises(TargetNotFound, match="zone us-central1-z does not exist"):
        GcpZoneBlackhole().resolve(StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS))


def test_a_zone_without_matching_instances_is_target_not_found(gcp: Compute) -> None:
    step = _zone_step(zone="us-east1-c")
    with pytest.raises(TargetNotFound, match="no instance in us-east1-c"):
        GcpZoneBlackhole().resolve(StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS))


def test_apply_rechecks_the_guardrails(gcp: Compute) -> None:
    fault, checkpoint = _blackhole_prepared()
    other = Guardrails(gcp_projects=["other-project"])
    with pytest.raises(Refused, match="guardrails"):
        FaultAdapter("gcp", "blackhole_zone", fault).apply(FaultRequest(checkpoint=checkpoint,
                                                                        guardrails=other))
    assert not any(name.startswith("gameday-") for name in _firewalls(gcp))


def test_throttling_that_never_ends_is_a_retryable_error_with_retry_after(
        gcp: Compute, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throttled call waits (Retry-After) and is made again; only when no call succeeds for the
    stall limit does the throttle reach Temporal, still retryable, with its Retry-After."""
    monkeypatch.setenv(STALL_VARIABLE, "1")
    fault, checkpoint = _blackhole_prepared()
    servers.gcp_faults(FaultRule(match="/global/firewalls", status=429, retry_after=2))
    with pytest.raises(CloudError) as raised:
        fault.apply(FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS))
    assert (raised.value.retryable, raised.value.retry_after) == (True, 2.0)
    assert len([c for c in servers.gcp_calls() if c["injected"]]) >= 2  # waited, made again


@settings(max_examples=200, deadline=None)
@given(run=st.text(min_size=1, max_size=300), step=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}"
                                                                  r"[a-z0-9])?", fullmatch=True),
       network=st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_names_are_valid_compute_names_and_deterministic(run: str, step: str,
                                                         network: str) -> None:
    link = f"https://www.googleapis.com/compute/v1/projects/p/global/networks/{network}"
    for made in (blackhole_tag(run, step), deny_rule_name(run, step, link, "INGRESS"),
                 deny_rule_name(run, step, link, "EGRESS")):
        assert re.fullmatch(NAME, made) and len(made) <= 63
    assert deny_rule_name(run, step, link, "INGRESS") == deny_rule_name(run, step, link, "INGRESS")
    assert deny_rule_name(run, step, link, "INGRESS") != deny_rule_name(run, step, link, "EGRESS")


# --- evacuate_region ----------------------------------------------------------------------------


def test_evacuate_then_fail_back_exactly(gcp: Compute) -> None:
    _set_scaler(gcp, "web-us-central1-b", 0.5)
    before = _scalers(gcp)
    fault, checkpoint = _evacuation_prepared()
    request = FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)

    assert fault.apply(request).changed == 2
    assert fault.apply(request).unchanged == 2
    assert _scalers(gcp) == {"web-us-central1-a": 0.0, "web-us-central1-b": 0.0,
                             "web-us-east1-b": 1.0}

    assert fault.restore(request).changed == 2
    assert fault.restore(request).unchanged == 2
    assert _scalers(gcp) == before == {"web-us-central1-a": 1.0, "web-us-central1-b": 0.5,
                                       "web-us-east1-b": 1.0}


def test_evacuation_is_refused_when_no_capacity_would_remain_outside(gcp: Compute) -> None:
    _set_scaler(gcp, "web-us-east1-b", 0.0)
    before = _scalers(gcp)
    with pytest.raises(Refused, match="no backend outside us-central1 has capacityScaler > 0"):
        _evacuation_prepared()
    assert _scalers(gcp) == before


def test_apply_refuses_when_the_capacity_outside_was_drained_meanwhile(gcp: Compute) -> None:
    fault, checkpoint = _evacuation_prepared()
    _set_scaler(gcp, "web-us-east1-b", 0.0)
    before = _scalers(gcp)
    with pytest.raises(Refused, match="no capacity"):
        fault.apply(FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS))
    assert _scalers(gcp) == before


def test_an_unknown_backend_service_is_target_not_found(gcp: Compute) -> None:
    with pytest.raises(TargetNotFound, match="backend service api does not exist"):
        _evacuation_prepared(services=("web", "api"))


def test_evacuation_end_to_end_with_a_throttled_fail_back(gcp: Compute, servers: Servers,
                                                          client, runner, task_queue) -> None:
    _set_scaler(gcp, "web-us-central1-b", 0.5)
    before = _scalers(gcp)
    step_id = "evacuate-central"

    async def scenario() -> Any:
        handle = await start(client, runbook(_evacuation_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        await wait_for(handle, step_state(step_id, "active"), what="evacuation active")
        during = _scalers(gcp)
        throttle = {"match": "PATCH /compute/v1/projects/gameday-lab/global/backendServices",
                    "status": 429, "code": "rateLimitExceeded", "retry_after": 0}
        servers.gcp_faults(FaultRule(count=2, **throttle))
        await abort(handle, reason="throttled fail-back drill")
        return during, await handle.result()

    during, result = runner.run(scenario(), timeout=120)
    assert during == {"web-us-central1-a": 0.0, "web-us-central1-b": 0.0, "web-us-east1-b": 1.0}
    assert (result.outcome, result.restored) == ("aborted", True)
    assert result.steps[0].resources == 2
    throttled = [c for c in servers.gcp_calls() if c["injected"]]
    assert len(throttled) == 2
    assert _scalers(gcp) == before


# --- errors a user reads ------------------------------------------------------------------------


def test_a_missing_zone_or_instance_is_one_sentence_naming_it(gcp: Compute) -> None:
    """The SDK says `404 GET http://…/zones/us-central1-q/instances: …`; the user reads which
    resource of which project does not exist (issue 12, defect 9)."""
    with pytest.raises(CloudError) as raised, _translated("listing instances in us-central1-q"):
        _call(gcp.instances.list, project=PROJECT, zone="us-central1-q")
    assert str(raised.value) == ("GCP refused listing instances in us-central1-q: zone "
                                 "us-central1-q does not exist in project gameday-lab")
    with pytest.raises(CloudError) as raised, _translated("reading instance nope"):
        _call(gcp.instances.get, project=PROJECT, zone=ZONE, instance="nope")
    assert str(raised.value) == ("GCP refused reading instance nope: instance nope does not "
                                 "exist in zone us-central1-a in project gameday-lab")
    assert not raised.value.retryable
