"""tritonclient's side of the cloud node test, run as its own process.

tritonclient.grpc and protos.inference register the same protobuf package, so this script
never imports edgecut. It reads a JSON config, talks to the cloud node exactly as any Triton
user would, and writes what it saw next to the config.

    python triton_node_peer.py CONFIG.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def main(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    inputs = np.load(config["inputs"])
    headers = {"authorization": f"Bearer {config['token']}"} if config.get("token") else None
    out: dict[str, object] = {}
    with tc.InferenceServerClient(config["url"]) as client:
        out["live"] = client.is_server_live(headers=headers, client_timeout=30)
        out["ready"] = client.is_server_ready(headers=headers, client_timeout=30)
        out["model_ready"] = client.is_model_ready(
            config["model"], config["version"], headers=headers, client_timeout=30
        )
        meta = client.get_model_metadata(
            config["model"], config["version"], headers=headers, as_json=True, client_timeout=30
        )
        out["metadata"] = meta
        infer_inputs = []
        for name in inputs.files:
            array = inputs[name]
            item = tc.InferInput(name, list(array.shape), "FP32")
            item.set_data_from_numpy(array)
            infer_inputs.append(item)
        result = client.infer(
            config["model"],
            infer_inputs,
            model_version=config["version"],
            outputs=[tc.InferRequestedOutput(config["output"])],
            request_id="triton-1",
            headers=headers,
            client_timeout=60,
        )
        out["id"] = result.get_response().id
        np.save(config_path.with_suffix(".out.npy"), result.as_numpy(config["output"]))
        try:
            client.infer("no_such_model", infer_inputs, headers=headers, client_timeout=30)
        except InferenceServerException as exc:
            out["unknown_model_status"] = str(exc.status())
    config_path.with_suffix(".out.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
