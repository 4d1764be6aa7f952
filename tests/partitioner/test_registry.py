"""The one registry behind every kind of plug-in, and every kind's registry filled and reachable."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from partitioner.codecs import CODECS
from partitioner.compress import METHODS
from partitioner.deploy.runtimes import RUNTIMES
from partitioner.errors import EdgecutError, ModelSpecError
from partitioner.model.zoo import MODELS
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.registry import Registry
from partitioner.solve.problem import SOLVERS
from simulator.policies import POLICIES


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
