"""An MLServer runtime for one tail of a Triton export (see ``tail_model.py``).

MLServer loads it by name (``"implementation": "mlserver_runtime.TailRuntime"``) from the
model folder ``mlserver_serve.py`` writes; ``parameters.extra.model`` declares the Triton
model (``TritonModelDir.to_json``: MLServer and tritonclient cannot share a process, so the
config is read before MLServer starts) and ``parameters.extra.tail`` an optional ``tail.pt2``. MLServer's adaptive batching
concatenates requests along the first dimension before ``predict`` and splits the answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

sys.path.insert(0, str(Path(__file__).parent))
from tail_model import TailRunner, TritonModelDir


class TailRuntime(MLModel):
    async def load(self) -> bool:
        params = self.settings.parameters
        assert params is not None
        extra = params.extra or {}
        torch.set_num_threads(int(extra.get("threads", 1)))
        self.model_dir = TritonModelDir.from_json(extra["model"])
        tail = extra.get("tail")
        self.runner = TailRunner(self.model_dir, Path(tail) if tail else None)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        given = {i.name: i for i in payload.inputs}
        arrays: list[np.ndarray] = [
            NumpyCodec.decode_input(given[d.name]).astype(d.dtype, copy=False)
            for d in self.model_dir.inputs
        ]
        outputs = self.runner(*arrays)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, a) for name, a in outputs.items()],
        )
