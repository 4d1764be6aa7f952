"""Serve one model of a Triton export with NVIDIA's PyTriton (a real Triton server).

    python pytriton_serve.py MODEL_DIR --grpc-port P [--http-port P] [--metrics-port P]
        [--tail tail.pt2] [--threads 1] [--ready-file FILE]

Runs in a virtual environment of its own: ``pip install nvidia-pytriton torch==2.13.0``
(PyTriton pins numpy<2 and protobuf<7, which edgecut's environment does not allow).
Triton's gRPC and HTTP front ends, its dynamic batcher and its instance groups are the
server's own; the tail runs as PyTriton's Python callable (the bundled server carries only
the Python backend, not the PyTorch one). The ready file is written once the model is
loaded; SIGTERM or SIGINT stops the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import torch


def _embed_this_python() -> None:
    """Triton's Python-backend stub embeds ``libpython3.X.so`` found by the dynamic linker
    and runs this interpreter's standard library: when they differ (a pyenv 3.11.7 next to
    Debian's libpython 3.11.2) the stub fails ("'_thread.RLock' object has no attribute
    '_recursion_count'"). Put this interpreter's own libpython first."""
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("INSTSONAME") or ""
    if libdir and library and (Path(libdir) / library).exists():
        paths = [libdir, *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
        os.environ["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--tail", type=Path, help="serve this tail.pt2 instead of model.pt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from tail_model import TailRunner, TritonModelDir

    _embed_this_python()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    torch.set_num_threads(args.threads)
    model = TritonModelDir.read(args.model_dir)
    runners = [TailRunner(model, args.tail) for _ in range(model.instances)]

    def callable_for(runner: TailRunner):  # one per instance: Triton runs them side by side
        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            return runner(*(inputs[d.name] for d in model.inputs))

        return infer

    ports = {"grpc_port": args.grpc_port, "http_port": args.http_port or None}
    config = TritonConfig(
        **ports,
        metrics_port=args.metrics_port or None,
        grpc_address="127.0.0.1",
        http_address="127.0.0.1",
        log_verbose=0,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Triton(config=config) as triton:
        triton.bind(
            model_name=model.name,
            model_version=model.version,
            infer_func=[callable_for(r) for r in runners],
            inputs=[Tensor(name=d.name, dtype=d.dtype, shape=d.dims) for d in model.inputs],
            outputs=[Tensor(name=d.name, dtype=d.dtype, shape=d.dims) for d in model.outputs],
            config=ModelConfig(
                batching=model.max_batch_size > 0,
                max_batch_size=model.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=model.batch_delay_us),
            ),
            strict=True,
        )
        triton.run()
        if args.ready_file:
            args.ready_file.write_text("ready\n")
        stop.wait()


if __name__ == "__main__":
    main()
