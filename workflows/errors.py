"""Failures as one sentence, for events, results and the CLI; the refusal of a run before any
change."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError, FailureError


class Refused(Exception):
    """A guardrail, a lease or the plan refused the run; nothing was touched."""


def describe(error: BaseException) -> str:
    """The innermost message of an activity failure, as one sentence."""
    while isinstance(error, FailureError) and error.cause is not None:
        error = error.cause
    if isinstance(error, ApplicationError):
        return error.message
    return str(error) or type(error).__name__
