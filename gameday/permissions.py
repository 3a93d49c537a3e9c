"""The live permission check of `gameday plan` (contract §11): what it reports. Each cloud's
activity (`activities/<cloud>/permissions.py`, input `gameday.plan.PermissionCheck`) tries every
mutating call of the plan's steps as a dry run where the cloud offers one, and says per account,
project or subscription which ones the worker may not make, and which it could not check.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Permission(BaseModel):
    """One permission on one account/project/subscription that the worker may not use (`missing`)
    or that could not be tried (`unchecked`, with why)."""

    model_config = ConfigDict(extra="forbid")

    cloud: str
    account: str
    permission: str
    reason: str = ""

    @property
    def sentence(self) -> str:
        if self.reason:
            return f"{self.cloud} {self.account}: not checked ({self.reason}): {self.permission}"
        return f"{self.cloud} {self.account}: may not {self.permission}"


class PermissionReport(BaseModel):
    """What one cloud's check found: sorted, each permission once per account."""

    model_config = ConfigDict(extra="forbid")

    missing: list[Permission] = []
    unchecked: list[Permission] = []


def gathered(found: list[Permission]) -> list[Permission]:
    """Each (cloud, account, permission) once, sorted."""
    unique = {(p.cloud, p.account, p.permission): p for p in found}
    return [unique[key] for key in sorted(unique)]
