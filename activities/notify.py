"""Notifications: a Slack-compatible webhook post. Telling people must never stop a GameDay, so
the workflow treats any failure here as an event, not an error."""

from __future__ import annotations

import os

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.base import one_sentence_failures
from gameday.status import Notification


def ui_link(workflow_id: str) -> str | None:
    """The run's page in the Temporal UI, when the worker knows where the UI is."""
    base = os.environ.get("GAMEDAY_TEMPORAL_UI_URL")
    namespace = os.environ.get("TEMPORAL_NAMESPACE") or "default"
    return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}" if base else None


def _where(webhook: str) -> str:
    """The webhook's host, never its path: a Slack webhook's path is its secret."""
    return httpx.URL(webhook).host or "the webhook"


@activity.defn(name="notify.post")
@one_sentence_failures
async def post(notification: Notification) -> None:
    """Post the notification; a failure says in one sentence what the webhook answered (a 4xx
    is not tried again, a 5xx or no answer is), never the webhook's secret path."""
    text = notification.text
    link = ui_link(notification.workflow_id)
    if link:
        text += f"\nTemporal UI: {link}"
    where = _where(notification.webhook)
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            response = await client.post(notification.webhook, json={"text": text})
    except httpx.HTTPError as exc:
        raise ApplicationError(f"the webhook at {where} did not answer: {type(exc).__name__}",
                               type="WebhookUnreachable") from None
    if response.is_error:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        final = response.status_code < 500 and response.status_code != 429
        raise ApplicationError(f"the webhook at {where} answered {status}",
                               {"body": response.text[:500]}, type="WebhookRefused",
                               non_retryable=final)
