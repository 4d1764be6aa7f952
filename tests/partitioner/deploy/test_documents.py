"""manifest.json and model.json from hostile repositories: validated once where they are read.

Whatever a document holds, nothing from it runs, the refusal is one line naming the file and
the field, and the CLI exits 2 without a traceback.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgecut.cli import main
from partitioner.deploy.artifact import load_split, parse_manifest, read_manifest
from partitioner.deploy.repository import RepositoryError, read_model, scan_repository
from partitioner.errors import ArtifactError

MODEL = "net"


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from partitioner.planner import Planner

    planner = Planner.create("digits_cnn")
    return planner.split(planner.cut_after("pool2"), tmp_path_factory.mktemp("split") / "s")


@pytest.fixture
def repo(split: Path, tmp_path: Path) -> Path:
    """A repository holding the split as version 1 of model 'net', and a model.json."""
    root = tmp_path / "repo"
    shutil.copytree(split, root / MODEL / "1")
    (root / MODEL / "model.json").write_text(
        json.dumps(
            {
                "format": "edgecut-repository-model",
                "format_version": 1,
                "default_version": "1",
                "breakpoints": [{"min_mbps": 0.5, "max_mbps": 50.0, "version": "1"}],
            }
        )
    )
    return root


def _payload_module(tmp_path: Path) -> tuple[Path, Path]:
    """A Python file that touches a marker when imported: what a document might name."""
    marker = tmp_path / "imported"
    module = tmp_path / "payload.py"
    module.write_text(f"open({str(marker)!r}, 'w').close()\ndef make():\n    return None\n")
    return module, marker


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def _edit(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------------------- manifest.json

MANIFEST_CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "a pickle": (
        lambda p, marker: p.write_bytes(pickle.dumps(_Touch(marker), protocol=2)),
        "expected UTF-8 JSON text, got binary data",
    ),
    "binary": (lambda p, m: p.write_bytes(bytes(range(256))), "got binary data"),
    "an array": (lambda p, m: p.write_text("[1, 2]"), "expected a JSON object, got a JSON array"),
    "not JSON": (lambda p, m: p.write_text("{'a': 1}"), "got invalid JSON"),
    "a directory": (lambda p, m: (p.unlink(), p.mkdir()), "expected a JSON file, got a directory"),
    "a FIFO": (lambda p, m: (p.unlink(), os.mkfifo(p)), "got a device, FIFO or socket"),
    "too large": (
        lambda p, m: os.truncate(p, 17 * 1024 * 1024),
        "bytes, above the limit of 16777216",
    ),
    "a repeated key": (
        lambda p, m: p.write_text(p.read_text()[:-2] + ', "codec": "none", "codec": "int8"}'),
        "key 'codec' appears twice",
    ),
    "a missing field": (
        lambda p, m: _edit(p, lambda d: d.pop("inputs")),
        "field 'inputs': Field required",
    ),
    "a string for a number": (
        lambda p, m: _edit(p, lambda d: d["crossing"][0]["shape"].__setitem__(1, "128")),
        "field 'crossing.0.shape.1': Input should be a valid integer, got '128'",
    ),
    "a dtype naming a torch function": (
        lambda p, m: _edit(p, lambda d: d["inputs"][0].update(dtype="load")),
        "field 'inputs.0.dtype'",
    ),
    "a frame too large to allocate": (
        lambda p, m: _edit(p, lambda d: d["crossing"][0].update(shape=[1, 1 << 20, 1 << 20])),
        "field 'crossing.0': a frame of shape",
    ),
    "a file outside the split": (
        lambda p, m: _edit(
            p, lambda d: d["files"].update({"../../x.pt2": {"sha256": "0" * 64, "bytes": 1}})
        ),
        "field 'files.../../x.pt2.[key]'",
    ),
    "a plan ListCuts cannot read": (
        lambda p, m: _edit(p, lambda d: d["plan"]["predicted"].update(total_ms="fast")),
        "field 'plan.predicted.total_ms'",
    ),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_a_bad_manifest_is_one_line_naming_file_and_field(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    version = repo / MODEL / "1"
    marker = tmp_path / "marker"
    damage, why = MANIFEST_CASES[case]
    damage(version / "manifest.json", marker)
    with pytest.raises(ArtifactError) as info:
        load_split(version)
    assert str(version / "manifest.json") in str(info.value) and why in str(info.value)
    code, err = _cli(capsys, "repository", "show", "--repository", str(repo))
    assert code == 2 and err.count("\n") == 1 and why in err and "Traceback" not in err
    assert not marker.exists()


def test_an_unreadable_manifest_is_one_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Permissions (simulated: the tests may run as root, who reads everything)."""
    target = str(repo / MODEL / "1" / "manifest.json")
    real_open = os.open

    def deny(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(
        ArtifactError, match="manifest.json: cannot be read \\(permission denied\\)"
    ):
        read_manifest(repo / MODEL / "1")
    code, err = _cli(capsys, "repository", "show", "--repository", str(repo))
    assert code == 2 and "permission denied" in err and err.count("\n") == 1


def test_a_manifest_naming_code_never_imports_it(repo: Path, tmp_path: Path) -> None:
    module, marker = _payload_module(tmp_path)
    _edit(repo / MODEL / "1" / "manifest.json", lambda d: d.update(model_spec=f"{module}:make"))
    _edit(repo / MODEL / "1" / "manifest.json", lambda d: d.update(runtime={"tail.pt2": "os"}))
    with pytest.raises(ArtifactError, match="unknown runtime 'os'"):
        load_split(repo / MODEL / "1")
    assert not marker.exists()


def test_an_uploaded_manifest_goes_through_the_same_schema() -> None:
    with pytest.raises(ArtifactError, match="manifest_json: field 'format': Input should be"):
        parse_manifest(b'{"format": "x"}', "manifest_json")
    with pytest.raises(ArtifactError, match="manifest_json: expected a JSON object"):
        parse_manifest(b"null", "manifest_json")


# --------------------------------------------------------------------------------- model.json

MODEL_CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "a pickle": (
        lambda p, marker: p.write_bytes(pickle.dumps(_Touch(marker), protocol=2)),
        "got binary data",
    ),
    "an array": (lambda p, m: p.write_text("[]"), "got a JSON array"),
    "a directory": (lambda p, m: (p.unlink(), p.mkdir()), "got a directory"),
    "a number for a version": (
        lambda p, m: _edit(p, lambda d: d["breakpoints"][0].update(version=1)),
        "field 'breakpoints.0.version': Input should be a valid string, got 1",
    ),
    "a path for a version": (
        lambda p, m: _edit(p, lambda d: d.update(default_version="../../etc")),
        "field 'default_version': String should match pattern",
    ),
    "bands out of order": (
        lambda p, m: _edit(
            p,
            lambda d: d["breakpoints"].insert(
                0, {"min_mbps": 60.0, "max_mbps": 70.0, "version": None}
            ),
        ),
        "breakpoints must be ordered by min_mbps",
    ),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_a_bad_model_json_is_one_line_naming_file_and_field(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    marker = tmp_path / "marker"
    damage, why = MODEL_CASES[case]
    damage(repo / MODEL / "model.json", marker)
    with pytest.raises(RepositoryError) as info:
        read_model(repo / MODEL)
    assert str(repo / MODEL / "model.json") in str(info.value) and why in str(info.value)
    for command in (["repository", "show"], ["edge", "run", "--cloud", "127.0.0.1:1"]):
        code, err = _cli(capsys, *command, "--repository", str(repo))
        assert code == 2 and err.count("\n") == 1 and why in err and "Traceback" not in err
    # A server keeps the model, its versions marked with the reason, and serves the others.
    (kept,) = scan_repository(repo, keep_broken=True).values()
    assert kept.versions == ("1",) and why in kept.error
    assert not marker.exists()


def test_a_model_json_naming_code_never_imports_it(repo: Path, tmp_path: Path) -> None:
    module, marker = _payload_module(tmp_path)
    _edit(repo / MODEL / "model.json", lambda d: d.update(model_spec=f"{module}:make"))
    assert read_model(repo / MODEL).versions == ("1",)
    assert not marker.exists()
