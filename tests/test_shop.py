"""The lab's shop: its health really follows the faults, read from the emulators through the SDKs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.aws import AwsRegionEvacuation, AwsZoneBlackhole
from activities.azure import AzureRegionEvacuation, AzureZoneBlackhole
from activities.gcp import GcpRegionEvacuation, GcpZoneBlackhole
from gameday.lab.shop import ReadCache, Shop, aws_acl_cut, start_shop
from gameday.loader import load_runbook
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from tests.support.gameday import ACCOUNT, approve, phase_is, runbook, start, wait_for
from tests.support.servers import Servers

SUB = "00000000-0000-0000-0000-000000000000"
RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks" / "lab"
LAB_SHOP = "http://127.0.0.1:8270"


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def clouds(servers: Servers, aws: dict[str, Any]) -> Iterator[None]:
    """All three lab topologies, freshly seeded."""
    from gameday.lab.azure.seed import seed_azure
    from gameday.lab.gcp.seed import seed_gcp

    assert servers.azure is not None
    servers.reset_gcp()
    seed_gcp(servers.gcp.url)
    servers.reset_azure()
    seed_azure(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"])
    yield
    servers.gcp_faults()
    servers.azure_faults()


@pytest.fixture
def shop(servers: Servers) -> Iterator[str]:
    url, stop = start_shop(servers.env)
    yield url
    stop()


def get(url: str, path: str) -> tuple[int, dict[str, Any]]:
    started = time.monotonic()
    response = httpx.get(f"{url}{path}", timeout=5)
    # the shop decides within ANSWER_SECONDS (2 s); a loaded machine adds its own delay on top
    assert time.monotonic() - started < 3.5, f"{path} took too long"
    return response.status_code, response.json()


def eventually(url: str, path: str, status: int, timeout: float = 5) -> dict[str, Any]:
    """The answer of `path` once it is `status` (reads are cached for half a second)."""
    deadline = time.monotonic() + timeout
    while True:
        got, body = get(url, path)
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} is still {got}, not {status}: {body}")
        time.sleep(0.1)


def steady(url: str, path: str, status: int, seconds: float = 1.2) -> dict[str, Any]:
    """`path` answers `status` now and keeps doing so past the cache's lifetime."""
    deadline = time.monotonic() + seconds
    while True:
        got, body = get(url, path)
        assert got == status, f"{path} is {got}, not {status}: {body}"
        if time.monotonic() > deadline:
            return body
        time.sleep(0.2)


class Faults:
    """Gameday's own plain fault classes, driven as the workflow drives them."""

    def __init__(self) -> None:
        self.applied: list[tuple[Any, FaultRequest]] = []

    def inject(self, fault: Any, step: dict[str, Any], run_id: str = "shop-test") -> None:
        book = runbook({"duration": "1m", **step})  # a fault held for no time does not validate
        [fault_step] = book.fault_steps()
        resolved = fault.resolve(StepRequest(run_id=run_id, step=fault_step,
                                             guardrails=book.guardrails))
        checkpoint = fault.prepare(PrepareRequest(run_id=run_id, step=fault_step,
                                                  resolved=resolved, guardrails=book.guardrails))
        request = FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)
        fault.apply(request)
        self.applied.append((fault, request))

    def restore(self) -> None:
        while self.applied:
            fault, request = self.applied.pop()
            fault.restore(request)


@pytest.fixture
def faults() -> Iterator[Faults]:
    made = Faults()
    yield made
    made.restore()


def aws_zone(zone: str) -> dict[str, Any]:
    return {"id": f"cut-{zone}", "action": "blackhole_zone",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": zone,
                       "tags": {"gameday": "enabled"}}}


def aws_evacuation(region: str) -> dict[str, Any]:
    return {"id": f"evacuate-{region}", "action": "evacuate_region",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": region,
                       "hosted_zone_id": "shop.example.com",
                       "record_names": ["www.shop.example.com"]}}


def gcp_zone(zone: str) -> dict[str, Any]:
    return {"id": f"cut-{zone}", "action": "blackhole_zone",
            "target": {"cloud": "gcp", "project": "gameday-lab", "zone": zone,
                       "labels": {"gameday": "enabled"}}}


def azure_zone(zone: str) -> dict[str, Any]:
    return {"id": f"cut-eastus-{zone}", "action": "blackhole_zone",
            "target": {"cloud": "azure", "subscription": SUB, "resource_group": "shop",
                       "region": "eastus", "zone": zone, "tags": {"gameday": "enabled"}}}


def all_serve(url: str) -> None:
    body = eventually(url, "/health", 200)
    assert {c: a["serving"] for c, a in body["clouds"].items()} == {
        "aws": True, "gcp": True, "azure": True}
    for path in ("/aws/us-east-1/health", "/gcp/us-central1/health", "/gcp/us-east1/health",
                 "/azure/eastus/health"):
        assert eventually(url, path, 200)["modelled"] is True


# --- the shop against the emulators ------------------------------------------------------------


def test_aws_zone_then_region_outage(clouds: None, shop: str, faults: Faults) -> None:
    all_serve(shop)

    faults.inject(AwsZoneBlackhole(), aws_zone("us-east-1a"))
    body = eventually(shop, "/aws/us-east-1/health", 200)
    while body["zones"]["us-east-1a"]["serving"]:  # the cache may still hold the read before
        body = get(shop, "/aws/us-east-1/health")[1]
    assert body["serving"] and body["reason"] == "serving from us-east-1b, us-east-1c"
    [web] = [s for s in body["zones"]["us-east-1a"]["subnets"]]
    assert "gameday's deny-all network ACL" in web["cut"]
    steady(shop, "/aws/us-east-1/health", 200)

    faults.inject(AwsZoneBlackhole(), aws_zone("us-east-1b"))
    faults.inject(AwsZoneBlackhole(), aws_zone("us-east-1c"))
    body = eventually(shop, "/aws/us-east-1/health", 503)
    assert body["serving"] is False
    assert "every web-tier subnet of shop in us-east-1 is on a deny-all network ACL" in \
        body["reason"]
    glob = steady(shop, "/aws/global/health", 200)
    serving = {r["region"]: r["serving"] for r in glob["routes"]}
    assert serving == {"us-east-1": False, "us-west-2": True, "eu-west-1": True}
    assert glob["reason"] == "traffic reaches eu-west-1, us-west-2"
    assert get(shop, "/health")[0] == 200
    assert get(shop, "/aws/us-west-2/health")[1]["modelled"] is False

    # with us-east-1 down, moving the traffic out of the other regions takes the shop down
    faults.inject(AwsRegionEvacuation(), aws_evacuation("us-west-2"))
    faults.inject(AwsRegionEvacuation(), aws_evacuation("eu-west-1"))
    body = eventually(shop, "/aws/global/health", 503)
    assert body["reason"].startswith("every region that the weighted records of "
                                     "www.shop.example.com send traffic to is down")
    overall = eventually(shop, "/health", 503)
    assert overall["clouds"]["aws"]["serving"] is False
    assert overall["clouds"]["gcp"]["serving"] and overall["clouds"]["azure"]["serving"]

    faults.restore()
    all_serve(shop)


def test_gcp_zone_then_region_outage(clouds: None, shop: str, faults: Faults) -> None:
    all_serve(shop)
    faults.inject(GcpZoneBlackhole(), gcp_zone("us-central1-a"))
    body = eventually(shop, "/gcp/us-central1/health", 200)
    while body["zones"]["us-central1-a"]["serving"]:
        body = get(shop, "/gcp/us-central1/health")[1]
    assert body["reason"] == "serving from us-central1-b, us-central1-c"
    assert all("(gameday's) denies all" in i["cut"]
               for i in body["zones"]["us-central1-a"]["instances"])

    for zone in ("us-central1-b", "us-central1-c"):
        faults.inject(GcpZoneBlackhole(), gcp_zone(zone))
    eventually(shop, "/gcp/us-central1/health", 503)
    glob = steady(shop, "/gcp/global/health", 200)
    assert {r["group"]: r["serving"] for r in glob["routes"]} == {
        "web-us-central1-a": False, "web-us-central1-b": False, "web-us-east1-b": True}
    assert get(shop, "/gcp/us-east1/health")[0] == 200

    faults.inject(GcpRegionEvacuation(), {
        "id": "evacuate-us-east1", "action": "evacuate_region",
        "target": {"cloud": "gcp", "project": "gameday-lab", "region": "us-east1",
                   "backend_services": ["web"]}})
    body = eventually(shop, "/gcp/global/health", 503)
    assert [r["region_reason"] for r in body["routes"]
            if r["region"] == "us-east1"] == ["takes no traffic"]
    assert eventually(shop, "/health", 503)["clouds"]["gcp"]["serving"] is False

    faults.restore()
    all_serve(shop)


def test_azure_zone_then_region_outage(clouds: None, shop: str, faults: Faults) -> None:
    all_serve(shop)
    faults.inject(AzureZoneBlackhole(), azure_zone("1"))
    body = eventually(shop, "/azure/eastus/health", 200)
    while body["zones"]["1"]["serving"]:
        body = get(shop, "/azure/eastus/health")[1]
    assert body["reason"] == "serving from zones 2, 3"
    assert "gameday's deny-all NSG" in body["zones"]["1"]["vms"][0]["cut"]

    for zone in ("2", "3"):
        faults.inject(AzureZoneBlackhole(), azure_zone(zone))
    eventually(shop, "/azure/eastus/health", 503)
    glob = steady(shop, "/azure/global/health", 200)
    assert {r["region"]: r["serving"] for r in glob["routes"]} == {"eastus": False,
                                                                  "westus": True}

    faults.inject(AzureRegionEvacuation(), {
        "id": "evacuate-westus", "action": "evacuate_region",
        "target": {"cloud": "azure", "subscription": SUB, "resource_group": "shop",
                   "region": "westus", "traffic_manager_profiles": ["shop-tm"]}})
    eventually(shop, "/azure/global/health", 503)

    faults.restore()
    all_serve(shop)


def test_reads_are_cached_and_shared(clouds: None, shop: str, servers: Servers) -> None:
    all_serve(shop)
    time.sleep(0.6)
    servers.aws_faults()  # clears the call log
    started = time.monotonic()
    threads = [threading.Thread(target=get, args=(shop, "/aws/us-east-1/health"))
               for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = time.monotonic() - started
    calls = [c for c in servers.aws_calls() if "DescribeSubnets" in c["key"]]
    assert 1 <= len(calls) <= 1 + int(spent / 0.5) + 1, calls


def test_a_custom_acl_that_denies_before_it_allows_cuts_the_subnet(clouds: None, shop: str,
                                                                  aws: dict[str, Any]) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    acl = aws["acls"]["shop-web"]
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="-1",
                                 RuleAction="deny", Egress=False, CidrBlock="0.0.0.0/0")
    body = eventually(shop, "/aws/us-east-1/health", 503)
    cuts = {s["cut"] for z in body["zones"].values() for s in z["subnets"]}
    assert cuts == {f"network ACL {acl} denies all inbound traffic at rule 50, before its first "
                    "allow (rule 100)"}
    ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False)
    eventually(shop, "/aws/us-east-1/health", 200)


def test_acl_rules() -> None:
    def acl(*entries: tuple[int, bool, str, str], tags: dict[str, str] | None = None) -> Any:
        return {"NetworkAclId": "acl-1", "Tags": [{"Key": k, "Value": v}
                                                  for k, v in (tags or {}).items()],
                "Entries": [{"RuleNumber": n, "Egress": e, "RuleAction": a, "CidrBlock": c,
                             "Protocol": "-1"} for n, e, a, c in entries]}

    both = [(100, False, "allow", "0.0.0.0/0"), (100, True, "allow", "0.0.0.0/0"),
            (32767, False, "deny", "0.0.0.0/0"), (32767, True, "deny", "0.0.0.0/0")]
    assert aws_acl_cut(acl(*both)) is None
    assert aws_acl_cut(acl(*both, (10, False, "deny", "10.0.0.0/8"))) is None
    assert "outbound traffic at rule 99" in aws_acl_cut(acl(*both, (99, True, "deny", "0.0.0.0/0")))
    assert "allows no outbound" in aws_acl_cut(acl(*both[:1], (32767, True, "deny", "0.0.0.0/0")))
    assert "gameday's" in aws_acl_cut(acl(*both, tags={"gameday:run": "r"}))


def test_cache_serves_a_stale_value_for_a_while_when_a_read_fails() -> None:
    now = [0.0]
    cache = ReadCache(ttl=0.5, stale_for=10, clock=lambda: now[0])
    answers: list[Callable[[], Any]] = [lambda: 1, lambda: 1 / 0]
    assert cache.get("k", answers[0]) == 1
    assert cache.get("k", answers[1]) == 1 and cache.loads == 1  # within the ttl: no read
    now[0] = 1.0
    notes: list[str] = []
    assert cache.get("k", answers[1], notes) == 1 and "the read failed" in notes[0]
    now[0] = 20.0
    with pytest.raises(ZeroDivisionError):
        cache.get("k", answers[1])


def test_a_control_plane_that_hangs_is_a_503_within_the_deadline(servers: Servers) -> None:
    shop = Shop(servers.env, answer_within=0.5)
    try:
        shop.clouds["aws"].region = lambda region: time.sleep(3)
        started = time.monotonic()
        answer = shop.health("aws", "us-east-1")
        assert time.monotonic() - started < 1
        assert answer["serving"] is False and "did not answer within 0.5s" in answer["reason"]
    finally:
        shop.close()


def test_unknown_paths_and_unconfigured_clouds() -> None:
    url, stop = start_shop({})
    try:
        assert httpx.get(f"{url}/nope").status_code == 404
        status, body = get(url, "/gcp/global/health")
        assert status == 503 and "GAMEDAY_GCP_ENDPOINT is not set" in body["reason"]
        assert get(url, "/")[0] == 200
    finally:
        stop()


def test_python_dash_m_serves_and_prints_its_url(clouds: None, servers: Servers) -> None:
    process = subprocess.Popen([sys.executable, "-m", "gameday.lab.shop", "--port", "0"],
                               stdout=subprocess.PIPE, text=True,
                               env={**servers.env, "PATH": "/usr/bin:/bin"})
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        eventually(url, "/health", 200, timeout=30)
    finally:
        process.terminate()
        process.wait(10)


# --- the demo runbooks, end to end against a shop -----------------------------------------------


def _lab_runbook(name: str, shop_url: str) -> Any:
    """The lab runbook as read where the lab exports `GAMEDAY_SHOP_URL` (`gameday lab env`)."""
    book = load_runbook(RUNBOOKS / name, {"GAMEDAY_SHOP_URL": shop_url})
    assert book.steady_state is not None and book.steady_state.probes
    assert all(p.http is not None and p.http.url.startswith(f"{shop_url}/")
               for p in book.steady_state.probes)
    return book


@pytest.mark.parametrize("name", sorted(p.name for p in RUNBOOKS.glob("*.yaml")))
def test_every_lab_runbook_probes_the_shop_the_lab_exports(name: str) -> None:
    """Defect 11: with 8270 taken the lab's shop listens elsewhere, and says where."""
    elsewhere = "http://127.0.0.1:18270"
    book = load_runbook(RUNBOOKS / name, {"GAMEDAY_SHOP_URL": elsewhere})
    default = load_runbook(RUNBOOKS / name, {})
    if book.steady_state is None:
        assert "127.0.0.1:8270" not in (RUNBOOKS / name).read_text().split("steps:", 1)[1]
        return
    assert default.steady_state is not None
    for probe, fallback in zip(book.steady_state.probes, default.steady_state.probes, strict=True):
        assert probe.http is not None and fallback.http is not None
        assert probe.http.url.startswith(f"{elsewhere}/")
        assert fallback.http.url == probe.http.url.replace(elsewhere, LAB_SHOP)


def test_the_zone_outage_runbook_holds(clouds: None, shop: str, client: Any, runner: Any,
                                       task_queue: str) -> None:
    book = _lab_runbook("zone-outage-hypothesis-holds.yaml", shop)

    async def scenario() -> Any:
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.hypothesis_held, result.restored) == ("completed", True, True)


def test_the_region_outage_runbook_aborts_on_its_own(clouds: None, shop: str, client: Any,
                                                     runner: Any, task_queue: str) -> None:
    book = _lab_runbook("region-outage-hypothesis-breaks.yaml", shop)

    async def scenario() -> Any:
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        return await handle.result()

    started = time.monotonic()
    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.hypothesis_held, result.restored) == ("aborted", False, True)
    assert time.monotonic() - started < 30  # well before the 30s fault would have ended
    eventually(shop, "/aws/us-east-1/health", 200)
