"""The lease desk's payloads and key rules: one GameDay at a time per zone or region.

Shared by the `GameDayLeases` workflow (workflows/leases.py), which decides, and the workers'
lease activity (activities/runs.py), which batches requests into it."""

from __future__ import annotations

from pydantic import BaseModel


def leases_id(task_queue: str) -> str:
    return f"gameday-leases-{task_queue}"


class LeaseRequest(BaseModel):
    run_id: str
    keys: list[str]
    evict: list[str] = []
    """Runs the asker found dead (neither the run nor its watchdog running): their leases are
    dropped before this request is decided."""


class LeaseAnswer(BaseModel):
    granted: bool
    conflicts: dict[str, str] = {}
    """Each key asked for that overlaps one held by another run, with that run's id."""


class LeaseBatch(BaseModel):
    """Requests of one worker process, decided in one Update: the releases first, then each
    acquire in order (of two overlapping acquires, the first is granted)."""

    acquire: list[LeaseRequest] = []
    release: list[str] = []
    """Run ids whose every lease ends."""


class LeaseBatchAnswer(BaseModel):
    answers: list[LeaseAnswer] = []
    """One per acquire, in order."""
    released: list[int] = []
    """How many keys each release freed, in order."""


class LeaseState(BaseModel):
    holders: dict[str, str] = {}


PHYSICAL_ZONES_PATCH = "lease-physical-zones"
"""The `workflow.patched` id under which the lease desk decides by `overlaps` (physical zones);
a desk run whose history began without it keeps `overlaps_by_name` until its continue-as-new."""


def lease_key(cloud: str, account: str, region: str, zone: str | None,
              zone_id: str | None = None) -> str:
    """`cloud:account:region:zone`, `...:zone@physical` when the physical zone is known (an AWS
    zone ID, an Azure physical zone), `...:*` for the whole region."""
    if zone is None:
        return f"{cloud}:{account}:{region}:*"
    return f"{cloud}:{account}:{region}:{zone}@{zone_id}" if zone_id else f"{cloud}:{account}:{region}:{zone}"


def _parts(key: str) -> tuple[str, str, str, str, str | None]:
    """(cloud, account, region, zone name or `*`, physical zone or None) of a lease key. A GCP
    zone name is its physical zone: Compute Engine zones mean the same place in every project."""
    cloud, account, region, zone = key.split(":", 3)
    name, _, physical = zone.partition("@")
    if not physical and cloud == "gcp" and name != "*":
        physical = name
    return cloud, account, region, name, physical or None


def overlaps(a: str, b: str) -> bool:
    """Whether two leases cover one place, whatever the accounts: same cloud and region, and
    either is the whole region, or both name one physical zone (AWS zone ID, Azure physical
    zone, GCP zone), or, where either's physical zone is unknown (keys from before physical zones,
    an Azure subscription that reports no mapping), one account names one zone.

    A lease stands for a simulated outage of a place, not of an account's resources: `us-east-1a`
    of one account and `us-east-1c` of another may be the same building, and a region outage takes
    every building of the region dark, so a whole-region lease in one account overlaps every
    lease in that region in any account. One GameDay over many accounts holds all their keys
    itself and is never refused by its own; two teams' region outages wait for each other."""
    cloud_a, account_a, region_a, name_a, physical_a = _parts(a)
    cloud_b, account_b, region_b, name_b, physical_b = _parts(b)
    if (cloud_a, region_a) != (cloud_b, region_b):
        return False
    if "*" in (name_a, name_b):
        return True
    if physical_a and physical_b:
        return physical_a == physical_b
    return account_a == account_b and name_a == name_b


def overlaps_by_name(a: str, b: str) -> bool:
    """The rule before physical zones: same cloud, account and region, and the same zone name or
    either is the whole region. Kept for lease desks whose history was decided by it."""
    *where_a, zone_a = a.partition("@")[0].split(":")
    *where_b, zone_b = b.partition("@")[0].split(":")
    return where_a == where_b and (zone_a == zone_b or "*" in (zone_a, zone_b))


def describe_key(key: str) -> str:
    """A lease key for people: `aws 123456789012 us-east-1 us-east-1a (use1-az6)`, or
    `... us-east-1 (whole region)`."""
    cloud, account, region, zone = key.split(":", 3)
    name, _, physical = zone.partition("@")
    where = "(whole region)" if name == "*" else f"{name} ({physical})" if physical else name
    return f"{cloud} {account} {region} {where}"
