"""The SSHSIG verifier (contract §8) against signatures made by the real `ssh-keygen -Y sign`."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gameday.errors import UserError
from gameday.signatures import (
    SignatureRefused,
    approval_text,
    parse_public_key,
    parse_signature,
    verify,
    what_differs,
)
from gameday.signing import sign_approval

KEY_TYPES = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa-256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa-384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa-521": ["-t", "ecdsa", "-b", "521"],
    "rsa-3072": ["-t", "rsa", "-b", "3072"],
}
RUN, PLAN = "q4-outage-20261201-101500", "sha256:0123456789abcdef0123456789abcdef"
TEXT = approval_text(RUN, "start", PLAN)


def make_key(directory: Path, name: str, *kind: str) -> Path:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "", "-C", f"{name}@test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def sign(key: Path, text: str, namespace: str = "gameday", *options: str) -> str:
    done = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", namespace, *options, "-f", str(key)],
                          input=text.encode(), capture_output=True, check=True)
    return done.stdout.decode()


def public(key: Path):
    return parse_public_key(key.with_suffix(".pub").read_text())


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    made = {name: make_key(directory, name, *kind) for name, kind in KEY_TYPES.items()}
    made["other"] = make_key(directory, "other", "-t", "ed25519")
    return made


def refusal(armored: str, key, text: str = TEXT) -> str:
    with pytest.raises(SignatureRefused) as refused:
        verify(armored, text, key)
    return str(refused.value)


def _armor(blob: bytes) -> str:
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i:i + 70] for i in range(0, len(encoded), 70)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"]) + "\n"


# --- good signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_a_signature_by_each_key_type_verifies(keys, kind):
    key = public(keys[kind])
    signature = verify(sign(keys[kind], TEXT), TEXT, key)
    assert signature.namespace == "gameday"
    assert signature.hash_algorithm == "sha512"


@pytest.mark.parametrize("kind", ["ed25519", "rsa-3072"])
def test_the_fingerprint_is_the_one_ssh_keygen_prints(keys, kind):
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(keys[kind].with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
    assert public(keys[kind]).fingerprint == re.search(r"SHA256:\S+", printed).group(0)


def test_a_sha256_signature_verifies(keys):
    armored = sign(keys["ecdsa-256"], TEXT, "gameday", "-O", "hashalg=sha256")
    assert verify(armored, TEXT, public(keys["ecdsa-256"])).hash_algorithm == "sha256"


def test_sign_approval_signs_exactly_the_text(keys):
    armored = sign_approval(TEXT, keys["ed25519"])
    verify(armored, TEXT, public(keys["ed25519"]))
    assert "not over the text" in refusal(armored, public(keys["ed25519"]), TEXT + "\n")


@pytest.fixture
def agent(tmp_path) -> Iterator[dict[str, str]]:
    """An ssh-agent of this test's own, stopped by its pid when the test ends."""
    socket = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(socket), "-s"], capture_output=True, text=True,
                             check=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started).group(1))
    try:
        yield {"SSH_AUTH_SOCK": str(socket)}
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_public_key_file_signs_through_ssh_agent(keys, agent, tmp_path, monkeypatch):
    """`--sign-with id_ed25519.pub` with the private key only in the agent, as ssh-keygen allows."""
    private = make_key(tmp_path, "in-agent", "-t", "ed25519")
    subprocess.run(["ssh-add", "-q", str(private)], env={**os.environ, **agent}, check=True,
                   capture_output=True)
    private.unlink()
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["SSH_AUTH_SOCK"])
    armored = sign_approval(TEXT, private.with_suffix(".pub"))
    verify(armored, TEXT, parse_public_key(private.with_suffix(".pub").read_text()))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    with pytest.raises(UserError, match=r"ssh-keygen could not sign with .*in-agent\.pub"):
        sign_approval(TEXT, private.with_suffix(".pub"))


def test_sign_approval_names_a_missing_key_file(tmp_path):
    with pytest.raises(UserError, match="no such key file"):
        sign_approval(TEXT, tmp_path / "id_ed25519")


# --- every refusal, with its reason ------------------------------------------------------------


def test_no_armor_is_refused(keys):
    key = public(keys["ed25519"])
    assert "not an armored SSH signature" in refusal("", key)
    assert "not an armored SSH signature" in refusal("-----BEGIN PGP SIGNATURE-----\nabc\n", key)


def test_malformed_armor_is_refused(keys):
    armored = sign(keys["ed25519"], TEXT)
    key = public(keys["ed25519"])
    lines = armored.splitlines()
    assert "not valid base64" in refusal("\n".join([lines[0], "!!!not base64!!!", lines[-1]]), key)
    assert "text after its -----END SSH SIGNATURE----- line" in refusal(armored + "trailing\n", key)
    assert "not an SSHSIG signature" in refusal(_armor(b"SSHSIH" + b"\0" * 40), key)
    assert "version 2" in refusal(_armor(b"SSHSIG\0\0\0\x02" + b"\0" * 40), key)


def test_a_truncated_signature_is_refused(keys):
    armored = sign(keys["ed25519"], TEXT)
    key = public(keys["ed25519"])
    lines = armored.splitlines()
    assert "truncated: it has no -----END SSH SIGNATURE----- line" in refusal("\n".join(lines[:-1]), key)
    assert "truncated or altered" in refusal("\n".join([*lines[:-2], lines[-1]]), key)
    blob = base64.b64decode("".join(lines[1:-1]))
    for cut in (8, 30, len(blob) - 10):
        assert "is truncated: it ends" in refusal(_armor(blob[:cut]), key)


def test_an_altered_signature_is_refused(keys):
    armored = sign(keys["ecdsa-384"], TEXT)
    blob = bytearray(base64.b64decode("".join(armored.splitlines()[1:-1])))
    blob[-5] ^= 0x01
    assert "not over the text" in refusal(_armor(bytes(blob)), public(keys["ecdsa-384"]))


def test_the_wrong_namespace_is_refused(keys):
    armored = sign(keys["ed25519"], TEXT, "git")
    assert refusal(armored, public(keys["ed25519"])) == (
        "the signature is for namespace 'git', not 'gameday' (sign with ssh-keygen -Y sign -n gameday)")


def test_another_key_is_refused_naming_both_fingerprints(keys):
    """Another person's key, over exactly the right text, claiming the approver's identity."""
    armored = sign(keys["other"], TEXT)
    mine, theirs = public(keys["ed25519"]), public(keys["other"])
    assert refusal(armored, mine) == (f"the signature was made with key {theirs.fingerprint}, not the "
                                      f"approver's key {mine.fingerprint}")


@pytest.mark.parametrize("signed, differs", [
    (approval_text("q4-outage-20260901-101500", "start", PLAN),
     "it was made for run q4-outage-20260901-101500, not this run " + RUN),
    (approval_text(RUN, "blackhole-use1a", PLAN), "it was made for gate blackhole-use1a, not start"),
    (approval_text(RUN, "start", "sha256:ffffffffffffffffffffffffffffffff"),
     f"it was made for plan sha256:ffffffffffffffffffffffffffffffff, not this run's plan {PLAN}"),
    ("deploy prod", "it was made over other text ('deploy prod'), not an approval"),
])
def test_a_signature_for_another_run_gate_or_plan_is_refused(keys, signed, differs):
    key = public(keys["ecdsa-521"])
    armored = sign(keys["ecdsa-521"], signed)
    assert refusal(armored, key) == (f"the signature by key {key.fingerprint} is not over the text "
                                     f"{TEXT} (it was made for another run, gate or plan, or altered)")
    verify(armored, signed, key)
    assert what_differs(signed, RUN, "start", PLAN) == differs


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def test_an_rsa_sha1_signature_type_is_refused(keys):
    """PROTOCOL.sshsig: an RSA signature is rsa-sha2-512 or rsa-sha2-256, never SHA-1 ssh-rsa."""
    signature = parse_signature(sign(keys["rsa-3072"], TEXT))
    assert signature.kind == "rsa-sha2-512"
    forged = (b"SSHSIG" + (1).to_bytes(4, "big") + _string(signature.public_key)
              + _string(signature.namespace.encode()) + _string(signature.reserved)
              + _string(signature.hash_algorithm.encode())
              + _string(_string(b"ssh-rsa") + _string(signature.value)))
    assert "an ssh-rsa key signs with rsa-sha2-256 or rsa-sha2-512, not 'ssh-rsa'" in refusal(
        _armor(forged), public(keys["rsa-3072"]))


# --- public keys ------------------------------------------------------------------------------


def test_public_keys_are_refused_with_a_reason(keys, tmp_path):
    ed25519 = keys["ed25519"].with_suffix(".pub").read_text().split()
    ecdsa = keys["ecdsa-256"].with_suffix(".pub").read_text().split()
    point = bytearray(base64.b64decode(ecdsa[1]))
    point[-1] ^= 0x01
    off_curve = base64.b64encode(bytes(point)).decode()
    weak = make_key(tmp_path, "weak", "-t", "rsa", "-b", "1024").with_suffix(".pub").read_text()
    cases = {
        "ic@example.com": "not an OpenSSH public key line",
        "ssh-dss AAAAB3NzaC1kc3M=": "key type 'ssh-dss' is not supported",
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t":
            "key type 'sk-ssh-ed25519@openssh.com' is not supported",
        f"ssh-ed25519 {ed25519[1][:-3]}": "not valid base64",
        f"ssh-ed25519 {ecdsa[1]}": "the key says ssh-ed25519 but its data holds a ecdsa-sha2-nistp256 key",
        f"ecdsa-sha2-nistp256 {ecdsa[1][:-8]}": "the ecdsa-sha2-nistp256 key is truncated: it ends "
                                                "inside its public point",
        f"ecdsa-sha2-nistp256 {off_curve}": "the ecdsa-sha2-nistp256 key is malformed",
        weak: "the ssh-rsa key has 1024 bits; at least 2048 are needed",
    }
    for line, reason in cases.items():
        with pytest.raises(SignatureRefused, match=re.escape(reason)):
            parse_public_key(line)
