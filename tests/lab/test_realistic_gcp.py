"""The Compute Engine emulator's realistic mode through google-cloud-compute: per-project quota
buckets, over the limit 403 `rateLimitExceeded` (or 429) as Compute Engine answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp import ComputeEmulator
from gameday.lab.realistic import Bucket, RealisticConfig

PROJECT = "gameday-lab"
SLOW = Bucket(burst=2, refill=0.01)


@pytest.fixture(scope="module")
def server() -> Iterator[ComputeEmulator]:
    emulator = ComputeEmulator(host="127.0.0.1", port=0).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcp(server: ComputeEmulator) -> Iterator[ComputeEmulator]:
    httpx.post(f"{server.url}/_emulator/reset").raise_for_status()
    yield server
    server.limits.configure(RealisticConfig())


def clients(emulator: ComputeEmulator) -> dict[str, Any]:
    options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=emulator.url),
                               "credentials": AnonymousCredentials()}
    return {"networks": compute_v1.NetworksClient(**options),
            "operations": compute_v1.GlobalOperationsClient(**options)}


def realistic(emulator: ComputeEmulator, **fields: Any) -> None:
    body = RealisticConfig(enabled=True, mutation_latency_ms=0, read_latency_ms=0, **fields)
    httpx.post(f"{emulator.url}/_emulator/limits", json=body.model_dump()).raise_for_status()


def insert(networks: compute_v1.NetworksClient, name: str) -> compute_v1.Operation:
    return networks.insert_unary(project=PROJECT, network_resource=compute_v1.Network(name=name),
                                 retry=None)


def limits(emulator: ComputeEmulator) -> dict[str, Any]:
    return httpx.get(f"{emulator.url}/_emulator/limits").json()


def test_documented_buckets(gcp):
    buckets = limits(gcp)["buckets"]
    assert buckets == {name: {"burst": 1500, "refill": 25}
                       for name in ("mutations", "reads", "lists", "operation-reads")}


def test_over_the_limit_is_403_rate_limit_exceeded(gcp):
    realistic(gcp, buckets={"mutations": SLOW})
    networks = clients(gcp)["networks"]
    insert(networks, "one")
    insert(networks, "two")
    with pytest.raises(exceptions.Forbidden) as raised:
        insert(networks, "three")
    error = raised.value
    assert error.code == 403
    assert error.errors[0]["reason"] == "rateLimitExceeded"
    assert error.errors[0]["domain"] == "usageLimits"
    assert error.reason == "RATE_LIMIT_EXCEEDED"
    assert "Quota exceeded" in error.message
    names = [n.name for n in networks.list(project=PROJECT)]
    assert names == ["one", "two"]  # the refused insert changed nothing
    assert limits(gcp)["throttled"] == {"mutations": 1}


def test_the_429_form_raises_too_many_requests(gcp):
    realistic(gcp, buckets={"mutations": SLOW}, gce_status=429)
    networks = clients(gcp)["networks"]
    insert(networks, "one")
    insert(networks, "two")
    with pytest.raises(exceptions.TooManyRequests) as raised:
        insert(networks, "three")
    assert raised.value.errors[0]["reason"] == "rateLimitExceeded"
    assert raised.value.reason == "RATE_LIMIT_EXCEEDED"


def test_quota_groups_are_counted_apart(gcp):
    realistic(gcp, buckets={"mutations": SLOW, "lists": SLOW})
    made = clients(gcp)
    operation = insert(made["networks"], "one")
    made["operations"].wait(project=PROJECT, operation=operation.name, retry=None)
    made["operations"].get(project=PROJECT, operation=operation.name, retry=None)
    made["networks"].get(project=PROJECT, network="one", retry=None)
    list(made["networks"].list(project=PROJECT, retry=None))
    list(made["networks"].list(project=PROJECT, retry=None))
    with pytest.raises(exceptions.Forbidden):
        list(made["networks"].list(project=PROJECT, retry=None))
    insert(made["networks"], "two")  # lists exhausted; mutations still hold a token
    report = limits(gcp)
    assert report["served"] == {"mutations": 2, "operation-reads": 2, "reads": 1, "lists": 2}
    assert report["throttled"] == {"lists": 1}


def test_buckets_are_per_project(gcp):
    realistic(gcp, buckets={"mutations": SLOW})
    networks = clients(gcp)["networks"]
    insert(networks, "one")
    insert(networks, "two")
    networks.insert_unary(project="another-project", network_resource=compute_v1.Network(
        name="three"), retry=None)
    assert limits(gcp)["throttled_total"] == 0


def test_under_the_limit_nothing_changes(gcp):
    realistic(gcp)
    made = clients(gcp)
    for index in range(20):
        operation = insert(made["networks"], f"net-{index}")
        done = made["operations"].wait(project=PROJECT, operation=operation.name, retry=None)
        assert done.status == compute_v1.Operation.Status.DONE and not done.error.errors
    assert len(list(made["networks"].list(project=PROJECT))) == 20
    assert limits(gcp)["throttled_total"] == 0
