"""Every `edgecut ...` command in README.md's code blocks runs, exits 0 and does what its
comment (or the text around it) says.

The commands are read from the README itself; CASES says how each is checked, and where a
command is long it is run in a reduced form, each reduction written next to it with the
reason. A README command without a case fails the first test, so a new example cannot go
untested. Commands that take more than a few seconds on 2 cores are marked slow. The
README's Python block runs too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgecut.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[tuple[str, str]]:
    """(command, its comment) for every `edgecut ...` in the README's code blocks, with
    backslash continuations joined and a `... && edgecut demo` chain's last part taken."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                command, _, comment = part.strip().partition("#")
                if command.startswith("edgecut "):
                    found.append((" ".join(command.split()), comment.strip()))
    return found


Check = Callable[[str, str, Path], None]  # (stdout, stderr, working directory)


@dataclass
class Case:
    check: Check
    # The argv run instead of the README's, with why; None: the README's as written.
    reduced: list[str] | None = None
    why: str = ""
    slow: bool = False
    # Run as a chain by a dedicated test (servers, Ray clusters), not by test_command.
    chained: bool = False
    marks: list[Any] = field(default_factory=list)


def _json(out: str) -> Any:
    return json.loads(out)


def _png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as png:
        assert png.size[0] >= 600 and png.size[1] >= 300, png.size
        assert len(png.convert("L").getcolors(maxcolors=1 << 16) or []) > 20  # not blank


def check_demo(out: str, err: str, cwd: Path) -> None:
    assert re.search(r"10 frames,\s+10 answered by the cloud,\s+0 errors", out), out
    assert "predicted" in out and "measured" in out
    assert "features.4.conv.2" in out  # the cut the README names
    # Off a terminal every step is a log line, its total known up front.
    assert re.findall(r"^edgecut demo: steps (\d)/5", err, re.M) == ["0", "1", "2", "3", "4", "5"]


def check_models(out: str, err: str, cwd: Path) -> None:
    from partitioner.model.zoo import MODELS

    for entry in MODELS.list():
        assert entry.name in out
    assert "1x3x224x224" in out  # the form --input-shape also takes


def check_devices(out: str, err: str, cwd: Path) -> None:
    for preset in ("rpi4", "jetson-nano", "jetson-orin-nano", "x86-server", "a100", "host"):
        assert preset in out
    for network in ("3g", "lte", "wifi", "5g", "ethernet"):
        assert network in out
    assert "source" in out and "calibrated" in out


def check_profile_preset(out: str, err: str, cwd: Path) -> None:
    assert "layer1.0.conv1" in out and "rpi4" in out


def check_profile_host(out: str, err: str, cwd: Path) -> None:
    data = _json(out)
    assert data["device"] == "host" and data["total_ms"] > 0
    assert all(layer["ms"] >= 0 for layer in data["layers"]) and len(data["layers"]) > 20


def check_plan_text(out: str, err: str, cwd: Path) -> None:
    assert "Plan: " in out and "Predicted per frame" in out


def check_sweep_plot(out: str, err: str, cwd: Path) -> None:
    assert "best cut by bandwidth" in out
    _png(cwd / "plan.png")


def check_what_if(out: str, err: str, cwd: Path) -> None:
    data = _json(out)
    assert data["edge_nodes"][-1] == "layer2.1.relu2" and data["solver"] == "fixed"


def check_trace(out: str, err: str, cwd: Path) -> None:
    check_plan_text(out, err, cwd)
    assert "Verizon-LTE-short" in out


def check_split(out: str, err: str, cwd: Path) -> None:
    for name in ("head.pt2", "tail.pt2", "manifest.json"):
        assert (cwd / "split" / name).is_file(), name
    manifest = json.loads((cwd / "split" / "manifest.json").read_text())
    assert [t["name"] for t in manifest["crossing"]] == ["features.4.conv.2"]


def check_compress(out: str, err: str, cwd: Path) -> None:
    report = _json(out)
    assert report["method"] == "int8" and Path(report["out"]).resolve() == cwd / "small"
    assert report["head_param_bytes_after"] < report["head_param_bytes_before"]


def check_accuracy_budget(out: str, err: str, cwd: Path) -> None:
    assert "combinations priced" in out and "budget 0.5 points" in out, out
    before, after = map(float, re.search(r"accuracy.*?: ([\d.]+)% -> ([\d.]+)%", out).groups())  # type: ignore[union-attr]
    assert after >= before - 0.5 - 1e-9  # within the budget, measured on the test split
    assert re.search(r"^edgecut plan: search: price candidates \d+/\d+", err, re.M), err


def check_simulate(out: str, err: str, cwd: Path) -> None:
    assert "150 cameras" in out and "local, 1 shards" in out  # in this process, no Ray


def check_policies(out: str, err: str, cwd: Path) -> None:
    assert "Policies compared" in out
    for policy in ("edge-only", "cloud-only", "adaptive"):
        assert (cwd / "runs" / "q" / policy / "summary.json").is_file()
    _png(cwd / "runs" / "q" / "latency_cdf.png")


def _never(out: str, err: str, cwd: Path) -> None:
    raise AssertionError("run by a chained test")


# A `[cut] (mean ms)` cell of the README's sweep table.
_CELL = re.compile(r"(.+?) \(([\d.]+)\)")


def check_sweep(out: str, err: str, cwd: Path) -> None:
    """The README's table under the sweep is what the sweep finds."""
    data = _json(out)
    best = {(b["bandwidth_mbps"], b["cameras"]): b for b in data["best"]}
    text = README.read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (.+?) \| (.+?) \|$", text, re.M)
    assert len(rows) == 4, rows
    for mbps, small, large, planner in rows:
        for cameras, cell in ((20, small), (2000, large)):
            cut, value = _CELL.fullmatch(cell).groups()  # type: ignore[union-attr]
            b = best[float(mbps), cameras]
            assert (b["cut"], round(b["value"], 1)) == (cut, float(value)), (mbps, cameras, b)
        cut, value = _CELL.fullmatch(planner).groups()  # type: ignore[union-attr]
        b = best[float(mbps), 20]
        assert (b["planner_cut"], round(b["planner_predicted_ms"], 1)) == (cut, float(value))


CASES: dict[str, Case] = {
    "edgecut demo": Case(
        check_demo,
        reduced=["demo", "--frames", "10"],
        why="10 frames instead of 100: the frames take seconds, the steps before them most",
        slow=True,
    ),
    "edgecut models": Case(check_models),
    "edgecut devices": Case(check_devices),
    "edgecut profile --model resnet18 --device rpi4": Case(check_profile_preset),
    "edgecut profile --model resnet18 --device host --json": Case(
        check_profile_host,
        reduced=[
            "profile",
            "--model",
            "resnet18",
            "--device",
            "host",
            "--input-shape",
            "1,3,64,64",
            "--json",
        ],
        why="64x64 frames: timing every layer at 224x224 takes long on a busy host",
    ),
    "edgecut plan --model googlenet --edge jetson-nano --cloud a100 --bandwidth-mbps 20 "
    "--rtt-ms 10": Case(check_plan_text),
    "edgecut plan --model resnet18 --edge rpi4 --cloud x86-server --sweep-bandwidth 0.5:500 "
    "--plot plan.png": Case(check_sweep_plot),
    "edgecut plan --model resnet18 --cut-after layer2.1.relu2 --json": Case(check_what_if),
    "edgecut plan --model mypkg.nets:build --input-shape 1,3,160,160": Case(check_plan_text),
    "edgecut plan --model ./net.py:make --input-shape 1,1,28,28 --network Verizon-LTE-short": Case(
        check_trace
    ),
    "edgecut split --model mobilenet_v2 --network wifi --codec int8 --out split/": Case(
        check_split, slow=True
    ),
    "edgecut compress --model digits_cnn --cut-after relu2 --method int8 --out small/ --json": Case(
        check_compress, slow=True
    ),
    "edgecut plan --model digits_cnn --edge rpi4 --bandwidth-mbps 5 --accuracy-budget 0.5 "
    "--compress auto": Case(
        check_accuracy_budget,
        reduced=[
            "plan",
            "--model",
            "digits_cnn",
            "--edge",
            "rpi4",
            "--bandwidth-mbps",
            "5",
            "--accuracy-budget",
            "0.5",
            "--compress",
            "int8",
        ],
        why="int8 only: auto also trains pruned, low-rank and distilled heads for every cut, "
        "minutes on 2 cores (tests/partitioner/compress covers each method)",
        slow=True,
    ),
    "edgecut repository build --model resnet18 --edge rpi4 --cloud x86-server --codec int8 "
    "--sweep-bandwidth 0.5:500 --out repo/": Case(_never, chained=True, slow=True),
    "edgecut repository show --repository repo/": Case(_never, chained=True, slow=True),
    "edgecut cloud serve --repository repo/ --port 8001 --max-batch 16 --batch-timeout-ms 1 "
    "--token-file token.txt --tls-cert server.pem --tls-key server.key --metrics-port 9100": Case(
        _never, chained=True, slow=True
    ),
    "edgecut edge run --repository repo/ --cloud cloud.example:8001 --tls-ca ca.pem "
    "--token-file token.txt --source frames/ --fps 10 --adaptive --json": Case(
        _never, chained=True, slow=True
    ),
    "edgecut simulate scenarios/quickstart.yaml --no-ray": Case(check_simulate),
    "edgecut simulate scenarios/quickstart.yaml --no-ray --policy edge-only,cloud-only,adaptive "
    "--out runs/q": Case(check_policies),
    "edgecut simulate scenarios/smart-city.yaml --out runs/city": Case(
        _never, chained=True, slow=True
    ),
    "edgecut simulate scenarios/smart-city.yaml --address auto --json": Case(
        _never, chained=True, slow=True
    ),
    "edgecut sweep scenarios/sweep-resnet18.yaml --cuts all --bandwidths 1,5,20,100 "
    "--fleet-sizes 20,2000": Case(
        check_sweep,
        reduced=[
            "sweep",
            "scenarios/sweep-resnet18.yaml",
            "--no-ray",
            "--cuts",
            "all",
            "--bandwidths",
            "1,5,20,100",
            "--fleet-sizes",
            "20,2000",
            "--json",
        ],
        why="in this process (the same cells; Ray's start would dominate) and --json to check "
        "the README's table",
        slow=True,
    ),
}


def test_every_readme_command_has_a_case() -> None:
    commands = [c for c, _ in readme_commands()]
    assert len(commands) == len(set(commands))
    assert sorted(commands) == sorted(CASES), set(commands) ^ set(CASES)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory as a user's: the scenarios beside it, mypkg and net.py for the commands
    that plan a user's own network."""
    work = tmp_path_factory.mktemp("readme")
    (work / "scenarios").symlink_to(ROOT / "scenarios")
    net = (
        "import torch\nfrom torch import nn\n\n\n"
        "def {name}():\n"
        "    return nn.Sequential(nn.Conv2d({c}, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))\n"
    )
    (work / "mypkg").mkdir()
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "nets.py").write_text(net.format(name="build", c=3))
    (work / "net.py").write_text(net.format(name="make", c=1))
    return work


def run_in(
    workdir: Path, argv: list[str], capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[str, str]:
    mp.chdir(workdir)
    mp.syspath_prepend(str(workdir))  # `mypkg` importable, as from a user's project
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, f"exit {code}: {out.err[-2000:]}"
    return out.out, out.err


def _params() -> list[Any]:
    params = []
    for command, case in CASES.items():
        if case.chained:
            continue
        marks = [pytest.mark.slow] if case.slow else []
        params.append(pytest.param(command, marks=marks, id=command[8:60]))
    return params


@pytest.mark.parametrize("command", _params())
def test_command(
    command: str, workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[command]
    argv = case.reduced or shlex.split(command)[1:]
    out, err = run_in(workdir, argv, capsys, monkeypatch)
    case.check(out, err, workdir)


def test_the_python_example(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    [block] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(workdir)
    exec(compile(block, "README.md", "exec"), {})
    cut, total_ms = capsys.readouterr().out.split()
    assert cut == "features.4.conv.2" and abs(float(total_ms) - 52.87) < 0.01


def _readme(prefix: str) -> list[str]:
    [command] = [c for c, _ in readme_commands() if c.startswith(prefix)]
    return shlex.split(command)[1:]


def _swap(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with ``flag``'s value replaced (the mapping to a test's ports and files)."""
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serving_chain(
    workdir: Path, certs: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """repository build -> show -> cloud serve (TLS, token, metrics) -> edge run, as the
    README's Serving block chains them."""
    # As written (at smaller frames the Pi 4 keeps every band edge-only: no version to serve).
    run_in(workdir, _readme("edgecut repository build"), capsys, monkeypatch)
    model = workdir / "repo" / "resnet18"
    meta = json.loads((model / "model.json").read_text())
    # One version per cut of the table: edge-only below ~34 Mbit/s (no version: the local
    # model answers), cloud-only above (version 1); the table; the local model.
    assert [b["version"] for b in meta["breakpoints"]] == [None, "1"]
    assert list(meta["versions"]) == ["1"] and (model / "1" / "tail.pt2").is_file()
    assert (model / "local" / "manifest.json").is_file()

    out, _ = run_in(workdir, _readme("edgecut repository show"), capsys, monkeypatch)
    assert "resnet18" in out and "signatures: none" in out

    for name, source in (("server.pem", certs.server_cert), ("server.key", certs.server_key),
                         ("ca.pem", certs.ca)):  # fmt: skip
        shutil.copy(source, workdir / name)
    token = workdir / "token.txt"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    frames = workdir / "frames"
    frames.mkdir(exist_ok=True)
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (80, 60), (40 * i, 90, 200 - 40 * i)).save(frames / f"{i}.png")

    # Port 8001 and 9100 may be taken here: the node binds free ones and says which.
    metrics_port = _free_port()
    serve = _swap(_readme("edgecut cloud serve"), "--port", "0")
    serve = _swap(serve, "--metrics-port", str(metrics_port))
    port_file = workdir / "cloud.port"
    log = (workdir / "cloud.log").open("w")
    cloud = subprocess.Popen(
        [sys.executable, "-m", "edgecut.cli", *serve, "--port-file", str(port_file),
         "--threads", "1"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not port_file.exists():
            assert cloud.poll() is None, (workdir / "cloud.log").read_text()
            assert time.monotonic() < deadline, "the cloud node did not start"
            time.sleep(0.2)
        port = int(port_file.read_text())
        # cloud.example stands for the cloud's name in its certificate: here, localhost.
        edge = _swap(_readme("edgecut edge run"), "--cloud", f"localhost:{port}")
        out, _ = run_in(workdir, edge, capsys, monkeypatch)
        summary = json.loads(out)
        assert summary["frames"] == summary["cloud_frames"] == 4 and summary["error_frames"] == 0
        assert summary["adaptive"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert b"edgecut_frames" in r.read()
    finally:
        cloud.send_signal(signal.SIGTERM)
        try:
            cloud.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cloud.kill()
            cloud.wait()
        log.close()


@pytest.fixture
def ray_cluster() -> Iterator[dict[str, str]]:
    """`ray start --head --block` in its own process group and a private Ray temp dir (short:
    Ray's socket paths must fit 107 bytes); the environment that finds it; the group is
    stopped at the end."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--num-cpus=2", f"--port={_free_port()}", f"--ray-client-server-port={_free_port()}",
        "--include-dashboard=false", "--disable-usage-stats",
        f"--object-store-memory={200 * 1024**2}",
    ]  # fmt: skip
    log = (ray_tmp / "ray-start.log").open("w")
    head = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while not (ray_tmp / "ray" / "ray_current_cluster").exists():
            assert head.poll() is None and time.monotonic() < deadline, (
                ray_tmp / "ray-start.log"
            ).read_text()[-2000:]
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_smart_city_on_ray(workdir: Path, ray_cluster: dict[str, str]) -> None:
    """The two smart-city commands: a local Ray with --out, and a running cluster joined
    with --address auto. 6 simulated seconds instead of 600: the full 30 M frames are
    benchmarks/sim_scale.py's workload (a), timed in the README's table."""
    from simulator.scenario import load_scenario

    scenario = load_scenario(ROOT / "scenarios" / "smart-city.yaml")
    frames = sum(g.count * g.fps for g in scenario.fleet) * scenario.duration_s
    assert frames == 30_000_000  # "30 M frames"

    def run(argv: list[str], env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "edgecut.cli", *argv, "--duration-s", "6"],
            cwd=workdir, capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    local_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run(_readme("edgecut simulate scenarios/smart-city.yaml --out"), env=local_env)
    summary = json.loads((workdir / "runs" / "city" / "summary.json").read_text())
    assert summary["transport"] == "ray" and summary["cameras"] == 10_000
    joined = json.loads(run(_readme("edgecut simulate scenarios/smart-city.yaml --address"),
                            env=ray_cluster))  # fmt: skip
    assert joined["transport"] == "ray" and joined["shards"] == 2  # the cluster's CPUs
    assert joined["frames"] == summary["frames"]  # same seed: the same fleet, wherever it runs
