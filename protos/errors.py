"""The one error of the tensor wire layer: ``TensorWireError``, and ``clip`` for its messages.

``arrays``, ``serde`` and ``splice`` raise it for whatever arrives malformed, with a message
naming what was expected and what was found; a server answers with ``grpc.StatusCode[err.code]``.
A name that arrived from a client is echoed through ``clip``, so that no message, log line or
reply grows with what a client chose to send.
"""

from __future__ import annotations

__all__ = ["ECHO_CHARS", "TensorWireError", "clip"]

# Enough to recognise a model, tensor or parameter name; a 1 MiB name echoed whole would not
# even fit the 16 KiB of status details a gRPC client accepts.
ECHO_CHARS = 64


def clip(text: str, max_chars: int = ECHO_CHARS) -> str:
    """``text`` cut to ``max_chars`` characters plus "…" when longer: how to echo a client's name."""
    return text if len(text) <= max_chars else text[:max_chars] + "\u2026"


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
