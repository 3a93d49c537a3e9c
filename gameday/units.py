"""Ids of the units a GameDay checkpoints: a step, each zone of a region step, each drift round.

Contract §7: no two units of one run may share an id, whatever the runbook's step ids are, because
the saga, the watchdog, the leases' records, the report and the cloud artifacts' tags are keyed by
it. The shapes are kept (`{step}-{zone}`, `{unit}-d{round}`), so names in clouds and in running
histories stay as they were. What makes them unique is `unit_id_problems` below, which the
`Runbook` model's validator runs (so `gameday validate` and the workflow's own input check both
refuse): it refuses every step id that one of these shapes could produce for another unit, and
every region step whose zone units would not fit in a step id. A drift id that must be shortened
keeps a hash of what it shortened, and the check covers those hashed forms too.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

MAX_UNIT_ID = 63
"""As long as a step id may be: unit ids end up in cloud names and tags."""

MOST_ROUND_DIGITS = 12
"""Drift rounds are at most max_duration / drift_interval, at most 7 days / 1 s (604,800 rounds);
the check covers rounds of up to 12 digits, far beyond that."""

_DRIFT = re.compile(r"^(.*)-d([1-9]\d*)$")


def zone_unit_id(step_id: str, zone: str) -> str:
    """The unit of one zone of a region step: `r` and `us-east-1a` give `r-us-east-1a`."""
    return f"{step_id}-{zone}"


def drift_unit_id(unit_id: str, round_: int) -> str:
    """The unit of the resources a drift check found in round `round_` (1, 2, ...) of `unit_id`.

    Within 63 characters; when `unit_id` has to be shortened, a hash of the whole of it stays, so
    two long units that share a prefix never give one drift id."""
    return _drift_stem(unit_id, len(str(round_))) + f"-d{round_}"


def _drift_stem(unit_id: str, digits: int) -> str:
    """What precedes `-d{round}` in every drift id of `unit_id` whose round has `digits` digits."""
    if len(unit_id) + 2 + digits <= MAX_UNIT_ID:
        return unit_id
    digest = hashlib.sha256(unit_id.encode()).hexdigest()[:8]
    keep = MAX_UNIT_ID - 2 - digits - len(digest) - 1
    return f"{unit_id[:keep].rstrip('-')}-{digest}"


def possible_zones(cloud: str, region: str) -> list[str]:
    """Every zone name a region of `cloud` can have: the units a region step may expand into.

    AWS: the region and one letter (`us-east-1a`); GCP: the region, `-` and one letter
    (`us-central1-a`); Azure: `1`, `2`, `3`."""
    if cloud == "aws":
        return [region + letter for letter in string.ascii_lowercase]
    if cloud == "gcp":
        return [f"{region}-{letter}" for letter in string.ascii_lowercase]
    if cloud == "azure":
        return ["1", "2", "3"]
    return []


@dataclass(frozen=True)
class UnitStep:
    """A step as the unit check sees it: its id and, for a region step, its cloud and region."""

    id: str
    cloud: str | None = None
    region: str | None = None

    def zones(self) -> list[str]:
        return possible_zones(self.cloud, self.region) if self.cloud and self.region else []


@dataclass(frozen=True)
class UnitIdProblem:
    """A step whose id another unit of the run could have; `step` indexes the steps given."""

    step: int
    message: str


@dataclass(frozen=True)
class _Unit:
    id: str
    step: int
    zone: str | None = None


def unit_id_problems(steps: Sequence[UnitStep]) -> list[UnitIdProblem]:
    """One problem per step id that collides with another unit's id, in the order of the steps.

    The units of a run are its steps, each possible zone of each region step, and each drift round
    (1, 2, ...) of any of those; the problem is always put on the step whose own id is the
    surprise (the second use of an id, the step named like a zone or a drift round)."""
    problems: dict[tuple[int, str], None] = {}

    def refuse(step: int, message: str) -> None:
        problems.setdefault((step, message), None)

    zone_units: dict[str, _Unit] = {}
    named: set[str] = set()
    for index, step in enumerate(steps):
        if step.id in named:
            continue  # a repeated id: refused once, as such, below
        named.add(step.id)
        zones = step.zones()
        longest = max(zones, key=len, default=None)
        if longest is not None and len(zone_unit_id(step.id, longest)) > MAX_UNIT_ID:
            refuse(index, f"step id {step.id!r} is too long for a region step: the id of each "
                   f"zone, like {zone_unit_id(step.id, longest)!r}, must fit in {MAX_UNIT_ID} "
                   "characters")
            continue
        for zone in zones:
            unit = _Unit(zone_unit_id(step.id, zone), index, zone)
            other = zone_units.setdefault(unit.id, unit)
            if other is not unit and not any(p[0] == index for p in problems):
                refuse(index, f"zone {zone} of step {step.id!r} would have the id {unit.id!r}, as "
                       f"zone {other.zone} of step {steps[other.step].id!r} does")

    units: dict[str, _Unit] = {}
    for index, step in enumerate(steps):
        if step.id in units:
            refuse(index, f"step id {step.id!r} is used more than once")
        elif step.id in zone_units:
            owner = zone_units[step.id]
            refuse(index, f"step id {step.id!r} is the id of zone {owner.zone} of step "
                   f"{steps[owner.step].id!r}; choose another id")
        units.setdefault(step.id, _Unit(step.id, index))
    for unit in zone_units.values():
        units.setdefault(unit.id, unit)

    for digits in range(1, MOST_ROUND_DIGITS + 1):
        stems: dict[str, _Unit] = {}
        for unit in units.values():
            stem = _drift_stem(unit.id, digits)
            other = stems.setdefault(stem, unit)
            if other is not unit:
                # the unit whose whole id is the other's shortened stem is the one named oddly
                surprise = other if stem != unit.id and stem == other.id else unit
                rest = other if surprise is unit else unit
                refuse(surprise.step, f"the drift rounds of {_name(surprise, steps)} and of "
                       f"{_name(rest, steps)} would have the same ids; choose another id")
        for unit in units.values():
            match = _DRIFT.match(unit.id)
            if match is None or len(match.group(2)) != digits or match.group(1) not in stems:
                continue
            base = stems[match.group(1)]
            subject = f"step id {unit.id!r}" if unit.zone is None else _name(unit, steps)
            refuse(unit.step, f"{subject} is the id of drift round {match.group(2)} of "
                   f"{_name(base, steps)}; choose another id")
    return [UnitIdProblem(step, message) for step, message in sorted(problems, key=lambda p: p[0])]


def _name(unit: _Unit, steps: Sequence[UnitStep]) -> str:
    if unit.zone is None:
        return f"step {unit.id!r}"
    return f"zone {unit.zone} of step {steps[unit.step].id!r} ({unit.id!r})"
