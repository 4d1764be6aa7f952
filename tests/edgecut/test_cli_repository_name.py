"""``repository build --model file.py:f`` (or ``pkg.module:f``) needs no ``--name``: the model
is named after its factory, as ``--help`` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.edgecut.test_cli_partition import edgecut  # the CLI in a subprocess, 1 thread

NETS = """\
import torch
from torch import nn


def tiny_mlp():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    model.example_input_shape = (1, 3, 4)
    return model
"""


@pytest.mark.parametrize("spec", ["nets.py:tiny_mlp", "mypkg.nets:tiny_mlp"])
def test_a_user_model_is_named_after_its_factory(tmp_path: Path, spec: str) -> None:
    (tmp_path / "nets.py").write_text(NETS)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    result = edgecut(
        "repository", "build", "--model", spec, "--out", "repo", "--no-local",
        "--sweep-bandwidth", "1:2", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["tiny_mlp"]
    meta = json.loads((tmp_path / "repo" / "tiny_mlp" / "model.json").read_text())
    assert meta["name"] == "tiny_mlp" and meta["model_spec"] == spec


def test_help_says_what_the_name_defaults_to(tmp_path: Path) -> None:
    result = edgecut("repository", "build", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "FACTORY for --model file.py:FACTORY or pkg.module:FACTORY" in " ".join(
        result.stdout.split()
    )
