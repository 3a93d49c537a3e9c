"""ARM long-running operations in the three styles real ARM uses.

- `sync`: the write answers 200/201 (or 200 for DELETE) with `provisioningState: Succeeded`.
- `async-operation`: the write answers 201/200 (PUT) or 202 (DELETE) with an `Azure-AsyncOperation`
  header; polling it gives `{"status": "InProgress"}` once, then `{"status": "Succeeded"}`.
- `location`: the write answers 201/200 (PUT) or 202 (DELETE) with a `Location` header; polling
  it gives 202 once, then 200 with the resource (PUT) or 204 (DELETE).

An operation in progress holds its resource: another write to it gets 429
`RetryableErrorDueToAnotherOperation` with `Retry-After`. An operation that nobody polls
completes by itself after `seconds`.
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gameday.lab.azure.arm import ArmError

SYNC = "sync"
ASYNC_OPERATION = "async-operation"
LOCATION = "location"
STYLES = (SYNC, ASYNC_OPERATION, LOCATION)


@dataclass
class Operation:
    id: str
    namespace: str
    location: str
    method: str
    holds: str
    deadline: float
    on_done: Callable[[], None]
    result: Callable[[], Any] | None = None
    polls_left: int = 1
    status: str = "InProgress"
    started: float = field(default_factory=time.time)
    name: str = ""


class Operations:
    """Operations by id, the resources they hold, and their deadlines (kept in a heap)."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds
        self.by_id: dict[str, Operation] = {}
        self.holding: dict[str, Operation] = {}
        self._deadlines: list[tuple[float, str]] = []

    def clear(self) -> None:
        self.by_id.clear()
        self.holding.clear()
        self._deadlines.clear()

    def start(self, *, namespace: str, location: str, method: str, holds: str, name: str,
              on_done: Callable[[], None], result: Callable[[], Any] | None = None) -> Operation:
        op = Operation(id=str(uuid.uuid4()), namespace=namespace, location=location or "global",
                       method=method, holds=holds, name=name,
                       deadline=time.monotonic() + self.seconds, on_done=on_done, result=result)
        self.by_id[op.id] = op
        self.holding[holds] = op
        heapq.heappush(self._deadlines, (op.deadline, op.id))
        return op

    def settle(self) -> None:
        """Complete every operation whose deadline has passed."""
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, op_id = heapq.heappop(self._deadlines)
            op = self.by_id.get(op_id)
            if op is not None and op.status == "InProgress":
                self.complete(op)

    def complete(self, op: Operation) -> None:
        op.status = "Succeeded"
        if self.holding.get(op.holds) is op:
            del self.holding[op.holds]
        op.on_done()

    def poll(self, op_id: str) -> Operation | None:
        """Advance an operation by one poll: the first answers InProgress, the next completes it."""
        op = self.by_id.get(op_id)
        if op is None or op.status != "InProgress":
            return op
        if op.polls_left > 0 and time.monotonic() < op.deadline:
            op.polls_left -= 1
        else:
            self.complete(op)
        return op

    def busy(self, resource_key: str) -> Operation | None:
        return self.holding.get(resource_key)

    def ensure_idle(self, resource_key: str, resource_id: str) -> None:
        """429 RetryableErrorDueToAnotherOperation while another operation holds the resource."""
        op = self.holding.get(resource_key)
        if op is None:
            return
        message = (f"Operation {op.name} ({op.id}) is updating resource {resource_id}. The call "
                   "can be retried in {retry} seconds.")
        retry = retry_after(op)
        raise ArmError(429, "RetryableErrorDueToAnotherOperation", message.format(retry=retry),
                       {"Retry-After": str(retry)},
                       details=[{"code": "RetryableErrorDueToAnotherOperation",
                                 "message": message.format(retry=retry)}])


def retry_after(op: Operation) -> int:
    return max(1, math.ceil(op.deadline - time.monotonic()))
