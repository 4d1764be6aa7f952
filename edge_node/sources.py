"""Frame sources: where the edge node's frames come from, each with an id and a capture time.

:class:`SyntheticSource` makes seeded random frames; :class:`FolderSource` reads the images of
a folder with PIL, resized to the model's input. Both capture on a fixed schedule at ``fps``
(frame k at ``start + k / fps``) and stamp each :class:`Frame` with its tick, not with the
moment the consumer took it: a consumer that falls behind gets the overdue frames at once,
stamped when the camera took them, so its wait shows in their latency and the edge node's
late policy can count or skip them (never a silent gap in the schedule). ``fps = 0`` is
unpaced: a frame is captured when the consumer asks for it. A file that cannot be read
becomes a frame with an ``error``, which the node reports as an explicit error result
instead of dropping it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partitioner.errors import EdgecutError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")
# ImageNet statistics: what the zoo's 3-channel models are conventionally fed.
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


@dataclass(frozen=True)
class Frame:
    """One frame: ``data`` is (1, C, H, W) float32, or None when ``error`` says why not."""

    id: int
    data: np.ndarray | None
    captured_s: float  # time.monotonic() of its capture tick (unpaced: when handed over)
    name: str = ""
    error: str | None = None


class _Pacer:
    """Capture ticks ``1/fps`` apart on a fixed schedule from the first; see the module doc."""

    def __init__(self, fps: float) -> None:
        if fps < 0:
            raise EdgecutError(f"--fps must be >= 0 (0: unpaced), got {fps:g}")
        self.period_s = 1.0 / fps if fps > 0 else 0.0
        self._start: float | None = None
        self._ticks = 0

    def wait(self) -> float:
        """Sleep until the next tick if it is ahead; return the tick (in the past when late)."""
        now = time.monotonic()
        if not self.period_s:
            return now
        if self._start is None:
            self._start = now
        tick = self._start + self._ticks * self.period_s
        self._ticks += 1
        if now < tick:
            time.sleep(tick - now)
        return tick


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 4 or shape[0] != 1 or any(d < 1 for d in shape):
        raise EdgecutError(f"frames need an input shape (1, C, H, W), got {list(shape)}")
    return shape[1], shape[2], shape[3]


class SyntheticSource:
    """``frames`` seeded standard-normal frames of ``shape`` at ``fps``."""

    def __init__(self, shape: tuple[int, ...], *, frames: int, fps: float = 0.0, seed: int = 0):
        _check_shape(shape)
        if frames < 0:
            raise EdgecutError(f"--frames must be >= 0, got {frames}")
        self.shape = tuple(shape)
        self.frames = frames
        self.fps = fps
        self.seed = seed

    def __iter__(self) -> Iterator[Frame]:
        rng = np.random.default_rng(self.seed)
        pacer = _Pacer(self.fps)
        for i in range(self.frames):
            data = rng.standard_normal(self.shape, dtype=np.float32)
            yield Frame(i, data, pacer.wait(), name=f"synthetic-{i}")


def load_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An image file as a (1, C, H, W) float32 frame: resized, scaled, normalized."""
    from PIL import Image

    channels, height, width = _check_shape(shape)
    with Image.open(path) as opened:
        img = opened.convert("RGB" if channels == 3 else "L")
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    chw = (pixels.transpose(2, 0, 1) - _MEAN) / _STD if channels == 3 else pixels[None, :, :]
    return np.ascontiguousarray(chw[None], dtype=np.float32)


class FolderSource:
    """The images of a folder (sorted by name), resized to ``shape``, at ``fps``.

    ``frames`` larger than the number of images cycles through them again; None takes each
    image once.
    """

    def __init__(
        self, folder: str | Path, shape: tuple[int, ...], *, frames: int | None, fps: float = 0.0
    ) -> None:
        channels, _, _ = _check_shape(shape)
        if channels not in (1, 3):
            raise EdgecutError(
                f"image folders feed models with 1 or 3 input channels; this one takes {channels}"
            )
        root = Path(folder)
        if not root.is_dir():
            raise EdgecutError(
                f"--source {root}: expected 'synthetic' or a folder of images, found "
                f"{'a file' if root.exists() else 'nothing'} there"
            )
        try:
            self.files = sorted(
                p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        except PermissionError:
            raise EdgecutError(f"--source {root}: permission denied") from None
        if not self.files:
            raise EdgecutError(
                f"--source {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder"
            )
        if frames is not None and frames < 0:
            raise EdgecutError(f"--frames must be >= 0, got {frames}")
        self.shape = tuple(shape)
        self.frames = len(self.files) if frames is None else frames
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        pacer = _Pacer(self.fps)
        for i in range(self.frames):
            path = self.files[i % len(self.files)]
            try:
                data: np.ndarray | None = load_image(path, self.shape)
                error = None
            except Exception as exc:  # a corrupt file is that frame's error, not the stream's
                data, error = None, f"cannot read image {path.name}: {type(exc).__name__}: {exc}"
            yield Frame(i, data, pacer.wait(), name=path.name, error=error)


def open_source(
    spec: str, shape: tuple[int, ...], *, frames: int | None, fps: float, seed: int = 0
) -> SyntheticSource | FolderSource:
    """``synthetic`` or a folder path, as ``edgecut edge run --source`` takes it."""
    if spec == "synthetic":
        return SyntheticSource(shape, frames=100 if frames is None else frames, fps=fps, seed=seed)
    return FolderSource(spec, shape, frames=frames, fps=fps)
