"""The node commands as a user runs them: repository build/show, cloud serve, edge run.

The demo runs in tests/test_readme.py, as the README gives it (10 frames)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def edgecut(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecut.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def cli_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "repository"
    done = edgecut(
        "repository", "build", "--model", "digits_cnn", "--edge", "rpi4", "--cloud",
        "x86-server", "--sweep-bandwidth", "0.5:500", "--cut-after", "pool2", "--out", str(out),
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["name"] == "digits_cnn" and meta["local"] == "local" and "1" in meta["versions"]
    return out


def test_repository_show(cli_repo: Path) -> None:
    done = edgecut("repository", "show", "--repository", str(cli_repo), "--json")
    assert done.returncode == 0, done.stderr
    (model,) = json.loads(done.stdout)["models"]
    assert model["name"] == "digits_cnn" and model["versions"] == ["1"] and model["local"]
    table = edgecut("repository", "show", "--repository", str(cli_repo))
    assert table.returncode == 0 and "digits_cnn" in table.stdout


def test_serve_and_run_with_a_token_and_a_folder_of_images(
    cli_repo: Path, spawn_cloud: Callable[..., Any], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("# rotated monthly\ns3cret\n")
    token.chmod(0o600)  # readable by others, it would draw a warning line
    cloud = spawn_cloud(["--repository", str(cli_repo), "--port", "0", "--token-file", str(token)])
    target = f"127.0.0.1:{cloud.port}"
    results = tmp_path / "results.jsonl"
    done = edgecut(
        "edge", "run", "--repository", str(cli_repo), "--cloud", target, "--frames", "7",
        "--token-file", str(token), "--threads", "1", "--results", str(results), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames"] == summary["cloud_frames"] == 7 and summary["error_frames"] == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["frame_id"] for r in lines] == list(range(7))
    assert all(r["where"] == "cloud" and r["version"] == "1" for r in lines)

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("L", (16, 16), 40 * i).save(images / f"{i}.png")
    (images / "3.png").write_bytes(b"broken")
    done = edgecut(
        "edge", "run", "--repository", str(cli_repo), "--cloud", target, "--source",
        str(images), "--token-file", str(token), "--threads", "1", "--json",
    )  # fmt: skip
    assert done.returncode == 1  # one frame is an explicit error: the exit code says so
    summary = json.loads(done.stdout)
    assert (summary["frames"], summary["cloud_frames"], summary["error_frames"]) == (4, 3, 1)

    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    wrong.chmod(0o600)
    done = edgecut(
        "edge", "run", "--repository", str(cli_repo), "--cloud", target, "--frames", "1",
        "--token-file", str(wrong),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "refused the edge: invalid bearer token" in done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["cloud", "serve", "--repository", "/nonexistent/repo"],
            "repository /nonexistent/repo does not exist",
        ),
        (
            ["cloud", "serve", "--repository", ".", "--token-file", "/"],
            "token file / is a directory",
        ),
        (
            ["cloud", "serve", "--repository", ".", "--token-file", "/nonexistent"],
            "token file /nonexistent does not exist",
        ),
        (
            ["cloud", "serve", "--repository", ".", "--tls-cert", "/nonexistent"],
            "TLS needs both --tls-cert and --tls-key",
        ),
        (
            ["edge", "run", "--repository", "/nonexistent/repo", "--cloud", "127.0.0.1:1"],
            "does not exist",
        ),
        (["edge", "run", "--repository", ".", "--cloud", "127.0.0.1:1"], "holds no model"),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    done = edgecut(*args, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
