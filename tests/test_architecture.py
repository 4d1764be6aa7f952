"""The import direction of DESIGN.md and the lean-import rules of STYLE.md, enforced."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgecut", "edge_node", "cloud_node", "simulator", "partitioner", "protos")


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


@pytest.mark.parametrize(
    "module,forbidden",
    [
        # Solving, pricing and the graph IR work on a captured Graph: no torch needed.
        ("partitioner.solve", {"torch", "matplotlib"}),  # plotting is solve.plot, on demand
        ("partitioner.pricing.cost", {"torch"}),
        ("partitioner.model.graph", {"torch"}),
        # The read side of deployment: what a node checks before it loads any half.
        ("partitioner.deploy.repository", {"torch"}),
        ("partitioner.deploy.crossing", {"torch"}),
    ],
)
def test_torch_free_partitioner_modules(module: str, forbidden: set[str]) -> None:
    loaded = _modules_after(f"import {module}")
    assert not (loaded & forbidden), f"import {module} pulled in {loaded & forbidden}"


# --- No import circles -------------------------------------------------------------------


def import_circles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of an import graph that are circles, each sorted.

    ``imports`` maps a module to the modules it imports. A component is a circle when it
    holds more than one module, or one module that imports itself. Tarjan's algorithm,
    iterative so that a deep chain of imports cannot exhaust Python's recursion limit.
    """
    graph = {m: sorted(set(targets)) for m, targets in imports.items()}
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, [])
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = lowlink[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph[succ])))
                    break
                if succ in on_stack:
                    lowlink[node] = min(lowlink[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        circles.append(sorted(component))
    return sorted(circles)


def _import_map(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _describe(graph: grimp.ImportGraph, circle: list[str]) -> str:
    members = set(circle)
    lines = [" <-> ".join(circle)]
    for importer in circle:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for d in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"    {importer}:{d['line_number']}  {d['line_contents']}")
    return "\n".join(lines)


def test_circle_finder_finds_every_circle_and_only_circles() -> None:
    imports = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},  # a -> b -> c -> a, with a tail into d
        "d": {"e"},
        "e": set(),
        "x": {"y"},
        "y": {"x", "e"},  # a second circle that shares nothing with the first
        "s": {"s"},  # a module importing itself
        "lone": {"a"},  # reaches a circle without being part of it
    }
    assert import_circles(imports) == [["a", "b", "c"], ["s"], ["x", "y"]]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b"}}) == []


def test_circle_finder_survives_a_chain_deeper_than_the_recursion_limit() -> None:
    n = sys.getrecursionlimit() + 100
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(n)}
    assert import_circles(chain) == []
    chain[f"m{n}"] = {"m0"}
    assert import_circles(chain) == [sorted(f"m{i}" for i in range(n + 1))]


def test_circle_finder_reads_function_level_imports_from_a_grimp_graph() -> None:
    graph = grimp.ImportGraph()
    graph.add_import(
        importer="pkg.a", imported="pkg.b", line_number=3, line_contents="import pkg.b"
    )
    graph.add_import(
        importer="pkg.b", imported="pkg.a", line_number=9, line_contents="from pkg import a"
    )
    graph.add_import(
        importer="pkg.c", imported="pkg.a", line_number=1, line_contents="import pkg.a"
    )
    circles = import_circles(_import_map(graph))
    assert circles == [["pkg.a", "pkg.b"]]
    assert "pkg.b:9  from pkg import a" in _describe(graph, circles[0])


def test_no_import_circles() -> None:
    # grimp reads every import statement: module-level, inside functions (where a loop
    # is most easily hidden) and under TYPE_CHECKING (a type is still a dependency).
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    circles = import_circles(_import_map(graph))
    assert not circles, "import circles:\n" + "\n".join(_describe(graph, c) for c in circles)
