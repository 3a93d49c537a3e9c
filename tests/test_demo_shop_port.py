"""The demo with port 8270 taken (issue 12, defect 11): the lab's runbooks probe the lab's own shop
through `GAMEDAY_SHOP_URL`, and a run that does not end as expected says what failed.

Each test drives a lab runbook exactly as `make demo` does (`gameday.lab.demo.run_gameday`: the `gameday`
CLI in subprocesses, with the lab's environment) against this session's dev server, moto and
emulators, with a shop on a free port and an impostor on 8270 that answers 200 to everything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gameday.lab.demo import Demo, run_gameday
from gameday.lab.shop import DEFAULT_PORT, LOOPBACK, start_shop
from tests.support.servers import Servers

REGION_OUTAGE = "runbooks/lab/region-outage-hypothesis-breaks.yaml"
ROOT = Path(__file__).resolve().parent.parent


class Impostor:
    """Whatever else listens on 8270: here, a server that says every shop endpoint serves."""

    def __init__(self) -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                owner.requests += 1
                body = b'{"serving": true, "reason": "not the lab shop"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, DEFAULT_PORT), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def port_8270_taken() -> Iterator[Impostor | None]:
    """8270 is taken: by our impostor when it was free, else by whatever holds it already."""
    try:
        impostor = Impostor()
    except OSError:
        yield None  # taken by something else: taken all the same
        return
    yield impostor
    impostor.stop()


@pytest.fixture
def lab_env(servers: Servers, aws: dict[str, Any], task_queue: str) -> Iterator[dict[str, str]]:
    """The three lab topologies seeded, and the environment `gameday lab env` would give."""
    from gameday.lab.azure.seed import seed_azure
    from gameday.lab.gcp.seed import seed_gcp

    assert servers.azure is not None
    servers.reset_gcp()
    seed_gcp(servers.gcp.url)
    servers.reset_azure()
    seed_azure(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"])
    yield {**servers.env, "GAMEDAY_TASK_QUEUE": task_queue}


@pytest.fixture
def shop(servers: Servers, port_8270_taken: Impostor | None) -> Iterator[str]:
    url, stop = start_shop(servers.env, port=0)
    assert not url.endswith(f":{DEFAULT_PORT}")
    yield url
    stop()


def test_the_region_outage_aborts_with_8270_taken(lab_env: dict[str, str], shop: str,
                                                  port_8270_taken: Impostor | None) -> None:
    env = {**lab_env, "GAMEDAY_SHOP_URL": shop}
    result = run_gameday(Demo(env), env, REGION_OUTAGE, "aborted")
    assert result["failure"] is None, result["failure"]
    final = result["final"]
    assert (final["outcome"], final["hypothesis_held"], final["restored"]) == \
        ("aborted", False, True)
    assert result["exact"]
    if port_8270_taken is not None:
        assert port_8270_taken.requests == 0  # every probe went to the lab's own shop


def test_a_demo_run_that_probes_the_wrong_shop_says_so(lab_env: dict[str, str], shop: str,
                                                       port_8270_taken: Impostor | None,
                                                       tmp_path: Path) -> None:
    if port_8270_taken is None:
        pytest.skip("port 8270 is held by another process, whose answers this test cannot know")
    runbook = tmp_path / "region-outage-hypothesis-breaks.yaml"
    text = (ROOT / REGION_OUTAGE).read_text()
    assert "    duration: 30s\n" in text
    runbook.write_text(text.replace("    duration: 30s\n", "    duration: 4s\n"))
    env = dict(lab_env)  # no GAMEDAY_SHOP_URL: the probes use their default, 8270
    result = run_gameday(Demo(env), env, str(runbook), "aborted")
    assert result["final"]["outcome"] == "completed" and port_8270_taken.requests > 0
    failure = result["failure"]
    assert failure is not None
    assert failure.startswith("region-outage-hypothesis-breaks: ended completed, not aborted")
    assert f"shop-us-east-1 at http://127.0.0.1:{DEFAULT_PORT}/aws/us-east-1/health" in failure
    assert "GAMEDAY_SHOP_URL" in failure
    assert "\n" not in failure


def test_a_demo_run_that_fails_names_the_reason_and_the_probe(lab_env: dict[str, str]) -> None:
    from gameday.lab.services import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: the baseline fails
    env = {**lab_env, "GAMEDAY_SHOP_URL": nowhere}
    result = run_gameday(Demo(env), env, "runbooks/lab/zone-outage-hypothesis-holds.yaml",
                         "completed")
    assert result["final"]["outcome"] == "failed" and result["exact"]
    failure = result["failure"]
    assert failure is not None and "\n" not in failure and failure.endswith(".")
    assert failure.startswith("zone-outage-hypothesis-holds: ended failed, not completed; because "
                              "the steady state does not hold before any fault")
    assert "; probe shop-" in failure and f"({nowhere}/aws/" in failure
