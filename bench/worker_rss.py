"""`python -m bench.worker_rss`: idle RSS of a worker process per role, and of one serving all.

Run by hand. Starts a Temporal dev server on free loopback ports, then `python -m worker --role R`
for each role and `python -m worker` (every role), each on a task queue of its own; once each has
logged that it polls, waits `--settle` seconds and prints VmRSS and VmHWM in MB. Stops everything
it started.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench.run import memory_kb, rss_mb
from gameday.config import WORKER_ROLES
from gameday.lab.manager import AWS_ENV
from gameday.lab.services import LOOPBACK, Service, free_port, start_module, start_temporal

READY = "gameday worker on task queue"


def measure(settle: float) -> dict[str, dict[str, float]]:
    directory = Path(tempfile.mkdtemp(prefix="gameday-worker-rss-"))
    temporal = start_temporal(directory, free_port())
    started: list[Service] = [temporal]
    env = {"TEMPORAL_ADDRESS": f"{LOOPBACK}:{temporal.port}", "TEMPORAL_NAMESPACE": "default",
           **AWS_ENV}
    try:
        runs = {role: ["--role", role] for role in WORKER_ROLES} | {"all roles": []}
        workers = {}
        for name, args in runs.items():
            queue = f"rss-{uuid.uuid4().hex[:8]}"
            workers[name] = start_module(f"worker-{name.replace(' ', '-')}", "worker", args, 0,
                                         directory, env={**env, "GAMEDAY_TASK_QUEUE": queue})
            started.append(workers[name])
        deadline = time.monotonic() + 120
        for worker in workers.values():
            log = directory / f"{worker.name}.log"
            while READY not in (log.read_text(errors="replace") if log.exists() else ""):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{worker.name} did not start; see {log}")
                time.sleep(0.2)
        time.sleep(settle)
        figures = {}
        for name, worker in workers.items():
            kb = memory_kb(worker.pid)
            figures[name] = {"rss": rss_mb(kb.get("VmRSS", 0)), "hwm": rss_mb(kb.get("VmHWM", 0))}
        return figures
    finally:
        for service in reversed(started):
            service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_rss", description=__doc__)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before measuring")
    args = parser.parse_args()
    figures = measure(args.settle)
    print("| worker process | idle VmRSS MB | VmHWM MB |\n| --- | --- | --- |")
    for name, found in figures.items():
        print(f"| {name} | {found['rss']:.0f} | {found['hwm']:.0f} |")
    split = sum(figures[role]["rss"] for role in WORKER_ROLES)
    print(f"\none process per role: {split:.0f} MB in all, the largest "
          f"{max(figures[role]['rss'] for role in WORKER_ROLES):.0f} MB; one process for every "
          f"role: {figures['all roles']['rss']:.0f} MB")


if __name__ == "__main__":
    main()
