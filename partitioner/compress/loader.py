"""Compression configs from YAML: a parsed document in, a validated :class:`CompressConfig` out.

Every top-level key is either a setting all methods share or the name of a
registered method, whose section becomes that method's config dataclass (a field
typed as another config dataclass, such as ``train``, is read as a nested section;
``mixed``'s ``steps`` as a list of method names or ``{method: {fields}}``). Method
and codec names are resolved against their registries here, and every error is one
line naming the file and the field, what was expected and what arrived::

    prune.yaml: prune.ratio: expected a number in (0, 1), got 1.5
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from partitioner.compress.config import CompressConfig, FieldError, MixedConfig, Step
from partitioner.compress.pipeline import check_steps
from partitioner.compress.registry import METHODS
from partitioner.errors import ConfigError, EdgecutError, did_you_mean


def load_config(path: str | Path) -> CompressConfig:
    """Read a YAML compression config (``yaml.safe_load``, nothing cleverer)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--config {p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return config_from_dict(data, str(p))


def config_from_dict(data: object, source: str = "config") -> CompressConfig:
    """A :class:`CompressConfig` from a parsed YAML document; errors name ``source``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_describe(data)}")
    method_names = METHODS.names()
    common = {f.name for f in dataclasses.fields(CompressConfig)} - {"sections"}
    sections: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in METHODS:
            sections[key] = _build(METHODS.get(key).config_type, value, f"{source}: {key}")
        elif key in common:
            top[key] = value
        else:
            known = sorted(common | set(method_names))
            raise ConfigError(
                f"{source}: unknown field {key!r}: expected one of {', '.join(known)}"
                f"{did_you_mean(key, known)}"
            )
    if top.get("method") is not None:
        try:
            METHODS.get(top["method"])
        except EdgecutError as exc:
            raise ConfigError(f"{source}: method: {exc}") from None
    try:
        return CompressConfig(**top, sections=sections)
    except FieldError as exc:
        raise ConfigError(f"{source}: {exc.name}: {exc.detail}") from None


def _build(cls: type, data: object, where: str) -> Any:
    """``cls(**data)`` for a mapping read from YAML, with errors that say where."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of fields, got {_describe(data)}")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    nested = _nested_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown field {key!r}: expected one of {', '.join(known)}"
                f"{did_you_mean(str(key), known)}"
            )
        if key in nested:
            value = _build(nested[key], value, f"{where}.{key}")
        elif cls is MixedConfig and key == "steps":
            value = _steps(value, f"{where}.steps")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        built = cls(**kwargs)
        if isinstance(built, MixedConfig):
            check_steps(built)
    except FieldError as exc:
        raise ConfigError(f"{where}.{exc.name}: {exc.detail}") from None
    except TypeError as exc:  # a value of a type no check anticipated
        raise ConfigError(f"{where}: {exc}") from None
    return built


def _nested_types(cls: type) -> dict[str, type]:
    """The fields of ``cls`` that are themselves config dataclasses (``train``)."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if isinstance(hints.get(f.name), type) and dataclasses.is_dataclass(hints[f.name])
    }


def _steps(data: object, where: str) -> tuple[Step, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(
            f"{where}: expected a non-empty list such as [{{prune: {{ratio: 0.5}}}}, int8], "
            f"got {_describe(data)}"
        )
    steps = []
    body: object
    for i, item in enumerate(data):
        if isinstance(item, str):
            name, body = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, body),) = item.items()
        else:
            raise ConfigError(
                f"{where}[{i}]: expected a method name or {{method: {{fields}}}}, got "
                f"{_describe(item)}"
            )
        try:
            method = METHODS.get(str(name))
        except EdgecutError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
        steps.append(Step(method.name, _build(method.config_type, body, f"{where}[{i}].{name}")))
    return tuple(steps)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:120]
