"""GCP stop_instances against the Compute emulator with Compute Engine's timing: instances between
two states when the fault arrives, one already stopped, a crash mid-apply, repeated and throttled
restores, refusals, a managed group's repairs held while its member is off (alone, and beside a
capacity step on the same group in one run), the sweeper after a terminated run, and the shop's
view of it. The scenario
suite (tests/test_scenarios.py -k gcp-stop_instances) runs the rest through `GcpPowerLab`."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.exceptions import ApplicationError

from activities.gcp.groups_hold import HeldGroup
from activities.gcp.power import PowerState, label_text, mark_labels, marked_by, text_of
from activities.registry import CloudActivities
from gameday.lab.faults import FaultRule
from gameday.lab.gcp.groups_seed import MEMBER_LABELS, MIG_MEMBERS
from gameday.plan import Checkpoint, FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import Guardrails, StopInstancesStep
from gameday.sweep import SweepScope
from tests.support.gameday import approve, phase_is, runbook, start, step_state, wait_for
from tests.support.power_gcp import GcpPowerLab, realistic_power
from tests.support.servers import Servers
from workflows.planning import overlap_problems

PROJECT = GcpPowerLab.project
ZONE = GcpPowerLab.zone
RUN = "power-test-run"
GUARDRAILS = Guardrails(gcp_projects=[PROJECT])
WEB_1, WEB_2, API = (f"web-{ZONE}-1", f"web-{ZONE}-2", f"api-{ZONE}-1")
BATCH = f"batch-{ZONE}-1"
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


@pytest.fixture
def lab(servers: Servers) -> Iterator[GcpPowerLab]:
    lab = GcpPowerLab(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture(scope="module")
def gcp() -> CloudActivities:
    return CloudActivities("gcp")


def _base(servers: Servers) -> str:
    return f"{servers.gcp.url}/compute/v1/projects/{PROJECT}/zones/{ZONE}"


def _power(servers: Servers, name: str, action: str) -> None:
    """Someone else's stop or start, not waited for."""
    httpx.post(f"{_base(servers)}/instances/{name}/{action}").raise_for_status()


def _status(lab: GcpPowerLab, name: str) -> str:
    return str(lab.snapshot()[name]["status"])


def _step(labels: dict[str, str] | None = None) -> StopInstancesStep:
    return StopInstancesStep.model_validate({
        "id": "power-cut", "action": "stop_instances",
        "target": {"cloud": "gcp", "project": PROJECT, "zone": ZONE,
                   "labels": {"gameday": "enabled"} if labels is None else labels}})


def _resolve(gcp: CloudActivities, step: StopInstancesStep | None = None) -> ResolvedStep:
    return gcp.by_name["gcp.resolve_stop_instances"](
        StepRequest(run_id=RUN, step=step or _step(), guardrails=GUARDRAILS))


def _prepared(gcp: CloudActivities, step: StopInstancesStep | None = None) -> FaultRequest:
    step = step or _step()
    resolved = _resolve(gcp, step)
    checkpoint: Checkpoint = gcp.by_name["gcp.prepare_stop_instances"](
        PrepareRequest(run_id=RUN, step=step, resolved=resolved, guardrails=GUARDRAILS))
    return FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)


def _apply(gcp: CloudActivities, request: FaultRequest) -> FaultResult:
    return gcp.by_name["gcp.apply_stop_instances"](request)


def _restore(gcp: CloudActivities, request: FaultRequest) -> FaultResult:
    return gcp.by_name["gcp.restore_stop_instances"](request)


def _marked(lab: GcpPowerLab) -> set[str]:
    return {name for name, i in lab.snapshot().items() if marked_by(i["labels"]) is not None}


def _errors(lab: GcpPowerLab) -> list[dict[str, Any]]:
    return [c for c in lab.servers.gcp_calls() if c["status"] >= 400 and not c["injected"]]


# --- arriving at instances between two states -------------------------------------------------


def test_instances_between_states_are_waited_for_and_an_off_one_stays_off(lab, gcp):
    """web-2 is STOPPING (someone's stop) and api-1 STAGING (someone's start) when gameday
    arrives; batch-1 has been off since the seed. Only the running and the starting are taken;
    apply waits for api-1 to run before stopping it; restore leaves web-2 and batch-1 off."""
    realistic_power(lab.servers, 1.0)
    _power(lab.servers, API, "stop")
    deadline = time.monotonic() + 10
    while _status(lab, API) != "TERMINATED" and time.monotonic() < deadline:
        time.sleep(0.1)
    realistic_power(lab.servers, 3.0)
    _power(lab.servers, WEB_2, "stop")
    _power(lab.servers, API, "start")
    lab.faults()
    assert (_status(lab, WEB_2), _status(lab, API), _status(lab, BATCH)) == (
        "STOPPING", "STAGING", "TERMINATED")

    resolved = _resolve(gcp)
    assert {r.id: r.detail["status"] for r in resolved.resources} == {WEB_1: "RUNNING",
                                                                       API: "STAGING"}
    request = _prepared(gcp)
    assert request.checkpoint.resources == 2
    result = _apply(gcp, request)
    assert (result.changed, result.notes) == (2, [])
    during = lab.snapshot()
    assert {n: during[n]["status"] for n in (WEB_1, WEB_2, API, BATCH)} == dict.fromkeys(
        (WEB_1, WEB_2, API, BATCH), "TERMINATED")  # web-2's own stop landed meanwhile
    assert _marked(lab) == {WEB_1, API}
    stops = [c["path"].rsplit("/", 2)[1] for c in lab.calls("/stop")]
    assert sorted(stops) == [API, WEB_1]  # api-1 stopped once it ran, web-2 never by gameday

    result = _restore(gcp, request)
    assert result.changed == 2
    after = lab.snapshot()
    assert {n: after[n]["status"] for n in (WEB_1, WEB_2, API, BATCH)} == {
        WEB_1: "RUNNING", API: "RUNNING", WEB_2: "TERMINATED", BATCH: "TERMINATED"}
    assert _marked(lab) == set()
    assert _errors(lab) == []  # no refused call: nothing was started while it was stopping


def test_a_restore_arriving_while_its_instance_is_still_stopping_waits_then_starts(lab, gcp):
    """Compute Engine refuses to start a STOPPING instance: restore waits for TERMINATED."""
    before = lab.snapshot()
    request = _prepared(gcp)
    realistic_power(lab.servers, 3.0)
    applying = threading.Thread(target=_apply, args=(gcp, request))
    applying.start()
    deadline = time.monotonic() + 10

    def stopping() -> bool:
        now = lab.snapshot()
        return all(now[name]["status"] == "STOPPING" for name in (WEB_1, WEB_2, API))

    while not stopping() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopping()
    _restore(gcp, request)  # while the apply's stops are still landing
    applying.join(30)
    assert lab.snapshot() == before
    assert _errors(lab) == []


# --- idempotence ------------------------------------------------------------------------------


def test_apply_repeated_after_a_crash_stops_only_what_is_left(lab, gcp):
    before = lab.snapshot()
    request = _prepared(gcp)
    lab.faults(FaultRule(match="/stop", after=1, count=1, status=403, code="forbidden"))
    with pytest.raises(ApplicationError):
        _apply(gcp, request)
    targets = {WEB_1, WEB_2, API}
    crashed = lab.snapshot()
    down = {n for n in targets if crashed[n]["status"] in ("STOPPING", "TERMINATED")}
    marked = _marked(lab)
    assert 1 <= len(down) <= 2 and down < marked <= targets  # each marked before its stop

    lab.faults()
    again = _apply(gcp, request)
    assert (again.changed, again.unchanged) == (3 - len(down), len(down))
    assert len(lab.calls("/stop")) == 3 - len(down)
    assert len(lab.calls("/setLabels")) == len(targets - marked)
    assert lab.blackholed()
    third = _apply(gcp, request)
    assert (third.changed, third.unchanged) == (0, 3)

    _restore(gcp, request)
    assert lab.snapshot() == before


def test_restore_repeated_changes_nothing(lab, gcp):
    before = lab.snapshot()
    request = _prepared(gcp)
    _apply(gcp, request)
    assert lab.blackholed()
    first = _restore(gcp, request)
    assert (first.changed, first.unchanged) == (3, 0)
    lab.faults()
    second = _restore(gcp, request)
    assert (second.changed, second.unchanged) == (0, 3)
    assert lab.calls("/start") == [] and lab.calls("/setLabels") == []
    assert lab.snapshot() == before


def test_a_throttled_restore_finishes_exactly(lab, gcp):
    before = lab.snapshot()
    request = _prepared(gcp)
    _apply(gcp, request)
    throttle = {"status": 429, "code": "rateLimitExceeded", "retry_after": 0}
    lab.faults(FaultRule(match="/start", count=2, **throttle),
               FaultRule(match="/setLabels", rate=0.5, **throttle), seed=3)
    result = _restore(gcp, request)
    assert result.changed == 3
    assert [c for c in lab.calls("/start") if c["injected"]]
    assert lab.snapshot() == before


# --- what is refused, what is empty -----------------------------------------------------------


def _insert(servers: Servers, name: str, **extra: Any) -> None:
    response = httpx.post(f"{_base(servers)}/instances", json={
        "name": name, "labels": {"gameday": "enabled"},
        "networkInterfaces": [{"network": "global/networks/shop-vpc"}], **extra})
    response.raise_for_status()


def test_an_instance_of_a_zonal_managed_group_is_refused_before_any_change(lab, gcp):
    manager = f"projects/1234/zones/{ZONE}/instanceGroupManagers/web-mig"
    _insert(lab.servers, "web-mig-x1z2",
            metadata={"items": [{"key": "created-by", "value": manager}]})
    before = lab.snapshot()
    lab.faults()
    with pytest.raises(ApplicationError) as refused:
        _resolve(gcp)
    assert refused.value.type == "Refused"
    assert "zonal managed instance group web-mig" in str(refused.value)
    assert lab.snapshot() == before
    assert [c for c in lab.servers.gcp_calls() if c["method"] == "POST"] == []


def test_an_instance_with_local_ssds_is_refused(lab, gcp):
    _insert(lab.servers, "cache-1", disks=[{"boot": True}, {"type": "SCRATCH"}])
    with pytest.raises(ApplicationError) as refused:
        _resolve(gcp)
    assert refused.value.type == "Refused" and "local SSD" in str(refused.value)


def test_labels_that_only_stopped_instances_carry_plan_nothing(lab, gcp):
    """Instances that carry the labels but are all off: nothing to stop is zero resources, not
    an error; labels that no instance carries are a target not found, as for a blackhole."""
    _insert(lab.servers, "idle-1", labels={"role": "idle"})
    realistic_power(lab.servers, 0.1)
    _power(lab.servers, "idle-1", "stop")
    time.sleep(0.3)
    assert _resolve(gcp, _step({"role": "idle"})).resources == []
    with pytest.raises(ApplicationError) as missing:
        _resolve(gcp, _step({"role": "nobody"}))
    assert missing.value.type == "TargetNotFound"


# --- members of a managed instance group ---------------------------------------------------------

MEMBER = next(name for name, zone in MIG_MEMBERS if zone == ZONE)
OTHER_MEMBER = next(name for name, zone in MIG_MEMBERS if zone != ZONE)
MIG_PATH = f"/compute/v1/projects/{PROJECT}/regions/us-central1/instanceGroupManagers"
REPAIR_SECONDS = 1.0


def _repairs_after(servers: Servers, seconds: float = REPAIR_SECONDS) -> None:
    with servers.gcp.lock:
        servers.gcp.repair_seconds = seconds


def _mig(servers: Servers, name: str = "web-mig") -> dict[str, Any]:
    """The MIG as the API shows it, without its fingerprint (every patch changes it)."""
    found = httpx.get(f"{servers.gcp.url}{MIG_PATH}/{name}").raise_for_status().json()
    return {key: value for key, value in found.items() if key != "fingerprint"}


def _on_failure(servers: Servers) -> str:
    return str(_mig(servers)["instanceLifecyclePolicy"]["defaultActionOnFailure"])


def _mutations(lab: GcpPowerLab) -> list[str]:
    """`PATCH web-mig` and `stop|start NAME`, in the order the emulator answered them."""
    found = []
    for call in lab.servers.gcp_calls():
        if call["method"] == "PATCH" and MIG_PATH in call["path"]:
            found.append(f"PATCH {call['path'].rsplit('/', 1)[1]}")
        elif call["method"] == "POST" and call["path"].rsplit("/", 1)[1] in ("stop", "start"):
            found.append(f"{call['path'].rsplit('/', 1)[1]} {call['path'].rsplit('/', 2)[1]}")
    return found


def test_a_mig_member_stays_off_past_its_repair_and_the_mig_is_restored_exactly(lab, gcp):
    """web-mig repairs a stopped member after 1 s; gameday holds that (DO_NOTHING) before the
    stop, so its member is still TERMINATED well past it, RUNNING after restore, and the MIG is
    exactly as before (policy REPAIR, autohealing and size untouched)."""
    _repairs_after(lab.servers)
    before, other = _mig(lab.servers), _status(lab, OTHER_MEMBER)
    step = _step(MEMBER_LABELS)
    assert [(r.kind, r.id) for r in _resolve(gcp, step).resources] == [
        ("instance", MEMBER), ("instance-group-manager", "web-mig")]
    request = _prepared(gcp, step)
    assert PowerState.model_validate(request.checkpoint.state).groups == [
        HeldGroup(region="us-central1", name="web-mig", on_failure="REPAIR")]
    lab.faults()
    applied = _apply(gcp, request)
    time.sleep(REPAIR_SECONDS + 1.0)
    assert (_status(lab, MEMBER), _status(lab, OTHER_MEMBER)) == ("TERMINATED", other)
    assert applied.changed == 2 and _on_failure(lab.servers) == "DO_NOTHING"
    assert _apply(gcp, request).changed == 0  # again: nothing is sent twice
    assert _restore(gcp, request).changed == 2
    assert _status(lab, MEMBER) == "RUNNING"
    assert _mig(lab.servers) == before
    assert _mutations(lab) == ["PATCH web-mig", f"stop {MEMBER}", f"start {MEMBER}",
                               "PATCH web-mig"]


def test_a_mig_that_already_does_nothing_on_failure_is_left_so(lab, gcp):
    manager = httpx.get(f"{lab.servers.gcp.url}{MIG_PATH}/web-mig").json()
    httpx.patch(f"{lab.servers.gcp.url}{MIG_PATH}/web-mig", json={
        "fingerprint": manager["fingerprint"],
        "instanceLifecyclePolicy": {"defaultActionOnFailure": "DO_NOTHING"}}).raise_for_status()
    before = _mig(lab.servers)
    request = _prepared(gcp, _step(MEMBER_LABELS))
    lab.faults()
    _apply(gcp, request)
    _restore(gcp, request)
    assert _mig(lab.servers) == before and _on_failure(lab.servers) == "DO_NOTHING"
    assert _mutations(lab) == [f"stop {MEMBER}", f"start {MEMBER}"]


def test_two_power_steps_holding_one_mig_at_once_are_refused_by_the_planner(lab, gcp):
    steps = [StopInstancesStep.model_validate({
        "id": f"power-{zone}", "action": "stop_instances", "duration": "2s",
        "target": {"cloud": "gcp", "project": PROJECT, "zone": zone, "labels": MEMBER_LABELS}})
        for _, zone in MIG_MEMBERS]
    resolved = [_resolve(gcp, step) for step in steps]
    assert [[r.id for r in x.resources] for x in resolved] == [
        [name, "web-mig"] for name, _ in MIG_MEMBERS]
    book = runbook({"parallel": [step.model_dump(mode="json", exclude_none=True)
                                 for step in steps]})
    [problem] = overlap_problems(book, resolved)
    assert "the power of web-mig" in problem


def test_a_power_step_and_a_capacity_step_over_one_mig_each_restore_their_own_part(
        lab, client, runner, task_queue):
    """In parallel in one run: the capacity step (autohealing removed, autoscaler OFF) ends
    first while the power step still holds web-mig's repairs; each puts back only its part."""
    _repairs_after(lab.servers)
    before, scaler = _mig(lab.servers), httpx.get(
        f"{lab.servers.gcp.url}{MIG_PATH.replace('instanceGroupManagers', 'autoscalers')}"
        "/web-mig-autoscaler").json()
    power = {"id": "power-mig", "action": "stop_instances", "duration": "4s",
             "target": {"cloud": "gcp", "project": PROJECT, "zone": ZONE,
                        "labels": MEMBER_LABELS}}
    capacity = {"id": "no-capacity", "action": "deny_capacity", "duration": "1s",
                "target": {"cloud": "gcp", "project": PROJECT, "region": "us-central1",
                           "instance_group_managers": ["web-mig"]}}

    async def scenario() -> Any:
        handle = await start(client, runbook({"parallel": [power, capacity]}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("no-capacity", "restored"))
        power_alone = (_mig(lab.servers), _status(lab, MEMBER))
        return power_alone, await handle.result()

    (alone, member), result = runner.run(scenario(), timeout=120)
    assert alone["instanceLifecyclePolicy"]["defaultActionOnFailure"] == "DO_NOTHING"
    assert alone["autoHealingPolicies"] == before["autoHealingPolicies"]
    assert member == "TERMINATED"
    assert (result.outcome, result.restored) == ("completed", True)
    assert _mig(lab.servers) == before and _status(lab, MEMBER) == "RUNNING"
    assert httpx.get(f"{lab.servers.gcp.url}{MIG_PATH.replace('instanceGroupManagers', 'autoscalers')}"
                     "/web-mig-autoscaler").json() == scaler


# --- the marks --------------------------------------------------------------------------------


@given(run=st.text(min_size=1, max_size=200), step=st.text(min_size=1, max_size=80))
def test_marks_are_valid_labels_that_name_the_run_and_step_exactly(run, step):
    marks = mark_labels(run, step)
    assert all(LABEL_KEY.fullmatch(k) and LABEL_VALUE.fullmatch(v) for k, v in marks.items())
    assert marked_by({"team": "ops", **marks}) == (run, step)
    assert text_of(label_text(run)) == run


def test_a_scheduled_run_id_reads_back_from_its_labels():
    run = "q4-zone-outage-workflow-2026-12-08T14:00:00Z"
    marks = mark_labels(run, "power-cut")
    assert marks["gameday-step"] == "power-cut"
    assert marked_by(marks) == (run, "power-cut")
    assert marked_by({"team": "ops"}) is None


# --- the sweeper ------------------------------------------------------------------------------


async def _leave_behind(client, task_queue, step: dict[str, Any]) -> str:
    """A run killed for good mid-fault: the GameDay and its dead man's switch both terminated."""
    handle = await start(client, runbook({**step, "duration": "10m"}), task_queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state(step["id"], "active"))
    await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
    await handle.terminate(reason="test: leave the fault behind")
    return handle.id


def test_the_sweeper_starts_what_a_terminated_run_stopped(lab, gcp, client, runner, task_queue):
    before = lab.snapshot()
    dead = runner.run(_leave_behind(client, task_queue, lab.zone_step("power-cut", None)),
                      timeout=120)
    assert lab.blackholed()

    scope = SweepScope(gcp_projects=[PROJECT])
    found = [x for x in gcp.find_leftovers(scope) if x.kind == "stopped-instance"]
    assert {x.detail["instance"] for x in found} == {WEB_1, WEB_2, API}
    assert {(x.run_id, x.step_id, x.location) for x in found} == {(dead, "power-cut", ZONE)}
    assert {x.detail["status"] for x in found} == {"TERMINATED"}

    for leftover in found:
        assert gcp.sweep_leftover(leftover).changed == 1
    assert lab.snapshot() == before
    assert gcp.find_leftovers(scope) == []
    again = [gcp.sweep_leftover(x) for x in found]  # sweeping twice changes nothing
    assert sum(r.changed for r in again) == 0 and all(r.notes for r in again)
    assert lab.snapshot() == before


def test_the_sweeper_leaves_an_instance_another_run_marked_since(lab, gcp):
    request = _prepared(gcp)
    _apply(gcp, request)
    [leftover] = [x for x in gcp.find_leftovers(SweepScope(gcp_projects=[PROJECT]))
                  if x.detail["instance"] == WEB_1]
    state = PowerState.model_validate(request.checkpoint.state)
    state.marks = mark_labels("another-run", "power-cut")
    other = FaultRequest(checkpoint=request.checkpoint.model_copy(
                             update={"state": state.model_dump(mode="json")}),
                         guardrails=GUARDRAILS)
    _apply(gcp, other)  # the other run's marks replace this run's on every instance
    result = gcp.sweep_leftover(leftover)
    assert result.changed == 0 and "left alone" in result.notes[0]
    assert _status(lab, WEB_1) == "TERMINATED"
    _restore(gcp, other)
    assert _marked(lab) == set()


# --- the shop ---------------------------------------------------------------------------------


def test_the_shop_serves_from_a_zone_only_while_a_web_instance_there_runs(lab, gcp):
    from gameday.lab.shop import start_shop

    url, stop = start_shop(lab.servers.env)
    try:
        def health() -> dict[str, Any]:
            deadline = time.monotonic() + 15
            while True:
                body = httpx.get(f"{url}/gcp/us-central1/health").json()
                if not body["zones"][ZONE]["serving"] or time.monotonic() > deadline:
                    return body
                time.sleep(0.2)

        request = _prepared(gcp)
        _apply(gcp, request)
        body = health()
        assert body["zones"][ZONE]["serving"] is False
        assert {i["name"]: i["status"] for i in body["zones"][ZONE]["instances"]} == {
            WEB_1: "TERMINATED", WEB_2: "TERMINATED"}
        assert body["reason"] == "serving from us-central1-b, us-central1-c"
        _restore(gcp, request)
    finally:
        stop()
