"""The one error of the tensor wire layer: ``TensorWireError``.

``arrays``, ``serde`` and ``splice`` raise it for whatever arrives malformed, with a message
naming what was expected and what was found; a server answers with ``grpc.StatusCode[err.code]``.
"""

from __future__ import annotations

__all__ = ["TensorWireError"]


class TensorWireError(ValueError):
    """A tensor or ModelInfer message that does not decode, with what was expected and found.

    ``code`` names the gRPC status a server should answer with (``grpc.StatusCode[err.code]``);
    ``tensor`` is the offending tensor's name when there is one.
    """

    def __init__(
        self, message: str, *, tensor: str | None = None, code: str = "INVALID_ARGUMENT"
    ) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.code = code
