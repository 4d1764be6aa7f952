"""Reading model repositories: versions, bands, default and local artifact from the layout
(written here by hand, as :func:`partitioner.publish.build_repository` would; its own
tests are tests/partitioner/test_publish.py), and every refusal naming what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from partitioner.deploy.repository import (
    FORMAT,
    FORMAT_VERSION,
    RepositoryError,
    check_model_name,
    check_version,
    open_model,
    read_model,
    scan_repository,
)

BANDS = [
    {"min_mbps": 0.5, "max_mbps": 2.0, "version": None, "edge_nodes": ["x", "fc"]},
    {"min_mbps": 2.0, "max_mbps": 20.0, "version": "1", "edge_nodes": ["x", "conv"]},
    {"min_mbps": 20.0, "max_mbps": 100.0, "version": "10", "edge_nodes": ["x"]},
]


def _version(root: Path, *parts: str) -> None:
    d = root.joinpath(*parts)
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{}")  # the repository reads only that it exists


def _repo(root: Path, name: str = "net", **meta: Any) -> Path:
    """A model directory with versions 1, 2 and 10, a local artifact, and model.json."""
    for v in ("1", "2", "10", "local"):
        _version(root, name, v)
    (root / name / "0").mkdir()  # not a version number
    (root / name / "3").mkdir()  # a version directory without a manifest
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "breakpoints": BANDS, **meta}
    (root / name / "model.json").write_text(json.dumps(data))
    return root


def test_a_model_reads_its_versions_bands_default_and_local(tmp_path: Path) -> None:
    model = open_model(_repo(tmp_path, default_version="2", codec="int8"))
    assert model.name == "net" and model.path == tmp_path / "net"
    assert model.versions == ("1", "2", "10")  # numerically, with a manifest, named 1..
    assert model.default_version == "2" and model.codec == "int8"
    assert model.local == tmp_path / "net" / "local"
    assert [(b.min_mbps, b.max_mbps, b.version) for b in model.bands] == [
        (0.5, 2.0, None),
        (2.0, 20.0, "1"),
        (20.0, 100.0, "10"),
    ]
    assert model.bands[1].edge_nodes == ("x", "conv")
    assert model.version_dir("10") == tmp_path / "net" / "10"


@pytest.mark.parametrize(
    "bandwidth_mbps,version",
    [(0.01, None), (0.5, None), (1.99, None), (2.0, "1"), (19.9, "1"), (20.0, "10"), (1e6, "10")],
)
def test_band_for_picks_the_band_holding_the_bandwidth_clamped(
    tmp_path: Path, bandwidth_mbps: float, version: str | None
) -> None:
    assert open_model(_repo(tmp_path)).band_for(bandwidth_mbps).version == version


@pytest.mark.parametrize("default", [None, "7"])
def test_a_missing_or_unknown_default_falls_back_to_the_last_version(
    tmp_path: Path, default: str | None
) -> None:
    assert open_model(_repo(tmp_path, default_version=default)).default_version == "10"


def test_a_version_deployed_by_hand_needs_no_model_json(tmp_path: Path) -> None:
    _version(tmp_path, "net", "4")
    model = read_model(tmp_path / "net")
    assert model.versions == ("4",) and model.default_version == "4"
    assert model.bands == () and model.local is None and model.codec == "none"
    with pytest.raises(RepositoryError, match="'net' .* has no breakpoints"):
        model.band_for(1.0)


def test_scan_finds_models_by_name_and_skips_what_is_not_one(tmp_path: Path) -> None:
    _repo(tmp_path, "b")
    _version(tmp_path, "a", "local")  # only a local artifact: still a model
    (tmp_path / "empty").mkdir()  # nothing to serve
    _version(tmp_path, ".hidden", "1")
    _version(tmp_path, "bad name", "1")
    (tmp_path / "file").write_text("x")
    assert list(scan_repository(tmp_path)) == ["a", "b"]
    with pytest.raises(RepositoryError, match="holds several models \\(a, b\\); name one"):
        open_model(tmp_path)
    assert open_model(tmp_path, "a").versions == ()
    with pytest.raises(RepositoryError, match="has no model 'c'; it holds a, b"):
        open_model(tmp_path, "c")


def test_a_missing_or_empty_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist: expected a directory written by"):
        scan_repository(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryError, match="is not a directory"):
        scan_repository(tmp_path / "file")
    with pytest.raises(RepositoryError, match="holds no model: expected <model>/<version>/"):
        open_model(tmp_path)


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "model.json: expected a JSON object, got invalid JSON"),
        ("[1, 2]", "model.json: expected a JSON object, got a JSON array"),
        (json.dumps({"format": "other", "format_version": 1}), "field 'format': Input should be"),
        (
            json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION + 1}),
            f"field 'format_version': Input should be {FORMAT_VERSION}, got 2",
        ),
        (
            json.dumps({"format": FORMAT, "format_version": 1, "breakpoints": [{"min": 1}]}),
            "field 'breakpoints.0.min_mbps': Field required",
        ),
        (
            json.dumps({"format": FORMAT, "format_version": 1, "default_version": "latest"}),
            "field 'default_version': String should match pattern",
        ),
        (
            json.dumps(
                {
                    "format": FORMAT,
                    "format_version": 1,
                    "breakpoints": [{**BANDS[1], "version": "5"}],
                }
            ),
            "band 2-20 Mbit/s names version 5, which has no directory",
        ),
    ],
)
def test_a_bad_model_json_is_refused_with_the_file_named(
    tmp_path: Path, text: str, match: str
) -> None:
    _repo(tmp_path)
    (tmp_path / "net" / "model.json").write_text(text)
    with pytest.raises(RepositoryError, match=match):
        scan_repository(tmp_path)


@pytest.mark.parametrize("name", ["", "-lead", "a/b", "..", "x" * 129, "sp ace"])
def test_model_names_from_clients_are_checked(name: str) -> None:
    with pytest.raises(RepositoryError, match="model name .* is not valid: expected letters"):
        check_model_name(name)


@pytest.mark.parametrize("version", ["", "0", "01", "-1", "1.0", "1" * 10, "local"])
def test_versions_from_clients_are_checked(version: str) -> None:
    with pytest.raises(RepositoryError, match="version .* is not valid: expected a positive"):
        check_version(version)


def test_valid_names_and_versions_pass_through() -> None:
    assert check_model_name("resnet18_v2.int8-a") == "resnet18_v2.int8-a"
    assert check_model_name("x" * 128) == "x" * 128
    assert check_version("1") == "1" and check_version("123456789") == "123456789"
