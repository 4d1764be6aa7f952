"""Refit the calibrated device presets to the published figures and print every figure's error.

    python benchmarks/calibration.py

Fits, per device, the effective peak of the measured dtype and the per-op overhead
(partitioner.pricing.calibration.fit_device) on the figures whose role is "design" or "fit",
then prints predictions for all figures, held-out ones included, for both the fitted
profile and the preset as shipped (they should agree).
"""

from __future__ import annotations

import torch

import partitioner.model.zoo as zoo
from partitioner.model.capture import capture
from partitioner.pricing.calibration import FIGURES, figures_for, fit_device
from partitioner.pricing.profiles import DEVICES


def main() -> None:
    torch.set_num_threads(1)
    models = sorted({f.model for f in FIGURES})
    graphs = {
        m: capture(zoo.create_model(m), torch.randn(1, 3, 224, 224), name=m).graph for m in models
    }
    fitted = {}
    for device in sorted({f.device for f in FIGURES}):
        profile = DEVICES.get(device)
        for dtype in sorted({f.dtype for f in FIGURES if f.device == device}, reverse=True):
            with_overhead = dtype == profile.default_dtype  # other dtypes share the overhead
            profile = fit_device(
                profile, dtype, figures_for(device), graphs, fit_overhead=with_overhead
            )
        fitted[device] = profile
        peaks = ", ".join(f"{k} {v:.3f}" for k, v in profile.peak_gflops.items())
        print(
            f"{device}: fitted effective peak GFLOP/s {peaks}; per-op overhead {profile.op_overhead_us:.2f} µs"
        )
    print(
        f"\n{'device':<13}{'dtype':<9}{'model':<14}{'role':<10}{'published':>10}{'fitted':>10}"
        f"{'error':>8}{'preset':>10}{'error':>8}"
    )
    for f in FIGURES:
        got = fitted[f.device].graph_ms(graphs[f.model], f.dtype)
        shipped = DEVICES.get(f.device).graph_ms(graphs[f.model], f.dtype)
        print(
            f"{f.device:<13}{f.dtype:<9}{f.model:<14}{f.role:<10}{f.ms:>10.1f}{got:>10.1f}"
            f"{(got / f.ms - 1) * 100:>+7.1f}%{shipped:>10.1f}{(shipped / f.ms - 1) * 100:>+7.1f}%"
        )


if __name__ == "__main__":
    main()
