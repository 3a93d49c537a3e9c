"""The token buckets on their own: restores are served first, a throttle slows the bucket and
honours Retry-After, success recovers it, a throttled call is made again until the bucket stalls,
and a stopped fan-out makes no further call. A hand-driven clock decides when tokens come."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from activities.base import fan_out
from activities.throttle import (
    APPLY,
    RESTORE,
    STALL_VARIABLE,
    BucketKey,
    BucketRegistry,
    CallAbandoned,
    Rate,
    Throttle,
    TokenBucket,
    configured_rate,
    paced,
)

KEY = BucketKey("aws", "123456789012", "us-east-1", "ec2-mutating")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_restore_takes_the_next_token_before_every_waiting_apply() -> None:
    clock = Clock()
    bucket = TokenBucket(KEY, Rate(burst=1, refill=1), clock)
    bucket.take(APPLY)  # the burst is spent: everyone below waits for the next token
    served: list[str] = []
    lock = threading.Lock()

    def wait(name: str, priority: int) -> None:
        bucket.take(priority)
        with lock:
            served.append(name)

    threads = [threading.Thread(target=wait, args=(f"apply-{i}", APPLY)) for i in range(3)]
    for count, thread in enumerate(threads, start=1):
        thread.start()
        eventually(lambda count=count: bucket.waiting == count, f"{count} applies waiting")
    restore = threading.Thread(target=wait, args=("restore", RESTORE))
    restore.start()
    eventually(lambda: bucket.waiting == 4, "the restore waiting behind them")

    clock.now += 1.0  # one token
    eventually(lambda: len(served) == 1, "one call served")
    assert served == ["restore"]
    for count in (2, 3, 4):  # the burst is one token: they come one a second
        clock.now += 1.0
        eventually(lambda count=count: len(served) == count, f"{count} calls served")
    for thread in [*threads, restore]:
        thread.join(timeout=10)
    assert served[1:] == ["apply-0", "apply-1", "apply-2"]  # first come, first served


def test_a_throttle_halves_the_rate_and_honours_retry_after_then_success_recovers() -> None:
    clock = Clock()
    bucket = TokenBucket(KEY, Rate(burst=50, refill=5), clock)
    bucket.throttled(retry_after=2.0)
    assert bucket.refill == 2.5
    done = threading.Event()
    thread = threading.Thread(target=lambda: (bucket.take(APPLY), done.set()))
    thread.start()
    clock.now += 1.9
    assert not done.wait(0.3), "a call went through before Retry-After"
    clock.now += 0.5  # past Retry-After, and a token (1 / 2.5 s) has come
    assert done.wait(10)
    thread.join()
    for _ in range(200):
        bucket.succeeded()
    assert bucket.refill == 5  # recovered, never above the configured rate


def test_throttles_never_slow_a_bucket_below_its_floor() -> None:
    bucket = TokenBucket(KEY, Rate(burst=50, refill=5), Clock())
    for _ in range(30):
        bucket.throttled()
    assert bucket.refill == pytest.approx(5 / 16)


def test_a_throttled_call_is_made_again_until_it_succeeds() -> None:
    registry = BucketRegistry(lambda category, cloud: Rate(burst=100, refill=1000))
    answers = ["throttled", "throttled", "throttled", "ok"]

    def call() -> str:
        answer = answers.pop(0)
        if answer == "throttled":
            raise RuntimeError("RequestLimitExceeded")
        return answer

    assert paced(KEY, call, lambda exc: Throttle(0.0), registry) == "ok"
    assert registry.bucket(KEY).stats.throttles == 3
    with pytest.raises(ValueError):  # anything that is not throttling goes up at once
        paced(KEY, lambda: int("x"), lambda exc: None, registry)


def test_a_throttle_goes_up_once_the_bucket_made_no_progress_for_the_stall_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STALL_VARIABLE, "0.2")
    registry = BucketRegistry(lambda category, cloud: Rate(burst=100, refill=1000))
    calls = []

    def always_throttled() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("RequestLimitExceeded")

    with pytest.raises(RuntimeError):
        paced(KEY, always_throttled, lambda exc: Throttle(0.05), registry)
    assert len(calls) >= 2


def test_a_stopped_caller_makes_no_call() -> None:
    bucket = TokenBucket(KEY, Rate(burst=0, refill=1), Clock())
    with pytest.raises(CallAbandoned):
        bucket.take(APPLY, stopped=lambda: True)
    assert bucket.waiting == 0


def test_once_a_fan_out_fails_calls_waiting_for_tokens_are_never_made() -> None:
    """Eight calls in flight, two tokens: the first call fails, so the six waiting for tokens
    must be abandoned, not made when their tokens come."""
    registry = BucketRegistry(lambda category, cloud: Rate(burst=2, refill=5))
    made: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        def call() -> int:
            with lock:
                made.append(item)
            time.sleep(0.1)
            if item == 0:
                raise RuntimeError("AccessDenied")
            return item
        return paced(KEY, call, lambda exc: None, registry)

    with pytest.raises(RuntimeError, match="AccessDenied"):
        for _ in fan_out(range(8), work, width=8):
            pass
    time.sleep(1.0)  # what a waiting call would have needed to get its token
    assert len(made) == 2, made


def test_rates_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert configured_rate("ec2-mutating", "aws") == Rate(burst=50, refill=5)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")  # an emulator: its own limits
    assert configured_rate("ec2-mutating", "aws").unlimited
    monkeypatch.setenv("GAMEDAY_RATE_LIMITS", "on")  # the lab's realistic mode
    assert configured_rate("ec2-mutating", "aws") == Rate(burst=50, refill=5)
    monkeypatch.setenv("GAMEDAY_RATE_EC2_MUTATING", "20/200")
    assert configured_rate("ec2-mutating") == Rate(burst=200, refill=20)
    monkeypatch.setenv("GAMEDAY_RATE_ARM_WRITE", "off")
    assert configured_rate("arm-write").unlimited
    monkeypatch.setenv("GAMEDAY_RATE_LIMITS", "off")
    assert configured_rate("gce-mutation").unlimited
    monkeypatch.setenv("GAMEDAY_RATE_LIMITS", "")
    monkeypatch.setenv("GAMEDAY_RATE_ROUTE53", "fast")
    with pytest.raises(ValueError, match="GAMEDAY_RATE_ROUTE53"):
        configured_rate("route53")
