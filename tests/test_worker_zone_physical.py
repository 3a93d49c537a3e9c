"""The worker's own zone is compared by physical zone when both sides know it (in older AWS
regions `us-east-1a` is another building in each account), by name otherwise."""

from __future__ import annotations

import pytest

from activities.base import check_guardrails
from gameday.errors import Refused
from gameday.guardrails import WorkerSite, refusals
from gameday.plan import Scope
from gameday.runbook import Guardrails

OWN, OTHER = "123456789012", "210987654321"
GUARDRAILS = Guardrails(aws_accounts=[OWN, OTHER])
WORKER = {"GAMEDAY_WORKER_CLOUD": "aws", "GAMEDAY_WORKER_REGION": "us-east-1",
          "GAMEDAY_WORKER_ZONE": "us-east-1a", "GAMEDAY_WORKER_ZONE_ID": "use1-az6"}


def _zone(name: str | None, zone_id: str | None, account: str = OTHER) -> Scope:
    return Scope(cloud="aws", account=account, region="us-east-1", zone=name, zone_id=zone_id)


def test_another_name_for_the_workers_physical_zone_is_refused():
    site = WorkerSite.from_env(WORKER)
    (reason,) = refusals("cut", _zone("us-east-1c", "use1-az6"), GUARDRAILS, 1, site)
    assert reason == ("step cut: the target contains the worker's own zone us-east-1a (use1-az6); "
                      "gameday never cuts off the hands that restore")


def test_the_workers_zone_name_in_another_account_is_another_zone():
    site = WorkerSite.from_env(WORKER)
    assert refusals("cut", _zone("us-east-1a", "use1-az1"), GUARDRAILS, 1, site) == []


def test_without_a_physical_zone_on_one_side_names_are_compared():
    by_name = WorkerSite.from_env({k: v for k, v in WORKER.items() if k != "GAMEDAY_WORKER_ZONE_ID"})
    assert refusals("cut", _zone("us-east-1a", "use1-az1", OWN), GUARDRAILS, 1, by_name)
    assert refusals("cut", _zone("us-east-1b", "use1-az6", OWN), GUARDRAILS, 1, by_name) == []
    site = WorkerSite.from_env(WORKER)
    assert refusals("cut", _zone("us-east-1a", None, OWN), GUARDRAILS, 1, site)
    assert refusals("cut", _zone("us-east-1b", None, OWN), GUARDRAILS, 1, site) == []


def test_the_worker_zone_may_be_given_as_a_zone_id():
    site = WorkerSite.from_env({**WORKER, "GAMEDAY_WORKER_ZONE": "use1-az6",
                                "GAMEDAY_WORKER_ZONE_ID": ""})
    assert (site.zone, site.zone_id) == (None, "use1-az6")
    (reason,) = refusals("cut", _zone("us-east-1f", "use1-az6"), GUARDRAILS, 1, site)
    assert "the worker's own zone use1-az6;" in reason
    assert refusals("cut", _zone("us-east-1a", "use1-az2"), GUARDRAILS, 1, site) == []
    # a target known by name only cannot be compared with a zone ID: it may hold the worker
    assert refusals("cut", _zone("us-east-1a", None), GUARDRAILS, 1, site)


def test_each_activity_checks_the_physical_zone_of_its_worker(monkeypatch):
    for name, value in WORKER.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Refused, match=r"worker's own zone us-east-1a \(use1-az6\)"):
        check_guardrails("cut", _zone("us-east-1d", "use1-az6"), GUARDRAILS, 1)
    check_guardrails("cut", _zone("us-east-1a", "use1-az4"), GUARDRAILS, 1)
