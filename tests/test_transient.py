"""The one transient-failure policy (`activities.transient`): its backoff and its rules as pure
functions with a recorded clock, and each cloud's `api` module following it against the lab's
emulators with injected 5xx answers and throttles."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions

from activities import transient
from activities.aws.api import AwsApi
from activities.azure.api import AzureConnection, find
from activities.gcp.api import Compute, call, compute_clients
from activities.throttle import BUCKETS, CallAbandoned, Throttle, calling_as
from activities.transient import (
    APPLY_ATTEMPTS,
    APPLY_SENDS,
    ATTEMPTS,
    LONGEST_PAUSE,
    Transient,
    backoff,
    pause,
    retried,
)
from gameday.errors import CloudError
from gameday.lab.faults import FaultRule
from gameday.lab.gcp.seed import seed_gcp
from tests.support.clouds import AzureLab
from tests.support.servers import Servers
from workflows.gameday import APPLY_RETRY
from workflows.routing import HEARTBEAT, RESTORE_RETRY


class Unavailable(Exception):
    """A stand-in 503: what the policy sees of a cloud's transient answer."""


class Invalid(Exception):
    """A stand-in 400: not worth sending again."""


class Throttled(Exception):
    """A stand-in throttle that escaped the token bucket."""


def transient_of(exc: Exception) -> Transient | None:
    return Transient("ServiceUnavailable") if isinstance(exc, Unavailable | Throttled) else None


def throttle_of(exc: Exception) -> Throttle | None:
    return Throttle(retry_after=None) if isinstance(exc, Throttled) else None


class FlakyCall:
    """A call that raises each of `failures` in turn, then answers "done"."""

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.sends = 0

    def __call__(self) -> str:
        self.sends += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


# --- the policy ---------------------------------------------------------------------------


def test_the_backoff_doubles_from_the_first_pause_and_retry_after_is_capped() -> None:
    assert backoff() == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert len(backoff()) == ATTEMPTS - 1
    assert pause(3, retry_after=2.5) == 2.5
    assert pause(1, retry_after=120.0) == LONGEST_PAUSE
    assert pause(1, retry_after=-1.0) == 0.0
    assert pause(10) == LONGEST_PAUSE


def test_a_persistent_transient_failure_is_sent_attempts_times_then_raised_as_it_came() -> None:
    last = Unavailable("the sixth")
    flaky = FlakyCall(*[Unavailable() for _ in range(ATTEMPTS - 1)], last)
    slept: list[float] = []

    with pytest.raises(Unavailable) as raised:
        retried(flaky, transient_of, throttle_of, sleep=slept.append)

    assert raised.value is last
    assert flaky.sends == ATTEMPTS
    assert slept == backoff()


def test_a_transient_failure_that_clears_costs_only_its_pauses() -> None:
    flaky = FlakyCall(Unavailable(), Unavailable())
    slept: list[float] = []

    assert retried(flaky, transient_of, throttle_of, sleep=slept.append) == "done"
    assert (flaky.sends, slept) == (3, backoff()[:2])


def test_a_throttle_that_escaped_its_bucket_is_not_an_attempt_here() -> None:
    """`paced` already waited it out until its bucket stalled: sending it again here would
    multiply the stall limit by the attempts."""
    flaky = FlakyCall(Throttled())
    slept: list[float] = []

    with pytest.raises(Throttled):
        retried(flaky, transient_of, throttle_of, sleep=slept.append)
    assert (flaky.sends, slept) == (1, [])


def test_a_failure_that_is_not_transient_is_sent_once() -> None:
    flaky = FlakyCall(Invalid())
    with pytest.raises(Invalid):
        retried(flaky, transient_of, throttle_of, sleep=lambda seconds: None)
    assert flaky.sends == 1


def test_a_stopped_caller_abandons_the_call_in_its_pause_instead_of_sending_it_again() -> None:
    stop = threading.Event()
    sends = []

    def failing_as_its_fan_out_stops() -> str:
        sends.append(1)
        stop.set()  # the fan-out stops (or the activity is cancelled) while this send fails
        raise Unavailable()

    with calling_as(stops=(stop,)), pytest.raises(CallAbandoned):
        retried(failing_as_its_fan_out_stops, transient_of, throttle_of)
    assert len(sends) == 1


def test_the_attempts_times_the_workflows_retries_stay_bounded() -> None:
    """An apply sends one persistently failing call at most `APPLY_SENDS` times; a restore,
    which never gives up, at most `ATTEMPTS` per Temporal attempt; no pause outlasts the
    heartbeat timeout."""
    assert APPLY_RETRY.maximum_attempts == APPLY_ATTEMPTS
    assert APPLY_SENDS == ATTEMPTS * APPLY_RETRY.maximum_attempts <= 60
    assert RESTORE_RETRY.maximum_attempts == 0  # unbounded in count: bounded per attempt
    assert RESTORE_RETRY.maximum_interval is not None
    assert HEARTBEAT.total_seconds() > LONGEST_PAUSE


# --- each cloud follows it ----------------------------------------------------------------


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses of milliseconds: the same doubling sequence, scaled down."""
    monkeypatch.setattr(transient, "FIRST_PAUSE", 0.01)


@pytest.fixture
def gcp(servers: Servers, quick: None) -> Iterator[Compute]:
    servers.reset_gcp()
    seed_gcp(servers.gcp.url, "gameday-lab")
    BUCKETS.clear()
    yield compute_clients()
    servers.gcp_faults()


ZONE_GET = "/compute/v1/projects/gameday-lab/zones/us-central1-a"


def _sent(servers: Servers, match: str) -> list[dict[str, Any]]:
    return [c for c in servers.gcp_calls() if c["key"].endswith(match)]


def test_gcp_sends_a_call_again_through_503s_and_raises_the_one_that_persists(
        gcp: Compute, servers: Servers) -> None:
    servers.gcp_faults(FaultRule(match=ZONE_GET, status=503, count=ATTEMPTS - 1))
    assert call(gcp.zones.get, project="gameday-lab", zone="us-central1-a").name == "us-central1-a"
    assert [c["status"] for c in _sent(servers, ZONE_GET)] == [503] * (ATTEMPTS - 1) + [200]

    servers.gcp_faults(FaultRule(match=ZONE_GET, status=503))
    with pytest.raises(exceptions.ServiceUnavailable):
        call(gcp.zones.get, project="gameday-lab", zone="us-central1-a")
    assert len(_sent(servers, ZONE_GET)) == ATTEMPTS  # SDK retries off: nothing multiplies


def test_gcp_throttles_are_paced_not_counted_as_attempts(gcp: Compute, servers: Servers) -> None:
    servers.gcp_faults(FaultRule(match=ZONE_GET, status=429, code="rateLimitExceeded",
                                 retry_after=0, count=ATTEMPTS + 2))
    assert call(gcp.zones.get, project="gameday-lab", zone="us-central1-a").name == "us-central1-a"
    assert len([c for c in _sent(servers, ZONE_GET) if c["injected"]]) == ATTEMPTS + 2


def test_aws_sends_reads_and_repeatable_mutations_again_but_an_association_once(
        aws: dict[str, Any], servers: Servers, quick: None) -> None:
    BUCKETS.clear()
    api = AwsApi()
    ec2 = api.ec2("us-east-1")

    def sent(action: str) -> list[bool]:
        return [c["injected"] for c in servers.aws_calls() if action in c["key"]]

    servers.aws_faults(FaultRule(match="DescribeAvailabilityZones", status=500,
                                 code="InternalError", count=2))
    zones = api.call("DescribeAvailabilityZones", ec2.describe_availability_zones)
    assert zones["AvailabilityZones"]
    assert sent("DescribeAvailabilityZones") == [True, True, False]

    servers.aws_faults(FaultRule(match="CreateNetworkAclEntry", status=503, code="Unavailable",
                                 count=1))
    api.call("CreateNetworkAclEntry", ec2.create_network_acl_entry,
             NetworkAclId=aws["acls"]["shop-web"], RuleNumber=7, Egress=False, Protocol="-1",
             RuleAction="deny", CidrBlock="192.0.2.0/24")
    assert sent("CreateNetworkAclEntry") == [True, False]

    servers.aws_faults(FaultRule(match="ReplaceNetworkAclAssociation", status=500,
                                 code="InternalError", count=1))
    with pytest.raises(CloudError) as raised:
        api.call("ReplaceNetworkAclAssociation", ec2.replace_network_acl_association,
                 AssociationId="aclassoc-12345678", NetworkAclId=aws["acls"]["shop-web"])
    assert raised.value.retryable  # Temporal's next attempt re-reads, then moves the subnet
    assert sent("ReplaceNetworkAclAssociation") == [True]  # neither botocore nor gameday resent


NSG_GET = (f"GET /subscriptions/{AzureLab.subscription}/resourceGroups/{AzureLab.resource_group}"
           "/providers/Microsoft.Network/networkSecurityGroups/web-nsg")


def test_azure_sends_a_read_again_through_503s_without_sdk_retries(
        servers: Servers, quick: None) -> None:
    AzureLab(servers).seed()
    BUCKETS.clear()
    connection = AzureConnection()
    try:
        with connection.clients(AzureLab.subscription) as arm:
            def read() -> Any:
                return arm.network.network_security_groups.get(AzureLab.resource_group, "web-nsg")

            servers.azure_faults(FaultRule(match=NSG_GET, status=503, count=2))
            found = find("reading NSG web-nsg", read)
            assert found is not None and found.name == "web-nsg"
            assert [c["injected"] for c in servers.azure_calls() if NSG_GET in c["key"]] == [
                True, True, False]

            servers.azure_faults(FaultRule(match=NSG_GET, status=503))
            with pytest.raises(CloudError) as raised:
                find("reading NSG web-nsg", read)
            assert raised.value.retryable
            assert len([c for c in servers.azure_calls() if NSG_GET in c["key"]]) == ATTEMPTS
    finally:
        servers.azure_faults()
        connection.close()
