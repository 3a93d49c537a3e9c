"""The real servers of a test session: Temporal dev server, moto behind the fault proxy."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.aws import AwsFaultProxy
from lab.faults import FaultRule
from lab.services import LOOPBACK, Service, free_port, start_moto, start_temporal


@dataclass
class Servers:
    state_dir: Path
    temporal: Service
    moto: Service
    aws_proxy: AwsFaultProxy
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls) -> Servers:
        state_dir = Path(tempfile.mkdtemp(prefix="gameday-test-"))
        temporal = start_temporal(state_dir, free_port())
        moto = start_moto(state_dir, free_port())
        proxy = AwsFaultProxy(f"http://{LOOPBACK}:{moto.port}").start()
        env = {
            "TEMPORAL_ADDRESS": f"{LOOPBACK}:{temporal.port}",
            "TEMPORAL_NAMESPACE": "default",
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        return cls(state_dir, temporal, moto, proxy, env)

    def stop(self) -> None:
        self.aws_proxy.stop()
        self.moto.stop()
        self.temporal.stop()

    def reset_aws(self) -> None:
        httpx.post(f"http://{LOOPBACK}:{self.moto.port}/moto-api/reset").raise_for_status()
        self.aws_faults()

    def aws_faults(self, *rules: FaultRule, seed: int = 0) -> None:
        from lab.faults import FaultConfig

        self.aws_proxy.faults.configure(FaultConfig(rules=list(rules), seed=seed))
        self.aws_proxy.faults.clear_calls()

    def aws_calls(self, key: str | None = None) -> list[dict[str, Any]]:
        calls = self.aws_proxy.faults.call_log()
        return [c for c in calls if key is None or c["key"] == key]

    def apply_env(self) -> None:
        os.environ.update(self.env)
