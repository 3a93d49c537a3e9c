"""Notifications reach a webhook with what a person needs to act; a dead webhook changes nothing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/gameday", received
    server.shutdown()
    server.server_close()


def test_approval_abort_and_end_are_posted(aws, client, runner, task_queue, webhook, monkeypatch):
    monkeypatch.setenv("GAMEDAY_TEMPORAL_UI_URL", "http://127.0.0.1:8233")
    url, received = webhook

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m"), notify={"webhook": url}),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        await abort(handle, reason="latency budget gone")
        return handle.id, await handle.result()

    run_id, result = runner.run(scenario())
    assert result.outcome == "aborted"
    texts = [m["text"] for m in received]
    assert len(texts) == 3
    assert f"gameday approve {run_id} --as <you>" in texts[0]
    assert f"http://127.0.0.1:8233/namespaces/default/workflows/{run_id}" in texts[0]
    assert "aborted by ic@example.com: latency budget gone" in texts[1]
    assert "ended: aborted" in texts[2] and "every fault restored: True" in texts[2]


def test_a_dead_webhook_never_fails_the_gameday(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s"),
                                             notify={"webhook": "http://127.0.0.1:9/nowhere",
                                                     "events": ["end"]}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.restored) == ("completed", True)
    assert any(e.kind == "notify_failed" for e in result.events)
    assert acl_snapshot() == before


@pytest.fixture
def answering():
    """A webhook that answers every post with the status the test sets."""
    status = {"code": 404}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status["code"])
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"no_team\n\n")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-token", status
    server.shutdown()
    server.server_close()


def _post_failure(webhook: str):
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.notify import post
    from gameday.status import Notification

    async def posting():
        try:
            await ActivityEnvironment().run(post, Notification(webhook=webhook, text="ended",
                                                               workflow_id="gd-1"))
        except ApplicationError as failure:
            return failure
        raise AssertionError("the post did not fail")

    import asyncio

    return asyncio.run(posting())


@pytest.mark.parametrize("code, final", [(404, True), (403, True), (429, False), (503, False)])
def test_a_refusing_webhook_is_one_sentence_that_keeps_its_secret(answering, code, final):
    url, status = answering
    status["code"] = code
    failure = _post_failure(url)
    assert failure.type == "WebhookRefused"
    assert failure.non_retryable is final  # a 4xx stays a 4xx; a 429 or a 5xx may pass later
    assert failure.message.startswith(f"the webhook at 127.0.0.1 answered {code} ")
    assert "\n" not in failure.message and "secret-token" not in str(failure)
    assert failure.details == ({"body": "no_team\n\n"},)


def test_a_webhook_that_does_not_answer_is_one_retryable_sentence():
    failure = _post_failure("http://127.0.0.1:9/services/secret-token")
    assert (failure.type, failure.non_retryable) == ("WebhookUnreachable", False)
    assert failure.message == "the webhook at 127.0.0.1 did not answer: ConnectError"
