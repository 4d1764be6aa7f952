"""Installs per role: each extra's commands run with the other extras' modules missing.

pyproject.toml has a small core and extras (``edge``, ``cloud``, ``plan``, ``sim``,
``compress``, ``all``). Here a subprocess hides every module that only the other extras
install (a meta-path finder makes importing them fail as if they were not installed), then
runs the role's commands and imports its main modules: what an ``pip install
"edgecut[<role>]"`` box would do. A command that needs a missing extra says which one, in
one line, exit 2. ``benchmarks/install_size.py`` installs each role in a fresh venv and
measures it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgecut.cli import EXTRA_INCLUDES, MODULE_EXTRAS

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

# Runs the commands of the JSON list argv[2] (each a CLI command, or ["import:a,b"]) in one
# process with the modules named in argv[1] missing; prints "rc=<exit code>" after each.
RUNNER = """
import importlib, importlib.abc, importlib.util, json, sys
hidden = set(sys.argv[1].split(","))

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

def find_spec(name, package=None, _find_spec=importlib.util.find_spec):
    # What probing code (torch asks which libraries exist) sees of a module not installed.
    return None if name.split(".")[0] in hidden else _find_spec(name, package)

sys.meta_path.insert(0, Hide())
importlib.util.find_spec = find_spec
for args in json.loads(sys.argv[2]):  # CLI commands, or ["import:a,b"] module imports
    if args[0].startswith("import:"):
        for module in args[0][len("import:"):].split(","):
            importlib.import_module(module)
        rc = 0
    else:
        from edgecut.cli import main
        try:
            rc = main(args)
        except SystemExit as exc:  # --help
            rc = exc.code
    print(f"rc={rc}", file=sys.stderr, flush=True)
    if rc:
        break
leaked = sorted(m for m in sys.modules if m.split(".")[0] in hidden)
assert not leaked, leaked
"""

ROLES = ("edge", "cloud", "plan", "sim", "compress")


def hidden_for(role: str | None) -> set[str]:
    """The modules only other extras install (None: the core alone, every extra missing)."""
    allowed = EXTRA_INCLUDES[role] if role else set()
    return {m for m, extras in MODULE_EXTRAS.items() if not allowed & set(extras)}


def run_as(
    role: str | None, *commands: list[str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``commands`` in one process as a box with only ``role``'s extra would."""
    return subprocess.run(
        [sys.executable, "-c", RUNNER, ",".join(sorted(hidden_for(role))), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def exit_codes(proc: subprocess.CompletedProcess[str]) -> list[int | None]:
    return [None if c == "None" else int(c) for c in re.findall(r"^rc=(\S+)$", proc.stderr, re.M)]


def _requirements(extra: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["optional-dependencies"][extra]
    return [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in reqs if not r.startswith("edgecut")]


def test_the_module_map_covers_every_distribution_of_every_extra() -> None:
    """MODULE_EXTRAS (what the one-line error and these tests rely on) names every top-level
    module each extra's distributions install, under that extra."""
    modules_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for extra in ROLES:
        for dist in _requirements(extra):
            modules = {
                m
                for m in modules_of.get(dist.lower().replace("_", "-"), set())
                # torchao's wheel also installs a stray top-level `test` package: not ours to map.
                if not m.startswith("_") and m.isidentifier() and m != "test"
            }
            assert modules, f"{dist} (extra {extra}) is not installed here"
            for module in modules:
                assert extra in MODULE_EXTRAS.get(module, ()), (
                    f"edgecut.cli.MODULE_EXTRAS: {module} (from {dist}) should list {extra!r}"
                )


def test_edge_extra_pulls_none_of_the_heavy_distributions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = set(_requirements("edge")) | {
        re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in project["dependencies"]
    }
    heavy = {
        "ray",
        "pyarrow",
        "numba",
        "llvmlite",
        "matplotlib",
        "torchao",
        "torch-pruning",
        "scikit-learn",
        "scipy",
    }
    assert not {d.lower() for d in edge} & heavy
    # `test` pulls everything, so `pip install -e ".[test]" && pytest` keeps working.
    assert "edgecut[all]" in project["optional-dependencies"]["test"]
    assert set(project["optional-dependencies"]) >= {*ROLES, "all", "test"}


ROLE_CHECKS: dict[str | None, list[list[str]]] = {
    None: [
        ["--help"],
        ["models"],
        ["devices"],
        ["repository", "show", "--help"],
        ["import:edgecut,edgecut.api,partitioner.deploy.repository,partitioner.codecs"],
    ],
    "edge": [
        ["edge", "run", "--help"],
        [
            "import:edge_node.node,edge_node.client,edge_node.heads,edge_node.sources,"
            "edge_node.throttle,edge_node.estimator,partitioner.deploy.signing,protos.transport"
        ],
    ],
    "cloud": [
        ["cloud", "serve", "--help"],
        [
            "import:cloud_node.server,cloud_node.rest,cloud_node.metrics,cloud_node.control,"
            "cloud_node.inference,cloud_node.batcher"
        ],
    ],
    "plan": [
        ["plan", "--help"],
        ["profile", "--model", "digits_cnn", "--device", "rpi4", "--json"],
        ["import:partitioner.planner,partitioner.publish,partitioner.solve.plot"],
    ],
    "sim": [
        ["simulate", "--help"],
        ["sweep", "--help"],
        [
            "import:simulator.engine,simulator.fleet,simulator.results,simulator.sweep,"
            "simulator.plots,simulator.ray_transport"
        ],
    ],
    "compress": [
        ["compress", "--help"],
        [
            "import:partitioner.compress.compressor,partitioner.compress.search,"
            "partitioner.compress.quantize,partitioner.compress.prune"
        ],
    ],
}


@pytest.mark.parametrize("role", list(ROLE_CHECKS), ids=lambda r: r or "core")
def test_each_role_runs_without_the_other_extras(role: str | None) -> None:
    proc = run_as(role, *ROLE_CHECKS[role])
    assert proc.returncode == 0, proc.stderr[-2000:]  # no module of another extra was loaded
    assert exit_codes(proc) == [0] * len(ROLE_CHECKS[role]), proc.stderr[-2000:]


MISSING = [
    ("plan", ["plan", "--model", "digits_cnn"], "plan"),
    ("sim", ["simulate", str(QUICKSTART)], "sim"),
    (
        "compress",
        [
            "compress",
            "--model",
            "digits_cnn",
            "--cut-after",
            "relu2",
            "--method",
            "int8",
            "--out",
            "{tmp}/small",
        ],
        "compress",
    ),
    ("cloud", ["cloud", "serve", "--repository", "{tmp}", "--port", "0"], "cloud"),
    ("edge", ["edge", "run", "--repository", "{repo}", "--cloud", "127.0.0.1:1"], "edge"),
]


@pytest.mark.parametrize(("name", "argv", "extra"), MISSING, ids=[m[0] for m in MISSING])
def test_a_command_missing_its_extra_names_it_in_one_line(
    name: str, argv: list[str], extra: str, tmp_path: Path, digits_repo: Path
) -> None:
    args = [a.format(tmp=tmp_path, repo=digits_repo) for a in argv]
    proc = run_as(None, args)  # the core alone
    assert exit_codes(proc) == [2], proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("rc=")]
    assert len(lines) == 1, proc.stderr
    assert f'pip install "edgecut[{extra}]"' in lines[0], lines[0]
    assert lines[0].startswith(f"edgecut {argv[0]}: error: this command needs ")


@pytest.fixture(scope="module")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of digits_cnn split after relu2 (version 1), built with everything."""
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    planner = Planner.create("digits_cnn")
    root = tmp_path_factory.mktemp("digits-repo")
    build_repository(planner, root, plans=[planner.cut_after("relu2")], model_spec="digits_cnn")
    return root


def test_an_edge_install_streams_to_a_cloud_node_of_a_full_install(
    digits_repo: Path, tmp_path: Path
) -> None:
    """`edgecut edge run` with only the edge extra's modules, against a cloud node here."""
    from cloud_node.server import CloudConfig, CloudNode

    node = CloudNode(CloudConfig(repository=digits_repo, port=0, threads=1))
    port = node.start()
    try:
        proc = run_as(
            "edge",
            [
                "edge",
                "run",
                "--repository",
                str(digits_repo),
                "--cloud",
                f"127.0.0.1:{port}",
                "--frames",
                "5",
                "--version",
                "1",
                "--no-fallback",
                "--threads",
                "1",
                "--json",
            ],
            cwd=tmp_path,
        )
    finally:
        node.stop(grace_s=0)
    assert exit_codes(proc) == [0], proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["frames"] == summary["cloud_frames"] == 5 and summary["error_frames"] == 0
