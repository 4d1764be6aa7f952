"""The joint choice of cut x head method x codec under a measured accuracy budget."""

from __future__ import annotations

import pytest

from partitioner.compress import METHODS, config_from_dict
from partitioner.compress.compressor import compress
from partitioner.compress.search import NONE, candidate_cuts, search
from partitioner.errors import EdgecutError
from partitioner.solve.plan import Plan

from .test_nas import TINY as TINY_NAS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_candidate_cuts_do_not_split_conv_bn_relu(digits) -> None:
    planner, _ = digits
    names = set()
    for cut in candidate_cuts(planner.graph):
        crossing = planner.graph.crossing(cut)
        names |= {n.name for n in crossing} if crossing else {"edge-only"}
    assert {"relu1", "relu2", "pool1", "relu3", "pool2", "edge-only"} <= names
    assert not names & {"conv1", "bn1", "conv2", "bn2", "fc1"}


def test_search_returns_the_fastest_combination_within_budget(digits) -> None:
    planner, data = digits
    # every method but nas, whose search gets its own test below
    methods = [NONE, *(m.name for m in METHODS.list() if m.name != "nas")]
    result = search(
        planner, accuracy_budget=0.5, methods=methods, config=config_from_dict({}), data=data
    )
    plan = result.plan.to_json()
    c = plan["compression"]
    assert c["method"] in methods and c["codec"] == plan["codec"]
    assert c["val_accuracy_before"] - c["val_accuracy_after"] <= 0.5
    assert c["accuracy_after"] == result.accuracy_after  # measured on the test split
    assert c["candidates"] > len(c["trials"]) >= 1
    # the uncompressed best plan is a candidate, so the choice can only be as fast or faster
    assert result.plan.predicted.total_ms <= planner.plan().predicted.total_ms + 1e-9
    measured = [t for t in c["trials"] if t["val_drop"] <= 0.5]
    assert measured[-1]["predicted_ms"] == pytest.approx(result.plan.predicted.total_ms)
    # a usable plan: it reads back, and its edge nodes are a cut the graph can be split at
    restored = Plan.from_json(plan)
    assert restored.solver == "compress-search" and restored.edge_nodes == result.plan.edge_nodes
    assert planner.graph.is_closed(restored.edge_nodes)


def test_a_budget_nothing_meets_names_the_best_found(digits) -> None:
    planner, data = digits
    untrained = config_from_dict({"distill": {"train": {"epochs": 0}}})
    with pytest.raises(EdgecutError, match=r"within 0 points: the best found was distill") as info:
        search(
            planner,
            accuracy_budget=0.0,
            methods=["distill"],
            config=untrained,
            codecs=["none"],
            data=data,
        )
    assert "drop" in str(info.value) and "\n" not in str(info.value)


def test_lowrank_accuracy_budget_nothing_meets(digits, tmp_path) -> None:
    planner, data = digits
    config = config_from_dict(
        {
            "method": "lowrank",
            "lowrank": {"accuracy_budget": 0.0, "energies": [0.05], "train": {"epochs": 0}},
        }
    )
    with pytest.raises(EdgecutError, match=r"lowrank: no energy .* best found was energy 0\.05"):
        compress(planner.captured, planner.cut_after("pool2"), config, tmp_path, data=data)


def test_search_can_pick_nas_and_says_why(digits) -> None:
    from partitioner.planner import Planner

    _, data = digits
    # over LTE the digits answer fastest edge-only, where the output (logits) is no image
    # for nas to produce; over ethernet a cut pays, and the searched head wins it
    planner = Planner.create("digits_cnn", edge="rpi4", network="ethernet")
    tiny = {**TINY_NAS, "generations": 0, "finalists": 1}
    config = config_from_dict({"nas": tiny, "distill": {"train": {"epochs": 2}}})
    result = search(
        planner,
        accuracy_budget=30.0,
        methods=["distill", "nas"],
        config=config,
        codecs=["none"],
        data=data,
    )
    c = result.plan.to_json()["compression"]
    assert result.method == c["method"] == "nas"
    # the search handed its budget to the nas search, whose head it then measured itself
    assert c["notes"]["nas"]["accuracy_budget"] == 30.0
    assert c["val_accuracy_before"] - c["val_accuracy_after"] <= 30.0
    assert c["reason"].startswith(f"nas won: {c['cut']} with codec none is predicted at")
    assert "within 30 points" in c["reason"] and "\n" not in c["reason"]
    assert c["trials"][-1]["method"] == "nas"
