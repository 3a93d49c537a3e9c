"""The Temporal UI as the progress board (issue 7, item 3): a GameDay waiting at its approval gate
shows, in a real browser, the phase and the exact command that approves it.

The check starts the lab (Temporal dev server with its UI, moto, the emulators, a worker), starts a
lab GameDay with the CLI, opens its workflow page in headless Chromium, follows the "User Metadata"
tab, where Temporal UI 2.x renders the workflow's *Current Details*, and reads them; it saves
`reports/ui-check.png` and aborts the run. It needs Debian's `chromium` and is skipped without it.

Why Chromium is driven over the DevTools protocol (on a pipe, stdlib only) and not with
`--dump-dom` / `--screenshot`: the UI is a client-side SvelteKit app. Without
`--virtual-time-budget` both flags capture the empty shell at the load event (a blank screenshot,
no workflow text in the DOM); with it (3000 or 15000 ms) Chromium never returns, because the
workflow page keeps a long poll open (`.../history?waitNewEvent=true`) and virtual time does not
advance while a request is in flight. Current Details are not in the page's own text either: the
UI renders them as markdown in an iframe (`#user-metadata-current-details`, `src=/render?content=
<the details, URL-encoded>`) filled from the built-in query `__temporal_workflow_metadata`, which
the page asks through the UI server (`POST /api/v1/namespaces/<ns>/workflows/<id>/query/
__temporal_workflow_metadata`); the test reads that same answer too.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlparse
from urllib.request import HTTPCookieProcessor, ProxyHandler, Request, build_opener

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = "runbooks/lab/aws-zone-blackhole.yaml"
APPROVER = "ic@example.com"
SCREENSHOT = ROOT / "reports" / "ui-check.png"
WIDTH, HEIGHT = 1400, 1100
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    f"--window-size={WIDTH},{HEIGHT}",
    # loopback only: the UI's news feed (newsfeed.temporal.io) and anything else resolve to nothing
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

T = TypeVar("T")

WIRE_FDS_AND_EXEC = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                     "os.execv(sys.argv[3], sys.argv[3:])")


def chromium_or_skip() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("the UI check needs Debian's chromium (apt-get install -y chromium); "
                    "it is not installed")
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and the last error the
    probe raised, if any) after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except (OSError, ValueError, KeyError, RuntimeError, TimeoutError) as error:
            value, last_error = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}"
                        + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(every)


# --- the browser ---------------------------------------------------------------------------------


class DevToolsPipe:
    """Headless Chromium driven over `--remote-debugging-pipe`: it reads commands on fd 3 and
    writes answers and events on fd 4, each a JSON message ended by a NUL byte."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_browser_read, self._out = os.pipe()
        self._in, from_browser_write = os.pipe()
        # The browser's ends, moved to fds >= 10 so that neither lands on 3 or 4; a small Python
        # trampoline puts them on 3 and 4 and execs Chromium (no preexec_fn, which is unsafe in a
        # process with threads).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_read, from_browser_write)]
        os.close(to_browser_read)
        os.close(from_browser_write)
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                   "about:blank"]
        try:
            with log.open("ab") as err:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", WIRE_FDS_AND_EXEC, str(ends[0]), str(ends[1]), *command],
                    pass_fds=ends, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        finally:
            for fd in ends:
                os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.session = ""

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30,
             page: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} within {timeout:.0f}s")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise EOFError(f"chromium exited while answering {method}")
                self._buffer += chunk

    def open_page(self) -> None:
        targets = self.call("Target.getTargets", page=False)["targetInfos"]
        target = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True},
                                 page=False)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", page=False, timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass


@contextmanager
def chromium(binary: str, directory: Path) -> Iterator[DevToolsPipe]:
    browser = DevToolsPipe(binary, directory / "chromium-profile", directory / "chromium.log")
    try:
        browser.open_page()
        yield browser
    finally:
        browser.close()


# --- the UI server's own HTTP API, as the page calls it --------------------------------------------


class UiApi:
    """The Temporal UI server's `/api/v1` (what the workflow page fetches), with its CSRF cookie."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.cookies = CookieJar()
        self.opener = build_opener(ProxyHandler({}), HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> Any:
        with self.opener.open(self.base + path, timeout=15) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        if not any(c.name == "_csrf" for c in self.cookies):
            self.get("/api/v1/settings")
        token = next(c.value for c in self.cookies if c.name == "_csrf")
        request = Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                          headers={"Content-Type": "application/json", "X-CSRF-TOKEN": token or ""})
        with self.opener.open(request, timeout=15) as response:
            return json.loads(response.read())

    def current_details(self, workflow_id: str) -> str:
        """The workflow's current details, from the query the UI itself sends."""
        answer = self.post(
            f"/api/v1/namespaces/default/workflows/{quote(workflow_id)}/query/"
            "__temporal_workflow_metadata",
            {"execution": {"workflowId": workflow_id},
             "query": {"queryType": "__temporal_workflow_metadata"}})
        payload = answer["queryResult"]["payloads"][0]
        return str(json.loads(base64.b64decode(payload["data"])).get("currentDetails", ""))

    def listed(self, query: str) -> list[str]:
        answer = self.get(f"/api/v1/namespaces/default/workflows?query={quote(query)}")
        return [e["execution"]["workflowId"] for e in answer.get("executions") or []]


# --- the check -----------------------------------------------------------------------------------


def gameday(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


CURRENT_DETAILS_TEXT = """(() => {
  const frame = document.getElementById('user-metadata-current-details');
  const body = frame && frame.contentDocument && frame.contentDocument.body;
  return body ? body.innerText : '';
})()"""

OPEN_USER_METADATA = """(() => {
  const tab = [...document.querySelectorAll('a')].find(a => a.href.endsWith('/user-metadata'));
  if (!tab) return false;
  tab.click();
  return true;
})()"""

FRAME_SOURCE = """(() => {
  const frame = document.getElementById('%s');
  return frame ? frame.getAttribute('src') : '';
})()"""


def test_skips_cleanly_without_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        chromium_or_skip()


def test_the_workflow_page_shows_the_pending_approval(tmp_path: Path) -> None:
    binary = chromium_or_skip()
    from lab.manager import Lab

    lab = Lab(tmp_path / "lab", fixed_ports=False)
    run_id = f"ui-check-{uuid.uuid4().hex[:8]}"
    env: dict[str, str] = {}
    started = aborted = False
    try:
        lab.up(seed=True)
        status = lab.status()
        ui = status["ui"]
        env = {**os.environ, **status["env"]}

        ran = gameday(env, "run", RUNBOOK, "--id", run_id)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == run_id
        started = True
        approve = f"gameday approve {run_id} --as"

        # What the page will show, straight from the UI server: the current details and the
        # search attribute that lists GameDays waiting for a go.
        api = UiApi(ui)
        details = wait_for("the approval gate in the current details",
                           lambda: (lambda d: d if "awaiting approval of start" in d else None)(
                               api.current_details(run_id)), timeout=60)
        assert approve in details
        assert "awaiting_approval" in details
        wait_for(f"{run_id} in the list GameDayPhase=\"awaiting_approval\"",
                 lambda: run_id in api.listed('GameDayPhase="awaiting_approval"'), timeout=30)

        with chromium(binary, tmp_path) as browser:
            browser.navigate(f"{ui}/namespaces/default/workflows/{run_id}")
            wait_for("the workflow page's User Metadata tab",
                     lambda: browser.evaluate(OPEN_USER_METADATA), timeout=60)
            shown = wait_for("the Current Details panel to render the pending approval",
                             lambda: (lambda t: t if "awaiting approval of start" in t else None)(
                                 browser.evaluate(CURRENT_DETAILS_TEXT)), timeout=60)
            page_text = browser.evaluate("document.body.innerText")
            source = browser.evaluate(FRAME_SOURCE % "user-metadata-current-details")
            summary = browser.evaluate(FRAME_SOURCE % "user-metadata-summary")
            time.sleep(0.5)  # let the iframe settle at its final height before the picture
            browser.screenshot(SCREENSHOT)

        assert approve in shown
        assert "awaiting_approval" in shown
        assert "Current Details" in page_text
        rendered = parse_qs(urlparse(source).query)["content"][0]
        assert approve in rendered
        assert parse_qs(urlparse(summary).query)["content"][0] == "GameDay lab-aws-zone-blackhole"
        assert SCREENSHOT.stat().st_size > 10_000

        stopped = gameday(env, "abort", run_id, "--as", APPROVER, "--reason", "UI check done",
                          "--wait")
        aborted = True
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "every fault restored: True" in stopped.stdout
    finally:
        if started and not aborted and env:
            gameday(env, "abort", run_id, "--as", APPROVER, "--reason", "UI check failed")
        lab.down()
