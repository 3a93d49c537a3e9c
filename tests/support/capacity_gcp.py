"""The GCP capacity denial (`deny_capacity`) as a `CloudLab` for the scenario suite.

The seeded lab (`gameday.lab.gcp.groups_seed`): regional MIGs `web-mig` (autoscaler ON, one
autohealing policy) and `api-mig` (autoscaler ONLY_SCALE_OUT, one policy) in us-central1; the
step names both. Each makes two mutations in apply (the MIG's patch, the autoscaler's patch) and
two in restore, all `PATCH`es below the region.
"""

from __future__ import annotations

from typing import Any

from tests.support.clouds import GcpLab

REGION = "us-central1"
NAMED = ["web-mig", "api-mig"]


class GcpCapacityLab(GcpLab):
    apply_call = f"PATCH /compute/v1/projects/{GcpLab.project}/regions/{REGION}/"
    restore_call = apply_call

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "deny_capacity",
            "target": {"cloud": "gcp", "project": self.project, "region": REGION,
                       "instance_group_managers": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(NAMED)

    def groups(self) -> dict[str, Any]:
        """Each MIG's autohealing policies and its autoscaler's mode and policy, as the API shows
        them (fingerprints, which every patch changes, left out)."""
        scalers = {s["target"].rsplit("/", 1)[-1]: s
                   for s in self._get(f"regions/{REGION}/autoscalers").get("items", [])}
        found = {}
        for manager in self._get(f"regions/{REGION}/instanceGroupManagers").get("items", []):
            scaler = scalers.get(manager["name"], {})
            found[manager["name"]] = {
                "autoHealingPolicies": manager.get("autoHealingPolicies", []),
                "autoscaler": scaler.get("name"),
                "autoscalingPolicy": scaler.get("autoscalingPolicy"),
                "description": scaler.get("description"),
                "targetSize": manager["targetSize"],
            }
        return found

    def snapshot(self) -> Any:
        return {**super().snapshot(), "groups": self.groups()}

    def blackholed(self) -> bool:
        """Both named MIGs have no autohealing and their autoscalers are OFF; everything else of
        their policies is as seeded."""
        from gameday.lab.gcp.groups_seed import MANAGED_GROUPS

        groups = self.groups()
        for seeded in MANAGED_GROUPS:
            group = groups[seeded.name]
            policy = group["autoscalingPolicy"]
            if group["autoHealingPolicies"] or policy["mode"] != "OFF" or \
                    (policy["minNumReplicas"], policy["maxNumReplicas"]) != seeded.replicas:
                return False
        return set(groups) == set(NAMED)

    def add_target(self) -> str:
        raise NotImplementedError("deny_capacity names its MIGs: nothing new can appear")
