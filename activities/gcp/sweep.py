"""GCP sweep: gameday's deny rules, blackhole tags and stopped instances left by runs that are over.

Before: deny rules named `gameday-…` whose description names a run, instances carrying a
`gameday-…` network tag (mapped to its run through the rules that target it), and instances
carrying the power interruption's marks (labels `gameday-run`, `gameday-step`).
After sweep: the rule is deleted (only while its description still names that run); the tag is
removed from the instance, every other tag stays; a marked instance is started and waited for
until it runs, then loses the marks (only while they still name that run); a Cloud SQL
instance carrying a failover's marks is failed back to the zone they name and loses them
(`activities.gcp.database`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from google.api_core import exceptions
from google.cloud import compute_v1

from activities.base import progress
from activities.gcp.api import Compute, call, compute_clients, last, mutate, translated
from activities.gcp.blackhole import TAG_PREFIX, GcpZoneBlackhole, parse_description
from activities.gcp.database import GcpDatabaseFailover
from activities.gcp.power import GcpPowerInterruption, count
from activities.throttle import calling_as
from gameday.errors import UserError
from gameday.plan import FaultResult, Scope
from gameday.sweep import Leftover, SweepScope

UNKNOWN_RUN = "(unknown)"
"""The run of a gameday tag no deny rule names any more: unrecoverable, so never `running`."""
_BLACKHOLE_TAG = re.compile(re.escape(TAG_PREFIX) + r"(?P<step>[a-z0-9-]*)-[0-9a-f]{12}")


class GcpSweeper:
    """Finds gameday's deny rules (by name and description) and blackhole tags in each project,
    and undoes each from what the project itself shows: a tag is mapped to its run through the
    rules that target it."""

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients
        self.blackhole = GcpZoneBlackhole(clients)
        self.power = GcpPowerInterruption(clients)
        self.database = GcpDatabaseFailover(clients)

    def find(self, scope: SweepScope) -> list[Leftover]:
        """Each project's leftovers, looked for as that project's calls are made (its
        impersonated service account, when `GAMEDAY_GCP_IMPERSONATE` names one)."""
        self._clients()  # the worker's own: without credentials the sweep fails here, told
        leftovers: list[Leftover] = []
        for project in scope.gcp_projects:
            with calling_as(account=project):
                leftovers += self._find(project)
        return leftovers

    def _find(self, project: str) -> list[Leftover]:
        compute = self._clients()
        leftovers: list[Leftover] = []
        with translated(f"looking for gameday artifacts in project {project}"):
            tagged = self._tagged(compute, project)
            stopped = self.power.marked_instances(compute, project)
            rules = [(rule, parsed) for rule in call(compute.firewalls.list, project=project)
                     if rule.name.startswith(TAG_PREFIX)
                     and (parsed := parse_description(rule.description)) is not None]
        owner: dict[str, tuple[str, str]] = {}
        for rule, parsed in rules:
            for tag in rule.target_tags:
                owner.setdefault(tag, parsed)
        holding: dict[str, int] = {}
        for zone, name, tag in tagged:
            if tag not in owner and not _BLACKHOLE_TAG.fullmatch(tag):
                continue
            holding[tag] = holding.get(tag, 0) + 1
            found = _BLACKHOLE_TAG.fullmatch(tag)
            run_id, step_id = owner.get(tag, (UNKNOWN_RUN, found["step"] if found else ""))
            leftovers.append(Leftover(
                cloud="gcp", kind="instance-tag", id=f"{name}/{tag}", run_id=run_id,
                step_id=step_id, location=zone,
                detail={"project": project, "zone": zone, "instance": name, "tag": tag,
                        "tag_owner": "deny rule" if tag in owner else "none found"},
            ))
        for rule, (run_id, step_id) in rules:
            leftovers.append(Leftover(
                cloud="gcp", kind="firewall-rule", id=rule.name, run_id=run_id,
                step_id=step_id, location=project,
                detail={"project": project, "network": last(rule.network),
                        "direction": rule.direction,
                        "target_tags": ",".join(rule.target_tags),
                        "instances_tagged": str(sum(holding.get(t, 0)
                                                    for t in rule.target_tags))},
            ))
        leftovers += [Leftover(
            cloud="gcp", kind="stopped-instance", id=f"{zone}/{instance.name}", run_id=run_id,
            step_id=step_id, location=zone,
            detail={"project": project, "zone": zone, "instance": instance.name,
                    "status": instance.status})
            for zone, instance, (run_id, step_id) in stopped]
        leftovers += self.database.find(project)  # Cloud SQL instances a run failed over
        return leftovers

    def _tagged(self, compute: Compute, project: str) -> list[tuple[str, str, str]]:
        """(zone, instance, tag) for every `gameday-` network tag of the project's instances."""
        found: list[tuple[str, str, str]] = []
        listed = call(compute.instances.aggregated_list,
                       request=compute_v1.AggregatedListInstancesRequest(project=project))
        for where, scoped in listed:
            zone = last(where)
            for instance in scoped.instances:
                found += [(zone, instance.name, tag) for tag in instance.tags.items
                          if tag.startswith(TAG_PREFIX)]
        return sorted(found)

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Undo one leftover, as its project's calls are made."""
        project = leftover.detail.get("project") or leftover.location
        with calling_as(account=project):
            return self._sweep(project, leftover)

    def _sweep(self, project: str, leftover: Leftover) -> FaultResult:
        compute = self._clients()
        if leftover.kind == "firewall-rule":
            with translated(f"deleting firewall rule {leftover.id}"):
                return self._delete_rule(compute, project, leftover)
        if leftover.kind == "instance-tag":
            zone, name, tag = (leftover.detail["zone"], leftover.detail["instance"],
                               leftover.detail["tag"])
            scope = Scope(cloud="gcp", account=project, region=zone.rsplit("-", 1)[0], zone=zone)
            result = FaultResult()
            with translated(f"removing tag {tag} from instance {name}"):
                outcome = self.blackhole.retag(compute, scope, name,
                                      lambda items: [t for t in items if t != tag])
            self.blackhole.count(result, outcome, name, "has nothing to restore")
            progress(1, 1)
            return result
        if leftover.kind == "stopped-instance":
            with translated(f"starting instance {leftover.detail['instance']}"):
                return self._power_on(compute, project, leftover)
        if leftover.kind == "sql-instance":
            return self.database.sweep(leftover)
        raise UserError(f"gcp has no leftover of kind {leftover.kind}")

    def _power_on(self, compute: Compute, project: str, leftover: Leftover) -> FaultResult:
        """Start an instance a dead run stopped, then remove its marks: only while they still
        name that run."""
        zone, name = leftover.detail["zone"], leftover.detail["instance"]
        scope = Scope(cloud="gcp", account=project, region=zone.rsplit("-", 1)[0], zone=zone)
        owner = (leftover.run_id, leftover.step_id)
        if self.power.owner_now(compute, scope, name) != owner:
            return FaultResult(notes=[f"instance {name} no longer carries the marks of run "
                                      f"{leftover.run_id}; left alone"])
        result = FaultResult()
        count(result, self.power.power_on(compute, scope, name, owner), name,
              "has nothing to start")
        progress(1, 1)
        return result

    @staticmethod
    def _delete_rule(compute: Compute, project: str, leftover: Leftover) -> FaultResult:
        try:
            rule = call(compute.firewalls.get, project=project, firewall=leftover.id)
        except exceptions.NotFound:
            return FaultResult(notes=[f"firewall rule {leftover.id} is already gone"])
        parsed = parse_description(rule.description)
        if parsed is None or parsed[0] != leftover.run_id:
            return FaultResult(notes=[f"firewall rule {leftover.id} is no longer gameday's rule "
                                      f"of run {leftover.run_id}; left alone"])
        try:
            mutate(compute, compute.firewalls.delete_unary, project=project,
                    firewall=leftover.id)
        except exceptions.NotFound:
            return FaultResult(notes=[f"firewall rule {leftover.id} is already gone"])
        progress(1, 1)
        return FaultResult(changed=1)
