"""User-facing errors.

Every mistake a user can make (a bad model path, an unknown device, a malformed
shape) raises an :class:`EdgecutError` whose message is one line saying what was
expected and what arrived. The CLI prints it and exits with code 2; anything
else that escapes is a bug and keeps its traceback.
"""

import difflib
from collections.abc import Iterable


class EdgecutError(Exception):
    """An error caused by user input, reported without a traceback."""


class ModelSpecError(EdgecutError):
    """A ``--model`` argument that does not resolve to an ``nn.Module``."""


class CaptureError(EdgecutError):
    """A model that torch.export cannot trace into a graph."""


class ConfigError(EdgecutError):
    """A bad configuration value: names the field, the file, and what was expected."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name(
    kind: str, name: str, known: Iterable[str], error: type[EdgecutError] = EdgecutError
) -> EdgecutError:
    """The error for a name missing from a registry: what exists and the closest match."""
    known = list(known)
    return error(
        f"unknown {kind} {name!r}: expected one of {', '.join(known)}{did_you_mean(name, known)}"
    )


class ArtifactError(EdgecutError):
    """A split artifact that is missing, altered, or not in the expected format."""
