"""The local lab: a Temporal dev server with its UI, moto behind the AWS fault proxy, the GCP and
Azure emulators, the "shop" whose health follows the faults, and the worker split by role (one
process for the workflows and one per cloud, as in production: each cloud's SDK in one process
only, each with its log `worker-<role>.log`), all on loopback, started in the background and seeded.

`up(realistic=True)` (`gameday lab up --realistic`) turns on the realistic mode of the AWS proxy
and both emulators once the topology is seeded: per-call latency and the clouds' documented rate
limits, over-limit calls answered as each cloud does (`gameday.lab.realistic`).

State (pids, ports, variables) lives in one JSON file in the lab's directory
(`GAMEDAY_LAB_DIR`, default `~/.local/state/gameday/lab`), so `status`, `env` and `down` work
from any shell. The lab also prepares a private gcloud configuration in `<directory>/gcloud`
(`gameday.lab.gcp.gcloud`) and exports it as `CLOUDSDK_CONFIG`, so after `eval "$(gameday lab env)"`
the operator's own `gcloud compute ...` shows the lab.

The seeded lab has two AWS accounts: the worker's own (moto's `123456789012`) and a second
(`210987654321`) with the target role `gameday-target` and a small shop
(`gameday.lab.aws.accounts.seed_target_account`), so a runbook over two accounts runs on a laptop
(`runbooks/lab/aws-two-account-zone-blackhole.yaml`); the sweep covers both
(`GAMEDAY_SWEEP_AWS_ACCOUNTS`) and `status` names them (`aws_accounts`).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from gameday.config import WORKER_ROLES
from gameday.errors import UserError
from gameday.lab.azure.az import az_env, write_az_config
from gameday.lab.gcp.gcloud import write_gcloud_config
from gameday.lab.realistic import RealisticConfig
from gameday.lab.services import (
    LOOPBACK,
    Service,
    free_port,
    port_is_free,
    start_module,
    start_moto,
    start_temporal,
    stop_pid,
)

TEMPORAL_PORT = 7233
UI_PORT = 8233
SHOP_PORT = 8270
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "gameday-lab",
    "AWS_SECRET_ACCESS_KEY": "gameday-lab",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    def __init__(self, directory: Path, fixed_ports: bool = True):
        self.directory = directory
        self.fixed_ports = fixed_ports
        self.state_file = directory / "state.json"

    @classmethod
    def default(cls) -> Lab:
        base = os.environ.get("GAMEDAY_LAB_DIR")
        if base:
            return cls(Path(base))
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return cls(state / "gameday" / "lab")

    # --- state ---------------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _port(self, preferred: int) -> int:
        return preferred if self.fixed_ports and port_is_free(preferred) else free_port()

    def status(self) -> dict[str, Any]:
        state = self._read()
        if state is None:
            raise UserError("the lab is not up; start it with `gameday lab up`")
        processes = {name: {"pid": pid, "running": _alive(pid)} for name, pid in state["pids"].items()}
        return {**state["endpoints"], "directory": str(self.directory), "processes": processes,
                "realistic": state.get("realistic", False), "env": state["env"]}

    # --- up and down ---------------------------------------------------------------------

    def up(self, seed: bool = True, realistic: bool = False) -> dict[str, Any]:
        state = self._read()
        if state and any(_alive(pid) for pid in state["pids"].values()):
            raise UserError(f"the lab is already up ({self.directory}); stop it with `gameday lab down`")
        self.directory.mkdir(parents=True, exist_ok=True)
        for log in self.directory.glob("*.log"):
            log.unlink()
        started: list[Service] = []
        try:
            endpoints = self._start(started, seed, realistic)
            if realistic:
                self.set_realistic(RealisticConfig(enabled=True))
            return endpoints
        except BaseException:
            for service in reversed(started):
                service.stop()
            self.state_file.unlink(missing_ok=True)
            raise

    def _start(self, started: list[Service], seed: bool, realistic: bool = False) -> dict[str, Any]:
        temporal_port, ui_port = self._port(TEMPORAL_PORT), self._port(UI_PORT)
        started.append(start_temporal(self.directory, temporal_port, ui_port))
        moto = start_moto(self.directory, free_port())
        started.append(moto)
        aws_port, gcp_port, azure_port = free_port(), free_port(), free_port()
        started.append(start_module("aws-proxy", "gameday.lab.aws", [
            "--port", str(aws_port), "--upstream", f"http://{LOOPBACK}:{moto.port}"],
            aws_port, self.directory))
        started.append(start_module("gcp", "gameday.lab.gcp", ["--port", str(gcp_port)], gcp_port,
                                    self.directory))
        certs = self.directory / "azure-certs"
        started.append(start_module("azure", "gameday.lab.azure", [
            "--port", str(azure_port), "--cert-dir", str(certs)], azure_port, self.directory))
        endpoints = {
            "temporal": f"{LOOPBACK}:{temporal_port}",
            "ui": f"http://{LOOPBACK}:{ui_port}",
            "aws_endpoint": f"http://{LOOPBACK}:{aws_port}",
            "moto_endpoint": f"http://{LOOPBACK}:{moto.port}",
            "gcp_endpoint": f"http://{LOOPBACK}:{gcp_port}",
            "azure_endpoint": f"https://{LOOPBACK}:{azure_port}",
            "azure_ca_bundle": str(certs / "ca.pem"),
        }
        env = {
            "TEMPORAL_ADDRESS": endpoints["temporal"],
            "TEMPORAL_NAMESPACE": "default",
            "GAMEDAY_TASK_QUEUE": "gameday",
            "AWS_ENDPOINT_URL": endpoints["aws_endpoint"],
            **AWS_ENV,
            "GAMEDAY_GCP_ENDPOINT": endpoints["gcp_endpoint"],
            "GAMEDAY_AZURE_ENDPOINT": endpoints["azure_endpoint"],
            "GAMEDAY_AZURE_CA_BUNDLE": endpoints["azure_ca_bundle"],
            "GAMEDAY_TEMPORAL_UI_URL": endpoints["ui"],
            "GAMEDAY_SWEEP_AWS_REGIONS": "us-east-1",
            "GAMEDAY_SWEEP_GCP_PROJECTS": "gameday-lab",
            "GAMEDAY_SWEEP_AZURE_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000000",
            "CLOUDSDK_CONFIG": str(write_gcloud_config(self.directory / "gcloud",
                                                       endpoints["gcp_endpoint"])),
            **az_env(write_az_config(self.directory / "azure", endpoints["azure_endpoint"],
                                     endpoints["azure_ca_bundle"])),
        }
        if seed:  # the workers sweep the second account from the start: it is seeded below
            from gameday.lab.aws.accounts import SECOND_ACCOUNT, TARGET_ROLE
            from gameday.lab.aws.zone_ids import OWN

            env["GAMEDAY_SWEEP_AWS_ACCOUNTS"] = SECOND_ACCOUNT
            env["GAMEDAY_LAB_AWS_TARGET_ACCOUNT"] = SECOND_ACCOUNT
            endpoints["aws_accounts"] = (f"{OWN} (the worker's own), {SECOND_ACCOUNT} "
                                         f"(as role {TARGET_ROLE})")
        if realistic:
            env["GAMEDAY_RATE_LIMITS"] = "on"  # workers pace to the clouds' rates, as on a real cloud
        shop_port = self._port(SHOP_PORT)  # the lab runbooks probe GAMEDAY_SHOP_URL, default 8270
        env["GAMEDAY_SHOP_URL"] = endpoints["shop"] = f"http://{LOOPBACK}:{shop_port}"
        started.append(start_module("shop", "gameday.lab.shop", ["--port", str(shop_port)], shop_port,
                                    self.directory, env={**os.environ, **env}))
        workers = [start_module(f"worker-{role}", "worker", ["--role", role], 0, self.directory,
                                env={**os.environ, **env}) for role in WORKER_ROLES]
        started += workers
        self._write(started, endpoints, env)
        self._wait_for_workers(workers)
        if seed:
            summary = self._seed(env)
            # what lab runbooks name that the cloud made up (moto's load balancer ARNs)
            env["GAMEDAY_LAB_AWS_WEB_LB"] = summary["aws"]["load_balancers"]["shop-web"]
            self._write(started, endpoints, env)
        return endpoints

    def _write(self, started: list[Service], endpoints: dict[str, str], env: dict[str, str]) -> None:
        state = {"pids": {s.name: s.pid for s in started}, "endpoints": endpoints, "env": env}
        self.state_file.write_text(json.dumps(state, indent=2))

    def _wait_for_workers(self, workers: list[Service], timeout: float = 60) -> None:
        """Until every worker logged that it polls its task queues (they start side by side)."""
        waiting = list(workers)
        deadline = time.monotonic() + timeout
        while True:
            for worker in list(waiting):
                log = self.directory / f"{worker.name}.log"
                if worker.process.poll() is not None:
                    raise UserError(f"the lab's {worker.name} exited; see {log}")
                if log.exists() and "gameday worker on task queue" in log.read_text(errors="replace"):
                    waiting.remove(worker)
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = ", ".join(str(self.directory / f"{w.name}.log") for w in waiting)
                raise UserError(f"the lab's workers did not start within {timeout:.0f}s; see {logs}")
            time.sleep(0.2)

    def _seed(self, env: dict[str, str]) -> dict[str, Any]:
        from gameday.lab.aws.accounts import SECOND_ACCOUNT, seed_target_account
        from gameday.lab.aws.databases import seed_databases
        from gameday.lab.aws.seed import seed_aws
        from gameday.lab.azure.peers_seed import seed_azure_peers
        from gameday.lab.azure.seed import seed_azure
        from gameday.lab.gcp.seed import seed_gcp

        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            summary = {
                "aws": {**seed_aws(), "db_clusters": seed_databases(),
                        "target_accounts": {SECOND_ACCOUNT: seed_target_account(SECOND_ACCOUNT)}},
                "gcp": seed_gcp(env["GAMEDAY_GCP_ENDPOINT"]),
                "azure": seed_azure(env["GAMEDAY_AZURE_ENDPOINT"], env["GAMEDAY_AZURE_CA_BUNDLE"],
                                    powered_off=True),
            }
            # the region partition's peering (not in seed_azure, whose shape other suites pin)
            summary["azure"]["peers"] = seed_azure_peers(env["GAMEDAY_AZURE_ENDPOINT"],
                                                         env["GAMEDAY_AZURE_CA_BUNDLE"])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        (self.directory / "topology.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary

    def set_realistic(self, config: RealisticConfig) -> dict[str, Any]:
        """Apply `config` to the AWS proxy and both emulators of the running lab; what each
        now reports (`GET /_emulator/limits`), by cloud."""
        state = self._read()
        if state is None:
            raise UserError("the lab is not up; start it with `gameday lab up`")
        endpoints = state["endpoints"]
        context = ssl.create_default_context(cafile=endpoints["azure_ca_bundle"])
        body = json.dumps(config.model_dump()).encode()
        reports = {}
        for cloud in ("aws", "gcp", "azure"):
            request = urllib.request.Request(
                f"{endpoints[f'{cloud}_endpoint']}/_emulator/limits", data=body, method="POST",
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30, context=context) as answer:
                reports[cloud] = json.loads(answer.read())
        state["realistic"] = config.enabled
        self.state_file.write_text(json.dumps(state, indent=2))
        return reports

    def down(self) -> int:
        state = self._read()
        if state is None:
            return 0
        stopped = 0
        for pid in reversed(list(state["pids"].values())):
            if _alive(pid):
                stop_pid(pid)
                stopped += 1
        self.state_file.unlink(missing_ok=True)
        return stopped


def main() -> None:
    """`python -m gameday.lab.manager up|down|foreground [--realistic]`; foreground (`make lab`) stops on
    Ctrl-C."""
    lab = Lab.default()
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    realistic = "--realistic" in sys.argv[2:]
    if command == "down":
        print(f"{lab.down()} processes stopped")
        return
    endpoints = lab.up(realistic=realistic)
    print(json.dumps(endpoints, indent=2))
    if command != "foreground":
        return
    print(f"\nTemporal UI: {endpoints['ui']}\nIn another shell: eval \"$(gameday lab env)\"\n"
          "Press Ctrl-C to stop the lab.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"\nlab stopped ({lab.down()} processes)")


if __name__ == "__main__":
    main()
