"""GCP impersonation beyond the faults: the sweep (Compute Engine and Cloud SQL) and `gameday
plan`'s permission check are made as the project's `GAMEDAY_GCP_IMPERSONATE` service account,
as the faults' calls are.

Google's token endpoint is not in the lab, so each client factory is asked, as on Google, for the
clients of a service account; it records whom, and hands back the lab's clients, so that the
sweep and the check still really run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities.gcp import GcpZoneBlackhole, api, database, permissions
from activities.gcp.permissions import GcpPermissions
from activities.gcp.sweep import GcpSweeper
from gameday.plan import (
    FaultRequest,
    PermissionCheck,
    PrepareRequest,
    ResolvedStep,
    Scope,
    StepRequest,
)
from gameday.sweep import SweepScope
from tests.support.clouds import GcpLab
from tests.support.gameday import runbook

RUN = "impersonated-sweep-run"
ACTING_AS = f"gameday@{GcpLab.project}.iam.gserviceaccount.com"


@pytest.fixture
def gcp_lab(servers: Any) -> Iterator[GcpLab]:
    lab = GcpLab(servers)
    lab.seed()
    yield lab
    lab.faults()


def _as_on_google(monkeypatch: pytest.MonkeyPatch, servers: Any) -> list[tuple[str, str | None]]:
    """From here on: no emulator endpoint and impersonation on, as a worker on Google runs;
    returns the (API, service account) of every client asked for, as they are asked."""
    lab = servers.env["GAMEDAY_GCP_ENDPOINT"]
    asked: list[tuple[str, str | None]] = []
    factories = {"compute": (api, "_compute"), "sqladmin": (database, "_service"),
                 "cloudresourcemanager": (permissions, "_service")}
    for name, (module, attribute) in factories.items():
        lab_clients = getattr(module, attribute)

        def recording(endpoint: str | None, account: str | None = None, *, name: str = name,
                      lab_clients: Any = lab_clients) -> Any:
            assert endpoint is None  # asked for Google's
            asked.append((name, account))
            return lab_clients(lab)
        monkeypatch.setattr(module, attribute, recording)
    monkeypatch.delenv("GAMEDAY_GCP_ENDPOINT")
    monkeypatch.setenv("GAMEDAY_GCP_IMPERSONATE", "gameday@{project}.iam.gserviceaccount.com")
    return asked


def _left_behind(lab: GcpLab) -> None:
    """A zone blackhole applied by a run that is over (outside Temporal: nothing owns it)."""
    fault = GcpZoneBlackhole()
    book = runbook(lab.zone_step("cut-a", None), {"id": "then", "action": "wait",
                                                  "duration": "1s"})
    [step] = book.fault_steps()
    resolved = fault.resolve(StepRequest(run_id=RUN, step=step, guardrails=book.guardrails))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=step, resolved=resolved,
                                              guardrails=book.guardrails))
    fault.apply(FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails))


def test_the_sweep_finds_and_undoes_as_the_projects_service_account(gcp_lab, servers,
                                                                    monkeypatch):
    before = gcp_lab.snapshot()
    _left_behind(gcp_lab)
    asked = _as_on_google(monkeypatch, servers)
    sweeper = GcpSweeper()
    found = sweeper.find(SweepScope(gcp_projects=[GcpLab.project]))
    assert {x.run_id for x in found} == {RUN}
    own, *for_project = asked  # the worker's own first: the sweep fails there without credentials
    assert own == ("compute", None)
    assert {api for api, _ in for_project} == {"compute", "sqladmin"}
    assert {account for _, account in for_project} == {ACTING_AS}
    asked.clear()
    for leftover in found:
        sweeper.sweep(leftover)
    assert asked and {account for _, account in asked} == {ACTING_AS}
    assert gcp_lab.snapshot() == before


def test_the_permission_check_asks_as_the_projects_service_account(gcp_lab, servers,
                                                                   monkeypatch):
    asked = _as_on_google(monkeypatch, servers)
    scope = Scope(cloud="gcp", account=GcpLab.project, region="us-central1",
                  zone=GcpLab.zone)
    report = GcpPermissions().check(PermissionCheck(steps=[
        ResolvedStep(step_id="cut-a", action="blackhole_zone", scope=scope, resources=[])]))
    assert report.missing == []
    assert asked == [("cloudresourcemanager", ACTING_AS)]
