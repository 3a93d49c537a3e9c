"""`gameday worker --split`: one worker process per role, watched by this one.

Each cloud's SDK and credentials then live in one process only, and each process stays small.
SIGINT and SIGTERM are forwarded to every worker; when a worker dies on its own, the others are
stopped and the supervisor fails, so that whatever runs it (systemd, a pod) notices and restarts.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from gameday.errors import UserError

log = logging.getLogger("gameday.worker")


def worker_command(role: str) -> list[str]:
    return [sys.executable, "-m", "worker", "--role", role]


def supervise(roles: Sequence[str], grace: float = 60.0, poll: float = 0.2) -> None:
    """Run one worker per role until a signal stops them all (returns) or one dies (raises)."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for role in roles:
            if received:
                break
            children[role] = subprocess.Popen(worker_command(role), stdin=subprocess.DEVNULL)
        log.info("supervising the workers %s", ", ".join(
            f"{role} (pid {child.pid})" for role, child in children.items()))
        while not received:
            for role, child in children.items():
                if child.poll() is not None:
                    _stop(children, grace)
                    raise UserError(f"the {role} worker (pid {child.pid}) exited with code "
                                    f"{child.returncode}, so the other workers were stopped")
            time.sleep(poll)
        log.info("stopping the workers")
        _wait(children, grace)
        expected = {0, *(-signum for signum in received)}
        failed = [f"{role} (code {child.returncode})" for role, child in children.items()
                  if child.returncode not in expected]
        if failed:
            raise UserError(f"workers did not stop cleanly: {', '.join(failed)}")
    finally:
        _stop(children, grace)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(children: dict[str, subprocess.Popen[bytes]], grace: float) -> None:
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    _wait(children, grace)


def _wait(children: dict[str, subprocess.Popen[bytes]], grace: float) -> None:
    """Wait for every child up to `grace` seconds in all, then kill the ones left."""
    deadline = time.monotonic() + grace
    for child in children.values():
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
