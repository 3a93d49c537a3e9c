"""A small threaded HTTP(S) server that the lab's cloud API emulators are built on.

An emulator subclasses `Emulator`, registers routes (method + path regex) and renders errors in its
cloud's format. The base adds what every emulator needs: JSON in and out, optional TLS, a lock
around state, fault injection (`gameday.lab.faults`) and an admin API under `/_emulator/`:

- `POST /_emulator/faults` with a `FaultConfig` body sets the injected failures and latency;
- `POST /_emulator/limits` with a `gameday.lab.realistic.RealisticConfig` body turns the realistic mode
  (latency and the cloud's documented rate limits) on or off; `GET /_emulator/limits` shows it
  with the calls served and throttled per bucket category; `DELETE /_emulator/limits` zeroes
  those counters;
- `GET /_emulator/calls` lists the calls served (arrival time, method, path, key, status, injected,
  throttled);
- `DELETE /_emulator/calls` clears that list; `POST /_emulator/reset` clears all state;
- `GET /_emulator/health` answers 200 once the server serves.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from gameday.lab.faults import FaultConfig, FaultInjector, FaultRule
from gameday.lab.realistic import Bucket, Decision, RateCall, RateLimiter, RealisticConfig

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    raw_query: str = ""

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "invalid", f"request body is not JSON: {exc}") from exc

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error the emulator answers with, in its cloud's format."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Emulator:
    """Base of the lab's emulators: routing, JSON, TLS, faults, call log and admin endpoints."""

    name = "emulator"
    rate_limits: ClassVar[dict[str, Bucket]] = {}
    """The cloud's documented buckets by category, used in realistic mode."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 certfile: str | None = None, keyfile: str | None = None):
        self.host = host
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.lock = threading.RLock()
        self.faults = FaultInjector()
        self.limits = RateLimiter(dict(self.rate_limits))
        self.routes: list[Route] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- to be specialised by each cloud ---------------------------------------------------

    def error_body(self, error: ApiError) -> Any:
        return {"error": {"code": error.code, "message": error.message}}

    def fault_key(self, request: Request) -> str:
        return f"{request.method} {request.path}"

    def reset(self) -> None:
        """Forget every resource; subclasses clear their own state and call this."""

    def rate_call(self, request: Request) -> RateCall | None:
        """The bucket a call draws from in realistic mode; None: neither limited nor delayed."""
        return None

    def throttled_response(self, request: Request, decision: Decision) -> Response:
        """An over-limit call answered exactly as the cloud answers it."""
        return Response(429, self.error_body(ApiError(429, "TooManyRequests", "Rate exceeded")),
                        {"Retry-After": str(decision.retry_after_seconds)})

    def rate_headers(self, decision: Decision) -> dict[str, str]:
        """Headers that tell the client its remaining budget (ARM's `x-ms-ratelimit-*`)."""
        return {}

    # --- routing -------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), re.compile(f"^{pattern}$"), handler))

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_emulator/"):
            return self._admin(request)
        decision = self.limits.decide(self.rate_call(request)) if self.limits.enabled else None
        if decision is not None and decision.delay:
            time.sleep(decision.delay)
        if decision is not None and decision.throttled:
            response = self.throttled_response(request, decision)
            response.headers["X-Gameday-Throttled"] = "1"
            return response
        injection = self.faults.decide(self.fault_key(request))
        if injection.delay:
            time.sleep(injection.delay)
        if injection.rule is not None:
            return self._injected(injection.rule, request)
        if decision is None or decision.call is None:
            return self.handle(request)
        try:
            response = self.handle(request)
        except ApiError as error:
            error.headers.update(self.rate_headers(decision))
            raise
        response.headers.update(self.rate_headers(decision))
        return response

    def handle(self, request: Request) -> Response:
        """Answer a request from the routes (under the state lock); a proxy overrides this."""
        allowed = False
        for route in self.routes:
            match = route.pattern.match(request.path)
            if not match:
                continue
            allowed = True
            if route.method != request.method:
                continue
            request.params = {k: v for k, v in match.groupdict().items() if v is not None}
            with self.lock:
                return route.handler(request)
        if allowed:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")
        raise ApiError(404, "NotFound", f"no such API path: {request.path}")

    def injected_body(self, error: ApiError, request: Request) -> Any:
        """The body of an injected failure; a proxy for several protocols picks per request."""
        return self.error_body(error)

    def _injected(self, rule: FaultRule, request: Request) -> Response:
        error = ApiError(rule.status, rule.code or _default_code(rule.status), rule.message)
        if rule.retry_after is not None:
            error.headers["Retry-After"] = str(rule.retry_after)
        response = Response(rule.status, self.injected_body(error, request), error.headers)
        response.headers["X-Gameday-Injected"] = "1"
        return response

    def _admin(self, request: Request) -> Response:
        action = request.path.removeprefix("/_emulator/")
        if action == "health":
            return Response(200, {"name": self.name, "status": "serving"})
        if action == "faults" and request.method == "POST":
            try:
                self.faults.configure(FaultConfig.model_validate(request.json()))
            except ValidationError as exc:
                raise ApiError(400, "invalid", str(exc)) from exc
            return Response(200, self.faults.config.model_dump())
        if action == "faults" and request.method == "GET":
            return Response(200, self.faults.config.model_dump())
        if action == "limits" and request.method == "POST":
            try:
                self.limits.configure(RealisticConfig.model_validate(request.json()))
            except (ValidationError, ValueError) as exc:
                raise ApiError(400, "invalid", str(exc)) from exc
            return Response(200, self.limits.report())
        if action == "limits" and request.method == "GET":
            return Response(200, self.limits.report())
        if action == "limits" and request.method == "DELETE":
            self.limits.clear_counts()
            return Response(204)
        if action == "calls" and request.method == "GET":
            return Response(200, {"calls": self.faults.call_log()})
        if action == "calls" and request.method == "DELETE":
            self.faults.clear_calls()
            return Response(204)
        if action == "reset" and request.method == "POST":
            with self.lock:
                self.reset()
            self.faults.configure(FaultConfig())
            self.limits.configure(RealisticConfig())
            self.faults.clear_calls()
            return Response(204)
        raise ApiError(404, "NotFound", f"no such admin path: {request.path}")

    # --- serving ---------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> Emulator:
        emulator = self

        class RequestHandler(_Handler):
            owner = emulator

        server = ThreadingHTTPServer((self.host, self.port), RequestHandler)
        server.daemon_threads = True
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile, self.keyfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (used by `python -m lab.<cloud>`)."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(1.0)
        except KeyboardInterrupt:
            self.stop()


def _default_code(status: int) -> str:
    return {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(
        status, "InjectedFault"
    )


class _Handler(BaseHTTPRequestHandler):
    owner: Emulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK wait

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.owner.name, format % args)

    def _serve(self) -> None:
        arrived = time.time()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_query=parts.query,
        )
        owner = self.owner
        try:
            response = owner.dispatch(request)
        except ApiError as error:
            response = Response(error.status, owner.error_body(error), error.headers)
        except Exception as exc:  # an emulator bug must answer 500, not drop the connection
            log.exception("%s failed on %s %s", owner.name, request.method, request.path)
            error = ApiError(500, "InternalError", f"emulator error: {exc}")
            response = Response(500, owner.error_body(error))
        if not request.path.startswith("/_emulator/"):
            owner.faults.record(request.method, request.path, owner.fault_key(request),
                                response.status, "X-Gameday-Injected" in response.headers, arrived,
                                throttled="X-Gameday-Throttled" in response.headers)
        self._send(response)

    def _send(self, response: Response) -> None:
        if response.body is None or response.status == 204:
            payload = b""
        elif isinstance(response.body, bytes):
            payload = response.body
        else:
            payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        has_type = any(k.lower() == "content-type" for k in response.headers)
        if payload and not has_type:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
