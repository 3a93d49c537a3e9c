"""`gameday lab up --realistic`: the lab turns the realistic mode on in the AWS proxy and both
emulators through their admin API, and says so in `lab status`; the counters a bench reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gameday.lab.aws import AwsFaultProxy
from gameday.lab.azure import ResourceManagerEmulator, make_certificate
from gameday.lab.gcp import ComputeEmulator
from gameday.lab.manager import Lab
from gameday.lab.realistic import Bucket, RealisticConfig
from gameday.lab.services import LOOPBACK, free_port


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca, cert, key = make_certificate(tmp_path / "certs")
    started = {
        "aws": AwsFaultProxy(f"http://{LOOPBACK}:{free_port()}").start(),
        "gcp": ComputeEmulator(host=LOOPBACK).start(),
        "azure": ResourceManagerEmulator(LOOPBACK, 0, cert, key).start(),
    }
    endpoints = {f"{cloud}_endpoint": server.url for cloud, server in started.items()}
    state = {"pids": {}, "endpoints": {**endpoints, "azure_ca_bundle": ca}, "env": {}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    yield started
    for server in started.values():
        server.stop()


def test_set_realistic_turns_every_cloud_on_and_status_says_so(tmp_path, emulators):
    lab = Lab(tmp_path)
    assert lab.status()["realistic"] is False
    reports = lab.set_realistic(RealisticConfig(enabled=True))
    assert all(server.limits.enabled for server in emulators.values())
    assert reports["aws"]["buckets"]["ec2-mutating"] == {"burst": 50, "refill": 5}
    assert reports["azure"]["buckets"]["writes"] == {"burst": 200, "refill": 10}
    assert lab.status()["realistic"] is True
    lab.set_realistic(RealisticConfig())
    assert not any(server.limits.enabled for server in emulators.values())


def test_counters_per_bucket_and_their_reset(emulators):
    gcp: ComputeEmulator = emulators["gcp"]
    gcp.limits.configure(RealisticConfig(enabled=True, mutation_latency_ms=0, read_latency_ms=0,
                                         buckets={"mutations": Bucket(burst=1, refill=0.01)}))
    for name in ("one", "two"):
        httpx.post(f"{gcp.url}/compute/v1/projects/p/global/networks", json={"name": name})
    report = httpx.get(f"{gcp.url}/_emulator/limits").json()
    assert report["per_bucket"] == [{"scope": ["p"], "category": "mutations", "served": 1,
                                     "throttled": 1}]
    assert [c["throttled"] for c in httpx.get(f"{gcp.url}/_emulator/calls").json()["calls"]] == [
        False, True]
    httpx.delete(f"{gcp.url}/_emulator/limits").raise_for_status()
    report = httpx.get(f"{gcp.url}/_emulator/limits").json()
    assert report["per_bucket"] == [] and report["throttled_total"] == 0
    again = httpx.post(f"{gcp.url}/compute/v1/projects/p/global/networks", json={"name": "three"})
    assert again.status_code == 403  # the counters were zeroed, the bucket was not refilled



def test_cli_offers_realistic_and_status_shows_it(tmp_path, emulators):
    env = {**os.environ, "GAMEDAY_LAB_DIR": str(tmp_path), "COLUMNS": "200"}

    def gameday(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    assert "--realistic" in gameday("lab", "up", "--help").stdout
    Lab(tmp_path).set_realistic(RealisticConfig(enabled=True))
    status = gameday("lab", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["realistic"] is True
