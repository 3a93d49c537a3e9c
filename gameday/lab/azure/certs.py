"""A throwaway certificate authority and server certificate for the https emulator."""

from __future__ import annotations

from pathlib import Path

import trustme


def make_certificate(directory: str | Path) -> tuple[str, str, str]:
    """Write `ca.pem`, `cert.pem` and `key.pem` into `directory`; the certificate is valid for
    127.0.0.1 and localhost. Returns the three paths (CA, certificate chain, private key)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_pem))
    key_pem.chmod(0o600)
    return str(ca_pem), str(cert_pem), str(key_pem)
