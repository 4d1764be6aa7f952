"""Signed split artifacts: a node loads only versions its owner's Ed25519 key signed.

The owner makes a key pair once (``edgecut repository keygen --out key.pem``), signs every
version of a repository (``edgecut repository sign --repository DIR --key key.pem``), and
starts nodes with ``--trust-key key.pub.pem``. A signature sits in the version's
``manifest.json`` and covers the rest of that manifest, which lists every file's sha256, so
it covers the files too (``docs/contracts.md``, "Signatures", defines the bytes signed)::

    {..., "signature": {"algorithm": "ed25519", "public_key_sha256": "<hex>", "value": "<b64>"}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from partitioner.deploy.files import NotRegularFileError, open_regular
from partitioner.errors import ArtifactError, EdgecutError

ALGORITHM = "ed25519"
SIGNATURE = "signature"
# Prefixed to what is signed, so a signature made for a manifest means nothing anywhere else.
CONTEXT = b"edgecut-manifest-signature-v1\n"
MAX_KEY_BYTES = 64 * 1024


class SignatureError(ArtifactError):
    """A version that is unsigned, signed by another key, or altered after signing."""


class KeyFileError(EdgecutError):
    """A key file that is missing, unreadable, too open, or not an Ed25519 PEM key."""


def signed_message(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers: the context line, then the canonical JSON of
    the manifest without its ``signature`` field (keys sorted, no spaces, ASCII only)."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return CONTEXT + text.encode("ascii")


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class TrustKey:
    """The public key a node accepts versions from (``--trust-key``)."""

    key: Ed25519PublicKey
    key_id: str  # sha256 of the raw 32-byte public key, hex
    path: Path

    def verify(self, manifest: dict[str, Any], where: str) -> None:
        """Raise :class:`SignatureError` unless this key signed ``manifest``."""
        signature = manifest.get(SIGNATURE)
        if signature is None:
            raise SignatureError(
                f"{where}: not signed, and this node accepts only versions signed by key "
                f"{self.key_id[:16]} ({self.path}); sign them with `edgecut repository sign`"
            )
        if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
            raise SignatureError(f"{where}: signature is not an {ALGORITHM} signature object")
        if signature.get("public_key_sha256") != self.key_id:
            raise SignatureError(
                f"{where}: signed by key {str(signature.get('public_key_sha256'))[:16]}, but this "
                f"node trusts key {self.key_id[:16]} ({self.path})"
            )
        try:
            value = base64.b64decode(str(signature.get("value")), validate=True)
            self.key.verify(value, signed_message(manifest))
        except (binascii.Error, ValueError, InvalidSignature):
            raise SignatureError(
                f"{where}: signature does not match: the manifest or a file it lists changed "
                "after it was signed"
            ) from None


@dataclass(frozen=True)
class SigningKey:
    """The private key ``edgecut repository sign`` signs with."""

    key: Ed25519PrivateKey
    key_id: str

    def sign(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """``manifest`` with its ``signature`` field (re)made by this key."""
        value = self.key.sign(signed_message(manifest))
        signed = {k: v for k, v in manifest.items() if k != SIGNATURE}
        signed[SIGNATURE] = {
            "algorithm": ALGORITHM,
            "public_key_sha256": self.key_id,
            "value": base64.b64encode(value).decode("ascii"),
        }
        return signed


def public_key_path(private: Path) -> Path:
    """Where ``keygen`` puts the public half of ``private``: key.pem -> key.pub.pem."""
    return private.with_name(private.stem + ".pub" + (private.suffix or ".pem"))


def generate_key_pair(out: str | Path) -> tuple[Path, Path]:
    """Write a new private key (mode 0600) at ``out`` and its public key beside it."""
    private_path = Path(out)
    public_path = public_key_path(private_path)
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; keygen never overwrites a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            f.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise KeyFileError(f"cannot write {exc.filename or private_path}: {exc.strerror}") from None
    return private_path, public_path


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with open_regular(path) as f:
            data = f.read(MAX_KEY_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except (IsADirectoryError, NotRegularFileError):
        raise KeyFileError(f"{what} {path} is not a file; expected a PEM file") from None
    except PermissionError:
        raise KeyFileError(f"{what} {path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyFileError(f"{what} {path} is larger than any PEM key")
    if what == "private key" and stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(
            f"private key {path} can be read by others (mode {stat.S_IMODE(mode):o}); "
            f"`chmod 600 {path}` first"
        )
    return data


def load_signing_key(path: str | Path) -> SigningKey:
    p = Path(path)
    data = _read_key_file(p, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"private key {p} is encrypted; expected an unencrypted PEM") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"private key {p}: expected a PEM Ed25519 private key (`edgecut repository "
            "keygen`), got something else"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"private key {p}: expected an Ed25519 key, got {type(key).__name__}")
    return SigningKey(key, _key_id(key.public_key()))


def load_trust_key(path: str | Path) -> TrustKey:
    p = Path(path)
    data = _read_key_file(p, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"public key {p}: expected a PEM Ed25519 public key (the .pub.pem `edgecut "
            "repository keygen` writes), got something else"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"public key {p}: expected an Ed25519 key, got {type(key).__name__}")
    return TrustKey(key, _key_id(key), p)
