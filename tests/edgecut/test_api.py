"""The Python API (edgecut.api): each result's to_json() is what the CLI prints with --json
for the same inputs, docs/api.md's examples run, and `import edgecut` stays cheap."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edgecut
from edgecut.cli import main
from partitioner.errors import EdgecutError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")

# Fields that differ between any two runs, API or CLI: wall-clock timings, where a run
# wrote its files, and the sha256 of .pt2 archives (torch.export does not write the same
# bytes twice for the same graph).
VOLATILE = {
    "solve_ms", "wall_s", "compile_s", "frames_per_s", "seconds", "head_ms_before",
    "head_ms_after", "out", "sha256", "tail_sha256", "head_sha256",
}  # fmt: skip


def stable(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[Any, str]:
    """(the JSON the command printed, its stderr)."""
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_import_edgecut_is_cheap_and_exposes_the_api() -> None:
    code = (
        "import sys, edgecut; "
        "print([m for m in ('torch', 'numpy', 'numba', 'ray', 'partitioner', 'edgecut.api') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("plan", "split", "compress", "simulate", "sweep", "CloudNode", "EdgeNode"):
        assert name in dir(edgecut) and callable(getattr(edgecut, name))
    with pytest.raises(AttributeError):
        _ = edgecut.no_such_function


@pytest.fixture(scope="module")
def digits() -> Any:
    return edgecut.planner("digits_cnn", bandwidth_mbps=5)


def test_plan_and_breakpoints_equal_the_cli(capsys, digits) -> None:
    cli, _ = cli_json(capsys, "plan", "--model", "digits_cnn", "--bandwidth-mbps", "5")
    assert stable(edgecut.plan("digits_cnn", bandwidth_mbps=5).to_json()) == stable(cli)
    assert stable(edgecut.plan(digits).to_json()) == stable(cli)  # a planner made once
    cli, _ = cli_json(
        capsys, "plan", "--model", "digits_cnn", "--bandwidth-mbps", "5", "--cut-after", "relu2"
    )
    assert stable(edgecut.plan(digits, cut_after="relu2").to_json()) == stable(cli)
    assert cli["edge_nodes"][-1] == "relu2" and cli["solver"] == "fixed"
    cli, _ = cli_json(capsys, "plan", "--model", "digits_cnn", "--sweep-bandwidth", "0.5:500")
    assert edgecut.breakpoints("digits_cnn", 0.5, 500).to_json() == cli


def test_split_and_repository_equal_the_cli(capsys, digits, tmp_path: Path) -> None:
    cli, _ = cli_json(
        capsys, "split", "--model", "digits_cnn", "--bandwidth-mbps", "5", "--cut-after",
        "relu2", "--out", str(tmp_path / "cli"),
    )  # fmt: skip
    api = edgecut.split(digits, tmp_path / "api", cut_after="relu2", model_spec="digits_cnn")
    assert stable(api.to_json()) == stable(cli)
    assert (api.path / "head.pt2").is_file() and cli["crossing"][0]["name"] == "relu2"

    cli, err = cli_json(
        capsys, "repository", "build", "--model", "digits_cnn", "--bandwidth-mbps", "5",
        "--cut-after", "relu2", "--out", str(tmp_path / "repo-cli"),
    )  # fmt: skip
    api_repo = edgecut.repository(
        digits, tmp_path / "repo-api", cut_after=["relu2"], model_spec="digits_cnn"
    )
    assert stable(api_repo.to_json()) == stable(cli)
    assert api_repo.versions == ("1",) and api_repo.path == tmp_path / "repo-api"
    # Off a terminal, each of the build's steps is one log line on stderr, total up front.
    steps = re.findall(r"^edgecut repository build: steps (\d)/3", err, re.M)
    assert steps == ["0", "1", "2", "3"], err


def test_simulate_and_sweep_equal_the_cli(capsys, tmp_path: Path) -> None:
    cli, _ = cli_json(capsys, "simulate", QUICKSTART, "--no-ray", "--duration-s", "10")
    api = edgecut.simulate(QUICKSTART, duration_s=10)
    assert stable(api.to_json()) == stable(cli) and cli["frames"] > 0
    argv = ["--no-ray", "--duration-s", "10", "--policy", "edge-only,cloud-only"]
    cli, _ = cli_json(capsys, "simulate", QUICKSTART, *argv)
    api = edgecut.simulate(QUICKSTART, duration_s=10, policy=["edge-only", "cloud-only"])
    assert stable(api.to_json()) == stable(cli) and list(cli["policies"]) == [
        "edge-only",
        "cloud-only",
    ]

    cells: list[tuple[int, int]] = []
    cli, _ = cli_json(
        capsys, "sweep", QUICKSTART, "--no-ray", "--cuts", "layer1.0.relu1,cloud-only",
        "--bandwidths", "1,100", "--fleet-sizes", "3",
    )  # fmt: skip
    api_sweep = edgecut.sweep(
        QUICKSTART,
        cuts="layer1.0.relu1,cloud-only",
        bandwidths_mbps=[1, 100],
        fleet_sizes=[3],
        progress=lambda done, total: cells.append((done, total)),
        out=tmp_path / "sweep",
    )
    assert stable(api_sweep.to_json()) == stable(cli)
    assert cells[0] == (0, cells[0][1]) and cells[-1] == (cells[0][1], cells[0][1])
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 10_000
    from PIL import Image

    with Image.open(tmp_path / "sweep" / "sweep.png") as png:
        assert png.size[0] >= 800 and png.size[1] >= 400, png.size
        assert len(png.convert("L").getcolors(maxcolors=1 << 16) or []) > 20  # not blank


def test_compress_equals_the_cli(capsys, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text("train_samples: 64\neval_samples: 64\ntiming_repeats: 2\n")
    cli, err = cli_json(
        capsys, "compress", "--model", "digits_cnn", "--cut-after", "relu2", "--method", "int8",
        "--config", str(config), "--out", str(tmp_path / "cli"),
    )  # fmt: skip
    api = edgecut.compress(
        "digits_cnn", tmp_path / "api", cut_after="relu2", method="int8", config=config
    )
    assert stable(api.to_json()) == stable(cli)
    assert api.path == tmp_path / "api" and cli["method"] == "int8"
    # Off a terminal the steps are log lines, each with its total: "int8: calibrate 1/1".
    assert re.search(r"^edgecut compress: int8: calibrate \d+/\d+", err, re.M), err
    assert re.search(r"^edgecut compress: measure 1/1", err, re.M), err


def test_api_errors_are_the_clis_one_liners(digits, tmp_path: Path) -> None:
    with pytest.raises(EdgecutError, match="got a Planner"):
        edgecut.plan(digits, edge="rpi4")
    with pytest.raises(EdgecutError, match="needs --accuracy-budget"):
        edgecut.plan(digits, compress="int8")
    with pytest.raises(EdgecutError, match="expected exactly one of --plan"):
        edgecut.compress("digits_cnn", tmp_path / "x", method="int8")
    with pytest.raises(EdgecutError, match="unknown"):
        edgecut.planner("digits_cnn", edge="no-such-device")


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)


def test_docs_api_examples_run_and_match_the_cli(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Python block of docs/api.md runs as written (from a copy's directory: the
    scenario path is relative); the worked example's sweep equals the command it names."""
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for block in _blocks("python"):
        exec(compile(block, "docs/api.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "1 Mbit/s: best" in printed and "frames answered by the cloud" in printed

    from PIL import Image

    with Image.open(tmp_path / "sweep-cuts.png") as png:
        assert png.size == (768, 480)
        assert len(png.convert("L").getcolors(maxcolors=1 << 16) or []) > 20  # not blank

    [command] = [line for b in _blocks("bash") for line in b.splitlines() if line.strip()]
    argv = shlex.split(command)
    assert argv[:2] == ["edgecut", "sweep"] and argv[-1] == "--json"
    cli, _ = cli_json(capsys, *argv[1:-1])
    assert stable(namespace["result"].to_json()) == stable(cli)
    assert len(cli["cells"]) == 4 * 4
