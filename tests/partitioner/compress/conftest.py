"""Shared, session-cached compression runs on digits_cnn (training is done once per config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CUT = "pool2"  # head: three conv-BN-ReLU blocks and two poolings; tail: the classifier


@pytest.fixture(scope="session")
def digits():
    """(planner, data): digits_cnn planned for rpi4 over LTE, and the digits splits."""
    from partitioner.compress.data import resolve_data
    from partitioner.planner import Planner

    planner = Planner.create("digits_cnn", edge="rpi4", network="lte")
    data = resolve_data(
        "digits",
        model_name="digits_cnn",
        input_shape=planner.loaded.input_shape,
        model=planner.loaded.module,
    )
    return planner, data


@pytest.fixture(scope="session")
def baseline(digits, tmp_path_factory) -> Path:
    """The uncompressed split at the test cut, as `edgecut split` writes it."""
    planner, _ = digits
    plan = planner.cut_after(CUT)
    return planner.split(plan, tmp_path_factory.mktemp("baseline") / "split")


@pytest.fixture(scope="session")
def compressed(digits, baseline, tmp_path_factory):
    """compressed(method, cut=CUT, **config) -> (report dict, artifact dir), computed once."""
    from partitioner.compress import config_from_dict
    from partitioner.compress.compressor import compress

    planner, data = digits
    cache: dict[str, tuple[dict, Path]] = {}
    root = tmp_path_factory.mktemp("compressed")

    def get(method: str, cut: str = CUT, **config):
        key = json.dumps([method, cut, config], sort_keys=True)
        if key not in cache:
            cfg = config_from_dict({"method": method, "timing_repeats": 5, **config}, "test")
            out = root / f"{method}-{len(cache)}"
            report = compress(
                planner.captured,
                planner.cut_after(cut),
                cfg,
                out,
                model_spec="digits_cnn",
                model=planner.loaded.module,
                data=data,
                baseline=baseline if cut == CUT else None,
            )
            cache[key] = (report.to_json(), out)
        return cache[key]

    return get
