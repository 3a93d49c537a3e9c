"""The error type a user can cause (it prints as one plain sentence), and where the rest goes: the
first sentence of a failure on the terminal, its details in the log file."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


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


def first_sentence(message: str) -> str:
    """The first line of a failure's message, as the terminal shows it: SDK errors carry a code, a
    repeated message and request details on the lines after, which belong in the log."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else message.strip()


def log_file() -> Path:
    """Where the CLI keeps what does not belong on the terminal: tracebacks and full messages."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "gameday" / "gameday.log"


def log_details(text: str) -> Path | None:
    """Append `text` to the log file; the file written, or None when it cannot be written."""
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {text.rstrip()}\n")
    except OSError:
        return None
    return path
