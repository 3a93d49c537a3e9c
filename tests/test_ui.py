"""The Temporal UI as the incident commander's board (issues 7 and 18), checked in a real browser.

The check starts the lab (Temporal dev server with its UI, moto, the emulators, a worker), starts
the lab's three-cloud zone blackhole with the CLI (held for minutes), and reads its workflow page in
headless Chromium at each stage an IC looks: awaiting approval (the approve command and the signal
input to paste, the deadline, the abort command), active after a CLI approval (per cloud the zone cut
and how many resources), restoring after an abort while the GCP emulator refuses the restore's
calls (the step restoring and its last failure), and closed once the emulator lets the restore
through. It follows the "User Metadata" tab, where Temporal UI 2.x renders the workflow's *Current
Details* (gameday/board.py), and saves `reports/ui-awaiting-approval.png`, `reports/ui-active.png`,
`reports/ui-restoring.png` and `reports/ui-closed.png`; the CLI's approval, a Temporal Update, is
read in the "Event History" tab with its answer (`reports/ui-update.png`: the expanded "Workflow
Execution Update Completed" event). Then a run that fails (its steady state does not hold) and the
aborted one are told apart in the workflow list (`reports/ui-list.png`: Failed beside Completed, and
by `GameDayOutcome`). It needs
Debian's `chromium`: without it the check skips, saying so, unless `GAMEDAY_UI_CHECK=required`
(what `make test` sets once chromium is installed), which makes it fail instead.

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
import re
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlparse
from urllib.request import HTTPCookieProcessor, ProxyHandler, Request, build_opener

import pytest

from gameday.lab.faults import FaultConfig, FaultRule

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = "runbooks/lab/multicloud-zone-blackhole.yaml"
RUNBOOK_NAME = "lab-multicloud-zone-blackhole"
APPROVER = "ic@example.com"
GCP_STEP = "blackhole-gcp-usc1a"
REFUSAL = "Invalid value for field 'resource.tags.items[1]': 'gameday-x'. Must be a match of regex"
SCREENSHOTS = {stage: ROOT / "reports" / f"ui-{stage.replace('_', '-')}.png"
               for stage in ("awaiting_approval", "active", "restoring", "closed", "update", "list")}
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
    """The Chromium binary; skip when there is none, or fail when the check is required."""
    found = shutil.which("chromium")
    if found is None:
        why = "the UI check needs Debian's chromium (apt-get install -y chromium); it is not installed"
        if os.environ.get("GAMEDAY_UI_CHECK") == "required":
            pytest.fail(why + ", and GAMEDAY_UI_CHECK=required")
        pytest.skip(why)
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5,
             seen: Callable[[], str] | None = None) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and the last error the
    probe raised, if any, and what `seen` says was on screen) after `timeout`."""
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
                        + (f" (last error: {last_error})" if last_error else "")
                        + (f"; the page showed: {seen()}" if seen else ""))
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

OPEN_EVENT_HISTORY = """(() => {
  const tab = [...document.querySelectorAll('a')].find(a => a.pathname.endsWith('/history'));
  if (!tab) return false;
  tab.click();
  return true;
})()"""

SORT_ASCENDING = """(() => {
  const labelled = name => [...document.querySelectorAll('button')].find(
    b => (b.innerText || '').trim() === name);
  if (labelled('Ascending')) return true;
  const order = labelled('Descending');
  if (order) order.click();
  return false;
})()"""

EXPAND_UPDATE_COMPLETED = """(() => {
  const row = [...document.querySelectorAll('tr')].find(
    r => (r.innerText || '').includes('Workflow Execution Update Completed'));
  if (!row) return false;
  row.click();
  row.scrollIntoView({block: 'start'});
  return true;
})()"""

FRAME_SOURCE = """(() => {
  const frame = document.getElementById('%s');
  return frame ? frame.getAttribute('src') : '';
})()"""


def test_skips_cleanly_without_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    monkeypatch.delenv("GAMEDAY_UI_CHECK", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        chromium_or_skip()


def test_fails_without_chromium_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    monkeypatch.setenv("GAMEDAY_UI_CHECK", "required")
    with pytest.raises(pytest.fail.Exception, match="chromium.*GAMEDAY_UI_CHECK=required"):
        chromium_or_skip()


def show_board(browser: DevToolsPipe, ui: str, run_id: str, expected: str, picture: Path) -> tuple[str, str]:
    """Open the run's page afresh, follow the User Metadata tab, wait until the rendered Current
    Details contain `expected`, and take the picture; (the board's text, the page's text)."""
    browser.navigate(f"{ui}/namespaces/default/workflows/{run_id}")
    wait_for("the workflow page's User Metadata tab", lambda: browser.evaluate(OPEN_USER_METADATA),
             timeout=60)
    shown = wait_for(f"the Current Details panel to show {expected!r}",
                     lambda: (lambda t: t if expected in t else None)(browser.evaluate(CURRENT_DETAILS_TEXT)),
                     timeout=60)
    page_text = browser.evaluate("document.body.innerText")
    time.sleep(0.5)  # let the iframe settle at its final height before the picture
    browser.screenshot(picture)
    assert picture.stat().st_size > 10_000
    return "\n".join(line.strip() for line in shown.splitlines() if line.strip()), page_text


def show_update_answer(browser: DevToolsPipe, ui: str, run_id: str, answer: str, picture: Path) -> str:
    """Open the run's Event History tab, wait for the `approve` Update's accepted and completed
    events, expand the completed one until its outcome shows `answer`, and take the picture; the
    page's text, its whitespace collapsed. The events are sorted oldest first, so that the Update's,
    early in the run, stay on the table's first page however long the history grows."""
    browser.navigate(f"{ui}/namespaces/default/workflows/{run_id}")
    opened = [time.monotonic()]

    def update_row() -> bool:
        """Sorted oldest first (the UI can drop a click while the table loads), then the Update's
        row; a page that shows neither for 20 s is opened afresh."""
        if time.monotonic() - opened[0] > 20:
            browser.navigate(f"{ui}/namespaces/default/workflows/{run_id}")
            opened[0] = time.monotonic()
        if not browser.evaluate("location.pathname.endsWith('/history')"):
            browser.evaluate(OPEN_EVENT_HISTORY)
            return False
        return bool(browser.evaluate(SORT_ASCENDING) and browser.evaluate(EXPAND_UPDATE_COMPLETED))

    wait_for("the Update's events in the Event History, sorted oldest first", update_row,
             timeout=90, every=1.0, seen=lambda: page_text(browser))

    def expanded() -> str | None:
        text = " ".join((browser.evaluate("document.body.innerText") or "").split())
        return text if answer in text else None

    shown = wait_for(f"the expanded Update Completed event to show {answer!r}", expanded, timeout=30)
    browser.evaluate(EXPAND_UPDATE_COMPLETED.replace("row.click();", ""))  # in view, still expanded
    time.sleep(0.5)
    browser.screenshot(picture)
    assert picture.stat().st_size > 10_000
    return shown


def page_text(browser: DevToolsPipe) -> str:
    """The start of what the page shows, its whitespace collapsed: for a failure's message."""
    try:
        text = browser.evaluate("document.body.innerText") or ""
    except (OSError, ValueError, KeyError, RuntimeError, TimeoutError) as error:
        return f"(unreadable: {error})"
    return " ".join(text.split())[:2000]


def gcp_faults(endpoint: str, *rules: FaultRule) -> None:
    """Set the lab's GCP emulator's injected failures (none: every call goes through)."""
    body = FaultConfig(rules=list(rules)).model_dump_json().encode()
    request = Request(f"{endpoint}/_emulator/faults", data=body, method="POST",
                      headers={"Content-Type": "application/json"})
    with build_opener(ProxyHandler({})).open(request, timeout=15) as response:
        assert response.status == 200


def held_runbook(directory: Path) -> Path:
    """The lab's three-cloud zone blackhole, held for ten minutes instead of ten seconds, so that the
    session sees it active; it ends by the abort."""
    text = (ROOT / RUNBOOK).read_text()
    assert text.count("duration: 10s") == 3
    held = directory / "multicloud-zone-blackhole-held.yaml"
    held.write_text(text.replace("duration: 10s", "duration: 10m"))
    return held


def test_the_board_in_a_browser_from_approval_to_close(tmp_path: Path) -> None:
    """A scripted session of an incident commander: a three-cloud run awaiting approval, held
    active, aborted while one cloud refuses its restore, and closed once it lets it, each stage
    read from the workflow page in Chromium and photographed, with the approval's Update in the
    Event History; then a failed run beside it in the list."""
    binary = chromium_or_skip()
    from gameday.lab.manager import Lab

    lab = Lab(tmp_path / "lab", fixed_ports=False)
    run_id = f"ui-check-{uuid.uuid4().hex[:8]}"
    env: dict[str, str] = {}
    started = aborted = False
    try:
        lab.up(seed=True)
        status = lab.status()
        ui = status["ui"]
        env = {**os.environ, **status["env"]}
        ran = gameday(env, "run", str(held_runbook(tmp_path)), "--id", run_id)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == run_id
        started = True
        api = UiApi(ui)
        wait_for(f"{run_id} in the list GameDayPhase=\"awaiting_approval\"",
                 lambda: run_id in api.listed('GameDayPhase="awaiting_approval"'), timeout=30)
        waiting = json.loads(gameday(env, "status", run_id, "--json").stdout)

        with chromium(binary, tmp_path) as browser:
            board, page_text = show_board(browser, ui, run_id, "Awaiting approval of start",
                                          SCREENSHOTS["awaiting_approval"])
            source = browser.evaluate(FRAME_SOURCE % "user-metadata-current-details")
            summary = browser.evaluate(FRAME_SOURCE % "user-metadata-summary")
            assert "Current Details" in page_text
            assert parse_qs(urlparse(summary).query)["content"][0] == f"GameDay {RUNBOOK_NAME}"
            assert board.startswith(f"{RUNBOOK_NAME} · awaiting_approval · updated ")
            approve = f"gameday approve {run_id} --as <approver> --plan-hash {waiting['plan_hash']}"
            signal = json.dumps({"approver": "<approver>", "step": None, "plan_hash": waiting["plan_hash"]})
            for shown in (board, parse_qs(urlparse(source).query)["content"][0]):
                assert approve in shown
                assert f"Send a Signal approve: {signal}" in shown.replace("`", "")
            deadline = datetime.fromisoformat(waiting["deadline"])
            assert f"every fault restored by {deadline:%Y-%m-%d %H:%M:%S} UTC" in board
            assert f'gameday abort {run_id} --as <you> --reason "<why>"' in board

            approved = gameday(env, "approve", run_id, "--as", APPROVER, "--plan-hash", waiting["plan_hash"])
            assert approved.returncode == 0, approved.stdout + approved.stderr
            approved_detail = approved.stdout.strip()
            active = wait_for("all three clouds cut", lambda: (lambda s: s if all(
                x["state"] == "active" for x in s["steps"]) else None)(
                    json.loads(gameday(env, "status", run_id, "--json").stdout)), timeout=90)
            counts = {x["cloud"]: x["resources"] for x in active["steps"]}
            assert all(counts.values())
            board, _ = show_board(browser, ui, run_id, "resources in 3 clouds", SCREENSHOTS["active"])
            assert f"Cut now: {sum(counts.values())} resources in 3 clouds" in board
            assert f"aws blackhole_zone us-east-1a: {counts['aws']} subnets" in board
            assert f"gcp blackhole_zone us-central1-a: {counts['gcp']} instances" in board
            assert f"azure blackhole_zone eastus zone 1: {counts['azure']} NICs" in board
            assert f"every fault restored by {deadline:%Y-%m-%d %H:%M:%S} UTC" in board
            assert "Steady state: none in the runbook" in board
            assert f'gameday abort {run_id} --as <you> --reason "<why>"' in board
            assert 'Send a Signal abort: {"by": "<you>", "reason": "<why>"}' in board.replace("`", "")

            # the approval was a Temporal Update: the Event History shows it and the run's answer
            history = show_update_answer(browser, ui, run_id, f'"detail": {json.dumps(approved_detail)}',
                                         SCREENSHOTS["update"])
            assert "Workflow Execution Update Accepted Name approve" in history
            assert "Workflow Execution Update Completed" in history
            assert '"accepted": true, "kind": "approved"' in history

            # the abort's restore of the GCP zone is refused for a while: the board says so
            gcp_faults(status["gcp_endpoint"], FaultRule(match="/setTags", status=400, code="invalid",
                                                         message=REFUSAL))
            try:
                stopped = gameday(env, "abort", run_id, "--as", APPROVER, "--reason", "UI check done")
                aborted = True
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr
                retrying = f"Restoring {GCP_STEP}: its restore retries until it succeeds; the last failure: "
                wait_for("a failed round of the GCP restore on the board", lambda: retrying in
                         api.current_details(run_id).replace("**", "").replace("\\", ""), timeout=60)
                board, _ = show_board(browser, ui, run_id, retrying, SCREENSHOTS["restoring"])
                restoring = json.loads(gameday(env, "status", run_id, "--json").stdout)
            finally:
                gcp_faults(status["gcp_endpoint"])
            assert restoring["phase"] == "restoring"
            assert [x["state"] for x in restoring["steps"] if x["id"] == GCP_STEP] == ["restoring"]
            assert board.startswith(f"{RUNBOOK_NAME} · restoring · ")
            # the UI's markdown shows the error's straight quotes as curly ones
            assert (f"{retrying}GCP refused restoring us-central1-a: 400 Invalid value for field "
                    in board), board
            assert "Must be a match of regex" in board, board
            closed = wait_for("the run closed once the restore went through", lambda: (
                lambda s: s if s["phase"] == "aborted" else None)(
                    json.loads(gameday(env, "status", run_id, "--json").stdout)), timeout=90)
            assert closed["outcome"] == "aborted" and closed["restored"] is True
            board, _ = show_board(browser, ui, run_id, "aborted", SCREENSHOTS["closed"])
            assert board.startswith(f"{RUNBOOK_NAME} · aborted · hypothesis held: not tested · every "
                                    "fault restored: yes")
            assert f"aborted by {APPROVER}: UI check done" in board
            assert "Cut now: nothing; every fault is restored" in board
            assert "gameday abort" not in board

            # a failed run (its steady state does not hold before any fault) beside the aborted one
            failed_id = f"{run_id}-failed"
            ran = gameday(env, "run", str(failing_runbook(tmp_path)), "--id", failed_id)
            assert ran.returncode == 0, ran.stderr
            approved = gameday(env, "approve", failed_id, "--as", APPROVER)
            assert approved.returncode == 0, approved.stdout + approved.stderr
            wait_for(f"{failed_id} in the list ExecutionStatus=\"Failed\"",
                     lambda: failed_id in api.listed('ExecutionStatus="Failed"'), timeout=60)
            assert run_id not in api.listed('ExecutionStatus="Failed"')
            assert run_id in api.listed('GameDayOutcome="aborted"')
            assert failed_id in api.listed('GameDayOutcome="failed"')
            query = f'WorkflowType="GameDayWorkflow" AND WorkflowId STARTS_WITH "{run_id}"'
            browser.navigate(f"{ui}/namespaces/default/workflows?query={quote(query)}")
            listed = wait_for("both runs in the workflow list", lambda: (lambda t: t if run_id in t and
                              failed_id in t else None)(browser.evaluate("document.body.innerText") or ""),
                              timeout=60)
            time.sleep(0.5)
            browser.screenshot(SCREENSHOTS["list"])
            # each row: its status badge (shown in capitals), then the workflow id
            assert re.search(rf"(?i)\bfailed\s+{re.escape(failed_id)}\s", listed), listed
            assert re.search(rf"(?i)\bcompleted\s+{re.escape(run_id)}\s", listed), listed
    finally:
        if started and not aborted and env:
            gameday(env, "abort", run_id, "--as", APPROVER, "--reason", "UI check failed")
        lab.down()


def failing_runbook(directory: Path) -> Path:
    """The lab's AWS zone blackhole with a steady state that cannot hold (nothing listens on port 9):
    approved, it fails at the baseline check with nothing changed, and closes as Failed."""
    text = (ROOT / "runbooks/lab/aws-zone-blackhole.yaml").read_text()
    failing = directory / "aws-zone-blackhole-failing.yaml"
    failing.write_text(text.replace("name: lab-aws-zone-blackhole", "name: lab-aws-zone-blackhole-failing")
                       + "steady_state:\n  probes:\n    - {name: checkout, tcp: {host: 127.0.0.1, port: 9, "
                       "timeout: 1s}}\n")
    return failing
