"""Publishing a planner as a model repository: one version per distinct cut of the table
(then the extra plans), each band pointing at its version, the default, and ``local``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partitioner.deploy.artifact import read_manifest
from partitioner.deploy.repository import RepositoryError, open_model
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


def test_an_edge_only_plan_is_the_local_model_not_a_version(
    planner: Planner, tmp_path: Path
) -> None:
    everything = planner.cut_after(planner.graph.outputs[0])
    assert everything.is_edge_only
    with pytest.raises(RepositoryError, match="edge-only plan has no tail"):
        build_repository(planner, tmp_path, plans=[everything])


def test_manual_table_needs_adjacent_bands(planner: Planner) -> None:
    with pytest.raises(RepositoryError, match="ordered and adjacent"):
        manual_table(planner, [(1.0, 2.0, None), (3.0, 4.0, "pool2")])
    with pytest.raises(RepositoryError, match="ordered and adjacent"):
        manual_table(planner, [(2.0, 1.0, None)])
