"""`python -m gameday.lab.gcp --host 127.0.0.1 --port P [--seed]`: serve the emulator in the foreground."""

from __future__ import annotations

import argparse
import sys
import threading

from gameday.lab.gcp.emulator import ComputeEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gameday.lab.gcp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", action="store_true", help="build the lab topology at start")
    parser.add_argument("--project", default="gameday-lab", help="project that --seed fills")
    args = parser.parse_args(argv)
    emulator = ComputeEmulator(host=args.host, port=args.port).start()
    print(emulator.url, flush=True)
    if args.seed:
        from gameday.lab.gcp.seed import seed_gcp

        print(seed_gcp(emulator.url, args.project), file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
