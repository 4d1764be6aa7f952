"""Model repositories: one version per cut of the table, the table, the local model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from partitioner.deploy.artifact import read_manifest
from partitioner.deploy.repository import RepositoryError, open_model, scan_repository
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner.create("digits_cnn")


@pytest.fixture(scope="module")
def built(planner: Planner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    table = manual_table(
        planner,
        [(0.5, 2.0, None), (2.0, 20.0, "pool2"), (20.0, 100.0, "relu1"), (100.0, 500.0, "pool2")],
    )
    build_repository(
        planner,
        root,
        table=table,
        plans=[planner.cut_after("conv3")],
        default_bandwidth_mbps=1.0,
    )
    return root


def test_layout_versions_bands_and_local(built: Path) -> None:
    model = open_model(built)
    assert model.name == "digits_cnn" and model.versions == ("1", "2", "3")
    crossing = {
        v: [t["name"] for t in read_manifest(built / "digits_cnn" / v)["crossing"]]
        for v in model.versions
    }
    # Distinct cuts of the table in order of rising bandwidth, then the extra plan.
    assert crossing == {"1": ["pool2"], "2": ["relu1"], "3": ["conv3"]}
    assert [(b.min_mbps, b.version) for b in model.bands] == [
        (0.5, None),
        (2.0, "1"),
        (20.0, "2"),
        (100.0, "1"),
    ]
    assert model.band_for(0.01).version is None and model.band_for(1e6).version == "1"
    assert model.band_for(50).version == "2"
    # At 1 Mbit/s the table says edge-only; the default is the nearest cloud cut above.
    assert model.default_version == "1"
    local = read_manifest(model.local)
    assert local["edge_only"] is True and "tail.pt2" not in local["files"]
    meta = json.loads((built / "digits_cnn" / "model.json").read_text())
    assert (
        meta["versions"]["2"]["head_sha256"]
        == read_manifest(built / "digits_cnn" / "2")["files"]["head.pt2"]["sha256"]
    )


def test_scan_and_errors(built: Path, tmp_path: Path) -> None:
    assert list(scan_repository(built)) == ["digits_cnn"]
    with pytest.raises(RepositoryError, match="does not exist: expected a directory written by"):
        scan_repository(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryError, match="is not a directory"):
        scan_repository(tmp_path / "file")
    with pytest.raises(RepositoryError, match="holds no model"):
        open_model(tmp_path)
    with pytest.raises(RepositoryError, match="has no model 'resnet18'; it holds digits_cnn"):
        open_model(built, "resnet18")
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    (broken / "digits_cnn" / "model.json").write_text("{not json")
    with pytest.raises(RepositoryError, match="model.json: not JSON"):
        scan_repository(broken)
    shutil.rmtree(broken / "digits_cnn" / "2")
    (broken / "digits_cnn" / "model.json").write_text(
        (built / "digits_cnn" / "model.json").read_text()
    )
    with pytest.raises(RepositoryError, match="names version 2, which has no directory"):
        scan_repository(broken)


def test_manual_table_needs_adjacent_bands(planner: Planner) -> None:
    with pytest.raises(RepositoryError, match="ordered and adjacent"):
        manual_table(planner, [(1.0, 2.0, None), (3.0, 4.0, "pool2")])
