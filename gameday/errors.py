"""The one error type a user can cause, and nothing else: it prints as one plain sentence."""


class UserError(Exception):
    """Something the user can fix (a file, a flag, a target); shown without a traceback."""


class TargetNotFound(UserError):
    """The runbook names something the cloud does not have (a zone, a VPC, a record)."""


class Refused(UserError):
    """A guardrail refuses the change; nothing was touched."""


class CloudError(Exception):
    """A cloud API call failed; `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code
