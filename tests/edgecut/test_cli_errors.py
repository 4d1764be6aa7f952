"""Every mistake on the command line is one line and exit 2, and leaves no file behind.

Each case runs ``edgecut.cli.main`` in this process on a command line that fails before any
model is loaded: a missing, directory, FIFO, binary or unreadable file to read; a file to
write in a missing directory or naming a directory; a number out of its range; a port in use.
The last tests pin the guard in ``edgecut.cli``: an OSError or a decode error is one line when
it is about a path the user gave, and keeps its traceback when it is not (a bug).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecut import args as edgecut_args
from edgecut.cli import main

SMALL = ["--model", "digits_cnn"]
UNREADABLE_AS_ROOT = "root reads any file whatever its mode; the FIFO and binary cases remain"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A working directory holding one of each kind of wrong path."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.png").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)))
    (tmp_path / "file").write_text("a file, not a directory\n")
    (tmp_path / SCENARIO).write_text("name: never-run\n")
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on for the length of the test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``edgecut argv``; assert exit 2 and exactly one line on stderr; return that line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits; a command returns
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith("edgecut"), lines[0]
    return lines[0]


SERVE = ["cloud", "serve", "--repository", "dir"]
EDGE = ["edge", "run", "--repository", "dir", "--cloud", "127.0.0.1:1"]
SCENARIO = "scenario.yaml"  # a text file, never loaded: each case fails on another argument

CASES = [
    # files to read
    (["split", *SMALL, "--plan", "missing.json", "--out", "o"], "got 'missing.json': no such file"),
    (["split", *SMALL, "--plan", "nodir/p.json", "--out", "o"], "no such directory 'nodir'"),
    (
        ["split", *SMALL, "--plan", "dir", "--out", "o"],
        "expected a JSON plan file (from `edgecut plan --out`); got 'dir', a directory",
    ),
    (["split", *SMALL, "--plan", "fifo", "--out", "o"], "got 'fifo', a named pipe"),
    (["split", *SMALL, "--plan", "binary", "--out", "o"], "got binary data in 'binary'"),
    (["split", *SMALL, "--plan", "file/p.json", "--out", "o"], "'file' is a file, not a directory"),
    (
        ["compress", *SMALL, "--plan", "binary", "--out", "o"],
        "(byte 0x89 at offset 0 is not UTF-8 text)",
    ),
    (["compress", *SMALL, "--config", "binary", "--out", "o"], "a YAML compression config file"),
    (["compress", *SMALL, "--baseline", "missing", "--out", "o"], "no such directory"),
    (["compress", *SMALL, "--baseline", "file", "--out", "o"], "got 'file', a file"),
    (["plan", *SMALL, "--compress", "int8", "--config", "binary"], "got binary data"),
    (["plan", *SMALL, "--config", "fifo"], "a named pipe"),
    (["simulate", "binary"], "expected a YAML scenario file, which is text; got binary data"),
    (["simulate", "missing.yaml"], "got 'missing.yaml': no such file"),
    (["simulate", "dir"], "got 'dir', a directory"),
    (["simulate", "fifo", "--no-ray"], "a named pipe"),
    (["sweep", "binary", "--bandwidths", "1"], "got binary data in 'binary'"),
    (["sweep", "dir", "--bandwidths", "1"], "a directory"),
    # files and directories to write
    (["plan", *SMALL, "--plot", "nodir/p.png"], "in an existing directory; got 'nodir/p.png'"),
    (["plan", *SMALL, "--plot", "dir.png"], "got 'dir.png', a directory"),
    (["plan", *SMALL, "--plot", "plan.jpg"], "ending in .png; got 'plan.jpg'"),
    (["plan", *SMALL, "--out", "nodir/plan.json"], "no such directory 'nodir'"),
    (["plan", *SMALL, "--out", "dir"], "expected a file name for the plan (JSON); got 'dir'"),
    (["plan", *SMALL, "--out", "dir/"], "a directory"),
    (["plan", *SMALL, "--out", "fifo"], "got 'fifo', a named pipe"),
    (["plan", *SMALL, "--out", "/dev/null"], "a character device"),
    ([*SERVE, "--port-file", "nodir/port"], "--port-file: expected a file name for the bound port"),
    ([*SERVE, "--port-file", "dir"], "got 'dir', a directory"),
    ([*EDGE, "--results", "nodir/results.jsonl"], "no such directory 'nodir'"),
    ([*EDGE, "--results", "dir"], "--results: expected a file name for per-frame results"),
    (["split", *SMALL, "--out", "file"], "expected a directory for the split artifact"),
    (["split", *SMALL, "--out", "file/artifact"], "'file', a file on the way to 'file/artifact'"),
    (["compress", *SMALL, "--cut-after", "relu2", "--out", "file"], "got 'file', a file"),
    (["simulate", SCENARIO, "--out", "file"], "a directory for the simulation's results"),
    (["sweep", SCENARIO, "--bandwidths", "1", "--out", "file"], "sweep.json and sweep.png"),
    (["repository", "build", *SMALL, "--out", "file"], "for the model repository; got 'file'"),
    (["repository", "keygen", "--out", "dir"], "for the private key; got 'dir', a directory"),
    (["demo", "--keep", "file/repo"], "a file on the way to 'file/repo'"),
    # numbers
    ([*SERVE, "--max-message-mb", "2048"], "expected an integer in 1..2047 (gRPC limits"),
    ([*SERVE, "--max-message-mb", "0"], "got 0"),
    ([*SERVE, "--port", "65536"], "expected a port in 0..65535"),
    ([*SERVE, "--metrics-port", "-1"], "expected a port in 0..65535 (0 picks a free one), got -1"),
    ([*SERVE, "--threads", "1000000"], "expected an integer in 1..1024 (torch threads)"),
    ([*EDGE, "--threads", "0"], "in 1..1024"),
    ([*EDGE, "--deadline-ms", "inf"], "--deadline-ms: expected a finite number, got 'inf'"),
    (["compress", *SMALL, "--threads", "1000000", "--out", "o"], "1..1024"),
    (["profile", *SMALL, "--device", "host", "--repeats", "0"], "1..10000 (timed runs per node)"),
    (
        ["profile", *SMALL, "--device", "host", "--repeats", "1e9"],
        "expected an integer in 1..10000",
    ),
    (["plan", *SMALL, "--bandwidth-mbps", "inf"], "expected a finite number, got 'inf'"),
    (["plan", *SMALL, "--rtt-ms", "nan"], "--rtt-ms: expected a finite number, got 'nan'"),
    (["plan", *SMALL, "--sweep-bandwidth", "1:inf"], "both finite, got '1:inf'"),
    (["plan", *SMALL, "--accuracy-budget", "inf"], "--accuracy-budget: expected a finite number"),
    (["sweep", SCENARIO, "--bandwidths", "1,inf"], "expected positive numbers, all finite"),
    (["sweep", SCENARIO, "--bandwidths", "1", "--fleet-sizes", "1,10**8"], "expected integers"),
    (["sweep", SCENARIO, "--bandwidths", "1", "--fleet-sizes", "100000000"], "1..10,000,000"),
    (["simulate", SCENARIO, "--shards", "0"], "--shards: must be >= 1, got 0"),
    (["demo", "--frames", "0"], "--frames: must be >= 1"),
    (["demo", "--fps", "nan"], "--fps: expected a finite number"),
    # shapes
    (
        ["plan", "--model", "alexnet", "--input-shape", "3,224,224"],
        "--input-shape: expected N,C,H,W with the batch first, e.g. 1,3,224,224; got '3,224,224'",
    ),
    (["profile", *SMALL, "--device", "rpi4", "--input-shape", "8,8"], "first number (8)"),
    (["plan", *SMALL, "--input-shape", "0x1x8x8"], "(or 1x3x224x224); got '0x1x8x8'"),
    (["plan", *SMALL, "--input-shape", "1,3,x,64"], "(or 1x3x224x224); got '1,3,x,64'"),
    (["compress", *SMALL, "--input-shape", "1x3xx8", "--out", "o"], "got '1x3xx8'"),
]


@pytest.mark.parametrize("argv,fragment", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_mistake_is_one_line_and_leaves_nothing(
    argv: list[str],
    fragment: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(files)
    before = tree(files)
    line = one_line_error(argv, capsys)
    assert fragment in line, line
    assert tree(files) == before  # no output, not even half of one


@pytest.mark.skipif(os.geteuid() == 0, reason=UNREADABLE_AS_ROOT)
def test_an_unreadable_file_is_one_line(
    files: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(files)
    (files / "secret.json").write_text("{}")
    (files / "secret.json").chmod(0)
    line = one_line_error(["split", *SMALL, "--plan", "secret.json", "--out", "o"], capsys)
    assert "got 'secret.json', which cannot be read (permission denied)" in line


def test_a_port_in_use_is_one_line_naming_it(
    busy_port: int, files: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(files)
    line = one_line_error([*SERVE, "--port", str(busy_port)], capsys)
    assert line == (
        f"edgecut cloud: error: --port {busy_port}: expected a free port, but "
        f"127.0.0.1:{busy_port} is in use by another process; stop it or choose another port "
        "(0 picks a free one)"
    )
    line = one_line_error([*SERVE, "--port", "0", "--metrics-port", str(busy_port)], capsys)
    assert f"--metrics-port {busy_port}: expected a free port" in line
    line = one_line_error(
        [*SERVE, "--port", str(busy_port), "--metrics-port", str(busy_port)], capsys
    )
    assert f"--metrics-port {busy_port}: expected a port other than --port" in line


@pytest.mark.parametrize(
    "text,shape",
    [("1,3,224,224", (1, 3, 224, 224)), ("1x3x224x224", (1, 3, 224, 224)), ("1 x 8", (1, 8))],
)
def test_input_shape_takes_the_form_edgecut_models_prints(
    text: str, shape: tuple[int, ...]
) -> None:
    assert edgecut_args.input_shape(text) == shape


# --- the guard in edgecut.cli: a path the user gave, or a bug -------------------------------


def fail_with(monkeypatch: pytest.MonkeyPatch, error: BaseException | None = None, **how) -> None:
    """Make ``edgecut split`` raise ``error``, or what ``how['run'](args)`` raises."""
    from edgecut.commands import split

    def run(args):
        if error is not None:
            raise error
        how["run"](args)

    monkeypatch.setattr(split, "run", run)


def split_argv(plan: str = "plan.json") -> list[str]:
    return ["split", *SMALL, "--plan", plan, "--out", "out"]


@pytest.fixture
def plan_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.json").write_text("{not json\n")
    return tmp_path


def test_an_os_error_on_a_given_path_is_one_line(
    plan_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --out was fine when parsed; the disk filled while writing into it.
    full = OSError(28, "No space left on device", str(plan_dir / "out" / "head.pt2"))
    fail_with(monkeypatch, full)
    line = one_line_error(split_argv(), capsys)
    assert line == (
        f"edgecut split: error: --out out: {plan_dir / 'out' / 'head.pt2'}: No space left on device"
    )


def test_an_os_error_elsewhere_is_a_bug_with_its_traceback(
    plan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_with(monkeypatch, FileNotFoundError(2, "No such file or directory", "/usr/lib/edgecut.so"))
    with pytest.raises(FileNotFoundError):
        main(split_argv())
    fail_with(monkeypatch, ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(ConnectionResetError):
        main(split_argv())


def test_json_and_yaml_errors_in_a_given_file_are_one_line(
    plan_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fail_with(monkeypatch, run=lambda args: json.loads(Path(args.plan).read_text()))
    line = one_line_error(split_argv(), capsys)
    assert "--plan plan.json: expected JSON, got invalid JSON: Expecting property name" in line

    import yaml

    (plan_dir / "plan.json").write_text("a: [1, 2\n")
    fail_with(monkeypatch, run=lambda args: yaml.safe_load(Path(args.plan).read_text()))
    line = one_line_error(split_argv(), capsys)
    assert "--plan plan.json: expected YAML, got invalid YAML at line 2: expected ','" in line
    with Path("plan.json").open() as stream:  # a stream names its file in the error
        fail_with(monkeypatch, run=lambda args: yaml.safe_load(stream))
        assert "invalid YAML" in one_line_error(split_argv(), capsys)


def test_json_and_yaml_errors_elsewhere_are_bugs(
    plan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    fail_with(monkeypatch, run=lambda args: json.loads("{not json\n" + "x"))
    with pytest.raises(json.JSONDecodeError):
        main(split_argv())
    fail_with(monkeypatch, run=lambda args: yaml.safe_load("a: [1, 2\n"))
    with pytest.raises(yaml.YAMLError):
        main(split_argv())


def test_bytes_past_the_sniffed_start_are_one_line_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The argument type reads the first MiB; a loader that meets a bad byte after it raises
    UnicodeDecodeError, which the guard recognises as the file's own bytes."""
    monkeypatch.chdir(tmp_path)
    late = edgecut_args.TEXT_SNIFF_BYTES + 10
    Path("scenario.yaml").write_bytes(b"#" * late + b"\xff\n")
    line = one_line_error(["simulate", "scenario.yaml", "--no-ray"], capsys)
    assert line == (
        "edgecut simulate: error: scenario.yaml: expected UTF-8 text, got binary data "
        f"(byte 0xff at offset {late})"
    )


def test_undecodable_bytes_from_elsewhere_are_a_bug(
    plan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_with(monkeypatch, run=lambda args: b"\x00\xff wire bytes".decode())
    with pytest.raises(UnicodeDecodeError):
        main(split_argv())


def test_a_token_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    from edgecut.commands.cloud import read_token_file
    from partitioner.errors import EdgecutError

    os.mkfifo(tmp_path / "tokens")  # a plain open would wait for a writer forever
    with pytest.raises(EdgecutError, match="is not a regular file"):
        read_token_file(str(tmp_path / "tokens"))
    with pytest.raises(EdgecutError, match="is a directory"):
        read_token_file(str(tmp_path))


def test_a_plan_file_that_breaks_the_plan_schema_names_the_field(tmp_path: Path) -> None:
    from edgecut.args import read_plan_json
    from partitioner.errors import EdgecutError

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "digits_cnn", "edge_nodes": "x", "objective": "latency"}))
    with pytest.raises(EdgecutError, match=r"--plan .*plan\.json: field 'solver': Field required"):
        read_plan_json(str(plan))
