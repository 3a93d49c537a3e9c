"""Compute Engine's batch endpoint, `POST /batch/compute/v1`, which gcloud uses for `list
--zones=a,b`, multi-resource deletes and its instance-group lookups.

The body is `multipart/mixed`; each part (`Content-Type: application/http`, a `Content-ID`) holds
one HTTP request: a request line (`GET /compute/v1/projects/... HTTP/1.1`), headers, a blank
line and the body. The answer is `multipart/mixed` too, one `application/http` part per request
in the same order, `Content-ID: <response-ID>`, each holding that request's status line,
headers and JSON body. Every inner request is served as if it came alone: routing, faults,
realistic rate limits and the call log apply to each.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from email.message import Message
from email.parser import BytesParser, Parser
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.core import ComputeCore

log = logging.getLogger(__name__)
BATCH_PATHS = ("/batch/compute/v1", "/batch")


class BatchApi(ComputeCore):
    def dispatch(self, request: Request) -> Response:
        # Served outside the state lock: each inner request takes it (and may sleep) on its own.
        if request.path in BATCH_PATHS:
            if request.method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on "
                                                        f"{request.path}")
            return self.batch(request)
        return super().dispatch(request)

    def batch(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/"):
            raise ApiError(400, "invalid", "A batch request must be multipart/mixed.")
        envelope = BytesParser().parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        if not envelope.is_multipart():
            raise ApiError(400, "invalid", "The batch request has no parts.")
        boundary = f"batch_{uuid.uuid4().hex}"
        chunks: list[str] = []
        for part in envelope.get_payload():
            assert isinstance(part, Message)
            response = self._serve_part(part)
            body = b"" if response.body is None or response.status == 204 else (
                response.body if isinstance(response.body, bytes)
                else json.dumps(response.body).encode())
            content_id = (part.get("Content-ID") or "").strip().strip("<>")
            phrase = HTTPStatus(response.status).phrase
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n"
                f"HTTP/1.1 {response.status} {phrase}\r\n"
                "Content-Type: application/json; charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body.decode()}\r\n")
        chunks.append(f"--{boundary}--\r\n")
        return Response(200, "".join(chunks).encode(),
                        {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    def _serve_part(self, part: Message) -> Response:
        arrived = time.time()
        payload = part.get_payload(decode=True)
        text = payload.decode() if isinstance(payload, bytes) else str(part.get_payload())
        request_line, _, rest = text.lstrip("\r\n").partition("\n")
        try:
            method, target, _ = request_line.strip().split(" ", 2)
        except ValueError:
            return Response(400, self.error_body(ApiError(
                400, "invalid", f"Bad request line in a batch part: {request_line.strip()!r}")))
        inner = Parser().parsestr(rest)
        body = inner.get_payload()
        url = urlsplit(target)
        request = Request(
            method=method.upper(), path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in inner.items()},
            body=(body if isinstance(body, str) else "").strip().encode(),
            raw_query=url.query)
        try:
            response = super().dispatch(request)
        except ApiError as error:
            response = Response(error.status, self.error_body(error), error.headers)
        except Exception as exc:  # an emulator bug answers this part 500, not the whole batch
            log.exception("batch part %s %s failed", request.method, request.path)
            response = Response(500, self.error_body(ApiError(500, "InternalError",
                                                              f"emulator error: {exc}")))
        self.faults.record(request.method, request.path, self.fault_key(request),
                           response.status, "X-Gameday-Injected" in response.headers, arrived,
                           throttled="X-Gameday-Throttled" in response.headers)
        return response
