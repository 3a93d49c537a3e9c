"""`python -m gameday.lab.azure --host H --port P --cert-dir D`: make a certificate in D, serve https."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from gameday.lab.azure import ResourceManagerEmulator, make_certificate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gameday.lab.azure", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert-dir", help="where ca.pem, cert.pem and key.pem are written "
                        "(default: a new temporary directory)")
    parser.add_argument("--page-size", type=int, default=1000, help="items per list page")
    args = parser.parse_args(argv)
    ca_pem, cert_pem, key_pem = make_certificate(args.cert_dir or tempfile.mkdtemp(prefix="arm-"))
    emulator = ResourceManagerEmulator(args.host, args.port, cert_pem, key_pem,
                                       page_size=args.page_size)
    emulator.start()
    print(emulator.url, flush=True)
    print(f"CA bundle: {ca_pem}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
