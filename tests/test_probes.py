"""Probe semantics against real servers on loopback: HTTP, TCP, CloudWatch alarms (moto) and the
Prometheus HTTP API."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from activities.probes import check_all
from gameday.runbook import Probe


class Responder:
    """An HTTP server on loopback answering from a function of (path, query)."""

    def __init__(self, answer):
        owner = self
        self.answer = answer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                status, body, delay = owner.answer(parts.path, parse_qs(parts.query))
                time.sleep(delay)
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def probe(**kind) -> Probe:
    return Probe.model_validate({"name": "p", **kind})


def verdicts(runner, *probes: Probe) -> list[tuple[bool, str]]:
    report = runner.run(check_all(list(probes)))
    return [(r.ok, r.value) for r in report.results]


@pytest.fixture
def web():
    responder = Responder(lambda path, query: {
        "/fast": (200, "all good", 0.0),
        "/slow": (200, "all good", 0.4),
        "/wrong": (200, "maintenance page", 0.0),
    }.get(path, (404, "", 0.0)))
    yield responder
    responder.stop()


def test_http_status_latency_ceiling_and_body(web, runner):
    results = verdicts(
        runner,
        probe(http={"url": f"{web.url}/fast", "max_latency": "1s", "body_contains": "good"}),
        probe(http={"url": f"{web.url}/slow", "max_latency": "10s"}),  # 0.4 s, slow but under
        probe(http={"url": f"{web.url}/nope"}),
        probe(http={"url": f"{web.url}/wrong", "body_contains": "all good"}),
    )
    assert results[0] == (True, "HTTP 200")
    assert results[1][0] is True
    assert results[2] == (False, "HTTP 404, expected 200")
    assert results[3] == (False, "HTTP 200 without 'all good' in the body")


def test_http_latency_over_the_ceiling_fails(web, runner):
    ((ok, value),) = verdicts(runner, probe(http={"url": f"{web.url}/slow", "max_latency": "100ms"}))
    assert not ok and "over the ceiling" in value


def test_tcp_connects_or_fails(web, runner):
    port = int(web.url.rsplit(":", 1)[1])
    results = verdicts(runner, probe(tcp={"host": "127.0.0.1", "port": port}),
                       probe(tcp={"host": "127.0.0.1", "port": 9, "timeout": "1s"}))
    assert results[0] == (True, "connected")
    assert results[1][0] is False


def test_cloudwatch_alarm_passes_until_it_is_in_alarm(servers, runner):
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(AlarmName="checkout-5xx", MetricName="5xx", Namespace="shop",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanThreshold")
    alarm = probe(cloudwatch_alarm={"alarm_name": "checkout-5xx", "region": "us-east-1"})
    cloudwatch.set_alarm_state(AlarmName="checkout-5xx", StateValue="OK", StateReason="test")
    assert verdicts(runner, alarm) == [(True, "alarm checkout-5xx is OK")]
    cloudwatch.set_alarm_state(AlarmName="checkout-5xx", StateValue="ALARM", StateReason="test")
    assert verdicts(runner, alarm) == [(False, "alarm checkout-5xx is ALARM")]
    missing = probe(cloudwatch_alarm={"alarm_name": "no-such-alarm", "region": "us-east-1"})
    assert verdicts(runner, missing) == [(False, "alarm no-such-alarm is MISSING")]


@pytest.fixture
def prometheus():
    values = {"error_rate": "0.5", "latency_p99": "2.5"}

    def answer(path, query):
        if path != "/api/v1/query":
            return 404, "", 0.0
        expression = query["query"][0]
        if expression == "broken(":
            return 400, json.dumps({"status": "error", "error": "parse error"}), 0.0
        result = [] if expression not in values else [
            {"metric": {}, "value": [time.time(), values[expression]]}]
        return 200, json.dumps({"status": "success",
                                "data": {"resultType": "vector", "result": result}}), 0.0

    responder = Responder(answer)
    yield responder
    responder.stop()


def test_prometheus_thresholds(prometheus, runner):
    results = verdicts(
        runner,
        probe(prometheus={"url": prometheus.url, "query": "error_rate", "below": 1}),
        probe(prometheus={"url": prometheus.url, "query": "latency_p99", "below": 2}),
        probe(prometheus={"url": prometheus.url, "query": "error_rate", "above": 0.1, "below": 1}),
        probe(prometheus={"url": prometheus.url, "query": "absent", "below": 1}),
        probe(prometheus={"url": prometheus.url, "query": "broken(", "below": 1}),
    )
    assert results[0] == (True, "0.5 (below 1)")
    assert results[1] == (False, "2.5 (not below 2)")
    assert results[2] == (True, "0.5 (below 1 and above 0.1)")
    assert results[3] == (False, "the query returned 0 series, not one")
    assert results[4][0] is False and "parse error" in results[4][1]


def test_a_prometheus_probe_needs_a_threshold():
    with pytest.raises(ValueError, match="below, above or both"):
        probe(prometheus={"url": "http://127.0.0.1:9090", "query": "up"})


# --- probe.watch: every check's results, bounded ---------------------------------------------------


def _watch(runner, request):
    from temporalio.testing import ActivityEnvironment

    from activities.probes import watch

    return runner.run(ActivityEnvironment().run(watch, request))


def test_a_watch_reports_every_checks_result_not_only_the_changes(runner):
    from datetime import timedelta

    from activities.probes import WatchRequest

    answers = iter([200, 200, 200, 503, 503] + [503] * 20)
    server = Responder(lambda path, query: (next(answers), "", 0.0))
    try:
        started = time.time()
        report = _watch(runner, WatchRequest(
            probes=[probe(http={"url": f"{server.url}/health", "timeout": "1s"})],
            interval=timedelta(seconds=1), tolerance=2, window=timedelta(seconds=30)))
    finally:
        server.stop()
    assert (report.checks, report.failed_checks, report.breached) == (5, 2, True)
    assert [(r.ok, r.value) for r in report.results] == [
        (True, "HTTP 200"), (True, "HTTP 200"), (True, "HTTP 200"),
        (False, "HTTP 503, expected 200"), (False, "HTTP 503, expected 200")]
    times = [r.at.timestamp() for r in report.results]
    assert times == sorted(times) and times[0] >= started
    assert all(0.9 < later - earlier < 2.0 for earlier, later in zip(times, times[1:], strict=False))
    assert all(r.latency_ms > 0 for r in report.results)
    assert report.results_dropped == 0
    assert [c.ok for c in report.changes] == [True, False, False]  # kept, for older workflows


def test_a_watch_keeps_at_most_the_bound_and_counts_the_rest(runner, monkeypatch):
    from datetime import timedelta

    import gameday.probing as probing
    from gameday.probing import WatchRequest

    monkeypatch.setattr(probing, "MAX_WATCH_RESULTS", 5)
    server = Responder(lambda path, query: (200, "", 0.0))
    try:
        report = _watch(runner, WatchRequest(
            probes=[probe(http={"url": f"{server.url}/a"}), probe(http={"url": f"{server.url}/b"})],
            interval=timedelta(seconds=1), tolerance=2, window=timedelta(seconds=3.5)))
    finally:
        server.stop()
    assert report.checks == 4 and not report.breached
    assert len(report.results) == 5 and report.results_dropped == 3


def test_a_long_verdict_is_cut_so_that_a_window_of_results_stays_small(web, runner):
    import activities.probes as probes

    ((ok, value),) = verdicts(runner, probe(http={"url": f"{web.url}/fast",
                                                  "body_contains": "x" * 500}))
    assert not ok and value.startswith("HTTP 200 without 'xxx")
    assert len(value) == probes.MAX_VALUE_CHARS and value.endswith("...")
