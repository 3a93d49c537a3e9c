"""What every cloud package shares: the guardrail re-check, progress heartbeats, fan-out, spans, and
the translation of domain errors into Temporal's retry behaviour at the activity's edge. The
adapter of `activities.registry` is the one place that applies the re-check, the spans and the
error mapping to every fault."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError, FailureError

from activities.throttle import (
    APPLY,
    RESTORE,
    STOP_POLL,
    CallAbandoned,
    caller,
    calling_as,
    run_as,
)
from gameday.errors import CloudError, Refused, TargetNotFound, UserError, first_sentence
from gameday.guardrails import WorkerSite, refusals
from gameday.plan import (
    DriftWatchRequest,
    FaultRequest,
    PrepareRequest,
    Scope,
    StepRequest,
)
from gameday.runbook import Guardrails

P = ParamSpec("P")
R = TypeVar("R")

tracer = trace.get_tracer("gameday.activities")


def check_guardrails(step_id: str, scope: Scope, guardrails: Guardrails, count: int | None) -> None:
    """Refuse, before any change, a scope the runbook or this worker's operator does not allow."""
    reasons = refusals(step_id, scope, guardrails, count, WorkerSite.from_env())
    if reasons:
        raise Refused("; ".join(reasons))


def beat() -> None:
    """Heartbeat, when running as an activity, before a cloud call: a worker that dies mid-way is
    noticed within the heartbeat timeout (the SDK throttles the heartbeats themselves)."""
    if activity.in_activity():
        activity.heartbeat()
        stop_if_cancelled()


def stop_if_cancelled() -> None:
    """Raise `CancelledError` here when the activity was cancelled: at a heartbeat of `beat` or
    `progress`, where every call the activity started has landed (the SDK also raises it
    asynchronously, at whatever line the activity's thread is on)."""
    if activity.in_activity() and activity.is_cancelled():
        raise CancelledError("the activity was cancelled")


KEEP_ALIVE = 2.0
"""Seconds between the heartbeats `kept_alive` sends while an activity runs."""


@contextmanager
def kept_alive(every: float = KEEP_ALIVE) -> Iterator[None]:
    """While the block runs as an activity, heartbeat every `every` seconds from a helper thread.

    One slow cloud call (a listing of thousands, a throttled retry; each bounded by its own read
    timeout) then never passes for a dead worker, and a cancellation request reaches the worker
    within `every` seconds. A worker that dies stops heartbeating all the same."""
    if not activity.in_activity():
        yield
        return
    context = contextvars.copy_context()
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(every):
            context.run(activity.heartbeat)

    keeper = threading.Thread(target=keep, name="gameday-keep-alive", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


def progress(done: int, total: int) -> None:
    """Heartbeat progress when running as an activity (so cancellation reaches us); else nothing."""
    if activity.in_activity():
        activity.heartbeat({"done": done, "total": total})
        stop_if_cancelled()


def poll_until(ready: Callable[[], bool], *, limit: float, interval: float,
               still: Callable[[], str]) -> None:
    """Return once `ready()` (a read of the cloud) is true, asked again every `interval` seconds:
    the activity heartbeats between reads and stops at once when it is cancelled or its caller
    stops.
    After `limit` seconds this attempt gives up with a retryable `CloudError` saying `still()`
    (what has not settled yet): Temporal's next attempt reads the cloud afresh, so a wait never
    outlives the activity's timeouts."""
    deadline = time.monotonic() + limit
    who = caller()
    while not ready():
        if time.monotonic() > deadline:
            raise CloudError(still(), retryable=True)
        beat()
        until = time.monotonic() + interval
        while (left := until - time.monotonic()) > 0:
            if who.stopped():
                raise CallAbandoned("stopped waiting for the cloud: the activity stopped")
            time.sleep(min(left, STOP_POLL))


FAN_OUT_TICK = 0.5
"""How often `fan_out` heartbeats while its calls run: cancellation reaches the activity's thread
at the next tick."""

T = TypeVar("T")

PARALLEL_CALLS = {"aws": 8, "gcp": 8, "azure": 4}
"""Resources one activity changes at once, per cloud: inside the clouds' default write quotas
even with a few activities of a cloud in flight (see worker.CLOUD_LIMITS); the token buckets of
`activities.throttle` pace them to the clouds' rates. ARM holds a NIC while it updates it and
refuses a NIC update only while the NSG it references is itself being written, so NICs move onto
a finished NSG in parallel; writes to one NSG stay one at a time."""


def parallel_calls(cloud: str) -> int:
    """How many resources one activity of `cloud` changes at once:
    `GAMEDAY_<CLOUD>_PARALLEL_CALLS`, else `PARALLEL_CALLS[cloud]`."""
    value = os.environ.get(f"GAMEDAY_{cloud.upper()}_PARALLEL_CALLS")
    return max(1, int(value)) if value else PARALLEL_CALLS[cloud]


def fan_out(items: Iterable[T], work: Callable[[T], R], width: int) -> Iterator[tuple[T, R]]:
    """Run `work` over `items`, at most `width` at a time, yielding (item, result) as each ends.

    The calling (activity) thread only waits and heartbeats progress every `FAN_OUT_TICK`, so a
    cancellation reaches it at once; nothing is queued beyond the calls in flight, so on an error
    or a cancellation no new call starts and the ones in flight finish before the error is raised.
    `work` runs without the activity context (it must not heartbeat itself) but as the same
    caller of the token buckets: once the fan-out stops (an error, a cancellation), a call of
    `work` still waiting for a token is abandoned (`CallAbandoned`) instead of being made."""
    pending = list(items)
    total = len(pending)
    done = 0
    queue = iter(pending)
    stop = threading.Event()
    as_caller = caller().stopping_with(stop)
    with ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="gameday-fan-out") as pool:
        running: dict[Future[R], T] = {}

        def submit_next() -> bool:
            item = next(queue, _END)
            if item is _END or stop.is_set():
                return False
            call = functools.partial(work, item)  # type: ignore[arg-type]
            running[pool.submit(run_as, as_caller, call)] = item  # type: ignore[assignment]
            return True

        for _ in range(max(1, width)):
            if not submit_next():
                break
        try:
            while running:
                finished, _ = wait(running, timeout=FAN_OUT_TICK, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    result = future.result()
                    done += 1
                    yield item, result
                    submit_next()
                progress(done, total)
        finally:
            stop.set()
            for future in running:
                future.cancel()


_END = object()


@contextmanager
def cloud_span(name: str, scope: Scope, resources: int | None = None) -> Iterator[trace.Span]:
    attributes: dict[str, Any] = {
        "cloud.provider": scope.cloud,
        "cloud.account.id": scope.account,
        "cloud.region": scope.region,
    }
    if scope.zone:
        attributes["cloud.availability_zone"] = scope.zone
    if resources is not None:
        attributes["gameday.resources"] = resources
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def temporal_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map domain errors onto Temporal's retry rules: user errors stop, transient ones retry;
    every failure is one sentence with its full text in the details (`activity_failure`)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with kept_alive(), calling_as(**_caller_of(args, APPLY)):
                return fn(*args, **kwargs)
        except CallAbandoned as exc:
            raise CancelledError(str(exc)) from exc
        except FailureError:
            raise  # a cancellation, or a failure already in Temporal's terms
        except TargetNotFound as exc:
            raise activity_failure(exc, "TargetNotFound", non_retryable=True) from None
        except Refused as exc:
            raise activity_failure(exc, "Refused", non_retryable=True) from None
        except UserError as exc:
            raise activity_failure(exc, "UserError", non_retryable=True) from None
        except CloudError as exc:
            raise _cloud_failure(exc, retryable=exc.retryable) from None
        except Exception as exc:
            raise unexpected_failure(exc) from None

    return wrapper


def restore_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A restore never gives up: every failure is retried (the last one shows in the Temporal UI
    as the pending activity's failure, in one sentence), so fixing the cause, a permission say,
    lets it finish."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with kept_alive(), calling_as(**_caller_of(args, RESTORE)):
                return fn(*args, **kwargs)
        except CallAbandoned as exc:
            raise CancelledError(str(exc)) from exc
        except FailureError:
            raise  # a cancellation, or a failure already in Temporal's terms
        except CloudError as exc:
            raise _cloud_failure(exc, retryable=True) from None
        except UserError as exc:
            raise activity_failure(exc, "RestoreBlocked") from None
        except Exception as exc:
            raise unexpected_failure(exc) from None

    return wrapper


def one_sentence_failures(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """For the activities that touch no cloud (run state, leases, probes, notifications): a
    failure is one sentence with its full text in the details, as a fault's is; user errors stop,
    anything else is retried as Temporal retries any exception."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (FailureError, asyncio.CancelledError):
            raise  # a cancellation, or a failure already in Temporal's terms
        except UserError as exc:
            raise activity_failure(exc, type(exc).__name__, non_retryable=True) from None
        except Exception as exc:
            raise unexpected_failure(exc) from None

    return wrapper


MAX_SENTENCE = 300
"""Characters of a failure's message at most: the Temporal UI shows it on one line."""
MAX_DETAILS = 1_800
"""Characters of a failure's details at most. Temporal keeps a retrying activity's last failure
only while the whole failure (message, details, stack trace) is under 4 KB
(`limit.mutableStateActivityFailureSize.error`); above, the UI shows "Failure exceeds size
limit." instead of it. Whatever is cut goes to the worker's log in full."""
_REQUEST = re.compile(r"\b(?:GET|HEAD|POST|PUT|PATCH|DELETE) https?://\S*?(?::\s+|\s+|$)")
"""The method and URL SDKs put before a server's message (`404 GET http://…/instances/x: …`)."""
_CLOUDS = {"botocore": "AWS", "boto3": "AWS", "google": "GCP", "azure": "Azure"}
"""The cloud an SDK's exception comes from, by its top-level package."""


def activity_failure(exc: BaseException, type: str, *, non_retryable: bool = False,
                     next_retry_delay: timedelta | None = None) -> ApplicationError:
    """`exc` as an activity's failure: its message is one sentence (what the Temporal UI shows as
    the last failure, and what workflows read through `describe`), its details hold the full
    text and the text of every exception it was raised from. Raise it `from None`: a Temporal
    failure's cause would carry, and show first, the SDK's raw text."""
    texts = [str(exc), *_causes(exc)]
    message, *causes = _shared(texts, MAX_DETAILS)
    if [message, *causes] != texts and activity.in_activity():
        activity.logger.warning("the activity failed: %s", _sentence(str(exc)), exc_info=exc)
    return ApplicationError(_sentence(str(exc)) or type, {"message": message, "causes": causes},
                            type=type, non_retryable=non_retryable,
                            next_retry_delay=next_retry_delay)


def unexpected_failure(exc: Exception) -> ApplicationError:
    """An exception no fault meant to raise (a bug, an SDK error not translated): retryable, as
    Temporal treats any exception, its type as the failure's type, one sentence naming it and
    its cloud, and its traceback in the details (in full in the worker's log)."""
    if activity.in_activity():
        activity.logger.warning("the activity failed unexpectedly", exc_info=exc)
    kind = type(exc).__name__
    cloud = _CLOUDS.get(type(exc).__module__.split(".")[0])
    text = _sentence(str(exc))
    sentence = f"the activity failed: {f'{cloud} ' if cloud else ''}{kind}{f': {text}' if text else ''}"
    message = _cut(str(exc), MAX_DETAILS // 4)
    details = {"error": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": message,
               "traceback": _tail("".join(traceback.format_exception(exc)),
                                  MAX_DETAILS - len(message))}
    return ApplicationError(_sentence(sentence), details, type=kind)


def _sentence(message: str) -> str:
    """The first sentence of `message`, without an SDK's request line, on one bounded line."""
    sentence = _REQUEST.sub("", first_sentence(message)).strip()
    if len(sentence) > MAX_SENTENCE:
        sentence = sentence[:MAX_SENTENCE - 1].rstrip() + "…"
    return sentence


def _shared(texts: list[str], budget: int) -> list[str]:
    """`texts` as they are when they fit in `budget` characters together, else each cut to an
    equal share."""
    if sum(map(len, texts)) <= budget:
        return texts
    return [_cut(text, budget // len(texts)) for text in texts]


def _cut(text: str, most: int) -> str:
    """`text` in at most about `most` characters: its head and its tail."""
    if len(text) <= most:
        return text
    half = max(0, most // 2 - 20)
    return f"{text[:half]} … {len(text) - 2 * half} characters cut … {text[len(text) - half:]}"


def _tail(text: str, most: int) -> str:
    """The end of `text` (a traceback's innermost frames and its error) in about `most`
    characters."""
    if len(text) <= most:
        return text
    keep = max(0, most - 40)
    return f"… {len(text) - keep} characters cut …\n{text[len(text) - keep:]}"


def _causes(exc: BaseException, most: int = 5) -> list[str]:
    """`Type: text` of each exception `exc` was raised from (or while handling), nearest first."""
    causes: list[str] = []
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cause is not None and len(causes) < most:
        causes.append(f"{type(cause).__module__}.{type(cause).__qualname__}: {cause}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return causes


def _scope_of(args: Iterable[Any]) -> Scope | None:
    """The scope an activity's request acts on, whatever the request's type."""
    for arg in args:
        if isinstance(arg, FaultRequest):
            return arg.checkpoint.scope
        if isinstance(arg, PrepareRequest):
            return arg.resolved.scope
        if isinstance(arg, StepRequest):
            try:
                return Scope.of(arg.step.target)
            except Exception:
                return None
    return None


def _cancellation_flag() -> Callable[[], bool]:
    """Whether the running activity was cancelled, askable from any thread (a fan-out's)."""
    if not activity.in_activity():
        return lambda: False
    context = contextvars.copy_context()
    lock = threading.Lock()

    def cancelled() -> bool:
        with lock:  # a context is entered by one thread at a time
            return context.run(activity.is_cancelled)

    return cancelled


def _caller_of(args: Iterable[Any], priority: int) -> dict[str, Any]:
    """How an activity's calls queue for tokens: its priority, the account and region of its
    scope, and its cancellation."""
    args = [a.step if isinstance(a, DriftWatchRequest) else a for a in args]
    scope = _scope_of(args)
    run_id = next((a.checkpoint.run_id if isinstance(a, FaultRequest) else a.run_id
                   for a in args if isinstance(a, FaultRequest | PrepareRequest | StepRequest)), "")
    return {"priority": priority, "account": scope.account if scope else "",
            "region": scope.region if scope else "", "run_id": run_id, "stops": (),
            "cancelled": _cancellation_flag()}


def _cloud_failure(exc: CloudError, retryable: bool) -> ApplicationError:
    delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
    return activity_failure(exc, "CloudThrottled" if exc.retry_after is not None else "CloudError",
                            non_retryable=not retryable, next_retry_delay=delay)
