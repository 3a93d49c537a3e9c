"""The ARM emulator's PostgreSQL flexible servers through azure-mgmt-postgresqlflexibleservers, as
ARM answers: 202 long-running writes followed through `Azure-AsyncOperation`, a restart with
planned failover that swaps the primary and standby zones after a while (`Restarting` and
`FailingOver` meanwhile), 409 `ServerIsBusy` while it runs, and no failover without HA."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.postgresqlflexibleservers.models import RestartParameter, ServerForPatch

from activities.azure.api import error_code
from gameday.lab.azure.postgres import postgres_client, seed_servers
from tests.support.servers import Servers

SUB = "00000000-0000-0000-0000-000000000000"
RG = "shop"
FAILOVER = RestartParameter(restart_with_failover=True, failover_mode="PlannedFailover")


@pytest.fixture
def client(servers: Servers) -> Iterator[Any]:
    from gameday.lab.azure.seed import create_resource_group
    from tests.support.clouds import AzureLab

    assert servers.azure is not None
    servers.reset_azure()
    ca = servers.env["GAMEDAY_AZURE_CA_BUNDLE"]
    lab = AzureLab(servers)
    arm = lab._connect()
    create_resource_group(arm, SUB, RG)
    arm.close()
    seed_servers(servers.azure.url, ca, SUB, RG)
    made = postgres_client(servers.azure.url, ca, SUB, retry_total=0)
    yield made
    made.close()


def test_servers_read_and_listed_with_their_zones_and_ha(client: Any) -> None:
    shop = client.servers.get(RG, "shop-db")
    assert (shop.availability_zone, shop.high_availability.standby_availability_zone,
            shop.high_availability.mode, shop.high_availability.state, shop.state) == \
        ("1", "2", "ZoneRedundant", "Healthy", "Ready")
    listed = {s.name: (s.availability_zone, s.high_availability.mode)
              for s in client.servers.list_by_resource_group(RG)}
    assert listed == {"shop-db": ("1", "ZoneRedundant"), "carts-db": ("1", "ZoneRedundant"),
                      "orders-db": ("2", "ZoneRedundant"), "reports-db": ("1", "Disabled")}
    assert {s.name for s in client.servers.list_by_subscription()} == set(listed)
    with pytest.raises(ResourceNotFoundError):
        client.servers.get(RG, "missing-db")


def test_tags_are_patched_through_a_long_running_operation(client: Any) -> None:
    updated = client.servers.begin_update(RG, "orders-db", ServerForPatch(
        tags={"app": "shop", "gameday-run": "r1"})).result()
    assert updated.tags == {"app": "shop", "gameday-run": "r1"}
    assert client.servers.get(RG, "orders-db").tags == {"app": "shop", "gameday-run": "r1"}


def test_planned_failover_swaps_the_zones_after_a_while_and_is_busy_meanwhile(
        client: Any, servers: Servers) -> None:
    assert servers.azure is not None
    servers.azure.postgres.failover_seconds = 2.0
    began = time.monotonic()
    poller = client.servers.begin_restart(RG, "shop-db", FAILOVER)
    during = client.servers.get(RG, "shop-db")
    assert (during.state, during.high_availability.state, during.availability_zone) == \
        ("Restarting", "FailingOver", "1")
    with pytest.raises(HttpResponseError) as busy:
        client.servers.begin_restart(RG, "shop-db", FAILOVER)
    assert (busy.value.status_code, error_code(busy.value)) == (409, "ServerIsBusy")
    with pytest.raises(HttpResponseError) as busy_tags:
        client.servers.begin_update(RG, "shop-db", ServerForPatch(tags={}))
    assert busy_tags.value.status_code == 409
    poller.result()
    assert time.monotonic() - began >= 1.9
    after = client.servers.get(RG, "shop-db")
    assert (after.state, after.high_availability.state, after.availability_zone,
            after.high_availability.standby_availability_zone) == ("Ready", "Healthy", "2", "1")


def test_failover_without_high_availability_is_refused(client: Any) -> None:
    with pytest.raises(HttpResponseError) as refused:
        client.servers.begin_restart(RG, "reports-db", FAILOVER)
    assert (refused.value.status_code, error_code(refused.value)) == (400, "OperationFailed")
    assert client.servers.get(RG, "reports-db").state == "Ready"
