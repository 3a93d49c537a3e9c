"""Signing an approval on the approver's machine (contract §8): `ssh-keygen -Y sign`, the tool every
engineer already has, with the key they already use for git or SSH.

The key file may be a private key (ssh-keygen asks for its passphrase on the terminal) or a public
key whose private half is in ssh-agent, as `ssh-keygen -Y sign -f` itself allows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gameday.errors import UserError
from gameday.signatures import NAMESPACE, SignatureRefused, parse_signature


def sign_approval(text: str, key_file: Path) -> str:
    """The armored signature of exactly `text` (no newline added) by `key_file`, namespace
    `gameday`; a `UserError` in one sentence when ssh-keygen cannot make it."""
    if not key_file.is_file():
        raise UserError(f"--sign-with: no such key file {key_file}")
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise UserError("--sign-with needs ssh-keygen (OpenSSH 8.1 or later), and it is not on PATH")
    try:
        done = subprocess.run([keygen, "-Y", "sign", "-n", NAMESPACE, "-f", str(key_file)],
                              input=text.encode(), capture_output=True, check=False)
    except OSError as error:
        raise UserError(f"--sign-with: ssh-keygen could not be run ({error.strerror or error})") from None
    said = [line for line in done.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("Signing data on standard input")]
    if done.returncode != 0:
        why = said[-1].strip() if said else f"exit status {done.returncode}"
        raise UserError(f"--sign-with: ssh-keygen could not sign with {key_file}: {why}")
    armored = done.stdout.decode(errors="replace")
    try:
        parse_signature(armored)
    except SignatureRefused as refused:
        raise UserError(f"--sign-with: ssh-keygen wrote no usable signature ({refused})") from None
    return armored
