"""GCP database failover (contract §10, `failover_database`): the zone's Cloud SQL primaries move.

Before: each named Cloud SQL instance is HA (`settings.availabilityType: REGIONAL`), its primary
in `gceZone`, its standby in `secondaryGceZone`.
Taken: the named instances whose primary is in the zone; one led from another zone is left out;
an unknown name is TargetNotFound and an instance without HA is refused, before any change.
After apply: each taken instance carries the marks `gameday-run`/`gameday-step` (the run and
step, label-encoded as `activities.gcp.power.mark_labels`), `gameday-primary-zone` (its primary
zone before the run) and `gameday-fail-back`, set before it changes, and was failed over
(`instances.failover`, waited for until it is RUNNABLE with its primary outside the zone); a
failover already running when the fault arrives is waited out first.
After restore: with `fail_back: true` (the default) the primary is back in its recorded zone
(failed over again until it is); with `fail_back: false` it stays where the failover put it.
Either way gameday's labels are gone and every other label stays. Safe to repeat.
`gameday sweep` does the same from the labels alone (`find`, `sweep`).

The client is google-api-python-client's `sqladmin` v1 with its discovery document from the
wheel (`static_discovery=True`: nothing is fetched at run time), for `GAMEDAY_GCP_ENDPOINT`
with anonymous credentials when set, else for Google with Application Default Credentials (as
the project's `GAMEDAY_GCP_IMPERSONATE` service account, when named). The
GAPIC `google-cloud-sql` (0.1) offers sqladmin v1 only over gRPC (its REST transport is v1beta4
only), which an HTTP endpoint cannot serve.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth.credentials import AnonymousCredentials, Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import BaseModel

from activities.base import poll_until, progress
from activities.gcp.api import reached_as
from activities.gcp.impersonation import project_credentials
from activities.gcp.power import is_mark, mark_labels, marked_by
from activities.throttle import BucketKey, Throttle
from activities.transient import Transient, paced_and_retried
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.plan import (
    Checkpoint,
    FaultRequest,
    FaultResult,
    PrepareRequest,
    ResolvedStep,
    Resource,
    Scope,
    StepRequest,
)
from gameday.runbook import FailoverDatabaseStep
from gameday.sweep import Leftover
from gameday.targets import GcpDatabaseTarget

MARK_ZONE = "gameday-primary-zone"
MARK_FAIL_BACK = "gameday-fail-back"
CALL_TIMEOUT = 30.0
WAIT_LIMIT = 900.0
"""Seconds a failover (or the wait for one already running) may take before the activity gives
up and Temporal tries again."""
LABEL_ATTEMPTS = 5
"""Label patches tried against a `settingsVersion` that moved meanwhile (412 `staleData`)."""
_BUSY = {"operationInProgress", "staleData"}


def poll_interval() -> float:
    """Seconds between two looks at an instance that fails over (`GAMEDAY_GCP_POLL_SECONDS`)."""
    return float(os.environ.get("GAMEDAY_GCP_POLL_SECONDS") or 1.0)


def _gameday(key: str) -> bool:
    return is_mark(key) or key in (MARK_ZONE, MARK_FAIL_BACK)


def _with(marks: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    return {**labels, **marks}


def _patch(service: Any, **kwargs: Any) -> Any:
    return service.instances().patch(**kwargs)


class FailedOverInstance(BaseModel):
    """One instance the fault fails over: where its primary was, and its labels before."""

    project: str
    instance: str
    primary_zone: str
    standby_zone: str
    labels: dict[str, str]
    fail_back: bool


class FailoverState(BaseModel):
    instances: list[FailedOverInstance]


# --- the client -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _service(endpoint: str | None, service_account: str | None = None) -> tuple[Any, Credentials]:
    """The lab's endpoint anonymously, else Google as `service_account` (impersonated) or, without
    one, with Application Default Credentials."""
    if endpoint:
        credentials: Credentials = AnonymousCredentials()
        return build("sqladmin", "v1", static_discovery=True, credentials=credentials,
                     client_options={"api_endpoint": endpoint}), credentials
    credentials = project_credentials(service_account)
    return build("sqladmin", "v1", static_discovery=True, credentials=credentials), credentials


def _reason(exc: HttpError) -> str:
    try:
        error = json.loads(exc.content or b"{}").get("error", {})
        return str((error.get("errors") or [{}])[0].get("reason") or error.get("status") or "")
    except (ValueError, AttributeError):
        return ""


def _retry_after(exc: HttpError) -> float | None:
    try:
        value = exc.resp.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def throttle_of(exc: Exception) -> Throttle | None:
    """Cloud SQL's answer to a project over its quota: 429, or 403 `rateLimitExceeded`."""
    if isinstance(exc, HttpError) and (exc.status_code == 429 or (
            exc.status_code == 403 and _reason(exc) in ("rateLimitExceeded", "userRateLimitExceeded"))):
        return Throttle(retry_after=_retry_after(exc))
    return None


def transient_of(exc: Exception) -> Transient | None:
    if isinstance(exc, HttpError) and exc.status_code >= 500:
        return Transient(_reason(exc) or str(exc.status_code), _retry_after(exc))
    if isinstance(exc, (httplib2.HttpLib2Error, socket.timeout, ConnectionError, TimeoutError)):
        return Transient("no answer", None)
    return None


class SqlAdmin:
    """Cloud SQL Admin API calls, paced by the project's bucket, retried as `activities.transient`
    says, and failures turned into `CloudError`s that carry Cloud SQL's reason as `code`."""

    def call(self, doing: str, project: str, make: Callable[[Any], Any]) -> dict[str, Any]:
        service, credentials = _service(*reached_as(project))

        def send() -> Any:
            # httplib2 is not thread-safe: one Http per call
            http = google_auth_httplib2.AuthorizedHttp(credentials,
                                                       http=httplib2.Http(timeout=CALL_TIMEOUT))
            return make(service).execute(http=http, num_retries=0)

        try:
            return dict(paced_and_retried(BucketKey("gcp", project, "global", "cloudsql"), send,
                                          throttle_of, transient_of))
        except HttpError as exc:
            reason, status = _reason(exc), exc.status_code
            message = " ".join(str(exc.reason or "").split())
            if throttle_of(exc) is not None:
                raise CloudError(f"GCP throttled {doing}: {message}", retryable=True,
                                 retry_after=_retry_after(exc) or 1.0, code=reason) from exc
            raise CloudError(f"GCP {'failed' if status >= 500 else 'refused'} {doing}: {status} "
                             f"{message}", retryable=status >= 500, code=reason) from exc
        except (httplib2.HttpLib2Error, OSError) as exc:
            raise CloudError(f"GCP did not answer {doing}: {exc}", retryable=True) from exc

    def instance(self, project: str, name: str) -> dict[str, Any]:
        try:
            return self.call(f"reading Cloud SQL instance {name}", project,
                             lambda s: s.instances().get(project=project, instance=name))
        except CloudError as exc:
            if exc.code in ("instanceDoesNotExist", "notFound", "NOT_FOUND"):
                raise TargetNotFound(f"Cloud SQL instance {name} does not exist in project "
                                     f"{project}") from exc
            raise


# --- the fault --------------------------------------------------------------------------------


class GcpDatabaseFailover:
    """Cloud SQL: each HA instance whose primary is in the zone fails over, and back."""

    State = FailoverState

    def __init__(self, clients: object = None, api: SqlAdmin | None = None):
        self.api = api or SqlAdmin()  # `clients` (Compute) is the registry's; Cloud SQL has its own

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The named HA instances whose primary is in the zone; refused when one has no HA."""
        target = request.step.target
        assert isinstance(target, GcpDatabaseTarget)
        resources: list[Resource] = []
        for name in target.instances:
            try:
                instance = self.api.instance(target.project, name)
            except TargetNotFound as exc:
                raise TargetNotFound(f"step {request.step.id}: {exc}") from exc
            if instance.get("settings", {}).get("availabilityType") != "REGIONAL" or \
                    not instance.get("secondaryGceZone"):
                raise Refused(f"step {request.step.id}: Cloud SQL instance {name} has no high "
                              "availability (availabilityType ZONAL), so no standby to fail over "
                              "to; enable HA on it, or leave it out")
            if instance.get("gceZone") != target.zone:
                continue
            resources.append(Resource(
                id=f"projects/{target.project}/instances/{name}", kind="sql-instance", name=name,
                detail={"primary_zone": instance["gceZone"],
                        "standby_zone": instance["secondaryGceZone"],
                        "state": str(instance.get("state", ""))}))
        return ResolvedStep(step_id=request.step.id, action="failover_database",
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Each instance's primary zone and labels, read again now; one held by another run is
        refused."""
        target, step, resolved = request.step.target, request.step, request.resolved
        assert isinstance(target, GcpDatabaseTarget) and isinstance(step, FailoverDatabaseStep)
        records: list[FailedOverInstance] = []
        for resource in resolved.resources:
            name = resource.name or resource.id.rsplit("/", 1)[-1]
            instance = self.api.instance(target.project, name)
            labels = dict(instance.get("settings", {}).get("userLabels") or {})
            holder = marked_by(labels)
            if holder and holder[0] != request.run_id:
                raise Refused(f"step {resolved.step_id}: Cloud SQL instance {name} is held by "
                              f"GameDay {holder[0]}; let it finish, or `gameday sweep` it")
            primary = labels.get(MARK_ZONE) if holder else None  # a prepare repeated after apply
            records.append(FailedOverInstance(
                project=target.project, instance=name,
                primary_zone=primary or instance.get("gceZone") or resource.detail["primary_zone"],
                standby_zone=instance.get("secondaryGceZone") or resource.detail["standby_zone"],
                labels={k: v for k, v in labels.items() if not _gameday(k)},
                fail_back=step.fail_back))
        state = FailoverState(instances=records)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="failover_database", scope=resolved.scope,
                          resources=len(records), state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        state = FailoverState.model_validate(checkpoint.state)
        zone = checkpoint.scope.zone or ""
        result = FaultResult()
        for done, record in enumerate(state.instances):
            marks = {**mark_labels(checkpoint.run_id, checkpoint.step_id),
                     MARK_ZONE: record.primary_zone,
                     MARK_FAIL_BACK: "true" if record.fail_back else "false"}
            self._relabel(record, functools.partial(_with, marks))
            if self._fail_over(record, lambda instance: instance.get("gceZone") != zone):
                result.changed += 1
            else:
                result.unchanged += 1
            progress(done + 1, len(state.instances))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        state = FailoverState.model_validate(request.checkpoint.state)
        result = FaultResult()
        for done, record in enumerate(state.instances):
            self._undo(record, result)
            progress(done + 1, len(state.instances))
        return result

    # --- changing -------------------------------------------------------------------------

    def _undo(self, record: FailedOverInstance, result: FaultResult) -> None:
        try:
            self.api.instance(record.project, record.instance)
        except TargetNotFound:
            result.notes.append(f"Cloud SQL instance {record.instance} no longer exists")
            return
        if not record.fail_back:
            result.notes.append(f"Cloud SQL instance {record.instance} stays where the failover "
                                "put it (fail_back: false)")
            result.unchanged += 1
        elif self._fail_over(record, lambda i: i.get("gceZone") == record.primary_zone):
            result.changed += 1
        else:
            result.unchanged += 1
        self._relabel(record, lambda labels: {k: v for k, v in labels.items() if not _gameday(k)})

    def _relabel(self, record: FailedOverInstance,
                 change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Patch the instance's `userLabels` to `change(labels)` against its `settingsVersion`,
        once it is RUNNABLE; a version that moved meanwhile is read again."""
        project, name = record.project, record.instance
        for _ in range(LABEL_ATTEMPTS):
            instance = self._runnable(record)
            settings = instance.get("settings", {})
            labels = dict(settings.get("userLabels") or {})
            wanted = change(labels)
            if wanted == labels:
                return
            # null removes a label under merge semantics; the full map suits replace semantics
            body = {"settings": {"settingsVersion": settings.get("settingsVersion"),
                                 "userLabels": {**{k: None for k in labels if k not in wanted},
                                                **wanted}}}
            try:
                self.api.call(f"labelling Cloud SQL instance {name}", project,
                              functools.partial(_patch, project=project, instance=name, body=body))
                return
            except CloudError as exc:
                if exc.code not in _BUSY:
                    raise
        raise CloudError(f"Cloud SQL instance {name} kept changing while gameday labelled it",
                         retryable=True)

    def _runnable(self, record: FailedOverInstance) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def ready() -> bool:
            seen.update(self.api.instance(record.project, record.instance))
            return seen.get("state") == "RUNNABLE"

        poll_until(ready, limit=WAIT_LIMIT, interval=poll_interval(),
                   still=lambda: f"Cloud SQL instance {record.instance} is still "
                                 f"{seen.get('state')} after {WAIT_LIMIT:.0f} s")
        return seen

    def _fail_over(self, record: FailedOverInstance,
                   placed: Callable[[dict[str, Any]], bool]) -> bool:
        """Fail the instance over until it is RUNNABLE and `placed`; True when gameday started a
        failover. A failover already running (409 `operationInProgress`) is waited out."""
        project, name = record.project, record.instance
        started = False
        running: str | None = None

        def ready() -> bool:
            nonlocal started, running
            if running is not None:
                op = self.api.call(f"reading the failover of {name}", project,
                                   lambda s: s.operations().get(project=project, operation=running))
                if op.get("status") != "DONE":
                    return False
                if op.get("error", {}).get("errors"):
                    raise CloudError(f"the failover of Cloud SQL instance {name} failed: "
                                     f"{op['error']['errors'][0].get('message')}", retryable=True)
                running = None
            instance = self.api.instance(project, name)
            if instance.get("state") != "RUNNABLE":
                return False
            if placed(instance):
                return True
            body = {"failoverContext": {"kind": "sql#failoverContext", "settingsVersion":
                                        instance.get("settings", {}).get("settingsVersion")}}
            try:
                running = self.api.call(f"failing over Cloud SQL instance {name}", project,
                                        lambda s: s.instances().failover(
                                            project=project, instance=name, body=body))["name"]
                started = True
            except CloudError as exc:
                if exc.code not in _BUSY:
                    raise
            return False

        poll_until(ready, limit=WAIT_LIMIT, interval=poll_interval(),
                   still=lambda: f"gave up waiting for Cloud SQL instance {name} to fail over "
                                 f"after {WAIT_LIMIT:.0f} s")
        return started

    # --- the sweeper's part ---------------------------------------------------------------

    def find(self, project: str) -> list[Leftover]:
        """Every instance of the project that carries a GameDay's marks, from its labels alone."""
        listed = self.api.call(f"listing Cloud SQL instances of project {project}", project,
                               lambda s: s.instances().list(project=project))
        leftovers = []
        for instance in listed.get("items", []):
            labels = dict(instance.get("settings", {}).get("userLabels") or {})
            owner = marked_by(labels)
            if owner is None or MARK_ZONE not in labels:
                continue
            leftovers.append(Leftover(
                cloud="gcp", kind="sql-instance", id=instance["name"], run_id=owner[0],
                step_id=owner[1], location=project,
                detail={"project": project, "primary_zone": labels[MARK_ZONE],
                        "fail_back": labels.get(MARK_FAIL_BACK, "true"),
                        "now_in": str(instance.get("gceZone", ""))}))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Fail the instance back to the zone its labels name (unless they say not to), then
        remove gameday's labels: only while they still name the leftover's run."""
        project = leftover.detail["project"]
        current = self.api.instance(project, leftover.id)
        owner = marked_by(dict(current.get("settings", {}).get("userLabels") or {}))
        if owner is None or owner[0] != leftover.run_id:
            return FaultResult(notes=[f"Cloud SQL instance {leftover.id} no longer carries the "
                                      f"marks of run {leftover.run_id}; left alone"])
        record = FailedOverInstance(
            project=project, instance=leftover.id, primary_zone=leftover.detail["primary_zone"],
            standby_zone="", labels={}, fail_back=leftover.detail.get("fail_back") != "false")
        result = FaultResult()
        self._undo(record, result)
        return result
