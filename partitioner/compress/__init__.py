"""Compression of the edge head, and of the tensors that cross the cut, with measured accuracy.

The cloud has capacity; the edge does not. A method takes the head of a plan (and
the frozen tail where it trains through the whole path) and returns a smaller head
that produces the same crossing tensors, so the tail and the cloud stay as they are:

* ``int8``: post-training quantization (PT2E, torchao), lowered to int8 kernels on x86;
* ``prune``: structured pruning that removes channels (torch-pruning), then distillation;
* ``lowrank``: SVD / Tucker-2 factorisation of convs and linears, then distillation;
* ``distill``: a narrow depthwise-separable student trained against the head;
* ``nas``: a student head searched for the edge device (kernel, squeeze, decomposition,
  width, depth) with a weight-sharing supernet, priced by the cost model;
* ``mixed``: a pipeline of these, e.g. prune -> distill -> int8.

Methods are registered in :data:`~partitioner.compress.registry.METHODS`; configs
are read by :func:`~partitioner.compress.loader.load_config`.
:func:`~partitioner.compress.compressor.compress` writes the compressed split
artifact and a :class:`~partitioner.compress.compressor.CompressionReport`;
:func:`~partitioner.compress.search.search` chooses cut x method x codec under an
accuracy budget. The feature codecs themselves live in :mod:`partitioner.codecs`.
"""

# The built-in methods register themselves on import; the loader resolves names in METHODS.
from partitioner.compress import distill, lowrank, nas, pipeline, prune, quantize  # noqa: F401
from partitioner.compress.config import CompressConfig
from partitioner.compress.loader import config_from_dict, load_config
from partitioner.compress.registry import METHODS, Method, method_config

__all__ = [
    "METHODS",
    "CompressConfig",
    "Method",
    "config_from_dict",
    "load_config",
    "method_config",
]
