"""The fault registry: every cloud offers every action or says it does not, every fault fits the
`Fault` protocol, every activity name the workflows build is one the worker registers, and the
generated activities re-check the guardrails and check the checkpoint before any cloud call."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.registry import (
    ACTIONS,
    CLOUDS,
    FAULTS,
    SWEEPERS,
    VERBS,
    CloudActivities,
    Fault,
    NotSupported,
    Offered,
    Sweeper,
    _load,
    connect,
    parity_problems,
)
from gameday.plan import FaultRequest, PrepareRequest, StepRequest, watch_activity_name
from gameday.runbook import BlackholeRegionStep, FaultStep, Guardrails
from gameday.support import not_supported
from tests.support.gameday import aws_zone_step, runbook
from worker import ROLES, role_activities

ROOT = Path(__file__).resolve().parent.parent


def _actions_of(step_type: Any) -> set[str]:
    return set(typing.get_args(step_type.model_fields["action"].annotation))


STEP_ACTIONS = {action for step in typing.get_args(FaultStep) for action in _actions_of(step)}
"""Every fault action a runbook can name (the runbook's own models)."""

UNIT_ACTIONS = (STEP_ACTIONS - _actions_of(BlackholeRegionStep)) | _actions_of(
    typing.get_type_hints(BlackholeRegionStep.zone_step)["return"])
"""The actions of what is prepared, applied and restored: a region step's units are zone steps."""


# --- parity ---------------------------------------------------------------------------------


def test_every_cloud_offers_every_action_or_says_it_does_not() -> None:
    assert parity_problems(FAULTS) == []
    assert set(ACTIONS) == STEP_ACTIONS
    assert {cloud for cloud, _ in FAULTS} == set(CLOUDS) == set(SWEEPERS)


def test_a_cloud_lacking_an_action_another_offers_is_reported() -> None:
    lacking = {key: entry for key, entry in FAULTS.items() if key != ("azure", "evacuate_region")}
    assert parity_problems(lacking) == [
        "azure has no entry for evacuate_region, which aws, gcp offer(s): add its fault module, "
        "or NotSupported(reason)"]
    explicit = {**lacking, ("azure", "evacuate_region"): NotSupported("no Traffic Manager here")}
    assert parity_problems(explicit) == []


def test_not_supported_is_one_sentence_naming_cloud_action_and_reason(monkeypatch) -> None:
    monkeypatch.setitem(FAULTS, ("gcp", "blackhole_region"), NotSupported("zones only"))
    sentence = FAULTS[("gcp", "blackhole_region")].sentence("gcp", "blackhole_region")  # type: ignore[union-attr]
    assert sentence == "blackhole_region is not supported on gcp: zones only"
    assert not_supported("aws", "blackhole_region") is None
    activities = CloudActivities("gcp")
    step = runbook({"id": "cut", "action": "blackhole_region", "duration": "1m", "target": {
        "cloud": "gcp", "project": "gameday-lab", "region": "us-central1"}}).steps[0]
    with pytest.raises(ApplicationError) as refused:  # a run that got past validate is refused
        activities.by_name["gcp.resolve_blackhole_region"](StepRequest(
            run_id="r", step=step, guardrails=Guardrails(gcp_projects=["gameday-lab"])))
    assert refused.value.non_retryable
    assert refused.value.message == "step cut: blackhole_region is not supported on gcp: zones only"


# --- every fault fits ---------------------------------------------------------------------------


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_offered_fault_and_sweeper_fits_its_protocol(cloud: str) -> None:
    connection = connect(cloud)
    for (of, action), entry in FAULTS.items():
        if of != cloud or not isinstance(entry, Offered):
            continue
        fault = _load(cloud, entry.fault)(connection)
        assert isinstance(fault, Fault), f"{cloud} {action}: {entry.fault} is not a Fault"
        assert issubclass(fault.State, BaseModel)
        assert set(entry.verbs) <= set(VERBS)
    assert isinstance(_load(cloud, SWEEPERS[cloud])(connection), Sweeper)  # type: ignore[index]


# --- activity names -------------------------------------------------------------------------


def _registered(role: str) -> set[str]:
    return {activity._Definition.must_from_callable(fn).name or "" for fn in role_activities(None, role)}  # type: ignore[arg-type]


def _names_the_workflows_build() -> set[str]:
    """Every activity name the workflows' source can build, read from its calls of
    `execute_activity` and `execute_local_activity`; a way of naming this test does not know
    fails it, so that no new name goes unchecked."""
    names: set[str] = set()
    for path in sorted((ROOT / "workflows").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "activity_name":
                # a step is resolved under its own action; what is prepared, applied and
                # restored (a checkpoint's action, when the verb is a variable) is a unit
                verb = node.args[1]
                if isinstance(verb, ast.Constant):
                    verbs, actions = [verb.value], (STEP_ACTIONS if verb.value == "resolve"
                                                    else UNIT_ACTIONS)
                else:
                    verbs, actions = list(VERBS), UNIT_ACTIONS
                names |= {f"{cloud}.{verb_name}_{action}" for cloud in CLOUDS
                          for verb_name in verbs for action in actions}
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute_activity", "execute_local_activity",
                                           "start_activity")):
                continue
            first = node.args[0]
            where = f"{path.name}:{node.lineno}"
            if isinstance(first, ast.Constant):
                names.add(first.value)
            elif isinstance(first, ast.JoinedStr):
                parts = first.values
                assert len(parts) == 2 and isinstance(parts[1], ast.Constant), where
                suffix = str(parts[1].value)
                assert suffix.startswith("."), where
                names |= {f"{cloud}{suffix}" for cloud in CLOUDS}
            elif isinstance(first, ast.Call) and isinstance(first.func, ast.Name) \
                    and first.func.id == "watch_activity_name":
                names |= {watch_activity_name(cloud) for cloud in CLOUDS}
            else:
                assert isinstance(first, ast.Call) and isinstance(first.func, ast.Name) \
                    and first.func.id == "activity_name", f"{where}: an activity named in a way " \
                    "this test does not read"
    return names


def test_every_activity_name_the_workflows_build_is_registered_by_the_worker() -> None:
    registered = set().union(*(_registered(role) for role in ROLES))
    wanted = _names_the_workflows_build()
    assert {"aws.resolve_blackhole_region", "gcp.apply_blackhole_zone", "azure.sweep_leftover",
            "gameday.run_state"} <= wanted
    # an action a cloud does not offer is refused by its resolve: nothing else is ever called
    never = {f"{cloud}.{verb}_{action}" for (cloud, action), entry in FAULTS.items()
             if isinstance(entry, NotSupported) for verb in VERBS if verb != "resolve"}
    assert sorted(wanted - registered - never) == []
    assert never & registered == set()


def test_each_cloud_role_registers_only_its_own_cloud() -> None:
    for cloud in CLOUDS:
        names = _registered(cloud)
        assert names and all(name.startswith(f"{cloud}.") for name in names)
        assert f"{cloud}.resolve_blackhole_region" in names
        assert f"{cloud}.prepare_blackhole_region" not in names  # a region is prepared per zone


def test_the_names_are_those_running_histories_hold() -> None:
    """Renaming an activity strands every GameDay in flight: the set is fixed."""
    expected = {f"{cloud}.{name}" for cloud in CLOUDS for name in (
        "resolve_blackhole_zone", "resolve_blackhole_region", "prepare_blackhole_zone",
        "apply_blackhole_zone", "restore_blackhole_zone", "resolve_evacuate_region",
        "prepare_evacuate_region", "apply_evacuate_region", "restore_evacuate_region",
        "resolve_stop_instances", "prepare_stop_instances", "apply_stop_instances",
        "restore_stop_instances", "find_leftovers", "sweep_leftover", "check_permissions",
        "watch_for_new_resources")}
    expected |= {f"{cloud}.{verb}_{action}" for cloud in CLOUDS for verb in VERBS
                 for action in ("deny_capacity", "failover_database")}
    expected |= {f"{cloud}.{verb}_{action}" for cloud in CLOUDS
                 for action in ("partition_regions", "evacuate_zone")
                 for verb in (VERBS if isinstance(FAULTS[(cloud, action)], Offered) else ("resolve",))}
    assert set().union(*(_registered(cloud) for cloud in CLOUDS)) == expected


# --- the adapter, against moto ----------------------------------------------------------------------


def _prepared(activities: CloudActivities) -> tuple[FaultRequest, Any]:
    book = runbook(aws_zone_step())
    step = book.steps[0]
    resolved = activities.by_name["aws.resolve_blackhole_zone"](
        StepRequest(run_id="registry-test", step=step, guardrails=book.guardrails))
    checkpoint = activities.by_name["aws.prepare_blackhole_zone"](
        PrepareRequest(run_id="registry-test", step=step, resolved=resolved,
                       guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails), book


def test_the_generated_apply_rechecks_the_guardrails_before_any_change(aws: dict[str, Any]) -> None:
    from gameday.lab.aws import acl_snapshot

    activities = CloudActivities("aws")
    request, _ = _prepared(activities)
    before = acl_snapshot()
    elsewhere = request.model_copy(update={"guardrails": Guardrails(aws_accounts=["999999999999"])})
    with pytest.raises(ApplicationError) as refused:
        activities.by_name["aws.apply_blackhole_zone"](elsewhere)
    assert refused.value.type == "Refused" and refused.value.non_retryable
    assert acl_snapshot() == before


def test_a_checkpoint_the_fault_cannot_read_is_refused_before_any_call(aws: dict[str, Any]) -> None:
    from gameday.lab.aws import acl_snapshot

    activities = CloudActivities("aws")
    request, _ = _prepared(activities)
    before = acl_snapshot()
    foreign = request.model_copy(update={"checkpoint": request.checkpoint.model_copy(
        update={"state": {"records": []}})})
    with pytest.raises(ApplicationError) as refused:
        activities.by_name["aws.apply_blackhole_zone"](foreign)
    assert refused.value.non_retryable and "checkpoint's state" in str(refused.value)
    with pytest.raises(ApplicationError) as blocked:  # a restore never gives up: it retries
        activities.by_name["aws.restore_blackhole_zone"](foreign)
    assert blocked.value.type == "RestoreBlocked" and not blocked.value.non_retryable
    assert acl_snapshot() == before


def test_the_registry_holds_every_gap_of_gameday_support_and_no_other() -> None:
    from gameday.support import NOT_SUPPORTED

    gaps = {key: entry.reason for key, entry in FAULTS.items() if isinstance(entry, NotSupported)}
    assert gaps == NOT_SUPPORTED


def test_validate_refuses_an_action_the_cloud_does_not_offer_at_its_line(monkeypatch, tmp_path) -> None:
    from gameday import support
    from gameday.loader import check_runbook

    monkeypatch.setitem(support.NOT_SUPPORTED, ("gcp", "evacuate_region"), "no global load balancer")
    path = tmp_path / "gaps.yaml"
    path.write_text(
        "name: gaps\napprovers: [ic@example.com]\nmax_duration: 10m\n"
        "guardrails: {gcp_projects: [gameday-lab]}\n"
        "steps:\n"
        "  - id: drain\n"
        "    action: evacuate_region\n"
        "    duration: 1m\n"
        "    target: {cloud: gcp, project: gameday-lab, region: us-central1,\n"
        "             backend_services: [web]}\n")
    runbook_found, problems = check_runbook(path)
    assert runbook_found is None
    assert [str(p) for p in problems] == [
        f"{path}:7: steps[0].action: step 'drain': evacuate_region is not supported on gcp: "
        "no global load balancer"]
