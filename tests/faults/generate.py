"""Seeded random runbooks within the model, and the one interruption each run gets.

`draw(seed)` is deterministic: `random.Random(seed)` picks one to three of the lab's clouds, one
to three items (single steps or parallel groups) of `blackhole_zone`, `blackhole_region`,
`evacuate_region` and `wait` steps with short durations, gates (`approval: required`),
`approvals_required` 1 or 2 of two or three approvers (listed with odd spellings), drift on or
off, and step ids CHOSEN TO COLLIDE: a step named like a region step's zone unit (`r-us-east-1a`,
or another cloud's zone), like a drift unit (`x-d1`), and long ids that share a prefix. A
document the model refuses is counted and another is drawn from the same generator, so a seed
always names one runbook that validates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from gameday.runbook import Runbook
from tests.support.gameday import ACCOUNT

INTERRUPTIONS = ("terminate", "cancel", "abort", "kill_worker", "nothing")

PEOPLE = ("ic@example.com", "sre-lead@example.com", "oncall@example.com")
OUTSIDER = "mallory@example.com"
PROJECT = "gameday-lab"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "shop"

REGIONS = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}
ZONES = {
    "aws": ("us-east-1a", "us-east-1b", "us-east-1c"),
    "gcp": ("us-central1-a", "us-central1-b", "us-central1-c"),
    "azure": ("1", "2", "3"),
}
"""The lab's topology (the gameday/lab/aws, gcp and azure seeds): every zone has tagged targets."""

EVACUATION_REGIONS = {
    "aws": ("us-east-1", "us-west-2", "eu-west-1"),
    "gcp": ("us-central1", "us-east1"),
    "azure": ("eastus", "westus"),
}
"""Regions with traffic to move in the lab: Route 53 weights, backends, Traffic Manager endpoints."""

DRIFT_ZONES = {"aws": "us-east-1a", "gcp": "us-central1-a", "azure": "1"}
"""Where `CloudLab.add_target()` creates its late resource."""

WORDS = ("r", "x", "cut", "web", "zone", "blackout", "db", "soak")
LONG_PREFIX = "a-very-long-step-id-that-shares-its-prefix-with-another-one"  # 59 characters


def spelling(rng: random.Random, person: str) -> str:
    """The same person as an operator might type them: stray spaces, odd case."""
    shapes = (
        lambda p: p,
        lambda p: p + " ",
        lambda p: " " + p,
        lambda p: f"  {p}\t",
        lambda p: p.upper(),
        lambda p: p.title(),
        lambda p: " " + p.capitalize() + " ",
    )
    return rng.choice(shapes)(person)


def target(cloud: str, zone: str | None) -> dict[str, Any]:
    """A zone target (or, with `zone` None, a region target) of the lab's topology in `cloud`."""
    if cloud == "aws":
        found: dict[str, Any] = {"cloud": "aws", "account": ACCOUNT, "region": REGIONS["aws"]}
        if zone:
            found["zone"] = zone
        return found | {"tags": {"gameday": "enabled"}}
    if cloud == "gcp":
        where = {"zone": zone} if zone else {"region": REGIONS["gcp"]}
        return {"cloud": "gcp", "project": PROJECT, **where, "labels": {"gameday": "enabled"}}
    found = {"cloud": "azure", "subscription": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
             "region": REGIONS["azure"]}
    if zone:
        found["zone"] = zone
    return found | {"tags": {"gameday": "enabled"}}


def traffic_target(cloud: str, region: str) -> dict[str, Any]:
    """An `evacuate_region` target of the lab's traffic in `cloud`."""
    if cloud == "aws":
        return {"cloud": "aws", "account": ACCOUNT, "region": region,
                "hosted_zone_id": "shop.example.com", "record_names": ["www.shop.example.com"]}
    if cloud == "gcp":
        return {"cloud": "gcp", "project": PROJECT, "region": region, "backend_services": ["web"]}
    return {"cloud": "azure", "subscription": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
            "region": region, "traffic_manager_profiles": ["shop-tm"]}


@dataclass
class Skeleton:
    """A step before it has an id: what it does and where."""

    action: str
    cloud: str | None = None
    zone: str | None = None
    region: str | None = None
    """Of an evacuation."""
    duration: int | None = None
    restore: str | None = None
    gated: bool = False


@dataclass(frozen=True)
class GeneratedRun:
    seed: int
    document: dict[str, Any]
    interruption: str
    before_approval: bool
    """Interrupt while the start awaits approval, instead of after it."""
    delay: float
    """Seconds after the start approval (or the start gate opening) before the interruption."""
    drift_clouds: tuple[str, ...]
    """Clouds where a new target is created while a fault holds, so a drift round brings it in."""
    spellings: int
    """Seed of the approver's spellings and order for this run's gates."""
    refused: int = 0
    """Documents the model refused before this one was drawn."""
    refusals: list[str] = field(default_factory=list, compare=False)

    @property
    def runbook(self) -> Runbook:
        return Runbook.model_validate(self.document)

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.interruption}"

    def yaml(self) -> str:
        return yaml.safe_dump(self.document, sort_keys=False, width=110)

    def describe(self) -> str:
        when = "before the start approval" if self.before_approval else f"+{self.delay}s after it"
        drift = f"; new targets in {', '.join(self.drift_clouds)}" if self.drift_clouds else ""
        return (f"seed {self.seed}: {self.interruption} {when}{drift}\n"
                f"repeat: GAMEDAY_FAULT_SEED={self.seed} GAMEDAY_GENERATED_RUNS=1 "
                f"pytest tests/faults/test_generated_runbooks.py\n{self.yaml()}")


def _skeletons(rng: random.Random, clouds: list[str]) -> list[list[Skeleton]]:
    items: list[list[Skeleton]] = []
    for _ in range(rng.randint(1, 3)):
        members = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            roll = rng.random()
            if roll < 0.15:
                members.append(Skeleton("wait", duration=rng.randint(1, 2)))
                continue
            cloud = rng.choice(clouds)
            duration = rng.choice((1, 2, 2, 3, None))
            restore = None
            if duration is None and rng.random() < 0.3:
                restore = "with_run"
            elif duration is not None and rng.random() < 0.2:
                restore = "after_duration"
            if roll < 0.27:
                members.append(Skeleton("evacuate_region", cloud, region=rng.choice(
                    EVACUATION_REGIONS[cloud]), duration=duration, restore=restore))
                continue
            region = roll < 0.55
            zone = None if region else rng.choice(ZONES[cloud])
            members.append(Skeleton("blackhole_region" if region else "blackhole_zone", cloud, zone,
                                    duration=duration, restore=restore))
        items.append(members)
    for members in items:
        for skeleton in members:
            skeleton.gated = rng.random() < 0.25
    return items


def _ids(rng: random.Random, skeletons: list[Skeleton]) -> list[str]:
    """One id per step: plain ones first, then renamed so that they collide with another step's
    units (a region step's zones, a drift round), share a long prefix, or repeat outright."""
    ids = [f"{rng.choice(WORDS)}-{index}" for index in range(len(skeletons))]
    if len(skeletons) < 2:
        return ids
    for index, skeleton in enumerate(skeletons):
        if skeleton.action == "blackhole_region" and skeleton.cloud and rng.random() < 0.6:
            other = rng.choice([i for i in range(len(skeletons)) if i != index])
            cloud = skeleton.cloud if rng.random() < 0.5 else rng.choice(sorted(ZONES))
            ids[other] = f"{ids[index]}-{rng.choice(ZONES[cloud])}"  # another cloud's: no collision
    if rng.random() < 0.35:
        first, second = rng.sample(range(len(skeletons)), 2)
        source = skeletons[first]
        unit = ids[first]
        if source.action == "blackhole_region" and source.cloud:
            unit = f"{unit}-{rng.choice(ZONES[source.cloud])}"
        ids[second] = f"{unit}-d{rng.choice((1, 1, 2))}"
    if rng.random() < 0.3:
        tails = rng.sample(("-1", "-2", "-a", "-x1", "-d1", "-us-east-1a", "-1-d1"), 2)
        for index, tail in zip(rng.sample(range(len(skeletons)), 2), tails, strict=True):
            ids[index] = (LONG_PREFIX + tail)[:63].rstrip("-")
    if rng.random() < 0.05:
        first, second = rng.sample(range(len(skeletons)), 2)
        ids[second] = ids[first]  # plainly repeated: the model must refuse it
    return ids


def _document(rng: random.Random, seed: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    clouds = rng.sample(sorted(REGIONS), rng.randint(1, 3))
    items = _skeletons(rng, clouds)
    flat = [s for members in items for s in members]
    ids = iter(_ids(rng, flat))
    steps: list[Any] = []
    for members in items:
        built = []
        for skeleton in members:
            step: dict[str, Any] = {"id": next(ids), "action": skeleton.action}
            if skeleton.gated:
                step["approval"] = "required"
            if skeleton.action == "evacuate_region" and skeleton.cloud and skeleton.region:
                step["target"] = traffic_target(skeleton.cloud, skeleton.region)
            elif skeleton.cloud is not None:
                step["target"] = target(skeleton.cloud, skeleton.zone)
            if skeleton.duration is not None:
                step["duration"] = f"{skeleton.duration}s"
            if skeleton.restore is not None:
                step["restore"] = skeleton.restore
            built.append(step)
        steps.append(built[0] if len(built) == 1 and rng.random() < 0.7 else {"parallel": built})
    approvers = [spelling(rng, p) for p in rng.sample(PEOPLE, rng.randint(2, 3))]
    drift = rng.random() < 0.5
    document: dict[str, Any] = {
        "name": f"generated-{seed}",
        "approvers": approvers,
        "approvals_required": rng.choice((1, 2)),
        "approval_timeout": "40s",
        "max_duration": "5m",
        "guardrails": {"aws_accounts": [ACCOUNT], "gcp_projects": [PROJECT],
                       "azure_subscriptions": [SUBSCRIPTION]},
        "drift_interval": "1s" if drift else None,
        "steps": steps,
    }
    drift_clouds: tuple[str, ...] = ()
    if drift:
        held = {s.cloud for s in flat if s.cloud and s.action != "evacuate_region"
                and s.zone in (None, DRIFT_ZONES[s.cloud])}
        drift_clouds = tuple(sorted(c for c in held if rng.random() < 0.6))
    return document, drift_clouds


def _refusal(document: dict[str, Any]) -> str | None:
    try:
        Runbook.model_validate(document)
    except ValidationError as error:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:2])
    return None


def draw(seed: int, interruption: str | None = None, attempts: int = 200) -> GeneratedRun:
    """The run of `seed`: the first document the model accepts, and its interruption."""
    rng = random.Random(seed)
    refusals: list[str] = []
    for _ in range(attempts):
        document, drift_clouds = _document(rng, seed)
        problem = _refusal(document)
        if problem is None:
            break
        refusals.append(problem)
    else:
        raise RuntimeError(f"seed {seed}: the model refused {attempts} documents in a row")
    kind = interruption or rng.choice(INTERRUPTIONS)
    before = kind != "nothing" and rng.random() < 0.1
    runbook = Runbook.model_validate(document)
    length = float(sum(max((s.duration.total_seconds() if s.duration else 0) for s in
                           (item.parallel if hasattr(item, "parallel") else [item]))
                       for item in runbook.steps))
    # within the faults' time, mostly: an interruption after the run ended proves little
    delay = round(rng.uniform(0, 0.8 * length + 0.5), 2)
    return GeneratedRun(seed, document, kind, before, delay, drift_clouds, rng.randrange(1 << 30),
                        len(refusals), refusals)
