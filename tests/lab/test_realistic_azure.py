"""The ARM emulator's realistic mode through azure-mgmt-network: subscription buckets for writes,
deletes and reads, `x-ms-ratelimit-remaining-subscription-*` on answers, and over the limit 429
`SubscriptionRequestsThrottled` with `Retry-After`, as ARM answers."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from gameday.lab.azure import ResourceManagerEmulator, make_certificate
from gameday.lab.azure.clients import ArmClients, connect
from gameday.lab.azure.seed import create_resource_group
from gameday.lab.realistic import Bucket, RealisticConfig

SUB = "00000000-0000-0000-0000-000000000000"
RG = "rg"
SLOW = Bucket(burst=2, refill=0.01)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ResourceManagerEmulator, str]]:
    ca, cert, key = make_certificate(tmp_path_factory.mktemp("arm-certs"))
    emulator = ResourceManagerEmulator(certfile=cert, keyfile=key).start()
    yield emulator, ca
    emulator.stop()


@pytest.fixture
def arm(server: tuple[ResourceManagerEmulator, str]) -> Iterator[ResourceManagerEmulator]:
    emulator, _ = server
    admin(server, "POST", "reset")
    yield emulator
    emulator.limits.configure(RealisticConfig())


@pytest.fixture
def strict(server: tuple[ResourceManagerEmulator, str], arm: ResourceManagerEmulator
           ) -> Iterator[ArmClients]:
    """Clients that never retry (azure-core would wait out `Retry-After` ten times)."""
    made = connect(arm.url, server[1], SUB, retry_total=0)
    create_resource_group(made, SUB, RG)
    yield made
    made.close()


def admin(server: tuple[ResourceManagerEmulator, str], method: str, action: str,
          body: Any = None) -> Any:
    emulator, ca = server
    answer = httpx.request(method, f"{emulator.url}/_emulator/{action}", json=body,
                           verify=ssl.create_default_context(cafile=ca))
    answer.raise_for_status()
    return answer.json() if answer.content else None


def realistic(server: tuple[ResourceManagerEmulator, str], **buckets: Bucket | None) -> None:
    body = RealisticConfig(enabled=True, mutation_latency_ms=0, read_latency_ms=0, buckets=buckets)
    admin(server, "POST", "limits", body.model_dump())


def nsg(name: str) -> dict[str, Any]:
    return {"location": "eastus", "properties": {"securityRules": []}}


def test_documented_buckets(server, arm):
    assert admin(server, "GET", "limits")["buckets"] == {
        "writes": {"burst": 200, "refill": 10}, "deletes": {"burst": 200, "refill": 10},
        "reads": {"burst": 250, "refill": 25}}


def test_over_the_limit_is_429_with_retry_after(server, strict):
    realistic(server, writes=Bucket(burst=2, refill=0.01))
    groups = strict.network.network_security_groups
    headers: list[dict[str, str]] = []
    hook = {"raw_response_hook": lambda response: headers.append(dict(response.http_response.headers))}
    groups.begin_create_or_update(RG, "one", nsg("one"), **hook).result()
    groups.begin_create_or_update(RG, "two", nsg("two"), **hook).result()
    key = "x-ms-ratelimit-remaining-subscription-writes"
    assert [h[key] for h in headers if key in h] == ["1", "0"]
    assert all("x-ms-ratelimit-remaining-subscription-reads" in h for h in headers if key not in h)
    with pytest.raises(HttpResponseError) as raised:
        groups.begin_create_or_update(RG, "three", nsg("three"))
    error = raised.value
    assert error.status_code == 429
    assert error.error is not None and error.error.code == "SubscriptionRequestsThrottled"
    assert "Please try again after" in error.message
    assert error.response is not None
    assert int(error.response.headers["Retry-After"]) >= 1
    assert [g.name for g in groups.list(RG)] == ["one", "two"]
    report = admin(server, "GET", "limits")
    assert report["throttled"] == {"writes": 1}


def test_reads_deletes_and_writes_are_separate_buckets(server, strict):
    realistic(server, writes=Bucket(burst=1, refill=0.01), reads=SLOW)
    groups = strict.network.network_security_groups
    groups.begin_create_or_update(RG, "one", nsg("one"), polling=False)  # no polls: no reads
    groups.get(RG, "one")
    groups.get(RG, "one")
    with pytest.raises(HttpResponseError) as raised:
        groups.get(RG, "one")
    assert raised.value.status_code == 429
    headers: list[dict[str, str]] = []
    groups.begin_delete(RG, "absent", polling=False, raw_response_hook=lambda response: headers.append(
        dict(response.http_response.headers)))
    assert headers[0]["x-ms-ratelimit-remaining-subscription-deletes"] == "199"
    assert admin(server, "GET", "limits")["throttled"] == {"reads": 1}


def test_under_the_limit_nothing_changes(server, strict):
    realistic(server)
    groups = strict.network.network_security_groups
    for index in range(10):
        groups.begin_create_or_update(RG, f"nsg-{index}", nsg(f"nsg-{index}")).result()
    assert len(list(groups.list(RG))) == 10
    assert admin(server, "GET", "limits")["throttled_total"] == 0
