"""User-facing errors.

Every mistake a user can make (a bad model path, an unknown device, a malformed
shape) raises an :class:`EdgecutError` whose message is one line saying what was
expected and what arrived. The CLI prints it and exits with code 2; anything
else that escapes is a bug and keeps its traceback.
"""


class EdgecutError(Exception):
    """An error caused by user input, reported without a traceback."""


class ModelSpecError(EdgecutError):
    """A ``--model`` argument that does not resolve to an ``nn.Module``."""


class CaptureError(EdgecutError):
    """A model that torch.export cannot trace into a graph."""


class ConfigError(EdgecutError):
    """A bad configuration value: names the field, the file, and what was expected."""
