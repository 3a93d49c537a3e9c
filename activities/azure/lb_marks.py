"""The tags a zonal evacuation leaves on a load balancer, and the sweep that undoes it from them.

A marked load balancer carries `gameday-evacuate-run` and `-step`, and the members gameday took
Down with their admin state before, as `<pool>/<member>[=Up|=None]` (no suffix: unset) joined by
commas in `gameday-evacuate-down-0`, `-1`... (each value at most ARM's 256 characters). When those
do not fit in the tags ARM leaves (50 per resource), only the names are kept, in
`gameday-evacuate-names-0`... and the sweep sets each back to no admin state; when even the names
do not fit, the evacuation is refused before any change.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from azure.mgmt.network.models import LoadBalancer
from pydantic import BaseModel

from activities.azure.api import MAX_TAG_VALUE, MAX_TAGS, ArmClients, find, id_parts, text, write
from gameday.errors import Refused
from gameday.plan import FaultResult
from gameday.sweep import Leftover

TAG_EVACUATE_RUN = "gameday-evacuate-run"
TAG_EVACUATE_STEP = "gameday-evacuate-step"
MARKS = (TAG_EVACUATE_RUN, TAG_EVACUATE_STEP)
PREFIX = "gameday-evacuate-"
DOWN_PREFIX = f"{PREFIX}down-"
NAMES_PREFIX = f"{PREFIX}names-"
DOWN = "Down"
LEFTOVER_KIND = "evacuated-load-balancer"


class Member(BaseModel):
    """A pool member gameday takes Down, and its admin state before (None: unset)."""

    pool: str
    name: str
    before: str | None = None


def without_marks(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(PREFIX)}


def _pack(entries: list[str]) -> list[str]:
    chunks: list[str] = []
    for entry in entries:
        if chunks and len(chunks[-1]) + 1 + len(entry) <= MAX_TAG_VALUE:
            chunks[-1] += "," + entry
        else:
            chunks.append(entry)
    return chunks


def marks_for(lb_id: str, run_id: str, step_id: str, members: list[Member],
              tags: dict[str, str]) -> dict[str, str]:
    """gameday's tags for the load balancer: the marks and the members with their state before
    (or, when those do not fit, their names only); refused when even the names do not fit."""
    room = MAX_TAGS - len(without_marks(tags)) - len(MARKS)
    marks = {TAG_EVACUATE_RUN: run_id, TAG_EVACUATE_STEP: step_id}
    exact = _pack([f"{m.pool}/{m.name}" + (f"={m.before}" if m.before else "") for m in members])
    if len(exact) <= room:
        return {**marks, **{f"{DOWN_PREFIX}{i}": v for i, v in enumerate(exact)}}
    names = _pack([f"{m.pool}/{m.name}" for m in members])
    if len(names) <= room:
        return {**marks, **{f"{NAMES_PREFIX}{i}": v for i, v in enumerate(names)}}
    raise Refused(f"load balancer {lb_id} has {len(without_marks(tags))} tags: ARM's limit of "
                  f"{MAX_TAGS} leaves no room for gameday's marks and the {len(members)} members "
                  "it would take Down")


def marked_members(tags: dict[str, str]) -> tuple[list[Member], bool]:
    """The members the tags say gameday took Down, and whether their states before are known."""
    exact = sorted((k for k in tags if k.startswith(DOWN_PREFIX)),
                   key=lambda k: int(k.rsplit("-", 1)[1]) if k.rsplit("-", 1)[1].isdigit() else 0)
    names = sorted((k for k in tags if k.startswith(NAMES_PREFIX)),
                   key=lambda k: int(k.rsplit("-", 1)[1]) if k.rsplit("-", 1)[1].isdigit() else 0)
    members = []
    for key in exact or names:
        for entry in filter(None, tags[key].split(",")):
            place, _, before = entry.partition("=")
            pool, _, name = place.partition("/")
            members.append(Member(pool=pool, name=name, before=before or None))
    return members, bool(exact) or not names


def put_lb(arm: ArmClients, lb: LoadBalancer) -> None:
    """The whole load balancer written back, guarded by the etag it was read with (a 412 reads
    again through `write`)."""
    _, group, name = id_parts(str(lb.id))
    arm.network.load_balancers.begin_create_or_update(
        group, name, lb, headers={"If-Match": lb.etag} if lb.etag else None).result()


def pool_members(lb: Any) -> dict[tuple[str, str], Any]:
    """(pool, member name) -> the member, as ARM shows the load balancer."""
    return {(pool.name or "", m.name or ""): m for pool in lb.backend_address_pools or []
            for m in pool.load_balancer_backend_addresses or []}


def evacuation_leftover(lb: Any, subscription: str) -> Leftover:
    """A load balancer still marked by a zonal evacuation (`gameday sweep`)."""
    tags = lb.tags or {}
    members, exact = marked_members(tags)
    return Leftover(cloud="azure", kind=LEFTOVER_KIND, id=str(lb.id),
                    run_id=tags[TAG_EVACUATE_RUN], step_id=tags.get(TAG_EVACUATE_STEP, ""),
                    location=subscription,
                    detail={"resource_group": id_parts(str(lb.id))[1],
                            "members_down": ",".join(f"{m.pool}/{m.name}" for m in members),
                            "states_known": "yes" if exact else "no (back to no admin state)"})


def sweep_evacuation(arm: ArmClients, leftover: Leftover, result: FaultResult) -> None:
    """From the marks alone: each member they name that is still Down gets its state before (or
    none, when the tags kept only names), then gameday's tags go; a load balancer whose marks
    name another run now is left alone."""
    _, group, name = id_parts(leftover.id)
    notes: list[str] = []

    def update() -> bool | None:
        notes.clear()  # a stale etag reads again: only the last try's notes count
        lb = find(f"reading load balancer {name}",
                  partial(arm.network.load_balancers.get, group, name))
        if lb is None:
            return None
        tags = dict(lb.tags or {})
        if tags.get(TAG_EVACUATE_RUN) != leftover.run_id:
            notes.append(f"load balancer {leftover.id} no longer carries the mark of run "
                         f"{leftover.run_id}; left alone")
            return False
        members, exact = marked_members(tags)
        if not exact:
            notes.append(f"load balancer {leftover.id}'s tags kept only the names of the members "
                         "gameday took Down: each is back to no admin state, which may differ "
                         "from its state before")
        found = pool_members(lb)
        for member in members:
            current = found.get((member.pool, member.name))
            if current is not None and text(current.admin_state) == DOWN:
                current.admin_state = member.before
        lb.tags = without_marks(tags)
        put_lb(arm, lb)
        return True

    outcome = write(f"sweeping load balancer {name}", update)
    result.notes.extend(notes)
    if outcome is None:
        result.notes.append(f"load balancer {leftover.id} no longer exists; nothing to restore")
    elif outcome:
        result.changed += 1
    else:
        result.unchanged += 1
