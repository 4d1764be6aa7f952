"""Serve one model of a Triton export with MLServer (Seldon's OIP server).

    python mlserver_serve.py MODEL_DIR --grpc-port P --http-port P [--tail tail.pt2]
        [--threads 1] [--max-batch 16] [--batch-timeout-ms 1] [--workdir DIR]

Runs in a virtual environment of its own: ``pip install mlserver torch==2.13.0`` (plus
``tritonclient[grpc]`` for the config schema). Writes MLServer's ``settings.json`` and
``model-settings.json`` into ``--workdir`` and execs ``mlserver start`` there; inference
runs in the server's own process (``parallel_workers: 0``, no hop to a worker pool), with
MLServer's adaptive batching at the same size and window as the others.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--tail", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-timeout-ms", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from tail_model import TritonModelDir

    model = TritonModelDir.read(args.model_dir)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlserver-"))
    folder = work / model.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("mlserver_runtime.py", "tail_model.py"):
        shutil.copy(Path(__file__).with_name(name), folder / name)
    settings = {
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "host": "127.0.0.1",
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "grpc_max_message_length": 256 * 1024 * 1024,
        "debug": False,
    }
    (work / "settings.json").write_text(json.dumps(settings))
    batching = args.max_batch > 1
    model_settings = {
        "name": model.name,
        "implementation": "mlserver_runtime.TailRuntime",
        "max_batch_size": args.max_batch if batching else 0,
        "max_batch_time": args.batch_timeout_ms / 1e3 if batching else 0,
        "parameters": {
            "uri": str(args.model_dir.resolve()),
            "version": str(model.version),
            "extra": {
                "model": model.to_json(),
                "tail": str(args.tail.resolve()) if args.tail else None,
                "threads": args.threads,
            },
        },
    }
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = Path(sys.executable).with_name("mlserver")
    os.chdir(work)
    os.execv(str(mlserver), [str(mlserver), "start", str(work)])


if __name__ == "__main__":
    main()
