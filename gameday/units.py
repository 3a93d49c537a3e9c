"""Ids of the units a GameDay checkpoints: a step, each zone of a region step, each drift round.

Contract §7: no two units of one run may share an id, whatever the runbook's step ids are, because
the saga, the watchdog, the leases' records, the report and the cloud artifacts' tags are keyed by
it. The shapes are kept (`{step}-{zone}`, `{unit}-d{round}`), so names in clouds and in running
histories stay as they were; what makes them unique is that `gameday validate` refuses every step
id that one of these shapes could produce (`Runbook` does it with `derivable_from`), and that a
drift id that must be shortened keeps a hash of what it shortened.
"""

from __future__ import annotations

import hashlib
import re

MAX_UNIT_ID = 63
"""As long as a step id may be: unit ids end up in cloud names and tags."""

DRIFT_SUFFIX = re.compile(r"-d\d+$")


def zone_unit_id(step_id: str, zone: str) -> str:
    """The unit of one zone of a region step: `r` and `us-east-1a` give `r-us-east-1a`."""
    return f"{step_id}-{zone}"


def drift_unit_id(unit_id: str, round_: int) -> str:
    """The unit of the resources a drift check found in round `round_` (1, 2, ...) of `unit_id`.

    Within 63 characters; when `unit_id` has to be shortened, a hash of the whole of it stays, so
    two long units that share a prefix never give one drift id."""
    suffix = f"-d{round_}"
    whole = unit_id + suffix
    if len(whole) <= MAX_UNIT_ID:
        return whole
    digest = hashlib.sha256(unit_id.encode()).hexdigest()[:8]
    keep = MAX_UNIT_ID - len(suffix) - len(digest) - 1
    return f"{unit_id[:keep].rstrip('-')}-{digest}{suffix}"


def looks_like_drift(unit_id: str) -> bool:
    """Whether `unit_id` has the shape of a drift unit's id: a step id must not."""
    return DRIFT_SUFFIX.search(unit_id) is not None
