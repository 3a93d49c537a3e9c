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


def overlaps(a: str, b: str) -> bool:
    """Same cloud, account and region, and the same zone or either is the whole region."""
    *where_a, zone_a = a.split(":")
    *where_b, zone_b = b.split(":")
    return where_a == where_b and (zone_a == zone_b or "*" in (zone_a, zone_b))


def lease_key(cloud: str, account: str, region: str, zone: str | None) -> str:
    return f"{cloud}:{account}:{region}:{zone or '*'}"
