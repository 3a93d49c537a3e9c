"""The everyday GameDay gcloud commands, run by the real gcloud against the lab's Compute emulator.

Each test runs one command of the fixed list (docs/lab.md counts them) with `--format=json`
against a seeded emulator on loopback, through a private `CLOUDSDK_CONFIG` that
`gameday.lab.gcp.gcloud.write_gcloud_config` prepared (the one `gameday lab env` exports), and asserts on
what gcloud printed, not only on its exit status: a command that prints an empty list with
exit 0 is a failure here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gameday.lab.gcp import ComputeEmulator
from gameday.lab.gcp.gcloud import write_gcloud_config
from gameday.lab.gcp.groups_seed import MIG_MEMBERS
from gameday.lab.gcp.seed import lab_instances, seed_gcp

GCLOUD = shutil.which("gcloud")
pytestmark = pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")

ZONE = "us-central1-a"
WEB = "web-us-central1-a-1"


class Gcloud:
    """The real gcloud with a private configuration pointed at one emulator."""

    def __init__(self, config: Path, home: Path):
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("CLOUDSDK_", "GOOGLE_"))}
        self.env.update(CLOUDSDK_CONFIG=str(config), HOME=str(home), CLOUDSDK_CORE_DISABLE_PROMPTS="1")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert GCLOUD is not None
        return subprocess.run([GCLOUD, *args, "--format=json", "--quiet"], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    def __call__(self, *args: str) -> Any:
        """What `gcloud ARGS --format=json` printed; fail with its stderr if it exited non-zero."""
        done = self.run(*args)
        assert done.returncode == 0, f"gcloud {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout or "null")


@pytest.fixture(scope="module")
def emulator() -> Iterator[ComputeEmulator]:
    server = ComputeEmulator(host="127.0.0.1", port=0).start()
    seed_gcp(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gcloud(emulator: ComputeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    base = tmp_path_factory.mktemp("gcloud")
    return Gcloud(write_gcloud_config(base / "config", emulator.url), base)


def names(items: list[dict[str, Any]]) -> set[str]:
    return {item["name"] for item in items}


def last(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def deny_rule(gcloud: Gcloud, name: str) -> None:
    gcloud("compute", "firewall-rules", "create", name, "--network", "shop-vpc", "--action",
           "deny", "--rules", "all", "--direction", "INGRESS", "--priority", "100",
           "--source-ranges", "0.0.0.0/0", "--target-tags", "web")


# --- instances -------------------------------------------------------------------------------


def test_instances_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "instances", "list")
    assert names(listed) == {vm.name for vm in lab_instances()} | {name for name, _ in MIG_MEMBERS}


def test_instances_list_filter_labels(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "instances", "list", "--filter=labels.gameday=enabled")
    assert names(listed) == {vm.name for vm in lab_instances() if vm.labels.get("gameday")}


def test_instances_list_zones(gcloud: Gcloud) -> None:
    """`--zones=a,b` lists each zone in one batch request (`POST /batch/compute/v1`)."""
    listed = gcloud("compute", "instances", "list", "--zones=us-central1-a,us-central1-b")
    assert names(listed) == {vm.name for vm in lab_instances()
                             if vm.zone in ("us-central1-a", "us-central1-b")} | {
                                 name for name, _ in MIG_MEMBERS}  # web-mig's, in zones a and b
    assert {last(vm["zone"]) for vm in listed} == {"us-central1-a", "us-central1-b"}


def test_instances_describe(gcloud: Gcloud) -> None:
    """The shape gcloud and scripts read: boot disk, metadata with fingerprint, scheduling,
    service accounts."""
    vm = gcloud("compute", "instances", "describe", WEB, "--zone", ZONE)
    assert vm["name"] == WEB and vm["status"] == "RUNNING"
    assert vm["disks"][0]["boot"] is True and vm["disks"][0]["source"].endswith(f"/disks/{WEB}")
    assert vm["metadata"]["fingerprint"] and vm["metadata"]["kind"] == "compute#metadata"
    assert vm["scheduling"]["automaticRestart"] is True
    assert vm["scheduling"]["onHostMaintenance"] == "MIGRATE"
    assert vm["serviceAccounts"][0]["email"].endswith("-compute@developer.gserviceaccount.com")


def test_instances_add_tags(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "add-tags", "api-us-central1-a-1", "--zone", ZONE,
           "--tags=gameday-blocked")
    vm = gcloud("compute", "instances", "describe", "api-us-central1-a-1", "--zone", ZONE)
    assert vm["tags"]["items"] == ["api", "gameday-blocked"]


def test_instances_remove_tags(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "remove-tags", "legacy-us-central1-a-1", "--zone", ZONE,
           "--tags=ssh")
    vm = gcloud("compute", "instances", "describe", "legacy-us-central1-a-1", "--zone", ZONE)
    assert "items" not in vm["tags"]


def test_instances_add_labels(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "add-labels", "api-us-central1-a-1", "--zone", ZONE,
           "--labels=outage=on")
    vm = gcloud("compute", "instances", "describe", "api-us-central1-a-1", "--zone", ZONE)
    assert vm["labels"] == {"gameday": "enabled", "tier": "api", "outage": "on"}


def test_instances_remove_labels(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "remove-labels", "batch-us-central1-a-1", "--zone", ZONE,
           "--labels=gameday")
    vm = gcloud("compute", "instances", "describe", "batch-us-central1-a-1", "--zone", ZONE)
    assert "gameday" not in vm.get("labels", {})


def test_instances_stop(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "stop", "web-us-central1-b-2", "--zone", "us-central1-b")
    vm = gcloud("compute", "instances", "describe", "web-us-central1-b-2", "--zone",
                "us-central1-b")
    assert vm["status"] == "TERMINATED" and vm["lastStopTimestamp"]
    members = gcloud("compute", "instance-groups", "list-instances", "web-us-central1-b",
                     "--zone", "us-central1-b")
    assert {last(m["instance"]): m["status"] for m in members}["web-us-central1-b-2"] == "TERMINATED"


def test_instances_start(gcloud: Gcloud) -> None:
    gcloud("compute", "instances", "stop", "web-us-central1-c-2", "--zone", "us-central1-c")
    gcloud("compute", "instances", "start", "web-us-central1-c-2", "--zone", "us-central1-c")
    vm = gcloud("compute", "instances", "describe", "web-us-central1-c-2", "--zone",
                "us-central1-c")
    assert vm["status"] == "RUNNING"


def test_instances_stop_async_shows_stopping_until_its_operation_is_done(gcloud: Gcloud) -> None:
    """STOPPING while the operation runs, TERMINATED once it reads DONE (not in the count)."""
    name, zone = "api-us-central1-b-1", "us-central1-b"
    [op] = gcloud("compute", "instances", "stop", name, "--zone", zone, "--async")
    assert op["operationType"] == "stop" and op["status"] == "PENDING"

    def status() -> str:
        return gcloud("compute", "instances", "describe", name, "--zone", zone)["status"]

    assert status() == "STOPPING"
    assert gcloud("compute", "operations", "describe", op["name"], "--zone", zone)["status"] == "RUNNING"
    assert status() == "STOPPING"
    assert gcloud("compute", "operations", "describe", op["name"], "--zone", zone)["status"] == "DONE"
    assert status() == "TERMINATED"


def test_instances_suspend_resume_reset_and_add_metadata(gcloud: Gcloud) -> None:
    """The other power operations and setMetadata's fingerprint (not in the count)."""
    name, zone = "web-us-east1-b-1", "us-east1-b"

    def describe() -> dict[str, Any]:
        return gcloud("compute", "instances", "describe", name, "--zone", zone)

    gcloud("compute", "instances", "suspend", name, "--zone", zone)
    assert describe()["status"] == "SUSPENDED"
    gcloud("compute", "instances", "resume", name, "--zone", zone)
    assert describe()["status"] == "RUNNING"
    gcloud("compute", "instances", "reset", name, "--zone", zone)
    assert describe()["status"] == "RUNNING"
    before = describe()["metadata"]["fingerprint"]
    gcloud("compute", "instances", "add-metadata", name, "--zone", zone, "--metadata=outage=on")
    metadata = describe()["metadata"]
    assert metadata["items"] == [{"key": "outage", "value": "on"}]
    assert metadata["fingerprint"] != before


# --- firewall rules --------------------------------------------------------------------------


def test_firewall_rules_create(gcloud: Gcloud) -> None:
    deny_rule(gcloud, "gameday-create")
    rule = gcloud("compute", "firewall-rules", "describe", "gameday-create")
    assert rule["denied"] == [{"IPProtocol": "all"}] and rule["priority"] == 100
    assert rule["targetTags"] == ["web"] and last(rule["network"]) == "shop-vpc"


def test_firewall_rules_list_filter_name(gcloud: Gcloud) -> None:
    """gcloud sends `name eq ".*\\bgameday\\-listed\\b.*"`: a regex, backslashes and all."""
    deny_rule(gcloud, "gameday-listed")
    listed = gcloud("compute", "firewall-rules", "list", "--filter=name=gameday-listed")
    assert names(listed) == {"gameday-listed"}


def test_firewall_rules_list_filter_network(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "firewall-rules", "list", "--filter=network:batch-vpc")
    assert names(listed) == {"batch-allow-internal"}


def test_firewall_rules_describe(gcloud: Gcloud) -> None:
    rule = gcloud("compute", "firewall-rules", "describe", "shop-allow-http")
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["80", "443"]}]


def test_firewall_rules_delete_one(gcloud: Gcloud) -> None:
    deny_rule(gcloud, "gameday-delete-one")
    gcloud("compute", "firewall-rules", "delete", "gameday-delete-one")
    assert "gameday-delete-one" not in names(gcloud("compute", "firewall-rules", "list"))


def test_firewall_rules_delete_several(gcloud: Gcloud, emulator: ComputeEmulator) -> None:
    """Deleting several rules at once goes through the batch endpoint; each inner request is
    served (and logged) as if it came alone."""
    for name in ("gameday-delete-a", "gameday-delete-b"):
        deny_rule(gcloud, name)
    emulator.faults.clear_calls()
    gcloud("compute", "firewall-rules", "delete", "gameday-delete-a", "gameday-delete-b")
    assert not {"gameday-delete-a", "gameday-delete-b"} & names(
        gcloud("compute", "firewall-rules", "list"))
    deleted = {call["path"].rsplit("/", 1)[1] for call in emulator.faults.call_log()
               if call["method"] == "DELETE" and call["status"] == 200}
    assert deleted == {"gameday-delete-a", "gameday-delete-b"}


def test_batch_answers_each_part_on_its_own(gcloud: Gcloud) -> None:
    """A missing rule in a multi-delete fails its part (gcloud names it); the others succeed
    (not in the count: an error path)."""
    deny_rule(gcloud, "gameday-delete-c")
    done = gcloud.run("compute", "firewall-rules", "delete", "gameday-delete-c", "no-such-rule")
    assert done.returncode == 1
    assert "projects/gameday-lab/global/firewalls/no-such-rule' was not found" in done.stderr
    assert "gameday-delete-c" not in names(gcloud("compute", "firewall-rules", "list"))


# --- instance groups and backend services ----------------------------------------------------


def test_instance_groups_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "instance-groups", "list")
    assert names(listed) == {"web-us-central1-a", "web-us-central1-b", "web-us-east1-b"}
    assert {group["size"] for group in listed} == {2}


def test_instance_groups_unmanaged_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "instance-groups", "unmanaged", "list")
    assert names(listed) == {"web-us-central1-a", "web-us-central1-b", "web-us-east1-b"}


def test_instance_groups_unmanaged_describe(gcloud: Gcloud) -> None:
    group = gcloud("compute", "instance-groups", "unmanaged", "describe", "web-us-central1-a",
                   "--zone", ZONE)
    assert group["name"] == "web-us-central1-a" and group["size"] == 2
    assert group["namedPorts"] == [{"name": "http", "port": 80}]


def test_instance_groups_list_instances(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "instance-groups", "list-instances", "web-us-central1-a",
                    "--zone", ZONE)
    assert {last(member["instance"]) for member in listed} == {
        "web-us-central1-a-1", "web-us-central1-a-2"}


def test_backend_services_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "backend-services", "list")
    assert names(listed) == {"web"}


def test_backend_services_describe(gcloud: Gcloud) -> None:
    service = gcloud("compute", "backend-services", "describe", "web", "--global")
    assert {last(backend["group"]) for backend in service["backends"]} == {
        "web-us-central1-a", "web-us-central1-b", "web-us-east1-b"}
    assert {backend["capacityScaler"] for backend in service["backends"]} == {1.0}


# --- operations, networks, regions -----------------------------------------------------------


def test_operations_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "operations", "list")
    types = {(op["operationType"], last(op["targetLink"])) for op in listed}
    assert ("insert", "shop-allow-http") in types and ("insert", WEB) in types
    assert {op["status"] for op in listed} <= {"PENDING", "RUNNING", "DONE"}


def test_networks_subnets_list(gcloud: Gcloud) -> None:
    listed = gcloud("compute", "networks", "subnets", "list", "--network=shop-vpc")
    central = [subnet for subnet in listed if last(subnet["region"]) == "us-central1"]
    assert [subnet["ipCidrRange"] for subnet in central] == ["10.128.0.0/20"]
    assert {last(subnet["network"]) for subnet in listed} == {"shop-vpc"}


def test_regions_describe(gcloud: Gcloud) -> None:
    region = gcloud("compute", "regions", "describe", "us-central1")
    quotas = {quota["metric"]: quota for quota in region["quotas"]}
    assert quotas["INSTANCES"]["limit"] > 0
    assert quotas["CPUS"]["usage"] >= 1
