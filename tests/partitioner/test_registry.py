"""The one registry behind every kind of plug-in, every kind's registry filled and
reachable, and behaviour every entry of a kind must have (each new entry is tested for
free): network presets price a transfer with sound figures, policies compile on a model
and choose one of their cuts for every frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from partitioner.codecs import CODECS
from partitioner.compress import METHODS
from partitioner.deploy.runtimes import RUNTIMES
from partitioner.errors import EdgecutError, ModelSpecError
from partitioner.model.synthetic import random_dag
from partitioner.model.zoo import MODELS
from partitioner.pricing.cost import OBJECTIVES, CostModel
from partitioner.pricing.network import NETWORKS, resolve_network
from partitioner.pricing.profiles import DEVICES
from partitioner.registry import Registry
from partitioner.solve.plan import make_plan
from partitioner.solve.problem import SOLVERS
from simulator.cuts import GroupModel
from simulator.policies import POLICIES, FrameContext, PolicyConfig


@dataclass(frozen=True)
class Thing:
    name: str


def test_an_item_is_registered_under_its_name_once() -> None:
    things: Registry[Thing] = Registry("thing")
    a = Thing("a")
    assert things.register(a) is a
    with pytest.raises(ValueError, match="thing 'a' registered twice"):
        things.register(Thing("a"))
    assert things.get("a") is a
    assert things.register(Thing("x"), name="b").name == "x"  # an explicit name wins
    assert things.names() == ["a", "b"]


def test_an_item_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no name"):
        Registry[int]("thing").register(3)


def test_an_unknown_name_lists_the_choices_in_the_kinds_error() -> None:
    things: Registry[Thing] = Registry("zoo model", error=ModelSpecError)
    things.register(Thing("resnet18"))
    things.register(Thing("alexnet"))
    with pytest.raises(
        ModelSpecError,
        match="unknown zoo model 'resnet19': expected one of alexnet, resnet18; "
        "did you mean 'resnet18'",
    ):
        things.get("resnet19")
    with pytest.raises(EdgecutError, match=r"unknown zoo model \S*\['a'\]\S*: expected one of"):
        things.get(["a"])  # type: ignore[arg-type]  # unhashable, as from a YAML file


def test_list_sorts_by_name_and_iteration_keeps_registration_order() -> None:
    things: Registry[Thing] = Registry("thing")
    for name in ("c", "a", "b"):
        things.register(Thing(name))
    assert [t.name for t in things.list()] == ["a", "b", "c"]
    assert list(things) == ["c", "a", "b"]
    assert len(things) == 3 and "a" in things and "z" not in things


KINDS = {
    "device": (DEVICES, {"rpi4", "jetson-nano", "jetson-orin-nano", "x86-server", "a100", "host"}),
    "network": (NETWORKS, {"3g", "lte", "wifi", "5g", "ethernet"}),
    "codec": (CODECS, {"none", "fp16", "int8", "int8+zstd", "int8+lz4"}),
    "solver": (SOLVERS, {"auto", "chain", "exhaustive", "mincut"}),
    "zoo model": (MODELS, {"alexnet", "vgg16", "resnet18", "googlenet", "digits_cnn"}),
    "compression method": (METHODS, {"int8", "prune", "lowrank", "distill", "mixed"}),
    "runtime": (RUNTIMES, {"pt2e-int8"}),
    "policy": (POLICIES, {"edge-only", "cloud-only", "fixed", "planned", "adaptive"}),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_holds_its_builtins_and_names_them_in_errors(kind: str) -> None:
    registry, builtins = KINDS[kind]
    assert registry.kind == kind
    assert builtins <= set(registry.names())
    for name in registry.names():
        item = registry.get(name)
        assert getattr(item, "name", name) == name  # every item is reachable by its own name
    with pytest.raises(EdgecutError, match=f"unknown {kind} 'no-such-thing': expected one of"):
        registry.get("no-such-thing")


# --- every network preset ------------------------------------------------------------------


@pytest.mark.parametrize("name", NETWORKS.names())
def test_every_network_preset_has_sound_figures_and_prices_a_transfer(name: str) -> None:
    net = NETWORKS.get(name)
    assert net.source, "a preset says where its figures come from"
    assert math.isfinite(net.uplink_mbps) and 0.01 <= net.uplink_mbps <= 10_000
    assert math.isfinite(net.rtt_ms) and 0 <= net.rtt_ms <= 1_000
    assert math.isfinite(net.radio_nj_per_bit) and 0 <= net.radio_nj_per_bit <= 10_000
    assert math.isfinite(net.radio_base_mw) and 0 <= net.radio_base_mw <= 10_000
    assert net.trace is None  # a preset is a constant uplink; traces are resolved apart
    assert resolve_network(name) is net  # the CLI and scenarios reach it by its name

    graph = random_dag(12, np.random.default_rng(0))
    cost = CostModel(graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), net)
    sent = cost.predict(cost.cloud_only())
    assert sent.wire_bytes > 0
    assert sent.transfer_ms == pytest.approx(sent.wire_bytes * 8 / (net.uplink_mbps * 1e3))
    assert sent.rtt_ms == net.rtt_ms
    for objective in OBJECTIVES:
        plan = make_plan(cost, objective=objective)
        assert all(math.isfinite(v) for v in plan.predicted.to_json().values())
        assert plan.objective_value >= 0


# --- every simulator policy ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_group() -> GroupModel:
    """digits_cnn (17 nodes) on an rpi4 with a LAN to an x86 server: a cheap group whose
    best cut changes with bandwidth (edge-only below about 0.5 Mbit/s, cloud-only above)."""
    group = GroupModel.create(
        "digits_cnn", None, edge="rpi4", cloud="x86-server", network=NETWORKS.get("ethernet"),
        codec="none",
    )  # fmt: skip
    assert len(group.table(0.01, 1000.0).entries) >= 2
    return group


@pytest.mark.parametrize("name", POLICIES.names())
def test_every_policy_compiles_on_a_model_and_chooses_one_of_its_cuts(
    digits_group: GroupModel, name: str
) -> None:
    policy = POLICIES.get(name)
    # cut_after is what `fixed` needs; every other policy ignores it
    config = PolicyConfig(name, cut_after="relu2", min_mbps=0.01, max_mbps=1000.0)
    compiled = policy.compile(config, digits_group)
    assert compiled.name == name and compiled.cuts
    graph = digits_group.graph
    for cut in compiled.cuts:
        assert "x" in cut and graph.is_closed(cut)  # the input is on the edge; no way back
        digits_group.option(cut, 4)  # and the simulator can price it

    # Two cameras, frames over 10 s, an uplink whose capacity swings from 0.02 to 500 Mbit/s.
    t_s = np.concatenate([np.linspace(0, 10, 40), np.linspace(0.1, 10.1, 40)])
    frames = FrameContext(
        t_s=t_s,
        row_ptr=np.array([0, 40, 80], dtype=np.int64),
        capacity_mbps=lambda t, span: 0.02 * 25_000 ** ((np.sin(t) + 1) / 2),
        state=np.full(2, np.nan),
    )
    options = policy.choose(compiled, frames)
    assert options.shape == t_s.shape
    assert np.all((options >= 0) & (options < len(compiled.cuts)))
    if len(compiled.cuts) > 1:  # a policy with a choice uses it as the uplink swings
        assert len(set(options.tolist())) > 1
