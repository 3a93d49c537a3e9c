"""The shop as an HTTP service: `Shop` decides every answer within `ANSWER_SECONDS` (a control
plane that does not answer by then is a 503), and the server only routes and renders JSON, on
127.0.0.1, port 8270 when free."""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from gameday.lab.shop.aws import AwsShop
from gameday.lab.shop.azure import AzureShop
from gameday.lab.shop.gcp import GcpShop
from gameday.lab.shop.reading import NotConfigured, ReadCache, ShopConfig, short
from gameday.lab.shop.verdicts import verdict

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8270
ANSWER_SECONDS = 2.0
CLOUDS = ("aws", "gcp", "azure")
PEERS = "/peers"
"""`/<cloud>/<region>/peers`: the region's cross-region check, serving while it reaches every
peer region the lab connects it to (a partitioned region still serves `/health` locally)."""

_REGION = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


class Shop:
    """Decides every answer; the HTTP handler only routes and renders."""

    def __init__(self, env: Mapping[str, str], config: ShopConfig | None = None,
                 answer_within: float = ANSWER_SECONDS, cache: ReadCache | None = None):
        self.env = dict(env)
        self.config = config or ShopConfig()
        self.cache = cache or ReadCache()
        self.answer_within = answer_within
        self.clouds: dict[str, Any] = {
            "aws": AwsShop(self.env, self.cache, self.config),
            "gcp": GcpShop(self.env, self.cache, self.config),
            "azure": AzureShop(self.env, self.cache, self.config),
        }
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="shop")

    def warm(self) -> None:
        """Import the SDKs and build the clients of every configured cloud now, then read the
        global routing once in the background: the first probe need not pay for either."""
        for cloud in CLOUDS:
            try:
                shop = self.clouds[cloud]
                if cloud == "aws":
                    shop.client("ec2", self.env.get("AWS_DEFAULT_REGION") or "us-east-1")
                    shop.client("route53", "us-east-1")
                else:
                    shop.clients()
            except NotConfigured:
                pass
        for cloud in CLOUDS:
            self._submit(cloud, "global")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.clouds["azure"].close()

    def _evaluate(self, cloud: str, where: str) -> dict[str, Any]:
        try:
            shop = self.clouds[cloud]
            if where == "global":
                return shop.global_()
            if where.endswith(PEERS):
                region = where.removesuffix(PEERS)
                if not hasattr(shop, "peers"):
                    return verdict(cloud, region, True, f"{cloud}'s cross-region reachability is "
                                   "not modelled: assumed to reach its peers", modelled=False)
                return shop.peers(region)
            return shop.region(where)
        except NotConfigured as exc:
            return verdict(cloud, where, False, f"{cloud} is not configured: {exc}")
        except Exception as exc:
            return verdict(cloud, where, False, f"could not read the {cloud} control plane: "
                                                f"{short(exc)}")

    def _submit(self, cloud: str, where: str) -> Future[dict[str, Any]]:
        return self.executor.submit(self._evaluate, cloud, where)

    def _wait(self, future: Future[dict[str, Any]], cloud: str, where: str,
              deadline: float) -> dict[str, Any]:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            return verdict(cloud, where, False, f"the {cloud} control plane did not answer "
                                                f"within {self.answer_within:g}s")

    def health(self, cloud: str, where: str) -> dict[str, Any]:
        """One endpoint: `where` is a region, `<region>/peers` or `global`."""
        deadline = time.monotonic() + self.answer_within
        return self._wait(self._submit(cloud, where), cloud, where, deadline)

    def overall(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.answer_within
        futures = {cloud: self._submit(cloud, "global") for cloud in CLOUDS}
        answers = {cloud: self._wait(f, cloud, "global", deadline) for cloud, f in futures.items()}
        down = [cloud for cloud, answer in answers.items() if not answer["serving"]]
        reason = ("every global endpoint serves" if not down else
                  "; ".join(f"{cloud}: {answers[cloud]['reason']}" for cloud in down))
        return {"serving": not down, "reason": reason, "clouds": answers}


class _Handler(BaseHTTPRequestHandler):
    server: _ShopServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = self.server.route(urlsplit(self.path).path)
        self._send(status, body)

    def do_HEAD(self) -> None:  # noqa: N802
        status, body = self.server.route(urlsplit(self.path).path)
        self._send(status, body, head=True)

    def _send(self, status: int, body: dict[str, Any], head: bool = False) -> None:
        data = (json.dumps(body, indent=2, default=str) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: probes come every second."""


class _ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], shop: Shop):
        super().__init__(address, _Handler)
        self.shop = shop

    def route(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        if parts == ["health"]:
            answer = self.shop.overall()
        elif len(parts) == 3 and parts[2] == "health" and parts[0] in CLOUDS \
                and _REGION.match(parts[1]):
            answer = self.shop.health(parts[0], parts[1])
        elif len(parts) == 3 and parts[2] == "peers" and parts[0] in CLOUDS \
                and _REGION.match(parts[1]) and parts[1] != "global":
            answer = self.shop.health(parts[0], parts[1] + PEERS)
        elif not parts:
            return 200, {"service": "gameday lab shop", "endpoints": [
                "/health", "/<cloud>/global/health", "/<cloud>/<region>/health",
                "/<cloud>/<region>/peers"],
                "clouds": list(CLOUDS)}
        else:
            return 404, {"serving": False, "reason": f"no such endpoint: {path}; try /health, "
                                                     "/<cloud>/global/health or "
                                                     "/<cloud>/<region>/health"}
        return (200 if answer["serving"] else 503), answer


def _bind(port: int | None, shop: Shop) -> _ShopServer:
    """Port None: `DEFAULT_PORT` when free, else any free port; 0: any free port."""
    if port is None:
        try:
            return _ShopServer((LOOPBACK, DEFAULT_PORT), shop)
        except OSError:
            port = 0
    return _ShopServer((LOOPBACK, port), shop)


def start_shop(env: Mapping[str, str], port: int | None = 0,
               config: ShopConfig | None = None) -> tuple[str, Callable[[], None]]:
    """Serve the shop in a background thread; returns its URL and a function that stops it."""
    shop = Shop(env, config)
    shop.warm()
    server = _bind(port, shop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="shop", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shop.close()

    return f"http://{LOOPBACK}:{server.server_address[1]}", stop


def main(argv: list[str] | None = None) -> None:
    """`python -m gameday.lab.shop [--port P]`: serve in the foreground with this environment."""
    import os

    parser = argparse.ArgumentParser(prog="python -m gameday.lab.shop", description=main.__doc__)
    parser.add_argument("--port", type=int, default=None,
                        help=f"default: {DEFAULT_PORT} when free, else a free port; 0: a free port")
    args = parser.parse_args(argv)
    shop = Shop(os.environ)
    shop.warm()
    try:
        server = _bind(args.port, shop)
    except OSError as exc:
        print(f"cannot listen on {LOOPBACK}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"http://{LOOPBACK}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shop.close()
