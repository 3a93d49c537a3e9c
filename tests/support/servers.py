"""The real servers of a test session: Temporal dev server, moto behind the fault proxy, and the
Compute Engine emulator (in-process)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gameday.lab.aws import AwsFaultProxy
from gameday.lab.azure import ResourceManagerEmulator, make_certificate
from gameday.lab.faults import FaultConfig, FaultRule
from gameday.lab.gcp import ComputeEmulator
from gameday.lab.services import LOOPBACK, Service, free_port, start_moto, start_temporal


@dataclass
class Servers:
    state_dir: Path
    temporal: Service
    moto: Service
    aws_proxy: AwsFaultProxy
    gcp: ComputeEmulator
    env: dict[str, str] = field(default_factory=dict)
    azure: ResourceManagerEmulator | None = None

    @classmethod
    def start(cls) -> Servers:
        state_dir = Path(tempfile.mkdtemp(prefix="gameday-test-"))
        temporal = start_temporal(state_dir, free_port())
        moto = start_moto(state_dir, free_port())
        proxy = AwsFaultProxy(f"http://{LOOPBACK}:{moto.port}").start()
        gcp = ComputeEmulator(host=LOOPBACK, port=0).start()
        azure_ca, azure_cert, azure_key = make_certificate(state_dir / "azure-certs")
        azure = ResourceManagerEmulator(LOOPBACK, 0, azure_cert, azure_key).start()
        env = {
            "TEMPORAL_ADDRESS": f"{LOOPBACK}:{temporal.port}",
            "TEMPORAL_NAMESPACE": "default",
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "GAMEDAY_GCP_ENDPOINT": gcp.url,
            "GAMEDAY_AZURE_ENDPOINT": azure.url,
            "GAMEDAY_AZURE_CA_BUNDLE": azure_ca,
        }
        return cls(state_dir, temporal, moto, proxy, gcp, env, azure=azure)

    def stop(self) -> None:
        if self.azure is not None:
            self.azure.stop()
        self.gcp.stop()
        self.aws_proxy.stop()
        self.moto.stop()
        self.temporal.stop()

    def reset_aws(self) -> None:
        httpx.post(f"http://{LOOPBACK}:{self.moto.port}/moto-api/reset").raise_for_status()
        self.aws_faults()

    def aws_faults(self, *rules: FaultRule, seed: int = 0) -> None:
        self.aws_proxy.faults.configure(FaultConfig(rules=list(rules), seed=seed))
        self.aws_proxy.faults.clear_calls()

    def aws_calls(self, key: str | None = None) -> list[dict[str, Any]]:
        calls = self.aws_proxy.faults.call_log()
        return [c for c in calls if key is None or c["key"] == key]

    def reset_gcp(self) -> None:
        """Forget every GCP resource, fault rule and logged call."""
        with self.gcp.lock:
            self.gcp.reset()
        self.gcp_faults()

    def gcp_faults(self, *rules: FaultRule, seed: int = 0) -> None:
        self.gcp.faults.configure(FaultConfig(rules=list(rules), seed=seed))
        self.gcp.faults.clear_calls()

    def gcp_calls(self, key: str | None = None) -> list[dict[str, Any]]:
        calls = self.gcp.faults.call_log()
        return [c for c in calls if key is None or c["key"] == key]

    def reset_azure(self) -> None:
        """Forget every Azure resource, fault rule and logged call."""
        assert self.azure is not None
        with self.azure.lock:
            self.azure.reset()
        self.azure_faults()

    def azure_faults(self, *rules: FaultRule, seed: int = 0) -> None:
        assert self.azure is not None
        self.azure.faults.configure(FaultConfig(rules=list(rules), seed=seed))
        self.azure.faults.clear_calls()

    def azure_calls(self, key: str | None = None) -> list[dict[str, Any]]:
        assert self.azure is not None
        calls = self.azure.faults.call_log()
        return [c for c in calls if key is None or c["key"] == key]

    def apply_env(self) -> None:
        os.environ.update(self.env)
