"""Azure `failover_database` against the ARM emulator's flexible servers, through the registry's
activities (the scenario suite, `azure-failover_database`, runs the workflow: exact restore after
success, abort, cancel, a refused apply, a throttled restore, guardrails, SIGKILL, terminate).
These prove the rest: servers refused before any change, a server busy when the fault arrives,
`fail_back: false`, and the sweeper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.mgmt.postgresqlflexibleservers.models import RestartParameter
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.lab.azure.postgres import postgres_client
from gameday.lab.faults import FaultRule
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from gameday.sweep import SweepScope
from tests.support.failover_azure import NAMED, TARGETS, AzureFailoverLab
from tests.support.gameday import runbook
from tests.support.servers import Servers

RUN = "test-run-failover"
STEP_ID = "db-eastus-1"
RG = AzureFailoverLab.resource_group


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzureFailoverLab]:
    seeded = AzureFailoverLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    servers.azure_faults()


@pytest.fixture
def azure() -> CloudActivities:
    return CloudActivities("azure")


def _book(servers: list[str], **fields: Any) -> Any:
    return runbook({"id": STEP_ID, "action": "failover_database", "duration": "5m", **fields,
                    "target": {"cloud": "azure", "subscription": AzureFailoverLab.subscription,
                               "resource_group": RG, "region": "eastus", "zone": "1",
                               "servers": servers}})


def _inject(azure: CloudActivities, servers: list[str] = NAMED, **fields: Any) -> FaultRequest:
    """Resolve, prepare and apply the step in this process, as the workflow would."""
    book = _book(servers, **fields)
    [step] = book.fault_steps()
    resolved = azure.by_name["azure.resolve_failover_database"](
        StepRequest(run_id=RUN, step=step, guardrails=book.guardrails))
    checkpoint = azure.by_name["azure.prepare_failover_database"](PrepareRequest(
        run_id=RUN, step=step, resolved=resolved, guardrails=book.guardrails))
    request = FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)
    azure.by_name["azure.apply_failover_database"](request)
    return request


def _zones(lab: AzureFailoverLab) -> dict[str, str]:
    return {name: server["zone"] for name, server in lab.snapshot().items()}


@pytest.mark.parametrize("named, sentence", [
    ("reports-db", "PostgreSQL flexible server reports-db has high availability Disabled, not "
                   "ZoneRedundant"),
    ("ledger-db", "PostgreSQL flexible server ledger-db does not exist in resource group shop"),
])
def test_a_server_that_cannot_fail_over_is_refused_before_any_change(
        lab: AzureFailoverLab, azure: CloudActivities, named: str, sentence: str) -> None:
    before = lab.snapshot()
    with pytest.raises(ApplicationError) as refused:
        _inject(azure, ["shop-db", named])
    assert sentence in str(refused.value)
    assert lab.snapshot() == before  # shop-db, named first, was not touched either
    assert lab.calls("/restart") == [] and lab.calls("PATCH") == []


def test_a_server_busy_when_the_fault_arrives_is_waited_for(
        lab: AzureFailoverLab, azure: CloudActivities, servers: Servers) -> None:
    """A restart already running on shop-db is waited out; two restarts answered 409
    `ServerIsBusy` (another operation began meanwhile) are sent again; the restore is exact."""
    before = lab.snapshot()
    assert servers.azure is not None
    client = postgres_client(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                             lab.subscription)
    began = time.monotonic()
    try:
        client.servers.begin_restart(RG, "shop-db", RestartParameter(restart_with_failover=False))
    finally:
        client.close()
    lab.faults(FaultRule(match="/restart", count=2, status=409, code="ServerIsBusy"))
    request = _inject(azure)
    assert time.monotonic() - began >= 1.0  # the running restart was waited for
    assert _zones(lab) == {**{n: s["zone"] for n, s in before.items()}, **TARGETS}
    busy = [c for c in lab.calls("/restart") if c["injected"]]
    assert len(busy) == 2
    azure.by_name["azure.restore_failover_database"](request)
    assert lab.snapshot() == before


def test_fail_back_false_leaves_the_primaries_where_they_went_and_removes_the_tags(
        lab: AzureFailoverLab, azure: CloudActivities) -> None:
    before = lab.snapshot()
    request = _inject(azure, fail_back=False)
    azure.by_name["azure.restore_failover_database"](request)
    after = lab.snapshot()
    assert {name: after[name]["zone"] for name in TARGETS} == TARGETS
    assert {name: s["tags"] for name, s in after.items()} == \
        {name: s["tags"] for name, s in before.items()}
    assert after["orders-db"] == before["orders-db"]
    assert len(lab.calls("/restart")) == 2  # the failovers only: none back


def test_the_sweeper_fails_back_the_servers_a_dead_run_left(
        lab: AzureFailoverLab, azure: CloudActivities) -> None:
    before = lab.snapshot()
    _inject(azure)
    scope = SweepScope(azure_subscriptions=[lab.subscription])
    found = [x for x in azure.find_leftovers(scope) if x.kind == "postgresql-flexible-server"]
    assert {(x.id.rsplit("/", 1)[-1], x.run_id, x.step_id, x.detail["zone"]) for x in found} == \
        {("shop-db", RUN, STEP_ID, "1"), ("carts-db", RUN, STEP_ID, "1")}
    assert sum(azure.sweep_leftover(x).changed for x in found) == 2
    assert lab.snapshot() == before
    assert azure.find_leftovers(scope) == []
    assert sum(azure.sweep_leftover(x).changed for x in found) == 0  # safe to repeat
    assert lab.snapshot() == before


def test_the_shop_region_is_down_while_its_database_fails_over_then_recovers(
        lab: AzureFailoverLab, servers: Servers) -> None:
    """A failover is a short outage: the region takes no writes while `shop-db` restarts."""
    import httpx

    from gameday.lab.shop import start_shop

    assert servers.azure is not None
    servers.azure.postgres.failover_seconds = 3.0
    url, stop = start_shop(servers.env)
    client = postgres_client(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                             lab.subscription)
    try:
        def eventually(status: int) -> dict[str, Any]:
            deadline = time.monotonic() + 5
            while True:
                response = httpx.get(f"{url}/azure/eastus/health", timeout=5)
                if response.status_code == status or time.monotonic() > deadline:
                    assert response.status_code == status, response.json()
                    return dict(response.json())
                time.sleep(0.1)

        eventually(200)
        poller = client.servers.begin_restart(RG, "shop-db", RestartParameter(
            restart_with_failover=True, failover_mode="PlannedFailover"))
        down = eventually(503)
        assert down["reason"] == ("no database writer takes writes: database shop-db is "
                                  "Restarting (HA FailingOver)")
        poller.result()
        up = eventually(200)
        assert up["databases"]["shop-db"] == {"zone": "2", "cut": None}
    finally:
        client.close()
        stop()
