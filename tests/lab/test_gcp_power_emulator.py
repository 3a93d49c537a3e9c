"""The Compute emulator's power operations through the real google-cloud-compute client: they take
time and land whether or not anyone polls them, `wait` answers before DONE when they take longer,
and an instance between two states refuses what Compute Engine refuses (start while STOPPING)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from gameday.lab.gcp import ComputeEmulator
from gameday.lab.gcp.operations import WAIT_BLOCK

PROJECT = "power-lab"
ZONE = "us-central1-a"
DONE = compute_v1.Operation.Status.DONE
RUNNING = compute_v1.Operation.Status.RUNNING


@pytest.fixture
def emulator() -> Iterator[ComputeEmulator]:
    server = ComputeEmulator(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


class Clients:
    def __init__(self, url: str):
        options: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=url),
                                   "credentials": AnonymousCredentials()}
        self.networks = compute_v1.NetworksClient(**options)
        self.instances = compute_v1.InstancesClient(**options)
        self.operations = compute_v1.ZoneOperationsClient(**options)
        self.global_operations = compute_v1.GlobalOperationsClient(**options)

    def status(self, name: str = "vm-1") -> str:
        return str(self.instances.get(project=PROJECT, zone=ZONE, instance=name).status)

    def get(self, op: compute_v1.Operation) -> compute_v1.Operation:
        return self.operations.get(project=PROJECT, zone=ZONE, operation=op.name)

    def wait(self, op: compute_v1.Operation) -> compute_v1.Operation:
        return self.operations.wait(project=PROJECT, zone=ZONE, operation=op.name)


@pytest.fixture
def gcp(emulator: ComputeEmulator) -> Clients:
    clients = Clients(emulator.url)
    op = clients.networks.insert_unary(project=PROJECT, network_resource=compute_v1.Network(
        name="net", auto_create_subnetworks=True))
    clients.global_operations.wait(project=PROJECT, operation=op.name)
    op = clients.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=compute_v1
                                        .Instance(name="vm-1", network_interfaces=[
                                            compute_v1.NetworkInterface(network="global/networks/net")]))
    clients.wait(op)
    return clients


def _timed(emulator: ComputeEmulator, seconds: float) -> None:
    with emulator.lock:
        emulator.polls_hurry = False
        emulator.power_seconds = seconds


def test_a_stop_takes_its_time_however_often_it_is_polled(emulator, gcp):
    _timed(emulator, 1.0)
    started = time.monotonic()
    op = gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gcp.status() == "STOPPING"
    assert [gcp.get(op).status for _ in range(3)] == [RUNNING] * 3
    done = gcp.wait(op)
    assert done.status == DONE and time.monotonic() - started >= 1.0
    assert gcp.status() == "TERMINATED"
    assert gcp.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").last_stop_timestamp


def test_a_stop_nobody_polls_lands_on_its_own(emulator, gcp):
    _timed(emulator, 0.5)
    gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gcp.status() == "STOPPING"
    time.sleep(0.7)
    assert gcp.status() == "TERMINATED"
    op = gcp.instances.start_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gcp.status() == "STAGING"
    time.sleep(0.7)
    assert gcp.status() == "RUNNING" and gcp.get(op).status == DONE


def test_wait_answers_before_done_when_the_operation_takes_longer(emulator, gcp):
    _timed(emulator, WAIT_BLOCK + 2)
    op = gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    started = time.monotonic()
    first = gcp.wait(op)
    assert first.status == RUNNING and WAIT_BLOCK - 0.5 <= time.monotonic() - started < WAIT_BLOCK + 1
    assert gcp.wait(op).status == DONE and gcp.status() == "TERMINATED"


def test_starting_a_stopping_instance_is_refused_and_stopping_a_stopped_one_is_a_no_op(emulator,
                                                                                     gcp):
    _timed(emulator, 1.0)
    op = gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    with pytest.raises(exceptions.BadRequest) as refused:
        gcp.instances.start_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert {error["reason"] for error in refused.value.errors} == {"resourceNotReady"}
    while gcp.wait(op).status != DONE:
        pass
    again = gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gcp.wait(again).status == DONE  # nothing to wait for: it is already off
    assert gcp.status() == "TERMINATED"


def test_a_suspended_instance_can_be_stopped_but_not_started(emulator, gcp):
    gcp.wait(gcp.instances.suspend_unary(project=PROJECT, zone=ZONE, instance="vm-1"))
    assert gcp.status() == "SUSPENDED"
    with pytest.raises(exceptions.BadRequest):
        gcp.instances.start_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    gcp.wait(gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1"))
    assert gcp.status() == "TERMINATED"


def test_by_default_reading_a_power_operation_done_hurries_it(emulator, gcp):
    """The emulator's default, which gcloud's conformance tests rely on: two reads finish it."""
    op = gcp.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gcp.status() == "STOPPING"
    assert [gcp.get(op).status, gcp.get(op).status] == [RUNNING, DONE]
    assert gcp.status() == "TERMINATED"


def test_a_reset_puts_the_default_timing_back(emulator, gcp):
    _timed(emulator, 5.0)
    with emulator.lock:
        emulator.reset()
    assert (emulator.polls_hurry, emulator.power_seconds) == (True, 30.0)
