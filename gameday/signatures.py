"""Signed approvals (contract §8): OpenSSH public keys and `ssh-keygen -Y sign` signatures, checked
in pure Python.

A signature is the SSHSIG format of openssh's PROTOCOL.sshsig, the one git uses for signed commits.
Checking it needs no network, no clock and no subprocess, so the workflow does it itself: the same
signature over the same text always gives the same answer, on the first run and on every replay.
Every refusal is a `SignatureRefused` whose message is one sentence saying why.

Every call into `cryptography` runs with imports passed through Temporal's sandbox: the package
imports modules on demand (on a failed verification, for one), and a native module imported anew
inside the sandbox aborts the worker process. Outside a workflow that changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from temporalio import workflow

NAMESPACE = "gameday"
"""What `-n` says when signing: a signature made for git or for files is not an approval."""
APPROVAL_PREFIX = "gameday-approval:v1:"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "ssh-rsa")
MIN_RSA_BITS = 2048

_ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_VERSION = 1
_MESSAGE_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "ecdsa-sha2-nistp256": hashes.SHA256, "ecdsa-sha2-nistp384": hashes.SHA384,
    "ecdsa-sha2-nistp521": hashes.SHA512,
}
_RSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"rsa-sha2-256": hashes.SHA256,
                                                     "rsa-sha2-512": hashes.SHA512}


class SignatureRefused(ValueError):
    """A key or signature that does not make an approval count; the message says why."""


def approval_text(workflow_id: str, gate: str, plan_hash: str) -> str:
    """The exact text an approver signs: this run, this gate (`start` or a step id), this plan."""
    return f"{APPROVAL_PREFIX}{workflow_id}:{gate}:{plan_hash}"


# --- the SSH wire format (RFC 4251 §5) ----------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._at = 0
        self._what = what

    def string(self, field: str) -> bytes:
        if self._at + 4 > len(self._data):
            raise SignatureRefused(f"the {self._what} is truncated: it ends before its {field}")
        size = int.from_bytes(self._data[self._at:self._at + 4], "big")
        start = self._at + 4
        if start + size > len(self._data):
            raise SignatureRefused(f"the {self._what} is truncated: it ends inside its {field}")
        self._at = start + size
        return self._data[start:self._at]

    def text(self, field: str) -> str:
        try:
            return self.string(field).decode("ascii")
        except UnicodeDecodeError:
            raise SignatureRefused(f"the {self._what}'s {field} is not text") from None

    def raw(self, size: int, field: str) -> bytes:
        if self._at + size > len(self._data):
            raise SignatureRefused(f"the {self._what} is truncated: it ends inside its {field}")
        self._at += size
        return self._data[self._at - size:self._at]

    def end(self) -> None:
        if self._at != len(self._data):
            raise SignatureRefused(f"the {self._what} has {len(self._data) - self._at} bytes after "
                                   "its end")


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _mpint(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


# --- public keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key as `~/.ssh/id_ed25519.pub` holds it."""

    kind: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: `SHA256:` and the unpadded base64 of the key's digest."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def crypto_key(self) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        line = f"{self.kind} {base64.b64encode(self.blob).decode()}".encode()
        with workflow.unsafe.imports_passed_through():
            key = serialization.load_ssh_public_key(line)
        assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        return key


def parse_public_key(line: str) -> PublicKey:
    """The key in one line `TYPE BASE64 [COMMENT]`; `SignatureRefused` saying what is wrong."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise SignatureRefused("not an OpenSSH public key line (like 'ssh-ed25519 AAAAC3Nz... "
                               "you@laptop', the contents of ~/.ssh/id_ed25519.pub)")
    kind, encoded = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise SignatureRefused(f"key type {kind!r} is not supported (use one of: {', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused(f"the {kind} key is not valid base64") from None
    key = PublicKey(kind=kind, blob=blob, comment=parts[2] if len(parts) > 2 else "")
    _check_key_blob(key)
    return key


def _check_key_blob(key: PublicKey) -> None:
    reader = _Reader(key.blob, f"{key.kind} key")
    inner = reader.text("type")
    if inner != key.kind:
        raise SignatureRefused(f"the key says {key.kind} but its data holds a {inner} key")
    if key.kind == "ssh-ed25519":
        if len(reader.string("public key")) != 32:
            raise SignatureRefused("the ssh-ed25519 key is not 32 bytes long")
    elif key.kind == "ssh-rsa":
        reader.string("exponent")
        reader.string("modulus")
    else:
        curve = reader.text("curve name")
        if curve != key.kind.removeprefix("ecdsa-sha2-"):
            raise SignatureRefused(f"the {key.kind} key names curve {curve!r}")
        reader.string("public point")
    reader.end()
    try:
        crypto = key.crypto_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SignatureRefused(f"the {key.kind} key is malformed ({error})") from None
    if isinstance(crypto, rsa.RSAPublicKey) and crypto.key_size < MIN_RSA_BITS:
        raise SignatureRefused(f"the ssh-rsa key has {crypto.key_size} bits; at least {MIN_RSA_BITS} "
                               "are needed")


# --- signatures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """What an SSHSIG signature says about itself (nothing here is checked yet)."""

    public_key: bytes
    namespace: str
    reserved: bytes
    hash_algorithm: str
    kind: str
    value: bytes

    @property
    def fingerprint(self) -> str:
        return PublicKey(kind="", blob=self.public_key, comment="").fingerprint


def parse_signature(armored: str) -> Signature:
    """The fields of an armored SSH signature; `SignatureRefused` when it is not one."""
    lines = [line.strip() for line in armored.strip().splitlines() if line.strip()]
    if not lines or lines[0] != _ARMOR_BEGIN:
        raise SignatureRefused(f"the signature is not an armored SSH signature (it must start with "
                               f"{_ARMOR_BEGIN}, as ssh-keygen -Y sign writes it)")
    if _ARMOR_END not in lines:
        raise SignatureRefused(f"the signature is truncated: it has no {_ARMOR_END} line")
    end = lines.index(_ARMOR_END)
    if end != len(lines) - 1:
        raise SignatureRefused(f"the signature has text after its {_ARMOR_END} line")
    try:
        data = base64.b64decode("".join(lines[1:end]), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused("the signature is truncated or altered: its armor is not valid "
                               "base64") from None
    reader = _Reader(data, "signature")
    if reader.raw(len(_MAGIC), "magic") != _MAGIC:
        raise SignatureRefused("the signature is not an SSHSIG signature (its data does not start "
                               "with SSHSIG)")
    version = int.from_bytes(reader.raw(4, "version"), "big")
    if version != _VERSION:
        raise SignatureRefused(f"the signature is SSHSIG version {version}; only version {_VERSION} "
                               "is understood")
    public_key = reader.string("public key")
    namespace = reader.text("namespace")
    reserved = reader.string("reserved field")
    hash_algorithm = reader.text("hash algorithm")
    inner = _Reader(reader.string("signature value"), "signature")
    reader.end()
    kind = inner.text("signature type")
    value = inner.string("signature value")
    inner.end()
    return Signature(public_key=public_key, namespace=namespace, reserved=reserved,
                     hash_algorithm=hash_algorithm, kind=kind, value=value)


def verify(armored: str, text: str, key: PublicKey, namespace: str = NAMESPACE) -> Signature:
    """The signature, once it is proven to be `key`'s over exactly `text` in `namespace`; else
    `SignatureRefused` with the first reason it fails."""
    signature = parse_signature(armored)
    if signature.namespace != namespace:
        raise SignatureRefused(f"the signature is for namespace {signature.namespace!r}, not "
                               f"{namespace!r} (sign with ssh-keygen -Y sign -n {namespace})")
    if signature.public_key != key.blob:
        raise SignatureRefused(f"the signature was made with key {signature.fingerprint}, not the "
                               f"approver's key {key.fingerprint}")
    message_hash = _MESSAGE_HASHES.get(signature.hash_algorithm)
    if message_hash is None:
        raise SignatureRefused(f"the signature's hash algorithm {signature.hash_algorithm!r} is not "
                               f"one of {', '.join(_MESSAGE_HASHES)}")
    signed = (_MAGIC + _string(signature.namespace.encode()) + _string(signature.reserved)
              + _string(signature.hash_algorithm.encode())
              + _string(message_hash(text.encode()).digest()))
    if not _valid(key, signature, signed):
        raise SignatureRefused(f"the signature by key {key.fingerprint} is not over the text {text} "
                               "(it was made for another run, gate or plan, or altered)")
    return signature


def proves(armored: str, text: str, key: PublicKey, namespace: str = NAMESPACE) -> bool:
    """Whether `verify` accepts: for telling why a signature is for something else."""
    try:
        verify(armored, text, key, namespace)
    except SignatureRefused:
        return False
    return True


def _valid(key: PublicKey, signature: Signature, signed: bytes) -> bool:
    with workflow.unsafe.imports_passed_through():
        return _verified(key, signature, signed)


def _verified(key: PublicKey, signature: Signature, signed: bytes) -> bool:
    crypto = key.crypto_key()
    try:
        if isinstance(crypto, ed25519.Ed25519PublicKey):
            _expect_kind(signature, "ssh-ed25519")
            crypto.verify(signature.value, signed)
        elif isinstance(crypto, ec.EllipticCurvePublicKey):
            _expect_kind(signature, key.kind)
            numbers = _Reader(signature.value, "ECDSA signature")
            r, s = _mpint(numbers.string("r")), _mpint(numbers.string("s"))
            numbers.end()
            crypto.verify(encode_dss_signature(r, s), signed, ec.ECDSA(_ECDSA_HASHES[key.kind]()))
        else:
            algorithm = _RSA_HASHES.get(signature.kind)
            if algorithm is None:
                raise SignatureRefused(f"an ssh-rsa key signs with {' or '.join(_RSA_HASHES)}, not "
                                       f"{signature.kind!r}")
            crypto.verify(signature.value, signed, padding.PKCS1v15(), algorithm())
    except SignatureRefused:
        raise
    except (InvalidSignature, ValueError):  # ValueError: numbers no signature of this key can hold
        return False
    return True


def _expect_kind(signature: Signature, kind: str) -> None:
    if signature.kind != kind:
        raise SignatureRefused(f"the signature is of type {signature.kind!r}, not {kind!r}")


def what_differs(signed_text: str, workflow_id: str, gate: str, plan_hash: str) -> str:
    """Which part of the approval text a signature was made for differs from this gate's: for a
    refusal that says "for another run" rather than only "does not match"."""
    if not signed_text.startswith(APPROVAL_PREFIX):
        return f"it was made over other text ({signed_text[:120]!r}), not an approval"
    rest = signed_text[len(APPROVAL_PREFIX):]
    run_prefix, tail = f"{workflow_id}:", f":{gate}:{plan_hash}"
    if rest.endswith(tail) and not rest.startswith(run_prefix):
        return f"it was made for run {rest[:-len(tail)][:120]}, not this run {workflow_id}"
    if rest.startswith(run_prefix):
        after = rest[len(run_prefix):]
        if after.endswith(f":{plan_hash}"):
            return f"it was made for gate {after[:-len(plan_hash) - 1][:80]}, not {gate}"
        if after.startswith(f"{gate}:"):
            return f"it was made for plan {after[len(gate) + 1:][:80]}, not this run's plan {plan_hash}"
    return f"it was made for {signed_text[:200]}, not {approval_text(workflow_id, gate, plan_hash)}"
