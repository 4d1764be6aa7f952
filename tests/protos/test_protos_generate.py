"""The checked-in generated code is fresh, deterministic and loadable by the installed runtimes."""

from __future__ import annotations

import filecmp
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protos import generate

REPO = generate.REPO_ROOT


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_check_passes_on_checked_in_files() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "protos.generate", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "generated code is fresh" in proc.stdout


def test_every_source_has_its_four_outputs() -> None:
    sources = [str(s) for s in generate.proto_sources()]
    assert sources == ["protos/edgecut/v1/edgecut.proto", "protos/inference/grpc_service.proto"]
    assert generate.checked_in_outputs() == generate.expected_outputs(generate.proto_sources())


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = generate.generate(tmp_path / "a")
    second = generate.generate(tmp_path / "b")
    assert first == second
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", map(str, first), False)
    assert mismatch == [] and errors == []


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """protos/ sources and generated files copied into a scratch include root."""
    for rel in [*generate.proto_sources(), *generate.checked_in_outputs()]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    return tmp_path


def test_check_names_stale_missing_and_orphaned_files(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = Path("protos/inference/grpc_service_pb2.py")
    removed = Path("protos/edgecut/v1/edgecut_pb2_grpc.pyi")
    orphan = Path("protos/inference/old_pb2.py")
    with (repo_copy / edited).open("a") as f:
        f.write("# hand edit\n")
    (repo_copy / removed).unlink()
    (repo_copy / orphan).write_text("")

    assert generate.stale_files(repo_copy) == {
        "modified": [edited],
        "missing": [removed],
        "orphaned": [orphan],
    }
    assert generate.main(["--check", "--root", str(repo_copy)]) == 1
    err = capsys.readouterr().err
    assert "stale; run `python -m protos.generate`" in err
    for line in (f"modified: {edited}", f"missing: {removed}", f"orphaned: {orphan}"):
        assert line in err

    # Writing repairs all three, and a second check is clean.
    assert generate.main(["--root", str(repo_copy)]) == 0
    assert not (repo_copy / orphan).exists()
    assert generate.main(["--check", "--root", str(repo_copy)]) == 0


def test_a_changed_proto_makes_the_check_fail(repo_copy: Path) -> None:
    proto = repo_copy / "protos/edgecut/v1/edgecut.proto"
    proto.write_text(
        proto.read_text().replace(
            "bool set_default = 6;", "bool set_default = 6;\n  bool dry_run = 7;"
        )
    )
    stale = generate.stale_files(repo_copy)
    assert Path("protos/edgecut/v1/edgecut_pb2.py") in stale["modified"]


def test_installed_runtimes_satisfy_the_generated_guards() -> None:
    floors = generate.runtime_floors()
    assert set(floors) == {"protobuf", "grpcio"}
    for dist, floor in floors.items():
        installed = importlib.metadata.version(dist)
        assert version_tuple(installed) >= version_tuple(floor), (dist, installed, floor)


def test_generated_modules_import_with_package_paths() -> None:
    from protos.edgecut.v1 import edgecut_pb2, edgecut_pb2_grpc
    from protos.inference import grpc_service_pb2, grpc_service_pb2_grpc

    oip = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert oip.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in oip.methods} >= {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "ModelStreamInfer", "RepositoryIndex",
    }  # fmt: skip
    edgecut = edgecut_pb2.DESCRIPTOR.services_by_name["EdgecutService"]
    assert edgecut.full_name == "edgecut.v1.EdgecutService"
    assert [m.name for m in edgecut.methods] == ["ListCuts", "GetManifest", "DeploySplit"]
    deploy = edgecut.methods_by_name["DeploySplit"]
    assert deploy.client_streaming and not deploy.server_streaming
    assert hasattr(grpc_service_pb2_grpc, "GRPCInferenceServiceStub")
    assert hasattr(edgecut_pb2_grpc, "add_EdgecutServiceServicer_to_server")
