"""The GCP shop's view of a region partition: does each subnet range of the region reach every
other region's subnet ranges of the same network, in both directions?"""

from __future__ import annotations

import ipaddress
from typing import Any

from gameday.lab.shop.verdicts import last_segment, verdict


def _covered(child: str, ranges: list[str]) -> bool:
    """`child` lies inside one of `ranges` (no ranges: everywhere, as a rule without them)."""
    if not ranges:
        return True
    inner = ipaddress.ip_network(child)
    return any(inner.version == (outer := ipaddress.ip_network(r)).version
               and inner.subnet_of(outer)  # type: ignore[arg-type]
               for r in ranges)


def cut_by(rule: Any, network: str, source: str, destination: str) -> bool:
    """An enabled deny rule of every instance of `network` drops traffic `source` → `destination`
    (the direction decides whose side the rule is on; both ends must be inside its ranges)."""
    if (rule.disabled or not rule.denied or last_segment(rule.network) != network
            or list(rule.target_tags) or list(rule.target_service_accounts)):
        return False
    return (_covered(source, list(rule.source_ranges))
            and _covered(destination, list(rule.destination_ranges)))


def peers_verdict(region: str, subnets: list[tuple[str, Any]],
                  firewalls: list[Any]) -> dict[str, Any]:
    """Serving while no deny rule cuts a range of `region` off a range of another region in the
    same network; the reason names the first pair cut. `subnets`: (region, Subnetwork)."""
    def ranges(subnet: Any) -> list[str]:
        return [subnet.ip_cidr_range, *(r.ip_cidr_range for r in subnet.secondary_ip_ranges)]

    mine = [(last_segment(s.network), s.name, r) for where, s in subnets if where == region
            for r in ranges(s)]
    theirs = [(last_segment(s.network), where, r) for where, s in subnets if where != region
              for r in ranges(s)]
    for network, name, local in mine:
        for other_network, where, remote in theirs:
            if other_network != network:
                continue
            for rule in firewalls:
                if cut_by(rule, network, remote, local) or cut_by(rule, network, local, remote):
                    return verdict("gcp", region, False,
                                   f"subnet {name} ({local}) of network {network} is cut off "
                                   f"{where} ({remote}) by firewall rule {rule.name}",
                                   modelled=True)
    peered = sorted({where for _, where, _ in theirs})
    return verdict("gcp", region, True, f"every subnet of {region} reaches "
                   f"{', '.join(peered) or 'no other region'}", modelled=bool(mine))
