"""Configs: YAML in, frozen dataclasses out, and one-line errors that name file and field."""

from __future__ import annotations

import dataclasses

import pytest

from partitioner.compress import METHODS, CompressConfig, config_from_dict, load_config
from partitioner.compress.config import Int8Config, MixedConfig, PruneConfig, Step, TrainConfig
from partitioner.compress.pipeline import check_steps
from partitioner.compress.registry import method_config
from partitioner.errors import ConfigError, EdgecutError


def test_the_built_in_methods_are_registered() -> None:
    assert METHODS.names() == ["distill", "int8", "lowrank", "mixed", "nas", "prune"]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_config_is_frozen_and_its_empty_section_is_its_defaults(name) -> None:
    default = METHODS.get(name).config_type()
    assert dataclasses.is_dataclass(default)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(default, dataclasses.fields(default)[0].name, None)
    # an empty YAML section, and no section at all, both run the method with its defaults
    assert config_from_dict({name: None}).sections[name] == default
    assert method_config(CompressConfig(), name) == default


def test_yaml_file_round_trip(tmp_path) -> None:
    path = tmp_path / "prune.yaml"
    path.write_text(
        "method: prune\nseed: 3\ncodec: int8+zstd\nprune:\n  ratio: 0.25\n"
        "  train: {epochs: 2, lr: 0.01}\nmixed:\n  steps: [{lowrank: {energy: 0.5}}, int8]\n"
    )
    config = load_config(path)
    assert config.method == "prune" and config.seed == 3 and config.codec == "int8+zstd"
    prune = method_config(config, "prune")
    assert prune == PruneConfig(ratio=0.25, train=TrainConfig(epochs=2, lr=0.01))
    assert [s.method for s in method_config(config, "mixed").steps] == ["lowrank", "int8"]
    assert method_config(config, "distill") == METHODS.get("distill").config_type()


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"prune": {"ratio": 1.5}},
            r"cfg\.yaml: prune\.ratio: expected a number in \(0, 1\), got 1\.5",
        ),
        ({"prune": {"ratio": 0}}, r"prune\.ratio: expected a number in \(0, 1\), got 0"),
        ({"prune": {"ratioo": 0.5}}, r"prune: unknown field 'ratioo'.*did you mean 'ratio'"),
        ({"method": "quantise"}, r"method: unknown compression method 'quantise': expected one of"),
        ({"codec": "int9"}, r"codec: unknown codec 'int9'.*did you mean"),
        ({"seed": -1}, r"seed: expected an int >= 0, got -1"),
        ({"distill": {"train": {"epochs": 1.5}}}, r"distill\.train\.epochs: expected an int >= 0"),
        ({"int8": {"backend": "arm64"}}, r"int8\.backend: expected one of x86, arm"),
        ({"mixed": {"steps": ["int8", "prune"]}}, r"steps\[0\]: expected int8 last"),
        ({"mixed": {"steps": [{"blur": {}}]}}, r"steps\[0\]: unknown compression method 'blur'"),
        ({"mixed": {"steps": []}}, r"mixed\.steps: expected a non-empty list"),
        ({"lowrank": {"energy": 2}}, r"lowrank\.energy: expected a number in \(0, 1\]"),
        ({"lowrank": {"accuracy_budget": -1}}, r"lowrank\.accuracy_budget: expected a number >= 0"),
        ({"distill": {"student": "tiny"}}, r"distill\.student: expected auto, self"),
        ({"colour": "red"}, r"cfg\.yaml: unknown field 'colour'"),
        (["prune"], r"cfg\.yaml: expected a mapping at the top level"),
    ],
)
def test_bad_configs_name_file_field_expected_and_got(data, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(data, "cfg.yaml")
    assert "\n" not in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune: {ratio: [0.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_unknown_method_lists_the_registry() -> None:
    with pytest.raises(
        EdgecutError, match=r"expected one of distill, int8, lowrank, mixed, nas, prune"
    ):
        METHODS.get("svd")


def test_configs_are_frozen_and_validated_in_python_too() -> None:
    with pytest.raises(ConfigError, match=r"PruneConfig\.ratio: expected a number in \(0, 1\)"):
        PruneConfig(ratio=1.0)
    with pytest.raises(ConfigError, match="at least one loss weight"):
        TrainConfig(hint_weight=0, soft_weight=0, label_weight=0)
    config = MixedConfig()
    assert [s.method for s in config.steps] == ["prune", "distill", "int8"]
    with pytest.raises(AttributeError):
        config.steps = ()  # type: ignore[misc]


def test_configs_built_in_python_are_checked_against_the_registry_where_it_is_known() -> None:
    check_steps(MixedConfig())  # the default pipeline is valid
    backwards = MixedConfig(steps=(Step("int8", Int8Config()), Step("prune", PruneConfig())))
    with pytest.raises(ConfigError, match=r"MixedConfig\.steps\[0\]: expected int8 last"):
        check_steps(backwards)
    with pytest.raises(ConfigError, match=r"steps\[0\]: unknown compression method 'blur'"):
        check_steps(MixedConfig(steps=(Step("blur", PruneConfig()),)))
    with pytest.raises(ConfigError, match=r"steps\[0\]: expected PruneConfig, got Int8Config"):
        check_steps(MixedConfig(steps=(Step("prune", Int8Config()),)))
    misfiled = CompressConfig(sections={"prune": Int8Config()})
    with pytest.raises(ConfigError, match=r"CompressConfig\.prune: expected PruneConfig"):
        method_config(misfiled, "prune")
    with pytest.raises(EdgecutError, match="unknown compression method 'svd'"):
        method_config(CompressConfig(), "svd")
