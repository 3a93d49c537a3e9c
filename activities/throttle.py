"""Throttling is back-pressure, not failure: client-side token buckets shared by every activity of
the worker process, one per (cloud, account, region, API category), and per API action where the
cloud keeps one per action (EC2).

Each bucket is paced to the cloud's documented rate (`DEFAULT_RATES`, raised by
`GAMEDAY_RATE_<CATEGORY>` for raised quotas), halves its rate on every throttle answer and
honours `Retry-After`, then recovers additively on each success (AIMD). A waiting call is served
by priority: a restore's calls take tokens before any waiting apply's, so an abort's restore is
never stuck behind an inject that saturates the API. A throttled call waits and is tried again
inside the activity (`paced`), without consuming one of the activity's Temporal attempts nor one
of the transient-failure attempts of `activities.transient`, until no call of its bucket has
succeeded for `GAMEDAY_THROTTLE_STALL` seconds.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

R = TypeVar("R")

RESTORE = 0
"""Priority of restores (and sweeps): served first."""
APPLY = 1
"""Priority of everything else: resolve, prepare, apply."""

STALL_VARIABLE = "GAMEDAY_THROTTLE_STALL"
STALL = 300.0
"""Seconds without one successful call in a bucket after which a throttled call gives up."""
LIMITS_VARIABLE = "GAMEDAY_RATE_LIMITS"
"""`on`: pace every cloud to its documented rates; `off`: pace none. Unset: pace the real clouds,
not a cloud whose endpoint points at an emulator (`EMULATOR_VARIABLES`), whose limits are its
own (the lab's realistic mode sets `on`). Throttle answers always slow a bucket down."""
EMULATOR_VARIABLES = {"aws": "AWS_ENDPOINT_URL", "gcp": "GAMEDAY_GCP_ENDPOINT",
                      "azure": "GAMEDAY_AZURE_ENDPOINT"}
STOP_POLL = 0.05
"""How often a waiting call checks whether its activity was cancelled."""
RECOVERY_CALLS = 50
"""Successful calls in which a bucket halved by a throttle climbs back to its configured rate."""
MIN_REFILL = 0.2
FLOOR_DIVISOR = 16
"""A throttled bucket slows down to no less than its configured rate / FLOOR_DIVISOR (nor below
MIN_REFILL per second): below that, the cloud's own answers pace it."""
UNLIMITED_BACKOFF = (0.2, 5.0)
"""First and longest pause after a throttle answer, for a bucket without a configured rate."""


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: `burst` tokens, refilled at `refill` per second (0: unlimited)."""

    burst: float
    refill: float

    @property
    def unlimited(self) -> bool:
        return self.refill <= 0


UNLIMITED = Rate(0, 0)

DEFAULT_RATES: dict[str, Rate] = {
    "ec2-mutating": Rate(50, 5),      # EC2: mutating actions, per account and Region
    "ec2-describe": Rate(100, 20),    # EC2: Describe* and other non-mutating actions
    "ec2-tags": Rate(100, 10),        # EC2: CreateTags, DeleteTags
    "route53": Rate(5, 5),            # Route 53: 5 requests per second per account
    "sts": Rate(100, 20),
    "aws-other": Rate(50, 5),
    "gce-mutation": Rate(1500, 25),   # Compute Engine: 1,500 mutations per minute per project
    "gce-read": Rate(200, 50),
    "arm-write": Rate(200, 10),       # ARM: writes per subscription and Region
    "arm-read": Rate(250, 25),
}


def configured_rate(category: str, cloud: str = "") -> Rate:
    """The category's rate: `GAMEDAY_RATE_<CATEGORY>` as `<per second>` or `<per second>/<burst>`
    (e.g. `GAMEDAY_RATE_EC2_MUTATING=20/200` after a quota increase), `off` for no pacing; else
    the documented rate, when `LIMITS_VARIABLE` says the cloud is paced."""
    mode = os.environ.get(LIMITS_VARIABLE, "").strip().lower()
    if mode == "off":
        return UNLIMITED
    default = DEFAULT_RATES.get(category, UNLIMITED)
    if mode != "on" and os.environ.get(EMULATOR_VARIABLES.get(cloud, ""), ""):
        default = UNLIMITED
    raw = os.environ.get(f"GAMEDAY_RATE_{category.upper().replace('-', '_')}", "").strip().lower()
    if not raw:
        return default
    if raw == "off":
        return UNLIMITED
    refill, _, burst = raw.partition("/")
    try:
        per_second = float(refill)
        documented = DEFAULT_RATES.get(category, UNLIMITED)
        return Rate(burst=float(burst) if burst else max(documented.burst, per_second),
                    refill=per_second)
    except ValueError:
        raise ValueError(f"GAMEDAY_RATE_{category.upper().replace('-', '_')}={raw!r} is not "
                         "`<calls per second>[/<burst>]` or `off`") from None


def stall_limit() -> float:
    value = os.environ.get(STALL_VARIABLE)
    return float(value) if value else STALL


class CallAbandoned(Exception):
    """The activity that wanted this call was cancelled (or its fan-out stopped): no call made."""


class BucketKey(NamedTuple):
    cloud: str
    account: str
    region: str
    category: str
    """Names the rate (`configured_rate`)."""
    action: str = ""
    """Set where the cloud keeps a bucket per API action of the category (EC2), else empty."""

    def __str__(self) -> str:
        what = f"{self.category} {self.action}" if self.action else self.category
        return f"{self.cloud} {what} in {self.account or '-'}/{self.region or '-'}"


@dataclass
class BucketStats:
    """What a bucket did, for the bench and the worker's logs."""

    calls: int = 0
    throttles: int = 0
    waited: float = 0.0
    longest_wait: dict[int, float] = field(default_factory=dict)
    """The longest any call of each priority waited for its token, in seconds."""


class TokenBucket:
    """A token bucket with a priority queue of waiting calls; thread-safe."""

    def __init__(self, key: BucketKey, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.key = key
        self.rate = rate
        self._clock = clock
        self._cond = threading.Condition()
        self._tokens = rate.burst
        self._refill = rate.refill
        self._updated = clock()
        self._blocked_until = 0.0
        self._backoff = 0.0
        self._waiting: list[tuple[int, int]] = []
        self._tickets = itertools.count()
        self.last_success = clock()
        self.stats = BucketStats()

    @property
    def waiting(self) -> int:
        """Calls waiting for a token now."""
        with self._cond:
            return len(self._waiting)

    @property
    def refill(self) -> float:
        """The rate now (calls per second), after adaptation; 0 when unlimited."""
        return self._refill

    def _top_up(self, now: float) -> None:
        if not self.rate.unlimited:
            self._tokens = min(self.rate.burst, self._tokens + (now - self._updated) * self._refill)
        self._updated = now

    def _ready_in(self, now: float) -> float:
        wait = max(0.0, self._blocked_until - now)
        if not self.rate.unlimited and self._tokens < 1:
            wait = max(wait, (1 - self._tokens) / self._refill)
        return wait

    def _record_wait(self, priority: int, waited: float) -> None:
        from activities.metrics import TOKEN_WAIT

        TOKEN_WAIT.record(waited, {"cloud.provider": self.key.cloud,
                                   "gameday.api_category": self.key.category,
                                   "gameday.priority": "restore" if priority == RESTORE
                                   else "apply"})

    def take(self, priority: int = APPLY, stopped: Callable[[], bool] = lambda: False) -> float:
        """Wait for a token, served before every waiting call of a lower priority (a higher
        number); returns the seconds waited. Raises CallAbandoned once `stopped()` is true."""
        started = self._clock()
        ticket = (priority, next(self._tickets))
        with self._cond:
            heapq.heappush(self._waiting, ticket)
            try:
                while True:
                    if stopped():
                        raise CallAbandoned(f"no call made: the activity stopped ({self.key})")
                    now = self._clock()
                    self._top_up(now)
                    wait = self._ready_in(now)
                    if self._waiting[0] == ticket and wait <= 0:
                        heapq.heappop(self._waiting)
                        if not self.rate.unlimited:
                            self._tokens -= 1
                        self.stats.calls += 1
                        waited = now - started
                        self.stats.waited += waited
                        longest = self.stats.longest_wait
                        longest[priority] = max(longest.get(priority, 0.0), waited)
                        self._cond.notify_all()
                        break
                    self._cond.wait(min(max(wait, 0.001), STOP_POLL))
            except BaseException:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()
                raise
        self._record_wait(priority, waited)
        return waited

    def throttled(self, retry_after: float | None = None) -> None:
        """The cloud answered a call of this bucket with a throttle: halve the rate, drop the
        tokens, and let no call through before `retry_after` seconds."""
        with self._cond:
            now = self._clock()
            self._top_up(now)
            self.stats.throttles += 1
            if self.rate.unlimited:
                low, high = UNLIMITED_BACKOFF
                self._backoff = min(high, self._backoff * 2 if self._backoff else low)
                pause = self._backoff
            else:
                floor = max(MIN_REFILL, self.rate.refill / FLOOR_DIVISOR)
                self._refill = max(floor, min(self._refill, self.rate.refill) / 2)
                self._tokens = 0.0
                pause = 0.0
            if retry_after is not None:
                pause = max(pause, retry_after)
            self._blocked_until = max(self._blocked_until, now + pause)
            self._cond.notify_all()

    def succeeded(self) -> None:
        """A call of this bucket succeeded: the rate climbs back towards the configured one."""
        with self._cond:
            self.last_success = self._clock()
            self._backoff = 0.0
            if not self.rate.unlimited and self._refill < self.rate.refill:
                self._refill = min(self.rate.refill,
                                   self._refill + self.rate.refill / RECOVERY_CALLS)


class BucketRegistry:
    """The buckets of one worker process, made on first use from `configured_rate`."""

    def __init__(self, rate_of: Callable[[str, str], Rate] = configured_rate):
        self._rate_of = rate_of
        self._buckets: dict[BucketKey, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, key: BucketKey) -> TokenBucket:
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                rate = self._rate_of(key.category, key.cloud)
                found = self._buckets[key] = TokenBucket(key, rate)
            return found

    def all(self) -> list[TokenBucket]:
        with self._lock:
            return list(self._buckets.values())

    def clear(self) -> None:
        """Forget every bucket (tests, and a change of the rate variables)."""
        with self._lock:
            self._buckets.clear()


BUCKETS = BucketRegistry()
"""The process-wide registry every activity shares."""


# --- who is calling -----------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """What the buckets need to know about the activity making a call."""

    priority: int = APPLY
    account: str = ""
    region: str = ""
    run_id: str = ""
    """The run the call is made for: AWS's session name in a target account."""
    stops: tuple[threading.Event, ...] = ()
    """Set when the work this call belongs to stopped (a fan-out, and any fan-out around it)."""
    cancelled: Callable[[], bool] = field(default=lambda: False)

    def stopped(self) -> bool:
        return any(stop.is_set() for stop in self.stops) or self.cancelled()

    def stopping_with(self, stop: threading.Event) -> Caller:
        return replace(self, stops=(*self.stops, stop))


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("gameday_caller",
                                                                       default=None)


def caller() -> Caller:
    return _CALLER.get() or Caller()


@contextmanager
def calling_as(**changes: object) -> Iterator[Caller]:
    """Within the block, calls are made as the current caller with `changes` applied."""
    made = replace(caller(), **changes)  # type: ignore[arg-type]
    token = _CALLER.set(made)
    try:
        yield made
    finally:
        _CALLER.reset(token)


def run_as(made: Caller, fn: Callable[[], R]) -> R:
    """Run `fn` as `made`, in a context of its own (for a thread of a pool)."""
    def inner() -> R:
        _CALLER.set(made)
        return fn()
    return contextvars.Context().run(inner)


# --- a call that waits out throttling -----------------------------------------------------


def _record_throttle(key: BucketKey) -> None:
    from activities.metrics import THROTTLES

    THROTTLES.add(1, {"cloud.provider": key.cloud, "gameday.api_category": key.category})


class Throttle(NamedTuple):
    retry_after: float | None


def paced(key: BucketKey, call: Callable[[], R],
          throttle_of: Callable[[Exception], Throttle | None],
          registry: BucketRegistry | None = None) -> R:
    """Make `call` with a token of `key`'s bucket; while the cloud answers with a throttle, wait
    (the bucket slows down and honours Retry-After) and try again. The throttle is raised only
    when no call of the bucket has succeeded for `stall_limit()` seconds."""
    bucket = (registry or BUCKETS).bucket(key)
    who = caller()
    started = time.monotonic()
    while True:
        bucket.take(who.priority, who.stopped)
        try:
            result = call()
        except Exception as exc:
            throttle = throttle_of(exc)
            if throttle is None:
                raise
            bucket.throttled(throttle.retry_after)
            _record_throttle(key)
            if time.monotonic() - max(started, bucket.last_success) > stall_limit():
                raise
            continue
        bucket.succeeded()
        return result
