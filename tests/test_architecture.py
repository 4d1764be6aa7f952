"""The import direction of DESIGN.md and the lean-import rules of STYLE.md, enforced."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    return {m.split(".")[0] for m in out.stdout.split()}


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports (import-linter) is a test dependency; install .[test]")
    result = subprocess.run([exe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_cli_starts_without_torch() -> None:
    loaded = _modules_after("import edgecut.cli; edgecut.cli.build_parser().format_help()")
    assert "torch" not in loaded and "grpc" not in loaded and "ray" not in loaded


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("edge_node", {"ray"}),
        ("cloud_node", {"ray"}),
        ("simulator", {"grpc"}),
        ("partitioner", {"grpc", "ray"}),
        ("protos", {"ray", "torch"}),
    ],
)
def test_lean_package_imports(package: str, forbidden: set[str]) -> None:
    loaded = _modules_after(f"import {package}")
    assert not (loaded & forbidden), f"import {package} pulled in {loaded & forbidden}"
