"""GCP deny_capacity against the Compute emulator: exact restore of each mode and policy, an
autoscaler already OFF left OFF, a stale fingerprint read again, an unknown MIG refused, and MIGs
deleted mid-fault. The scenario suite (tests/test_scenarios.py -k gcp-deny_capacity) runs the
rest (abort, cancel, watchdog, SIGKILL, throttled restore) through `GcpCapacityLab`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint, FaultRequest, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import DenyCapacityStep, Guardrails
from tests.support.capacity_gcp import REGION, GcpCapacityLab
from tests.support.servers import Servers

PROJECT = GcpCapacityLab.project
RUN = "capacity-test-run"
GUARDRAILS = Guardrails(gcp_projects=[PROJECT])
BASE = f"/compute/v1/projects/{PROJECT}/regions/{REGION}"


@pytest.fixture
def lab(servers: Servers) -> Iterator[GcpCapacityLab]:
    lab = GcpCapacityLab(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture(scope="module")
def gcp() -> CloudActivities:
    return CloudActivities("gcp")


def _step(names: list[str]) -> DenyCapacityStep:
    return DenyCapacityStep.model_validate({
        "id": "no-capacity", "action": "deny_capacity",
        "target": {"cloud": "gcp", "project": PROJECT, "region": REGION,
                   "instance_group_managers": names}})


def _resolve(gcp: CloudActivities, names: list[str]) -> ResolvedStep:
    return gcp.by_name["gcp.resolve_deny_capacity"](
        StepRequest(run_id=RUN, step=_step(names), guardrails=GUARDRAILS))


def _prepared(gcp: CloudActivities, names: list[str]) -> FaultRequest:
    resolved = _resolve(gcp, names)
    checkpoint: Checkpoint = gcp.by_name["gcp.prepare_deny_capacity"](PrepareRequest(
        run_id=RUN, step=_step(names), resolved=resolved, guardrails=GUARDRAILS))
    return FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)


def _add_batch_mig(servers: Servers) -> None:
    """`batch-mig`: its autoscaler already OFF, autohealing on instance status after 30 s."""
    url = f"{servers.gcp.url}{BASE}"
    httpx.post(f"{url}/instanceGroupManagers", json={
        "name": "batch-mig", "targetSize": 1, "instanceTemplate": "global/instanceTemplates/b",
        "autoHealingPolicies": [{"initialDelaySec": 30}]}).raise_for_status()
    httpx.post(f"{url}/autoscalers", json={
        "name": "batch-mig-autoscaler", "description": "paused by ops",
        "target": f"{BASE}/instanceGroupManagers/batch-mig".removeprefix("/compute/v1/"),
        "autoscalingPolicy": {"mode": "OFF", "minNumReplicas": 1, "maxNumReplicas": 3}},
    ).raise_for_status()


def _patches(lab: GcpCapacityLab, what: str) -> list[dict]:
    return [c for c in lab.calls(f"PATCH {BASE}/") if what in c["key"]]


def test_restore_returns_each_mode_and_policy_exactly_and_off_stays_off(lab, gcp):
    _add_batch_mig(lab.servers)
    before = lab.snapshot()
    names = ["web-mig", "api-mig", "batch-mig"]
    plan = _resolve(gcp, names)
    assert [(r.name, r.detail["mode"], r.detail["autohealing"]) for r in plan.resources] == [
        ("web-mig", "ON", "web-http after 120s"), ("api-mig", "ONLY_SCALE_OUT", "api-tcp after 300s"),
        ("batch-mig", "OFF", "instance status after 30s")]
    request = _prepared(gcp, names)
    applied = gcp.by_name["gcp.apply_deny_capacity"](request)
    assert (applied.changed, applied.unchanged) == (3, 0)
    during = lab.groups()
    assert {n: (g["autoscalingPolicy"]["mode"], g["autoHealingPolicies"])
            for n, g in during.items()} == {n: ("OFF", []) for n in names}
    assert _patches(lab, "/autoscalers") and not _patches(lab, "batch-mig-autoscaler")
    again = gcp.by_name["gcp.apply_deny_capacity"](request)
    assert (again.changed, again.unchanged) == (0, 3)
    restored = gcp.by_name["gcp.restore_deny_capacity"](request)
    assert (restored.changed, restored.unchanged, restored.notes) == (3, 0, [])
    after = lab.snapshot()
    assert after == before
    assert after["groups"]["api-mig"]["autoscalingPolicy"]["mode"] == "ONLY_SCALE_OUT"
    assert after["groups"]["batch-mig"]["autoscalingPolicy"]["mode"] == "OFF"
    assert [p["initialDelaySec"] for n in ("web-mig", "api-mig", "batch-mig")
            for p in after["groups"][n]["autoHealingPolicies"]] == [120, 300, 30]
    repeated = gcp.by_name["gcp.restore_deny_capacity"](request)
    assert (repeated.changed, repeated.unchanged) == (0, 3)
    assert lab.snapshot() == before


def test_a_stale_fingerprint_is_read_again_and_the_patch_retried(lab, gcp):
    request = _prepared(gcp, ["web-mig"])
    lab.faults(FaultRule(match=f"PATCH {BASE}/instanceGroupManagers/web-mig", status=412,
                         code="conditionNotMet", count=1,
                         message="Supplied fingerprint does not match current fingerprint."))
    applied = gcp.by_name["gcp.apply_deny_capacity"](request)
    assert applied.changed == 1
    patches = _patches(lab, "/instanceGroupManagers/web-mig")
    assert [c["injected"] for c in patches] == [True, False]
    assert lab.groups()["web-mig"]["autoHealingPolicies"] == []


def test_an_unknown_mig_is_refused_before_any_change(lab, gcp):
    before = lab.snapshot()
    lab.faults()
    with pytest.raises(ApplicationError) as refused:
        _resolve(gcp, ["web-mig", "nowhere-mig"])
    assert refused.value.type == "TargetNotFound"
    assert "managed instance group nowhere-mig does not exist in region us-central1" in str(
        refused.value)
    assert [c for c in lab.servers.gcp_calls() if c["method"] != "GET"] == []
    assert lab.snapshot() == before


def test_a_mig_or_autoscaler_deleted_mid_fault_is_said_not_retried(lab, gcp):
    request = _prepared(gcp, ["web-mig", "api-mig"])
    gcp.by_name["gcp.apply_deny_capacity"](request)
    url = f"{lab.servers.gcp.url}{BASE}"
    httpx.delete(f"{url}/autoscalers/web-mig-autoscaler").raise_for_status()
    httpx.delete(f"{url}/autoscalers/api-mig-autoscaler").raise_for_status()
    httpx.delete(f"{url}/instanceGroupManagers/api-mig").raise_for_status()
    restored = gcp.by_name["gcp.restore_deny_capacity"](request)
    assert restored.notes == [
        "autoscaler web-mig-autoscaler of managed instance group web-mig no longer exists; its "
        "mode has nothing to restore",
        "managed instance group api-mig no longer exists; it has nothing to restore"]
    assert restored.changed == 1
    assert lab.groups()["web-mig"]["autoHealingPolicies"][0]["initialDelaySec"] == 120
