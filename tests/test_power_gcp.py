"""GCP stop_instances against the Compute emulator with Compute Engine's timing: instances between
two states when the fault arrives, one already stopped, a crash mid-apply, repeated and throttled
restores, refusals, the sweeper after a terminated run, and the shop's view of it. The scenario
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

from activities.gcp.power import PowerState, label_text, mark_labels, marked_by, text_of
from activities.registry import CloudActivities
from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint, FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import Guardrails, StopInstancesStep
from gameday.sweep import SweepScope
from tests.support.gameday import approve, phase_is, runbook, start, step_state, wait_for
from tests.support.power_gcp import GcpPowerLab, realistic_power
from tests.support.servers import Servers

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


def test_an_instance_of_a_managed_group_is_refused_before_any_change(lab, gcp):
    manager = f"projects/1234/zones/{ZONE}/instanceGroupManagers/web-mig"
    _insert(lab.servers, "web-mig-x1z2",
            metadata={"items": [{"key": "created-by", "value": manager}]})
    before = lab.snapshot()
    lab.faults()
    with pytest.raises(ApplicationError) as refused:
        _resolve(gcp)
    assert refused.value.type == "Refused"
    assert "managed instance group web-mig" in str(refused.value)
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
