"""The emulator's Cloud SQL Admin API through the real client (google-api-python-client's
`sqladmin` v1, its discovery document from the wheel): instances with HA, labels guarded by
`settingsVersion`, and `failover` as a long operation that swaps the primary and standby zones,
refused as Cloud SQL refuses it (no HA, another operation running, a stale version)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gameday.lab.gcp import ComputeEmulator
from gameday.lab.gcp.sqladmin import LAB_DATABASES, seed_sql

PROJECT = "sql-lab"


@pytest.fixture
def sql() -> Iterator[tuple[ComputeEmulator, Any]]:
    server = ComputeEmulator(host="127.0.0.1", port=0)
    server.start()
    server.failover_seconds = 0.6
    seed_sql(server.url, PROJECT)
    yield server, build("sqladmin", "v1", static_discovery=True, credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": server.url})
    server.stop()


def _error(exc: HttpError) -> tuple[int, str, str]:
    error = json.loads(exc.content)["error"]
    return error["code"], error["errors"][0]["reason"], error["message"]


def test_the_seeded_instances_have_cloud_sqls_shape(sql):
    _, service = sql
    listed = service.instances().list(project=PROJECT).execute()
    shapes = {i["name"]: (i["gceZone"], i.get("secondaryGceZone"), i["settings"]["availabilityType"],
                          i["state"]) for i in listed["items"]}
    assert shapes == {
        "shop-db": ("us-central1-a", "us-central1-b", "REGIONAL", "RUNNABLE"),
        "orders-db": ("us-central1-a", "us-central1-c", "REGIONAL", "RUNNABLE"),
        "ledger-db": ("us-central1-b", "us-central1-a", "REGIONAL", "RUNNABLE"),
        "reports-db": ("us-central1-a", None, "ZONAL", "RUNNABLE")}
    assert len(shapes) == len(LAB_DATABASES)
    with pytest.raises(HttpError) as missing:
        service.instances().get(project=PROJECT, instance="nope").execute()
    assert _error(missing.value)[:2] == (404, "instanceDoesNotExist")


def test_labels_are_patched_against_the_settings_version(sql):
    _, service = sql
    before = service.instances().get(project=PROJECT, instance="shop-db").execute()
    version = before["settings"]["settingsVersion"]
    service.instances().patch(project=PROJECT, instance="shop-db", body={"settings": {
        "settingsVersion": version, "userLabels": {"gameday-run": "r1", "app": None}}}).execute()
    after = service.instances().get(project=PROJECT, instance="shop-db").execute()
    assert after["settings"]["userLabels"] == {"tier": "db", "gameday-run": "r1"}
    assert int(after["settings"]["settingsVersion"]) == int(version) + 1
    with pytest.raises(HttpError) as stale:
        service.instances().patch(project=PROJECT, instance="shop-db", body={"settings": {
            "settingsVersion": version, "userLabels": {"x": "y"}}}).execute()
    assert _error(stale.value) == (412, "staleData", "Condition does not match.")


def test_a_failover_is_a_long_operation_that_swaps_the_zones(sql):
    server, service = sql
    version = service.instances().get(project=PROJECT, instance="shop-db").execute()[
        "settings"]["settingsVersion"]
    op = service.instances().failover(project=PROJECT, instance="shop-db", body={
        "failoverContext": {"settingsVersion": version}}).execute()
    assert (op["kind"], op["operationType"], op["status"], op["targetId"]) == \
        ("sql#operation", "FAILOVER", "PENDING", "shop-db")
    during = service.instances().get(project=PROJECT, instance="shop-db").execute()
    assert (during["state"], during["gceZone"]) == ("MAINTENANCE", "us-central1-a")
    assert service.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == \
        "RUNNING"
    with pytest.raises(HttpError) as busy:
        service.instances().failover(project=PROJECT, instance="shop-db", body={}).execute()
    assert _error(busy.value) == (409, "operationInProgress", "Operation failed because another "
                                  "operation was already in progress.")
    time.sleep(server.failover_seconds)  # the failover lands whether or not anyone polls it
    with server.lock:
        server.settle_sql()
    after = service.instances().get(project=PROJECT, instance="shop-db").execute()
    assert (after["state"], after["gceZone"], after["secondaryGceZone"]) == \
        ("RUNNABLE", "us-central1-b", "us-central1-a")
    assert service.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == \
        "DONE"


def test_a_failover_is_refused_without_ha_or_with_a_stale_version(sql):
    _, service = sql
    with pytest.raises(HttpError) as zonal:
        service.instances().failover(project=PROJECT, instance="reports-db", body={}).execute()
    assert _error(zonal.value)[:2] == (400, "invalidRequest")
    with pytest.raises(HttpError) as stale:
        service.instances().failover(project=PROJECT, instance="orders-db", body={
            "failoverContext": {"settingsVersion": "99"}}).execute()
    assert _error(stale.value)[:2] == (412, "staleData")
    instances = service.instances().list(project=PROJECT).execute()["items"]
    assert {i["name"]: i["state"] for i in instances} == dict.fromkeys(
        ("shop-db", "orders-db", "ledger-db", "reports-db"), "RUNNABLE")
