"""Signed versions: keygen, sign, and loaders that trust one key refuse everything else."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from edge_node.heads import EdgeModel
from edgecut.cli import main
from partitioner.deploy.artifact import check_split, load_split
from partitioner.deploy.repository import read_model
from partitioner.deploy.signing import (
    CONTEXT,
    KeyFileError,
    SignatureError,
    generate_key_pair,
    load_signing_key,
    load_trust_key,
    signed_message,
)
from partitioner.errors import ArtifactError

MODEL = "net"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from partitioner.planner import Planner

    planner = Planner.create("digits_cnn")
    return planner.split(planner.cut_after("pool2"), tmp_path_factory.mktemp("split") / "s")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    owner, owner_pub = generate_key_pair(root / "owner.pem")
    other, other_pub = generate_key_pair(root / "other.pem")
    return {"owner": owner, "owner.pub": owner_pub, "other": other, "other.pub": other_pub}


@pytest.fixture
def repo(split: Path, tmp_path: Path, keys: dict[str, Path]) -> Path:
    """A repository with versions 1 and 2 and a local model, signed by the owner's key."""
    root = tmp_path / "repo"
    for name in ("1", "2", "local"):
        shutil.copytree(split, root / MODEL / name)
    local = root / MODEL / "local" / "manifest.json"
    manifest = json.loads(local.read_text())  # the local model is edge-only: no tail
    del manifest["files"]["tail.pt2"]
    manifest["edge_only"] = True
    local.write_text(json.dumps(manifest))
    (root / MODEL / "local" / "tail.pt2").unlink()
    assert main(["repository", "sign", "--repository", str(root), "--key", str(keys["owner"])]) == 0
    return root


def _edit(path: Path, edit: Any) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_keygen_writes_a_private_key_only_its_owner_reads(keys: dict[str, Path]) -> None:
    assert stat.S_IMODE(keys["owner"].stat().st_mode) == 0o600
    assert keys["owner.pub"].name == "owner.pub.pem"
    assert "PRIVATE KEY" in keys["owner"].read_text()
    assert "PUBLIC KEY" in keys["owner.pub"].read_text()
    assert load_signing_key(keys["owner"]).key_id == load_trust_key(keys["owner.pub"]).key_id
    with pytest.raises(KeyFileError, match="already exists; keygen never overwrites"):
        generate_key_pair(keys["owner"])


def test_what_is_signed_is_the_manifest_without_its_signature(split: Path) -> None:
    manifest = json.loads((split / "manifest.json").read_text())
    reordered = dict(reversed(list(manifest.items())))
    message = signed_message(manifest)
    assert message.startswith(CONTEXT) and message == signed_message(reordered)
    assert message == signed_message({**manifest, "signature": {"anything": 1}})
    body = json.loads(message[len(CONTEXT) :])
    assert body == manifest and b" " not in message[len(CONTEXT) :].replace(b"rpi4 ", b"")


def test_a_signed_repository_loads_under_its_key(repo: Path, keys: dict[str, Path]) -> None:
    trust = load_trust_key(keys["owner.pub"])
    for name in ("1", "2", "local"):
        check_split(repo / MODEL / name, trust)
    load_split(repo / MODEL / "1", trust=trust)
    edge = EdgeModel.load(read_model(repo / MODEL), trust=trust)
    assert set(edge.heads) == {"1", "2"} and edge.local is not None


def _tamper_manifest(version: Path) -> None:
    _edit(version / "manifest.json", lambda m: m.update(codec="int8"))


def _tamper_file(version: Path) -> None:
    """Replace the head by another valid archive (the same members, zipped again) and fix the
    manifest's hash: only the signature can tell."""
    import zipfile

    from partitioner.deploy.files import sha256_file

    head = version / "head.pt2"
    with zipfile.ZipFile(head) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    with zipfile.ZipFile(head, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    _edit(
        version / "manifest.json",
        lambda m: m["files"].update(
            {"head.pt2": {"sha256": sha256_file(head), "bytes": head.stat().st_size}}
        ),
    )


def _strip(version: Path) -> None:
    _edit(version / "manifest.json", lambda m: m.pop("signature"))


@pytest.mark.parametrize(
    "damage,why",
    [
        (_strip, "not signed, and this node accepts only versions signed by key"),
        (_tamper_manifest, "signature does not match: the manifest or a file it lists changed"),
        (_tamper_file, "signature does not match"),
    ],
)
def test_unsigned_or_altered_versions_are_refused_naming_the_version(
    repo: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str], damage: Any, why: str
) -> None:
    version = repo / MODEL / "2"
    damage(version)
    trust = load_trust_key(keys["owner.pub"])
    with pytest.raises(SignatureError) as info:
        load_split(version, trust=trust)
    assert str(version) in str(info.value) and why in str(info.value)
    with pytest.raises(SignatureError, match=why):
        EdgeModel.load(read_model(repo / MODEL), trust=trust)
    load_split(version)  # without a trusted key the node checks hashes only
    code = main(
        [
            "edge",
            "run",
            "--repository",
            str(repo),
            "--cloud",
            "127.0.0.1:1",
            "--trust-key",
            str(keys["owner.pub"]),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and why in err and str(version) in err and err.count("\n") == 1


def test_another_keys_signature_is_refused(repo: Path, keys: dict[str, Path]) -> None:
    trust = load_trust_key(keys["other.pub"])
    with pytest.raises(SignatureError, match="signed by key [0-9a-f]{16}, but this node trusts"):
        load_split(repo / MODEL / "1", trust=trust)


def test_a_malformed_signature_is_refused_by_the_schema(repo: Path) -> None:
    _edit(repo / MODEL / "1" / "manifest.json", lambda m: m["signature"].update(value="x" * 88))
    with pytest.raises(ArtifactError, match="field 'signature.value'"):
        load_split(repo / MODEL / "1")


def test_signing_refuses_what_a_node_would_refuse(
    repo: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / MODEL / "2" / "head.pt2").write_bytes(b"not an archive")
    code = main(["repository", "sign", "--repository", str(repo), "--key", str(keys["owner"])])
    err = capsys.readouterr().err
    assert code == 2 and "head.pt2 is 14 bytes, manifest says" in err


@pytest.mark.parametrize(
    "setup,why",
    [
        (lambda p, k: p.write_text("not a key"), "expected a PEM Ed25519 public key"),
        (lambda p, k: p.write_bytes(k["owner"].read_bytes()), "expected a PEM Ed25519 public key"),
        (lambda p, k: p.mkdir(), "is not a file"),
        (lambda p, k: None, "does not exist"),
    ],
)
def test_bad_trust_keys_are_one_line(
    tmp_path: Path, keys: dict[str, Path], repo: Path, capsys: pytest.CaptureFixture[str],
    setup: Any, why: str,
) -> None:  # fmt: skip
    path = tmp_path / "pub.pem"
    setup(path, keys)
    with pytest.raises(KeyFileError, match=why):
        load_trust_key(path)
    code = main(["edge", "run", "--repository", str(repo), "--cloud", "127.0.0.1:1",
                 "--trust-key", str(path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and why in err and err.count("\n") == 1


def test_a_private_key_others_can_read_is_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    loose = tmp_path / "loose.pem"
    shutil.copy(keys["owner"], loose)
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match="can be read by others \\(mode 644\\)"):
        load_signing_key(loose)
    public = tmp_path / "public.pem"
    shutil.copy(keys["owner.pub"], public)
    public.chmod(0o600)
    with pytest.raises(KeyFileError, match="expected a PEM Ed25519 private key"):
        load_signing_key(public)
