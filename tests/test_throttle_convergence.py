"""Under throttling, each cloud's zone blackhole is complete to the last part, and exactly undone.

Against the real servers (moto behind the AWS proxy, the GCP and ARM emulators), with the lab's
fault rules answering over-limit calls as each cloud does (EC2 503 `RequestLimitExceeded`, GCE 403
`rateLimitExceeded`, ARM 429 with `Retry-After`):

- one apply waits the throttling out (back-pressure, not failure) instead of failing;
- an apply cut off half way (a throttle that outlasts the stall limit, a refused call) leaves
  parts missing, and the retried apply converges every part: on AWS each ACL exists, has every
  deny entry and holds every subnet (real EC2's implicit deny would hide an ACL without entries;
  moto does not, and neither may gameday).
"""

from __future__ import annotations

from typing import Any

import pytest

from activities.aws import TAG_RUN, AwsZoneBlackhole
from activities.azure import AzureZoneBlackhole
from activities.gcp import GcpZoneBlackhole
from activities.throttle import BUCKETS, STALL_VARIABLE
from gameday.errors import CloudError
from gameday.lab.faults import FaultRule
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from tests.support.clouds import CLOUD_LABS, AzureLab
from tests.support.gameday import runbook
from tests.support.servers import Servers

RUN = "throttle-convergence"
CLOUDS = ("aws", "gcp", "azure")
FAULTS: dict[str, Any] = {"aws": AwsZoneBlackhole, "gcp": GcpZoneBlackhole,
                          "azure": AzureZoneBlackhole}
OVER_LIMIT = {
    "aws": FaultRule(match="CreateNetworkAclEntry", status=503, code="RequestLimitExceeded",
                     count=12),  # every ACL's first entries, and several of their retries
    "gcp": FaultRule(match="/setTags", status=403, code="rateLimitExceeded", count=3),
    "azure": FaultRule(match=AzureLab.apply_call, status=429, code="TooManyRequests",
                       retry_after=1, count=3),
}
CUT_OFF = {
    "aws": FaultRule(match="CreateNetworkAclEntry", status=503, code="RequestLimitExceeded",
                     count=20),
    "gcp": FaultRule(match="/setTags", after=1, count=1, status=400, code="invalid"),
    "azure": FaultRule(match=AzureLab.apply_call, after=1, count=1, status=400,
                       code="InvalidRequestFormat"),
}
DENY_ALL = sorted((rule, egress, "deny", v4, v6) for egress in (False, True)
                  for rule, v4, v6 in ((1, "0.0.0.0/0", ""), (2, "", "::/0")))


@pytest.fixture(params=CLOUDS)
def lab(request: pytest.FixtureRequest, servers: Servers) -> Any:
    seeded = CLOUD_LABS[request.param](servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    seeded.faults()


def prepared(fault: Any, lab: Any) -> FaultRequest:
    book = runbook(lab.zone_step("cut-zone", "5m"))
    [step] = book.fault_steps()
    resolved = fault.resolve(StepRequest(run_id=RUN, step=step, guardrails=book.guardrails))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=step, resolved=resolved,
                                              guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def complete(lab: Any) -> bool:
    """Every target is cut off, and (AWS) every gameday ACL has every deny entry."""
    if not lab.blackholed():
        return False
    if lab.cloud != "aws":
        return True
    ours = [acl for acl in lab.snapshot()["acls"].values() if acl["tags"].get(TAG_RUN) == RUN]
    return bool(ours) and all(acl["entries"] == DENY_ALL for acl in ours)


def injected(lab: Any, rule: FaultRule) -> int:
    return len([c for c in lab.calls(rule.match) if c["injected"]])


def test_one_apply_waits_out_the_throttling_and_the_restore_is_exact(
        lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for category in ("EC2_MUTATING", "GCE_MUTATION", "ARM_WRITE"):  # a raised quota: a quick test
        monkeypatch.setenv(f"GAMEDAY_RATE_{category}", "100/200")
    before = lab.snapshot()
    fault = FAULTS[lab.cloud]()
    request = prepared(fault, lab)
    lab.faults(OVER_LIMIT[lab.cloud])

    fault.apply(request)  # no CloudError: throttling is back-pressure

    assert injected(lab, OVER_LIMIT[lab.cloud]) == OVER_LIMIT[lab.cloud].count
    assert complete(lab)
    lab.faults()
    fault.restore(request)
    assert lab.snapshot() == before


def test_a_retried_apply_converges_every_part_of_the_fault(lab: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = lab.snapshot()
    fault = FAULTS[lab.cloud]()
    request = prepared(fault, lab)
    monkeypatch.setenv(STALL_VARIABLE, "0")  # a throttle goes up at once, as after a long stall
    lab.faults(CUT_OFF[lab.cloud])

    with pytest.raises(CloudError):
        fault.apply(request)
    assert not complete(lab)  # the first attempt left parts missing

    lab.faults()
    fault.apply(request)  # Temporal's next attempt
    assert complete(lab)
    assert fault.apply(request).changed == 0  # and a third changes nothing
    fault.restore(request)
    assert lab.snapshot() == before
