"""The nas method: its search space fits the cut, its front is a Pareto front, its choice
respects the budget, it reads from YAML, and its head is exported and served like any."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partitioner.compress import config_from_dict, load_config
from partitioner.compress.compressor import make_context
from partitioner.compress.config import NasConfig, TrainConfig
from partitioner.compress.head import as_tuple
from partitioner.compress.measure import accuracy
from partitioner.compress.nas import (
    Arch,
    Candidate,
    StageChoice,
    Supernet,
    choose,
    edge_ms,
    pareto_front,
    space_for,
)
from partitioner.compress.registry import method_config
from partitioner.deploy.artifact import load_split
from partitioner.deploy.split import split_module
from partitioner.errors import ConfigError
from partitioner.pricing.profiles import DEVICES

from .conftest import CUT

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# A test-sized search: a small space, a one-epoch supernet, two finalists fine-tuned briefly.
TINY = {
    "kernels": [3, 5],
    "widths": [0.25, 0.5],
    "depths": [1, 2],
    "population": 4,
    "generations": 1,
    "finalists": 2,
    "quick_val_samples": 120,
    "recalibration_samples": 64,
    "supernet": {"epochs": 1},
    "finetune": {"epochs": 2},
}


@pytest.fixture(scope="module")
def context(digits):
    planner, data = digits
    halves = split_module(planner.captured, frozenset(planner.cut_after(CUT).edge_nodes))
    return make_context(planner.captured, halves, data, seed=0, edge=DEVICES.get("rpi4"))


def test_every_candidate_produces_the_crossing_tensor(context) -> None:
    space = space_for(context, NasConfig())
    (want,) = (tuple(t.shape) for t in as_tuple(context.teacher(context.example)))
    supernet = Supernet(space, seed=0).eval()
    rng = np.random.default_rng(1)
    archs = [space.extreme(largest=True), space.extreme(largest=False)]
    archs += [space.random(rng) for _ in range(12)]
    seen = {s.decomposition for a in archs for s in a.stages}
    assert seen == {"standard", "separable", "group", "ghost"}
    x = context.data.x_val[:4]
    for arch in archs:
        student = supernet.extract(arch, context.example)
        (out,) = student(x)
        assert (out.shape[0], *out.shape[1:]) == (4, *want[1:]), arch.label()
        with torch.no_grad():
            supernet.active = arch
            (shared,) = supernet(x)
            (folded,) = student.fused()(x)
        # the extracted student is the supernet's sub-network, and folding BN keeps its function
        assert torch.allclose(out, shared, atol=1e-5)
        assert torch.allclose(out, folded, atol=1e-4)
        assert (out >= 0).all()  # the cut follows a ReLU: so does every student


def test_the_levers_change_the_predicted_latency(context) -> None:
    space = space_for(context, NasConfig())
    supernet = Supernet(space, seed=0).eval()
    x1 = context.example[:1]
    rpi4 = DEVICES.get("rpi4")

    def ms(**stage) -> float:
        choice = StageChoice(**{"kernel": 3, "decomposition": "standard", "squeeze": 1.0,
                                "width": 0.5, "depth": 1, **stage})  # fmt: skip
        arch = Arch(tuple(choice for _ in space.strides))
        return edge_ms(supernet.extract(arch, x1).fused(), x1, rpi4)

    base = ms()
    assert ms(depth=3) > base  # more blocks, more ops
    assert ms(kernel=7, width=1.0) > ms(kernel=3, width=1.0)  # more FLOPs
    assert ms(decomposition="separable") > base  # rpi4 pays per op: two convs per block


def test_a_searched_head_quantizes_to_int8(context) -> None:
    from partitioner.compress.config import Int8Config
    from partitioner.compress.head import Head
    from partitioner.compress.registry import METHODS

    space = space_for(context, NasConfig())
    arch = Arch(tuple(StageChoice(3, d, 0.5, 1.0, 1) for d in ("ghost", "group")))
    student = Supernet(space, seed=0).extract(arch, context.example).fused()
    head = METHODS.get("int8").apply(
        Head(student, student), context, Int8Config(calibration_samples=32)
    )
    # every conv of the student is one the PT2E quantizer recognises: int8 weights throughout
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in student.modules())
    targets = [str(n.target) for n in head.module.graph.nodes]
    assert sum("dequantize_per_channel" in t for t in targets) == convs
    assert not any(p.dtype == torch.float32 and p.dim() == 4 for p in head.module.parameters())


def test_pareto_front_is_non_dominated() -> None:
    rng = np.random.default_rng(0)
    points = [(float(a), float(b)) for a, b in rng.random((60, 2))]
    points += [points[3], (points[5][0], points[5][1] - 0.1)]  # a tie and a dominated twin
    front = pareto_front(points)

    def dominates(p, q) -> bool:
        return p[0] <= q[0] and p[1] >= q[1] and p != q

    assert front and len(set(front)) == len(front)
    for i in front:
        assert not any(dominates(q, points[i]) for q in points)
    for j in set(range(len(points))) - set(front):
        assert any(dominates(points[i], points[j]) or points[i] == points[j] for i in front)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)


def _candidate(ms: float, val: float) -> Candidate:
    arch = Arch((StageChoice(3, "standard", 1.0, 0.5, 1),))
    return Candidate(arch, ms, 0, val, val_accuracy_tuned=val)


def test_budget_selection_takes_the_fastest_within_budget() -> None:
    finalists = [_candidate(1.0, 90.0), _candidate(2.0, 97.5), _candidate(3.0, 99.0)]
    assert choose(finalists, 99.5, 3.0) == (finalists[1], True)
    assert choose(finalists, 99.5, 10.0) == (finalists[0], True)
    assert choose(finalists, 99.5, 0.5) == (finalists[2], True)
    # nothing within budget: the most accurate, and the miss is said
    assert choose(finalists, 99.5, 0.1) == (finalists[2], False)


def test_yaml_config(tmp_path) -> None:
    path = tmp_path / "nas.yaml"
    path.write_text(
        "method: nas\nnas:\n  accuracy_budget: 0.5\n  device: jetson-nano\n"
        "  decompositions: [ghost, separable]\n  kernels: [3, 7]\n  squeezes: [1, 0.5]\n"
        "  widths: [0.5, 1.0]\n  depths: [1, 2]\n  population: 8\n  generations: 3\n"
        "  supernet: {epochs: 5, lr: 0.01}\n  finetune: {epochs: 2}\n"
    )
    config = method_config(load_config(path), "nas")
    assert config == NasConfig(
        accuracy_budget=0.5,
        device="jetson-nano",
        decompositions=("ghost", "separable"),
        kernels=(3, 7),
        squeezes=(1, 0.5),
        widths=(0.5, 1.0),
        depths=(1, 2),
        population=8,
        generations=3,
        supernet=TrainConfig(epochs=5, lr=0.01),
        finetune=TrainConfig(epochs=2),
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("nas:\n  decompositions: [standard, winograd]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: nas.decompositions: expected a list of") as e:
        load_config(bad)
    assert "winograd" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"nas.kernels: .*got 4"):
        config_from_dict({"nas": {"kernels": [3, 4]}}, "cfg")
    with pytest.raises(ConfigError, match=r"nas.supernet.epochs: expected an int >= 0"):
        config_from_dict({"nas": {"supernet": {"epochs": -1}}}, "cfg")


def test_search_exports_a_head_served_with_the_tail_byte_identical(
    compressed, baseline, digits
) -> None:
    report, out = compressed("nas", nas=TINY)
    note = report["notes"]["nas"]
    # the tail is the deployed one, byte for byte; the head is the searched student
    assert report["tail_unchanged"] is True
    assert (out / "tail.pt2").read_bytes() == (baseline / "tail.pt2").read_bytes()
    assert report["cut_bytes_after"] == report["cut_bytes_before"]
    assert note["device"] == "rpi4" and note["chosen"]["arch"]
    assert report["head_flops_after"] == note["chosen"]["flops"]
    # the reported accuracy is what the artifact does when served head -> tail
    _, data = digits
    art = load_split(out)
    got = accuracy(art.run_head, art.run_tail, data.x_test, data.y_test)
    assert got == pytest.approx(report["accuracy_after"])
    assert got == pytest.approx(note["chosen"]["test_accuracy"], abs=0.5)
    # fronts: non-dominated, the choice among the finalists and chosen by the budget rule
    for front, score in (
        (note["search_front"], "val_accuracy_inherited"),
        (note["pareto_front"], "test_accuracy"),
    ):
        pts = [(c["predicted_edge_ms"], c[score]) for c in front]
        assert pareto_front(pts) == list(range(len(pts)))
    finalists = [_candidate(c["predicted_edge_ms"], c["val_accuracy"]) for c in note["finalists"]]
    picked, within = choose(finalists, note["teacher"]["val_accuracy"], note["accuracy_budget"])
    assert picked.edge_ms == note["chosen"]["predicted_edge_ms"]
    assert within == note["within_budget"]
    assert len(note["evaluated"]) >= TINY["population"]
    # the Pareto plot is written beside the artifact
    (png,) = report["files"]
    assert png.endswith("nas_pareto.png") and (out / "nas_pareto.png").read_bytes()[:4] == (
        b"\x89PNG"
    )


def test_a_cut_nas_cannot_fit_says_why(digits, tmp_path) -> None:
    from partitioner.compress.compressor import compress
    from partitioner.errors import EdgecutError

    planner, data = digits
    config = config_from_dict({"method": "nas", "nas": TINY})
    with pytest.raises(EdgecutError, match=r"nas: expected one \(B, C, H, W\) tensor crossing"):
        compress(planner.captured, planner.cut_after("fc1"), config, tmp_path, data=data)
