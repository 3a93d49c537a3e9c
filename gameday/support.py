"""Which actions a cloud cannot offer, and why, known before any cloud is asked anything.

The one table of gaps: `gameday validate` (the runbook model) refuses a step that asks a cloud for
an action listed here, at the step's `action` line, and the worker's fault registry
(`activities.registry.FAULTS`) holds the same entries as `NotSupported`, so that no gap is
silent and none is said in two places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gameday.runbook import Cloud, FaultAction

NOT_SUPPORTED: dict[tuple[Cloud, FaultAction], str] = {
}
"""(cloud, action) → why the action cannot run on the cloud, as the end of a sentence."""


def unsupported_sentence(cloud: str, action: str, reason: str) -> str:
    return f"{action} is not supported on {cloud}: {reason}"


def not_supported(cloud: str, action: str) -> str | None:
    """Why `action` cannot run on `cloud`, in one sentence for the user, or None."""
    reason = NOT_SUPPORTED.get((cloud, action))  # type: ignore[arg-type]
    return None if reason is None else unsupported_sentence(cloud, action, reason)
