"""Fault injection for the lab's emulators and the AWS proxy: make a share of API calls fail or slow.

Tests and users configure rules over HTTP (`POST /_emulator/faults`); each emulator renders the
failure in its own cloud's error format. Decisions are seeded, so a run with the same rules and
the same calls fails the same calls.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FaultRule(BaseModel):
    """One rule: calls whose key contains `match` fail with `status` (or are delayed)."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field("", description="substring of the call key, e.g. 'PATCH /compute' or an AWS Action")
    status: int = Field(503, description="HTTP status of the injected failure; 0 only delays")
    code: str = Field("", description="the cloud's error code, e.g. RequestLimitExceeded")
    message: str = "injected by the gameday lab"
    rate: float = Field(1.0, ge=0.0, le=1.0, description="share of matching calls that fail")
    after: int = Field(0, ge=0, description="let this many matching calls through first")
    count: int | None = Field(None, ge=0, description="fail at most this many calls")
    latency_ms: int = Field(0, ge=0, description="delay added to every matching call")
    retry_after: int | None = Field(None, ge=0, description="Retry-After seconds on the failure")


class FaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = []
    seed: int = 0
    deny: list[str] = Field([], description=(
        "permissions the lab's caller lacks, e.g. ec2:ReplaceNetworkAclAssociation, "
        "compute.firewalls.create, Microsoft.Network/networkSecurityGroups/write: the AWS proxy "
        "refuses such an EC2 call (dry run or not) with UnauthorizedOperation, GCP's "
        "testIamPermissions and ARM's permissions list leave them out"))


@dataclass
class Injection:
    """What to do to one call: wait `delay` seconds, then fail with `rule` if it is set."""

    delay: float = 0.0
    rule: FaultRule | None = None


@dataclass
class CallRecord:
    at: float
    method: str
    path: str
    key: str
    status: int
    injected: bool
    throttled: bool = False
    """Refused by the realistic mode's rate limit (`gameday.lab.realistic`)."""


@dataclass
class FaultInjector:
    """Thread-safe rule matcher and call log shared by an emulator's request handlers."""

    config: FaultConfig = field(default_factory=FaultConfig)
    calls: list[CallRecord] = field(default_factory=list)
    _seen: dict[int, int] = field(default_factory=dict)
    _failed: dict[int, int] = field(default_factory=dict)
    _random: random.Random = field(default_factory=lambda: random.Random(0))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._seen.clear()
            self._failed.clear()
            self._random = random.Random(config.seed)

    def decide(self, key: str) -> Injection:
        with self._lock:
            injection = Injection()
            for index, rule in enumerate(self.config.rules):
                if rule.match not in key:
                    continue
                injection.delay += rule.latency_ms / 1000
                if rule.status == 0 or injection.rule is not None:
                    continue
                seen = self._seen.get(index, 0)
                self._seen[index] = seen + 1
                if seen < rule.after:
                    continue
                if rule.count is not None and self._failed.get(index, 0) >= rule.count:
                    continue
                if self._random.random() < rule.rate:
                    self._failed[index] = self._failed.get(index, 0) + 1
                    injection.rule = rule
            return injection

    def denied(self, permission: str) -> bool:
        """Whether a `deny` entry names `permission` (case-insensitively, as Azure compares)."""
        with self._lock:
            return permission.lower() in {p.lower() for p in self.config.deny}

    def record(self, method: str, path: str, key: str, status: int, injected: bool,
               at: float | None = None, throttled: bool = False) -> None:
        """Log one call served; `at` is when it arrived (epoch seconds), now if not given."""
        with self._lock:
            self.calls.append(CallRecord(time.time() if at is None else at, method, path, key,
                                         status, injected, throttled))

    def call_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record.__dict__.copy() for record in self.calls]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()
