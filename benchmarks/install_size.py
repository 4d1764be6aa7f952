"""Installed size of each role's extra, each in a fresh venv, against the full install.

For every role (the core alone, ``edgecut[edge]``, ``[cloud]``, ``[plan]``, ``[sim]``,
``[compress]``, ``[all]``) this builds the project's wheel once, creates a new venv, installs
the wheel with that extra (pip's ordinary resolution: the configured index and find-links,
so torch comes from the local CPU wheel), and measures the venv on disk (``du``, apparent
sizes of every file, minus a bare venv's). It checks that ``[edge]`` pulls none of the
distributions an edge box does not need, and, unless ``--no-run``, that the edge venv's
``edgecut edge run`` streams frames to ``edgecut cloud serve`` started from this (full)
environment.

    python benchmarks/install_size.py                 # every role, ~10 min on 2 cores
    python benchmarks/install_size.py --roles edge,all --keep /tmp/venvs

Goal (issue 15): edge < 55% of the full install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("core", "edge", "cloud", "plan", "sim", "compress", "all")
# Distributions an edge box must not pull (issue 15's acceptance), as pip lists them.
NOT_ON_EDGE = ("ray", "pyarrow", "numba", "llvmlite", "matplotlib", "torchao",
               "torch-pruning", "torch_pruning", "scikit-learn", "scipy")  # fmt: skip
GOAL_EDGE_RATIO = 0.55


def du_bytes(path: Path) -> int:
    """Bytes of every regular file under ``path`` (each inode once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen or not os.path.isfile(os.path.join(dirpath, name)):
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def build_wheel(out: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)])
    return next(out.glob("edgecut-*.whl"))


def make_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", str(path)])
    return path / "bin" / "python"


def install(role: str, wheel: Path, venv: Path) -> tuple[float, list[str]]:
    python = make_venv(venv)
    spec = str(wheel) if role == "core" else f"{wheel}[{role}]"
    started = time.monotonic()
    run([str(python), "-m", "pip", "install", "-q", spec])
    seconds = time.monotonic() - started
    listed = json.loads(run([str(python), "-m", "pip", "list", "--format", "json"]).stdout)
    return seconds, sorted(d["name"].lower() for d in listed)


def edge_against_full_cloud(edge_venv: Path, work: Path) -> dict[str, object]:
    """Build a digits_cnn repository here (full install), serve it from here, and run the edge
    venv's ``edgecut edge run`` against it."""
    repo = work / "repo"
    port_file = work / "cloud.port"
    here = [sys.executable, "-m", "edgecut.cli"]
    run([*here, "repository", "build", "--model", "digits_cnn", "--bandwidth-mbps", "5",
         "--cut-after", "relu2", "--out", str(repo), "--json"])  # fmt: skip
    log = (work / "cloud.log").open("w")
    cloud = subprocess.Popen(
        [*here, "cloud", "serve", "--repository", str(repo), "--port", "0",
         "--port-file", str(port_file), "--threads", "1", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if cloud.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cloud node did not start: {(work / 'cloud.log').read_text()}")
            time.sleep(0.2)
        port = int(port_file.read_text())
        edge = run(
            [str(edge_venv / "bin" / "edgecut"), "edge", "run", "--repository", str(repo),
             "--cloud", f"127.0.0.1:{port}", "--frames", "20", "--version", "1", "--json"],
            cwd=work,  # not the source tree: the venv's installed package is what runs
        )  # fmt: skip
        return json.loads(edge.stdout)
    finally:
        cloud.terminate()
        cloud.wait(timeout=60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roles", default=",".join(ROLES), help="comma list (default: all)")
    parser.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    parser.add_argument("--no-run", action="store_true", help="skip the edge-vs-cloud run")
    args = parser.parse_args()
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = set(roles) - set(ROLES)
    if unknown:
        parser.error(f"--roles: expected some of {', '.join(ROLES)}; got {sorted(unknown)}")

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="edgecut-install-size-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        wheel = build_wheel(tmp / "wheel")
        bare = du_bytes(make_venv(tmp / "bare").parents[1])
        print(f"bare venv (pip, setuptools): {bare / 1e6:.1f} MB, subtracted below", flush=True)
        sizes: dict[str, int] = {}
        for role in roles:
            venv = tmp / f"venv-{role}"
            seconds, dists = install(role, wheel, venv)
            sizes[role] = du_bytes(venv) - bare
            print(f"{role:9s} {sizes[role] / 1e6:8.1f} MB  {len(dists):3d} distributions  "
                  f"installed in {seconds:5.0f} s", flush=True)  # fmt: skip
            if role == "edge":
                pulled = [d for d in NOT_ON_EDGE if d in dists]
                print(f"          edge pulls none of {', '.join(NOT_ON_EDGE)}: "
                      f"{'yes' if not pulled else 'NO, it pulls ' + ', '.join(pulled)}")  # fmt: skip
                if not args.no_run:
                    summary = edge_against_full_cloud(venv, tmp)
                    print(f"          edge venv's `edgecut edge run` vs a full-install cloud "
                          f"node: {summary['cloud_frames']}/{summary['frames']} frames answered "
                          f"by the cloud, {summary['error_frames']} errors, p50 "
                          f"{summary['latency_ms']['p50']:.2f} ms", flush=True)  # fmt: skip
            if role != "all" and role != "edge" and not args.keep:
                shutil.rmtree(venv)  # ~1-2 GB each
        if "all" in sizes:
            print(f"\nfull install (all): {sizes['all'] / 1e6:.1f} MB")
            for role, size in sizes.items():
                print(f"  {role:9s} {size / 1e6:8.1f} MB  {size / sizes['all']:6.1%} of full")
            if "edge" in sizes:
                ratio = sizes["edge"] / sizes["all"]
                verdict = "met" if ratio < GOAL_EDGE_RATIO else "NOT met"
                print(f"edge / full = {ratio:.1%} (goal < {GOAL_EDGE_RATIO:.0%}: {verdict})")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
