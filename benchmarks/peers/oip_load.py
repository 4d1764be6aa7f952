"""The one client of ``serving_peer.py``: tritonclient.grpc, unchanged, in a closed loop.

    python oip_load.py CONFIG.json     (prints one JSON line of results)

CONFIG: {"url", "model", "version", "inputs": NPZ of one frame's crossing tensors,
"streams", "warmup_s", "seconds"}. Each stream is a thread with its own channel sending the
same frame; frames/s counts answers received in the measured window. tritonclient cannot
share a process with edgecut's own OIP messages, so this script imports no edgecut module.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc

BATCH_FRAMES = "edgecut.batch_frames"  # the cloud node's reply parameter


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    frame = np.load(config["inputs"])
    streams = int(config["streams"])
    clients = [tc.InferenceServerClient(config["url"]) for _ in range(streams)]

    def request() -> list[tc.InferInput]:
        inputs = []
        for name in frame.files:
            array = frame[name]
            item = tc.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    payloads = [request() for _ in range(streams)]
    for client, payload in zip(clients, payloads, strict=True):  # connect, warm the model
        client.infer(config["model"], payload, model_version=config["version"], client_timeout=120)
    start = time.monotonic() + float(config["warmup_s"])
    stop = start + float(config["seconds"])
    latencies: list[list[float]] = [[] for _ in range(streams)]
    batches: list[list[int]] = [[] for _ in range(streams)]
    errors: list[str] = []

    def stream(i: int) -> None:
        try:
            while time.monotonic() < stop:
                t0 = time.monotonic()
                result = clients[i].infer(
                    config["model"], payloads[i], model_version=config["version"],
                    client_timeout=120,
                )  # fmt: skip
                end = time.monotonic()
                if start <= end <= stop:  # answers inside the measured window
                    latencies[i].append(end - t0)
                    params = result.get_response().parameters
                    if BATCH_FRAMES in params:
                        batches[i].append(int(params[BATCH_FRAMES].int64_param))
        except Exception as exc:  # reported in the results
            errors.append(f"{type(exc).__name__}: {exc}")

    before = _counts(clients[0], config)
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = _counts(clients[0], config)
    if not batches[0] and before and after and after[1] > before[1]:
        # A server that does not say its batch per reply (Triton: statistics instead).
        seen_mean = (after[0] - before[0]) / (after[1] - before[1])
    else:
        seen_mean = None
    flat = [x for lat in latencies for x in lat]
    seen = [b for bs in batches for b in bs]
    print(
        json.dumps(
            {
                "frames_per_s": len(flat) / float(config["seconds"]),
                "frames": len(flat),
                "p50_ms": float(np.percentile(flat, 50)) * 1e3 if flat else None,
                "p99_ms": float(np.percentile(flat, 99)) * 1e3 if flat else None,
                "mean_batch": float(np.mean(seen)) if seen else seen_mean,
                "errors": errors[:3],
            }
        )
    )


def _counts(client: tc.InferenceServerClient, config: dict) -> tuple[int, int] | None:
    """(frames inferred, model executions) from the server's statistics, if it keeps them:
    their ratio over a window is the mean batch."""
    try:
        stats = client.get_inference_statistics(
            config["model"], config["version"], as_json=True, client_timeout=30
        )
        (model,) = stats["model_stats"]
        return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))
    except Exception:  # MLServer keeps none
        return None


if __name__ == "__main__":
    main(Path(sys.argv[1]))
