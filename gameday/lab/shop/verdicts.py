"""The shape of every answer (`serving`, `reason`, what was seen) and the rule shared by the three
clouds' global endpoints: the routing serves when it sends traffic to a serving region."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gameday.lab.shop.reading import short


def verdict(cloud: str, where: str, serving: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"cloud": cloud, "region": where, "serving": serving, "reason": reason, **extra}


def last_segment(link: str | None) -> str:
    """The name at the end of a resource's URL or id."""
    return (link or "").rstrip("/").rsplit("/", 1)[-1]


def wire_text(value: Any) -> str:
    """An SDK enum's wire value."""
    return str(getattr(value, "value", value) or "")


def joined(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def route_verdict(cloud: str, what: str, routes: list[dict[str, Any]],
                  region_health: Callable[[str], dict[str, Any]],
                  notes: list[str]) -> dict[str, Any]:
    """The global verdict: serving when a route that takes traffic (`takes_traffic`) leads to a
    serving region; each route gets `serving` and its region's reason."""
    health: dict[str, dict[str, Any]] = {}
    live = [r for r in routes if r["takes_traffic"]]
    for route in routes:
        if route["takes_traffic"]:
            region = route["region"]
            if region not in health:
                try:
                    health[region] = region_health(region)
                except Exception as exc:
                    health[region] = {"serving": False, "reason": f"unknown: {short(exc)}"}
                notes += [f"{region}: {note}" for note in health[region].get("notes", [])]
            route["serving"] = health[region]["serving"]
            route["region_reason"] = health[region]["reason"]
        else:
            route["serving"] = False
            route["region_reason"] = "takes no traffic"
    good = sorted({r["region"] for r in live if r["serving"]})
    if good:
        reason = f"traffic reaches {joined(good)}"
    elif not live:
        reason = f"no {what} takes traffic"
    else:
        reason = (f"every region that {what} send traffic to is down: " + "; ".join(
            f"{region}: {h['reason']}" for region, h in sorted(health.items())))
    return verdict(cloud, "global", bool(good), reason, routes=routes, notes=notes)
