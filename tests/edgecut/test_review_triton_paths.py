"""Review of ``export_triton``'s writes: only into directories of its output, never through a
link someone planted there, never over the repository it reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from partitioner.planner import Planner
from partitioner.publish import build_repository
from partitioner.triton_export import TritonExportError, export_triton


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    planner = Planner.create("digits_cnn")
    root = tmp_path_factory.mktemp("review-repo") / "digits_cnn"
    build_repository(planner, root, plans=[planner.cut_after("relu2")], with_local=False)
    return root


def _export(repo: Path, out: Path) -> None:
    export_triton(repo, out, model="digits_cnn", versions=["1"])


@pytest.mark.parametrize("member", ["config.pbtxt.tmp", "1/model.pt.tmp"])
def test_a_link_planted_as_the_temporary_file_is_not_written_through(
    repo: Path, tmp_path: Path, member: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    out = tmp_path / "triton"
    (out / "digits_cnn" / "1").mkdir(parents=True)
    (out / "digits_cnn" / member).symlink_to(victim)
    _export(repo, out)
    assert victim.read_text() == "keep me"
    assert not (out / "digits_cnn" / member).exists()
    assert (out / "digits_cnn" / "1" / "model.pt").stat().st_size > 1000


@pytest.mark.parametrize("linked", ["digits_cnn", "digits_cnn/1"])
def test_a_model_or_version_directory_that_is_a_link_is_refused(
    repo: Path, tmp_path: Path, linked: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "triton"
    (out / linked).parent.mkdir(parents=True, exist_ok=True)
    (out / linked).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TritonExportError, match="is a symbolic link") as info:
        _export(repo, out)
    assert "\n" not in str(info.value)
    assert list(elsewhere.iterdir()) == []


def test_an_output_whose_model_directory_is_the_repository_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    """The repository is named like its model: exporting into its parent would write
    config.pbtxt and 1/model.pt into the repository itself."""
    copy = tmp_path / "digits_cnn"
    shutil.copytree(repo, copy)
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    with pytest.raises(TritonExportError, match="would hold the repository"):
        _export(copy, tmp_path)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before
