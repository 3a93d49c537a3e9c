"""Compute Engine Operations: global, regional and zonal, progressing PENDING → RUNNING → DONE.

A new operation is PENDING; each `get` moves it one step (the first get says RUNNING, the next
DONE); `wait` makes it DONE at once; `list` shows it as it is. The emulator applies a mutation's
effect when it creates the operation, so the resource is visible no later than DONE. A failed
operation ends DONE with `error.errors[]`, `httpErrorStatusCode` and `httpErrorMessage`.
A `requestId` seen before in the project returns the operation it created, unchanged.

An operation that takes time (a power operation: its instance is STOPPING, STAGING or SUSPENDING
meanwhile) has a `due` time. At `due` it is DONE and its effect lands whether or not anyone polls
it (`settle`), as on Compute Engine. Created `hurried` (the emulator's default), reading it also
finishes it early, as above; created unhurried, it is RUNNING until `due` however often it is
read, and `wait` is answered when it is DONE or after `WAIT_BLOCK` seconds, whichever is first
(Compute Engine's `wait` returns within about two minutes, DONE or not).
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from gameday.lab.emulator import ApiError

_NEXT = {"PENDING": "RUNNING", "RUNNING": "DONE", "DONE": "DONE"}
WAIT_BLOCK = 2.0
"""The longest the emulator holds a `wait` on an unhurried operation before answering RUNNING."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class OpFailure:
    """Why an accepted mutation failed, reported by its operation rather than synchronously."""

    status: int
    code: str
    message: str


class OperationStore:
    """Every operation of every project, by (project, scope) then name; scope is `global`,
    `regions/R` or `zones/Z`."""

    def __init__(self, link: Callable[[str], str], next_id: Callable[[], str]):
        self._link = link
        self._next_id = next_id
        self._ops: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._failures: dict[tuple[str, str, str], OpFailure] = {}
        self._on_done: dict[tuple[str, str, str], Callable[[], None]] = {}
        self._due: dict[tuple[str, str, str], tuple[float, bool]] = {}
        """(project, scope, name) → (monotonic time it is DONE by, whether reads hurry it)."""
        self._requests: dict[tuple[str, str], tuple[str, str]] = {}
        self._seq = itertools.count(1)

    def by_request(self, project: str, request_id: str | None) -> dict[str, Any] | None:
        if not request_id:
            return None
        try:
            if uuid.UUID(request_id).int == 0:
                raise ValueError("zero UUID")
        except ValueError as exc:
            raise ApiError(400, "invalid", f"Invalid value for field 'requestId': "
                                           f"'{request_id}'. Must be a UUID.") from exc
        found = self._requests.get((project, request_id))
        if found is None:
            return None
        return self._ops[(project, found[0])][found[1]]

    def create(self, project: str, scope: str, op_type: str, target_link: str, target_id: str,
               failure: OpFailure | None = None, request_id: str | None = None,
               on_done: Callable[[], None] | None = None, seconds: float | None = None,
               hurried: bool = True) -> dict[str, Any]:
        """A new PENDING operation; `on_done` runs (under the emulator's lock) when it is DONE,
        for the effects Compute Engine shows only then (an instance's STOPPING → TERMINATED).
        With `seconds`, it is DONE that long after now at the latest (see the module's note)."""
        seq = next(self._seq)
        name = f"operation-{seq:013d}-{uuid.uuid4().hex[:12]}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self._next_id(),
            "name": name,
            "operationType": op_type,
            "targetLink": target_link,
            "targetId": target_id,
            "status": "PENDING",
            "user": "gameday-lab@emulator",
            "progress": 0,
            "insertTime": now(),
            "selfLink": self._link(f"projects/{project}/{scope}/operations/{name}"),
        }
        if scope.startswith("zones/"):
            op["zone"] = self._link(f"projects/{project}/{scope}")
        elif scope.startswith("regions/"):
            op["region"] = self._link(f"projects/{project}/{scope}")
        self._ops.setdefault((project, scope), {})[name] = op
        if failure is not None:
            self._failures[(project, scope, name)] = failure
        if on_done is not None:
            self._on_done[(project, scope, name)] = on_done
        if request_id:
            self._requests[(project, request_id)] = (scope, name)
        if seconds is not None:
            self._due[(project, scope, name)] = (time.monotonic() + seconds, hurried)
        return op

    def settle(self) -> None:
        """Finish every operation whose time has come, whether or not anyone reads it."""
        if not self._due:
            return
        moment = time.monotonic()
        for (project, scope, name), (due, _) in list(self._due.items()):
            if due <= moment and name in self._ops.get((project, scope), {}):
                self.get(project, scope, name, finish=True)

    def remaining(self, project: str, scope: str, name: str) -> float:
        """Seconds until an unhurried operation is DONE (0 for every other operation)."""
        due, hurried = self._due.get((project, scope, name), (0.0, True))
        return 0.0 if hurried else max(0.0, due - time.monotonic())

    def get(self, project: str, scope: str, name: str, *, finish: bool = False) -> dict[str, Any]:
        """The operation after one more step (or after all of them when `finish`)."""
        ops = self._ops.get((project, scope), {})
        op = ops.get(name)
        if op is None:
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/{scope}/"
                                            f"operations/{name}' was not found")
        status = "DONE" if finish else _NEXT[op["status"]]
        due, hurried = self._due.get((project, scope, name), (0.0, True))
        if status == "DONE" and not hurried and time.monotonic() < due:
            status = "RUNNING"
        if status == op["status"]:
            return op
        if status == "DONE":
            self._due.pop((project, scope, name), None)
        op = copy.deepcopy(op)
        op["status"] = status
        if "startTime" not in op:
            op["startTime"] = now()
        if status == "DONE":
            op["progress"] = 100
            op["endTime"] = now()
            failure = self._failures.pop((project, scope, name), None)
            if failure is not None:
                op["error"] = {"errors": [{"code": failure.code, "message": failure.message}]}
                op["httpErrorStatusCode"] = failure.status
                op["httpErrorMessage"] = HTTPStatus(failure.status).phrase.upper()
            effect = self._on_done.pop((project, scope, name), None)
            if effect is not None:
                effect()
        ops[name] = op
        return op

    def delete(self, project: str, scope: str, name: str) -> None:
        """Forget an operation; what it does still lands (at once: nothing is left to settle)."""
        self._due.pop((project, scope, name), None)
        self.get(project, scope, name, finish=True)
        del self._ops[(project, scope)][name]

    def listing(self, project: str, scope: str) -> dict[str, dict[str, Any]]:
        return self._ops.get((project, scope), {})
