"""Freed buffers stay in the process, so a forward does not fault its activations in again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from protos import allocator

# One fresh process per setting: the allocator's state is per process. mobilenet_v2 frees and
# reallocates ~13 MB of activations per forward, which glibc's defaults give back to the kernel.
PROBE = """
import json, resource, sys, torch
from protos.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else False
torch.set_num_threads(1)
import partitioner.model.zoo as zoo
model, x = zoo.create_model("mobilenet_v2").eval(), torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    for _ in range(3):
        model(x)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(5):
        model(x)
    after = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
print(json.dumps({"applied": applied, "faults_per_forward": (after - before) / 5}))
"""


def _probe(setting: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, setting], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_steady_state_forwards_fault_no_pages_once_memory_is_kept() -> None:
    kept, returned = _probe("kept"), _probe("returned")
    assert kept["applied"] is True
    # Measured: 2,600-3,500 faults per forward with glibc's defaults, 0 with memory kept.
    assert kept["faults_per_forward"] < 50, (kept, returned)


def test_the_opt_out_keeps_the_c_librarys_defaults(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setenv(allocator.OPT_OUT, "0")
    assert allocator.keep_freed_memory() is False


def test_the_cli_keeps_freed_memory_before_any_command(monkeypatch, capsys) -> None:
    from edgecut import cli

    calls: list[bool] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["devices", "--json"]) == 0
    assert calls == [True]
    assert json.loads(capsys.readouterr().out)


def test_the_api_re_exports_it() -> None:
    import edgecut

    assert edgecut.keep_freed_memory is allocator.keep_freed_memory
