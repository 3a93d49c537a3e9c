"""AWS plumbing every AWS fault shares: boto3 clients built once with no SDK retries, calls paced
by the token buckets of `activities.throttle` (per target account), boto errors turned into
`CloudError`s that say whether retrying can help, and the credentials of each target account: the
worker's own, or those of its target role (`activities.aws.accounts`).

Every artifact gameday makes on AWS carries the run and step in tags (`TAG_RUN`, `TAG_STEP`), so
that `gameday sweep` finds it after any failure.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from activities.aws.accounts import TargetAccounts, target_role
from activities.base import beat
from activities.throttle import BUCKETS, BucketKey, Throttle, caller, paced
from activities.transient import Transient, paced_and_retried, retried
from gameday.errors import CloudError, Refused
from gameday.plan import Scope

TAG_RUN = "gameday:run"
TAG_STEP = "gameday:step"
TAG_CHUNK = "gameday:chunk"
TAG_MANAGED = "gameday:managed-by"
TAG_RESTORE = "gameday:restore:"
MAX_TAG_VALUE = 256

_THROTTLED = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "SlowDown", "EC2ThrottledException", "PriorRequestNotComplete",
}
_TRANSIENT = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}


def _error(exc: Exception, doing: str) -> Exception:
    """Turn a boto error into a CloudError that says whether retrying can help."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _THROTTLED or status == 429:
            return CloudError(f"AWS throttled {doing}: {code}", retryable=True, retry_after=1.0,
                              code=code)
        retryable = code in _TRANSIENT or status >= 500
        return CloudError(f"AWS refused {doing}: {code}: {message}", retryable=retryable, code=code)
    if isinstance(exc, ConnectionError | HTTPClientError):
        return CloudError(f"AWS did not answer {doing}: {exc}", retryable=True)
    return CloudError(f"AWS call failed {doing}: {exc}", retryable=True)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def throttle_of(exc: Exception) -> Throttle | None:
    """The throttle an AWS answer is (EC2's 503 `RequestLimitExceeded`, Route 53's
    `Throttling` and `PriorRequestNotComplete`, any 429), or None."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if _code(exc) in _THROTTLED or status == 429:
            return Throttle(retry_after=None)
    return None


def transient_of(exc: Exception) -> Transient | None:
    """An AWS failure worth sending the call again for (a 5xx or `_TRANSIENT` code, no answer),
    or None."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if _code(exc) in _TRANSIENT or status >= 500:
            return Transient(_code(exc) or str(status))
    if isinstance(exc, ConnectionError | HTTPClientError):
        return Transient(type(exc).__name__)
    return None


def never_transient(exc: Exception) -> Transient | None:
    """For a call that is not safe to send blind again: every failure goes to Temporal."""
    return None


READS = ("describe_", "get_", "list_")
"""Operations that only read: sending one again changes nothing."""
REPEATABLE_MUTATIONS = {"create_network_acl_entry", "delete_network_acl",
                        "change_resource_record_sets"}
"""Mutations safe to send again blind: their callers take `NetworkAclEntryAlreadyExists` and
`InvalidNetworkAclID.NotFound` as done, and gameday's record changes are UPSERTs. Any other
mutation (`ReplaceNetworkAclAssociation` retires the association id it names, `CreateNetworkAcl`
makes one more ACL) is sent once: Temporal's next attempt re-reads the state first."""


def repeatable(operation: str) -> bool:
    """Whether a transient failure of `operation` may be sent again inside the activity."""
    return operation.startswith(READS) or operation in REPEATABLE_MUTATIONS


def api_category(service: str, operation: str) -> str:
    """The token bucket an AWS API call draws from (EC2 throttles per action family)."""
    if service == "ec2":
        if operation in ("create_tags", "delete_tags"):
            return "ec2-tags"
        if operation.startswith(("describe_", "get_")):
            return "ec2-describe"
        return "ec2-mutating"
    if service in ("route53", "sts"):
        return service
    return "aws-other"


def bucket_of(client: Any, operation: str, account: str | None = None) -> BucketKey:
    """The bucket of one call of `client`: per account (`account`, else the activity's), region
    and category."""
    service = client.meta.service_model.service_name
    region = "global" if service == "route53" else client.meta.region_name
    # EC2 keeps one bucket per API action, of its category's size and rate
    action = operation if service == "ec2" else ""
    return BucketKey("aws", account or caller().account, region or "",
                     api_category(service, operation), action)


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class AwsApi:
    """boto3 plumbing shared by the AWS faults: clients without SDK retries, errors translated,
    one set of clients per target account."""

    def __init__(self, session_factory: Any = boto3.session.Session):
        self._session_factory = session_factory
        # No SDK retries: throttles wait for tokens in `call`, transient failures follow
        # `activities.transient` (never multiplied by botocore's own retries).
        self._config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                              connect_timeout=5, read_timeout=30)
        self._clients: dict[tuple[object, ...], Any] = {}
        self._account_of: dict[int, str] = {}
        """id of an assumed client → its account (the bucket its calls draw from)."""
        self._own_account: str | None = None
        self._targets: TargetAccounts | None = None
        self._lock = threading.RLock()

    def client(self, service: str, region: str, account: str | None = None) -> Any:
        """The client of `service` in `region` for `account` (None: the worker's own), built
        once: boto3 clients are thread-safe, and building one loads the service's model. Another
        account's client uses its target role, assumed as the current run (`Refused` when it
        cannot be)."""
        with self._lock:
            if account is None or account == self.own_account():
                key: tuple[object, ...] = (service, region)
                if key not in self._clients:
                    self._clients[key] = self._own(region).client(service, config=self._config)
                return self._clients[key]
            session_key, session = self._target_accounts().session(account, caller().run_id)
            key = (*session_key, service, region)
            if key not in self._clients:
                kept = self._target_accounts().kept()
                for stale in [k for k in self._clients if len(k) > 2 and k[:3] not in kept]:
                    self._account_of.pop(id(self._clients.pop(stale)), None)
                made = session.create_client(service, region_name=region, config=self._config)
                self._clients[key] = made
                self._account_of[id(made)] = account
            return self._clients[key]

    def ec2(self, region: str, account: str | None = None) -> Any:
        return self.client("ec2", region, account)

    def own_account(self) -> str:
        """The worker's own account (STS GetCallerIdentity, asked once)."""
        with self._lock:
            if self._own_account is None:
                sts = self.client("sts", _home_region())
                self._own_account = str(
                    self.call("GetCallerIdentity", sts.get_caller_identity)["Account"])
            return self._own_account

    def _own(self, region: str) -> Any:
        return self._session_factory(region_name=region)

    def _target_accounts(self) -> TargetAccounts:
        if self._targets is None:
            sts = self.client("sts", _home_region())
            self._targets = TargetAccounts(
                lambda **kwargs: self.call("AssumeRole", sts.assume_role, **kwargs))
        return self._targets

    def call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        """One call of a client method, paced by its token bucket: a throttled call waits and
        is made again (see `activities.throttle.paced`). A transient failure is sent again under
        `activities.transient`'s policy when the operation is `repeatable`, else raised."""
        transient = transient_of if repeatable(fn.__name__) else never_transient
        try:
            bucket = bucket_of(fn.__self__, fn.__name__, self._account_of.get(id(fn.__self__)))
            return paced_and_retried(bucket, lambda: fn(**kwargs), throttle_of, transient)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, doing) from exc

    def pages(self, client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated listing, each page paced; a throttled page, or one that
        failed transiently (`activities.transient`), starts the listing again."""
        bucket = bucket_of(client, operation, self._account_of.get(id(client)))

        def listing() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            pages = iter(client.get_paginator(operation).paginate(**kwargs))
            for number in itertools.count():
                if number:  # `paced` took the first page's token
                    who = caller()
                    BUCKETS.bucket(bucket).take(who.priority, who.stopped)
                page = next(pages, None)
                if page is None:
                    return items
                beat()
                items.extend(page.get(key, []))
            raise AssertionError("unreachable")

        try:
            return retried(lambda: paced(bucket, listing, throttle_of), transient_of, throttle_of)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, operation) from exc

    def check_identity(self, scope: Scope) -> None:
        """The worker reaches the account the runbook names: its own, or another by assuming
        that account's target role (`Refused` in one sentence naming both when it cannot, before
        any change). The assumed credentials must be the named account's."""
        if scope.account == self.own_account():
            return
        sts = self.client("sts", scope.region or _home_region(), scope.account)
        account = self.call("GetCallerIdentity", sts.get_caller_identity)["Account"]
        if account != scope.account:
            raise Refused(
                f"the credentials of role {target_role(scope.account)} are for account {account}, "
                f"but the step targets account {scope.account}"
            )


def _home_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def connect() -> AwsApi:
    """The connection the AWS faults of one worker share (clients are built once per region)."""
    return AwsApi()
