"""The lab's realistic mode: per-call latency and the clouds' documented API rate limits.

Off by default. `POST /_emulator/limits` with a `RealisticConfig` body (or `Emulator.limits.configure`)
turns it on for one emulator or the AWS proxy; `gameday lab up --realistic` turns it on for all.
Each emulator says which bucket a call draws from (`RateCall`) and renders an over-limit call as
its cloud does; this module keeps the token buckets and the counters.

Documented buckets (per account/project/subscription; refill in tokens per second):

| cloud, bucket per | category | burst | refill | over the limit |
| --- | --- | --- | --- | --- |
| EC2, account + region + action | mutating | 50 | 5 | 503 `RequestLimitExceeded` |
| | non-mutating (`Describe*`) | 100 | 20 | |
| | unfiltered, unpaginated `Describe*` | 50 | 10 | |
| | `CreateTags`, `DeleteTags` | 100 | 10 | |
| Route 53, account | every request | 5 | 5 | 400 `Throttling` "Rate exceeded" |
| GCE, project | mutations; gets; lists; operation reads | 1,500 each | 25 | 403 `rateLimitExceeded` |
| ARM, subscription | writes; deletes; reads | 200; 200; 250 | 10; 10; 25 | 429, `Retry-After` |

Deviations: Compute Engine documents a per-minute window that refills at the minute, modelled
here as a bucket of the minute's quota refilling evenly; ARM's per-principal and per-region
split is one bucket per subscription; AWS accounts are told apart by access key id; a throttled
call takes no token (as on EC2) and is answered after `throttle_latency_ms`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Bucket(BaseModel):
    """A token bucket: up to `burst` calls at once, then `refill` calls per second."""

    model_config = ConfigDict(extra="forbid")

    burst: float = Field(gt=0)
    refill: float = Field(gt=0, description="tokens added per second")


class RealisticConfig(BaseModel):
    """What `POST /_emulator/limits` takes. `buckets` overrides the cloud's documented bucket of
    each named category (`null` lifts that category's limit); the others keep their defaults."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    mutation_latency_ms: int = Field(100, ge=0, description="added to every mutating call")
    read_latency_ms: int = Field(40, ge=0, description="added to every read")
    throttle_latency_ms: int = Field(10, ge=0, description="before an over-limit answer")
    buckets: dict[str, Bucket | None] = {}
    gce_status: Literal[403, 429] = Field(
        403, description="Compute Engine's over-limit status: 403 rateLimitExceeded (documented) "
                         "or 429 RESOURCE_EXHAUSTED")
    ec2_bucket_per: Literal["action", "category"] = Field(
        "action", description="EC2 keeps a bucket per API action (current documentation) or one "
                              "per category (older documentation)")


@dataclass(frozen=True)
class RateCall:
    """Which bucket a call draws from: `scope` (account, region, ...) and `category`."""

    category: str
    scope: tuple[str, ...]
    mutating: bool


@dataclass
class Decision:
    """What the limiter decided for one call."""

    delay: float = 0.0
    call: RateCall | None = None
    throttled: bool = False
    retry_after: float = 0.0
    """Seconds until the bucket holds a token again (0 when the call went through)."""
    remaining: int | None = None
    """Whole tokens left in the bucket after this call; None when the category is unlimited."""

    @property
    def retry_after_seconds(self) -> int:
        """`Retry-After` as clouds send it: whole seconds, at least 1 after a throttle."""
        return max(1, math.ceil(self.retry_after)) if self.throttled else 0


@dataclass
class _Tokens:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """Thread-safe token buckets keyed by (scope, category), plus served/throttled counters."""

    defaults: dict[str, Bucket]
    config: RealisticConfig = field(default_factory=RealisticConfig)
    _buckets: dict[tuple[str, ...], _Tokens] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    per_bucket: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    """(scope..., category) → [served, throttled]: what a bound is computed from."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def configure(self, config: RealisticConfig) -> None:
        """Apply `config`; every bucket starts full and the counters start at zero."""
        unknown = set(config.buckets) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown bucket categories {sorted(unknown)}; this emulator has "
                             f"{sorted(self.defaults)}")
        with self._lock:
            self.config = config
            self._buckets.clear()
            self.served.clear()
            self.throttled.clear()
            self.per_bucket.clear()

    def clear_counts(self) -> None:
        """Zero the counters (`DELETE /_emulator/limits`); the buckets keep their tokens."""
        with self._lock:
            self.served.clear()
            self.throttled.clear()
            self.per_bucket.clear()

    def bucket(self, category: str) -> Bucket | None:
        if category in self.config.buckets:
            return self.config.buckets[category]
        return self.defaults.get(category)

    def decide(self, call: RateCall | None) -> Decision:
        """Take a token for `call` or refuse it; the latency to add either way."""
        if not self.config.enabled or call is None:
            return Decision()
        config = self.config
        latency = config.mutation_latency_ms if call.mutating else config.read_latency_ms
        bucket = self.bucket(call.category)
        if bucket is None:
            with self._lock:
                self.served[call.category] = self.served.get(call.category, 0) + 1
            return Decision(latency / 1000, call)
        now = time.monotonic()
        key = (*call.scope, call.category)
        with self._lock:
            state = self._buckets.get(key)
            if state is None:
                state = self._buckets[key] = _Tokens(bucket.burst, now)
            state.tokens = min(bucket.burst, state.tokens + (now - state.at) * bucket.refill)
            state.at = now
            counts = self.per_bucket.setdefault(key, [0, 0])
            if state.tokens >= 1:
                state.tokens -= 1
                counts[0] += 1
                self.served[call.category] = self.served.get(call.category, 0) + 1
                return Decision(latency / 1000, call, remaining=int(state.tokens))
            counts[1] += 1
            self.throttled[call.category] = self.throttled.get(call.category, 0) + 1
            return Decision(config.throttle_latency_ms / 1000, call, throttled=True,
                            retry_after=(1 - state.tokens) / bucket.refill, remaining=0)

    def report(self) -> dict[str, Any]:
        """The config, each category's bucket, and calls served and throttled per category and
        per bucket (limited categories only)."""
        with self._lock:
            return {
                "config": self.config.model_dump(),
                "buckets": {name: (None if (b := self.bucket(name)) is None else b.model_dump())
                            for name in self.defaults},
                "served": dict(self.served),
                "throttled": dict(self.throttled),
                "throttled_total": sum(self.throttled.values()),
                "per_bucket": [{"scope": list(key[:-1]), "category": key[-1], "served": served,
                                "throttled": throttled}
                               for key, (served, throttled) in self.per_bucket.items()],
            }
