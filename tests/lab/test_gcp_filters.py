"""The Compute Engine `filter` grammar (`gameday.lab.gcp.filters`), table-driven: the examples of the
Compute API reference (the `filter` field of every list request) and exactly what gcloud 528
sends for its `--filter` flags (captured with `--log-http`)."""

from __future__ import annotations

from typing import Any

import pytest

from gameday.lab.gcp.filters import FilterError, compile_filter

BASE = "https://www.googleapis.com/compute/v1/projects/gameday-lab"


def vm(name: str, zone: str, *, labels: dict[str, str] | None = None, restart: bool = True,
       cpu: str = "Intel Skylake", status: str = "RUNNING", tags: tuple[str, ...] = (),
       network: str = "shop-vpc") -> dict[str, Any]:
    """An instance as the emulator serves it (only the fields the table reads)."""
    body: dict[str, Any] = {
        "name": name, "status": status, "cpuPlatform": cpu,
        "zone": f"{BASE}/zones/{zone}",
        "scheduling": {"automaticRestart": restart, "onHostMaintenance": "MIGRATE"},
        "tags": {"items": list(tags), "fingerprint": "x"} if tags else {"fingerprint": "x"},
        "networkInterfaces": [{"network": f"{BASE}/global/networks/{network}",
                               "networkIP": "10.128.0.2"}],
        "canIpForward": False, "priority": 1000,
    }
    if labels:
        body["labels"] = labels
    return body


FLEET = [
    vm("web-1", "us-central1-a", labels={"owner": "shop", "env": "prod"}, tags=("http-server",)),
    vm("web-2", "us-central1-b", labels={"env": "prod"}, cpu="Intel Broadwell",
       tags=("http-server", "web")),
    vm("api-1", "us-central1-a", labels={"env": "staging"}, restart=False),
    vm("example-instance", "us-east1-b", cpu="AMD Milan", status="TERMINATED",
       network="batch-vpc"),
    vm("db-instance", "us-east1-b", restart=False, cpu="Intel Broadwell"),
]

DOCUMENTED = [
    # "exclude instances named example-instance by specifying name != example-instance"
    ("name != example-instance", {"web-1", "web-2", "api-1", "db-instance"}),
    # "to find all objects with owner label use: labels.owner:*"
    ("labels.owner:*", {"web-1"}),
    # "scheduling.automaticRestart = false to include instances only if they are not scheduled
    # for automatic restarts"
    ("scheduling.automaticRestart = false", {"api-1", "db-instance"}),
    # "provide each separate expression within parentheses ... By default, each expression is
    # an AND expression"
    ('(scheduling.automaticRestart = true) (cpuPlatform = "Intel Skylake")', {"web-1"}),
    # "you can include AND and OR expressions explicitly"
    ('(cpuPlatform = "Intel Skylake") OR (cpuPlatform = "Intel Broadwell") AND '
     "(scheduling.automaticRestart = true)", {"web-1", "web-2"}),
    # "fieldname eq unquoted literal / 'single quoted literal' / "double quoted literal""
    ("name eq web-.*", {"web-1", "web-2"}),
    ("name eq 'web-.*'", {"web-1", "web-2"}),
    ('name eq "web-.*"', {"web-1", "web-2"}),
    # "(fieldname1 eq literal) (fieldname2 ne "literal")"
    ('(name eq .*-2) (cpuPlatform ne "Intel Skylake")', {"web-2"}),
    # "to filter for instances that do not end with name "instance", you would use
    # name ne .*instance" ("The literal value must match the entire field")
    ("name ne .*instance", {"web-1", "web-2", "api-1"}),
    ("name eq web", set()),
]

FROM_GCLOUD = [
    # --filter=name=web-1 (gcloud's word match as an RE2 regex; backslashes are regex, not escapes)
    (r'name eq ".*\bweb\-1\b.*"', {"web-1"}),
    # --filter=zone:us-east1-b
    (r'zone eq ".*\bus\-east1\-b\b.*"', {"example-instance", "db-instance"}),
    # --filter=networkInterfaces.network:batch-vpc (a path through a list)
    (r'networkInterfaces.network eq ".*\bbatch\-vpc\b.*"', {"example-instance"}),
    # --filter="name~^web"
    ('name eq ".*(^web).*"', {"web-1", "web-2"}),
    # --filter="NOT name:web" and --filter="-name:web"
    (r'name ne ".*\bweb\b.*"', {"api-1", "example-instance", "db-instance"}),
    # --filter=status=TERMINATED, --filter=priority=1000, --filter=canIpForward=false
    ("status eq TERMINATED", {"example-instance"}),
    ("priority eq 1000", {f["name"] for f in FLEET}),
    ("canIpForward eq false", {f["name"] for f in FLEET}),
    # --filter=name=web* (gcloud quotes the star: only a name with a literal `*` matches)
    (r'name eq ".*\bweb\*\b.*"', set()),
]

GRAMMAR = [
    ("labels.env = prod", {"web-1", "web-2"}),
    ('labels.env = "prod"', {"web-1", "web-2"}),
    ("labels.env != prod", {"api-1", "example-instance", "db-instance"}),
    ("labels:owner", {"web-1"}),
    ("tags.items = web", {"web-2"}),
    ("tags.items:http", {"web-1", "web-2"}),
    ("name = web-*", {"web-1", "web-2"}),
    ("name:instance", {"example-instance", "db-instance"}),
    ("NOT labels.env:*", {"example-instance", "db-instance"}),
    ("-labels.env:*", {"example-instance", "db-instance"}),
    ("NOT (name = web-1 OR name = web-2)", {"api-1", "example-instance", "db-instance"}),
    ("name = web-1 AND labels.env = prod", {"web-1"}),
    ("(name = web-1) OR (name = api-1)", {"web-1", "api-1"}),
    ("scheduling.automaticRestart = FALSE", {"api-1", "db-instance"}),
    ("priority < 1001 AND priority >= 1000", {f["name"] for f in FLEET}),
    ("priority > 1000", set()),
    ("name eq (web|api)-1", {"web-1", "api-1"}),
    ("(name eq (web|api)-1)", {"web-1", "api-1"}),
    (r"name eq \Qweb-1\E", {"web-1"}),
    ("name eq [[:alpha:]]+-[[:digit:]]", {"web-1", "web-2", "api-1"}),
    (r"name eq web-\d\z", {"web-1", "web-2"}),
    ("cpuPlatform eq 'Intel .*'", {"web-1", "web-2", "api-1", "db-instance"}),
    ("", {f["name"] for f in FLEET}),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED + FROM_GCLOUD + GRAMMAR,
                         ids=[text or "empty" for text, _ in DOCUMENTED + FROM_GCLOUD + GRAMMAR])
def test_filter(text: str, expected: set[str]) -> None:
    accept = compile_filter(text)
    assert {item["name"] for item in FLEET if accept(item)} == expected


@pytest.mark.parametrize("text", [
    "name", "(name = x", "name = 'x", "name eq (", "name =", "= x", "name = x AND",
    "name eq [[:^alpha:]]", "name eq a(b", "NOT", "name ~ x",
])
def test_malformed_filter(text: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(text)
