"""Reaching a target account that is not the worker's own: credentials of
`arn:aws:iam::<account>:role/<GAMEDAY_AWS_TARGET_ROLE>` by `sts:AssumeRole`, with the run id as the
session name.

Promised: credentials live in memory only (never in a return value, an error, a log line or the
history), are cached per (account, role, session name) and refreshed by botocore before they
expire; a role that cannot be assumed is `Refused` in one sentence naming the account and the role.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.credentials import CredentialProvider, RefreshableCredentials

from gameday.errors import CloudError, Refused

TARGET_ROLE_VARIABLE = "GAMEDAY_AWS_TARGET_ROLE"
DEFAULT_TARGET_ROLE = "gameday-target"
SESSION_SECONDS = 3600
"""How long one set of assumed credentials lasts; botocore refreshes them 15 minutes before."""
REFUSALS = {"AccessDenied", "AccessDeniedException", "NoSuchEntity", "ValidationError",
            "MalformedPolicyDocument", "RegionDisabledException", "InvalidParameterValue"}
"""STS answers that retrying cannot change: the role does not exist, does not trust the worker,
or the ARN is malformed."""
_SESSION_CHARACTERS = re.compile(r"[^\w+=,.@-]")


def target_role(account: str) -> str:
    """The role the worker assumes in `account`: `GAMEDAY_AWS_TARGET_ROLE` is a role name
    (default `gameday-target`) or a full ARN template in which `{account}` is substituted."""
    named = os.environ.get(TARGET_ROLE_VARIABLE, "").strip() or DEFAULT_TARGET_ROLE
    if named.startswith("arn:"):
        return named.replace("{account}", account)
    return f"arn:aws:iam::{account}:role/{named}"


def session_name(run_id: str) -> str:
    """The run id as STS accepts a session name: `[\\w+=,.@-]`, 2 to 64 characters."""
    cleaned = _SESSION_CHARACTERS.sub("-", run_id)[:64]
    return cleaned if len(cleaned) >= 2 else "gameday"


class _Assumed(CredentialProvider):
    """Hands botocore the refreshable credentials of one assumed role."""

    METHOD = "gameday-assume-role"
    CANONICAL_NAME = "gameday-assume-role"

    def __init__(self, credentials: RefreshableCredentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


class TargetAccounts:
    """One botocore session per (account, role, session name), its credentials assumed through
    `assume` (the worker's own STS client, paced and errors translated by `AwsApi.call`)."""

    MAX_SESSIONS = 64
    """Sessions kept at most: a worker that served many runs drops the oldest."""

    def __init__(self, assume: Callable[..., dict[str, Any]]):
        self._assume = assume
        # shared by every session: each service model is loaded once, not once per account
        self._data_loader = botocore.session.Session().get_component("data_loader")
        self._sessions: dict[tuple[str, str, str], botocore.session.Session] = {}

    def session(self, account: str, run_id: str) -> tuple[tuple[str, str, str],
                                                          botocore.session.Session]:
        """The session for `account` as this run; the first use assumes the role (so a role
        that cannot be assumed is refused here, before any change). Not thread-safe: the caller
        holds its lock."""
        key = (account, target_role(account), session_name(run_id))
        if key not in self._sessions:
            fetch = self._fetcher(*key)
            credentials = RefreshableCredentials.create_from_metadata(
                fetch(), refresh_using=fetch, method=_Assumed.METHOD)
            session = botocore.session.Session()
            session.register_component("data_loader", self._data_loader)
            session.get_component("credential_provider").insert_before("env",
                                                                       _Assumed(credentials))
            while len(self._sessions) >= self.MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[key] = session
        return key, self._sessions[key]

    def kept(self) -> set[tuple[str, str, str]]:
        return set(self._sessions)

    def _fetcher(self, account: str, role: str, name: str) -> Callable[[], dict[str, str]]:
        def fetch() -> dict[str, str]:
            try:
                answer = self._assume(RoleArn=role, RoleSessionName=name,
                                      DurationSeconds=SESSION_SECONDS)
            except CloudError as exc:
                if exc.code in REFUSALS:
                    raise Refused(f"the worker cannot assume role {role} in account {account} "
                                  f"({exc.code})") from None
                raise
            given = answer["Credentials"]
            return {"access_key": given["AccessKeyId"], "secret_key": given["SecretAccessKey"],
                    "token": given["SessionToken"],
                    "expiry_time": given["Expiration"].isoformat()}
        return fetch
