"""Checks of one field of a config dataclass, and the error that names the field.

The simulator's config dataclasses (:mod:`simulator.scenario`, and
:class:`simulator.policies.PolicyConfig`) validate in ``__post_init__`` with these checks;
a bad value raises :class:`FieldError`, to which the scenario loader adds the file and the
field's path (``s.yaml: fleet[0].fps: must be a finite number > 0, got -5.0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from partitioner.errors import did_you_mean


class FieldError(ValueError):
    """A bad value in one field of a config dataclass (the loader adds file and path)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not (value > 0 and math.isfinite(value)):
        raise FieldError(name, f"must be a finite number > 0, got {value}")


def check_non_negative(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not (value >= 0 and math.isfinite(value)):
        raise FieldError(name, f"must be a finite number >= 0, got {value}")


def check_one_of(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise FieldError(
            name,
            f"expected one of {', '.join(allowed)}, got {value!r}{did_you_mean(value, allowed)}",
        )
