"""Notifications: a Slack-compatible webhook post. Telling people must never stop a GameDay, so
the workflow treats any failure here as an event, not an error."""

from __future__ import annotations

import os

import httpx
from temporalio import activity

from gameday.status import Notification


def ui_link(workflow_id: str) -> str | None:
    """The run's page in the Temporal UI, when the worker knows where the UI is."""
    base = os.environ.get("GAMEDAY_TEMPORAL_UI_URL")
    namespace = os.environ.get("TEMPORAL_NAMESPACE") or "default"
    return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}" if base else None


@activity.defn(name="notify.post")
async def post(notification: Notification) -> None:
    text = notification.text
    link = ui_link(notification.workflow_id)
    if link:
        text += f"\nTemporal UI: {link}"
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.post(notification.webhook, json={"text": text})
    response.raise_for_status()
