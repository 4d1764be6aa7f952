"""Shared fixtures: captured zoo models are cached per session (capture takes seconds)."""

from __future__ import annotations

import functools
import os

import pytest

# Tests share two cores with servers, clients and each other. A multi-threaded
# OpenMP pool that spin-waits on a busy machine runs ~50x slower (resnet18 at
# 32x32: 1.2 s per forward with 2 threads under load, 23 ms with 1), so every test
# process runs torch on one thread. Benchmarks set their own thread counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@functools.cache
def _captured(name: str, shape: tuple[int, ...] | None):
    import partitioner.zoo as zoo
    from partitioner.graph import capture

    entry = zoo.get_entry(name)
    model = zoo.create_model(name)
    input_shape = shape or entry.test_input_shape
    import torch

    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    return model, capture(model, x, name=name)


@pytest.fixture(scope="session")
def captured_zoo():
    """captured_zoo(name, shape=None) -> (model, CapturedModel) at the test input shape."""

    def get(name: str, shape: tuple[int, ...] | None = None):
        return _captured(name, tuple(shape) if shape else None)

    return get
