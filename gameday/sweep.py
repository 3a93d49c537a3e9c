"""What the sweeper finds and reports: gameday artifacts left behind by runs that are over."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

SweepCloud = Literal["aws", "gcp", "azure"]
SWEEP_CLOUDS: tuple[SweepCloud, ...] = ("aws", "gcp", "azure")


class Leftover(BaseModel):
    """One gameday artifact in a cloud, found by its tags, labels or name."""

    cloud: str
    kind: str
    id: str
    run_id: str
    step_id: str
    location: str
    detail: dict[str, str] = {}
    account: str = ""
    """AWS: the account it lives in ("": the worker's own); the sweep undoes it there."""
    run_state: str | None = None
    """How its run stands in Temporal: running, completed, terminated, missing..."""


class SweepScope(BaseModel):
    """Where the worker looks, from its environment (a cloud with nothing configured is skipped)."""

    aws_regions: list[str] | None = None
    """None: every region the account has enabled."""
    aws_accounts: list[str] = []
    """AWS accounts besides the worker's own, each reached through its target role."""
    aws_own_account: bool = True
    """False: the worker's own account is left out (another sweep of the same scope covers it)."""
    gcp_projects: list[str] = []
    azure_subscriptions: list[str] = []
    unconfigured: dict[str, str] = {}
    """Cloud → why this worker cannot sweep it (no credentials, no emulator endpoint, nothing to
    sweep); every cloud not named here is configured."""

    def clouds_to_sweep(self, asked: list[SweepCloud]) -> tuple[list[str], dict[str, str]]:
        """The clouds a sweep visits, and those it skips with why: the clouds asked for, all of
        them (asking for a cloud is asking to hear why it fails); else every configured cloud."""
        if asked:
            return [cloud for cloud in SWEEP_CLOUDS if cloud in asked], {}
        return ([cloud for cloud in SWEEP_CLOUDS if cloud not in self.unconfigured],
                {cloud: self.unconfigured[cloud] for cloud in SWEEP_CLOUDS if cloud in self.unconfigured})

    def by_aws_account(self) -> list[SweepScope]:
        """This scope cut into one scope per AWS account (the worker's own first), so that an
        account whose role cannot be assumed fails alone while every other is still swept."""
        own = self.model_copy(update={"aws_accounts": []})
        return [own, *(self.model_copy(update={"aws_accounts": [account],
                                               "aws_own_account": False})
                       for account in dict.fromkeys(self.aws_accounts))]


class SweepInput(BaseModel):
    restore: bool = False
    clouds: list[SweepCloud] = []
    """The clouds to sweep; empty: every cloud the worker has configured."""


class SweepReport(BaseModel):
    leftovers: list[Leftover] = []
    """Artifacts of runs that are no longer running: the sweep's business."""
    in_use: list[Leftover] = []
    """Artifacts of runs still running: left alone."""
    restored: list[str] = []
    errors: list[str] = []
    skipped: dict[str, str] = {}
    """Cloud → why it was not swept (not configured on the worker)."""
