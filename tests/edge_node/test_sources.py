"""Frame sources: synthetic frames and folders of images, each frame with an id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_node.sources import FolderSource, SyntheticSource, load_image, open_source
from partitioner.errors import EdgecutError


def test_synthetic_frames_are_seeded_and_numbered() -> None:
    a = list(SyntheticSource((1, 3, 4, 5), frames=3, seed=7))
    b = list(SyntheticSource((1, 3, 4, 5), frames=3, seed=7))
    assert [f.id for f in a] == [0, 1, 2]
    assert all(f.data.shape == (1, 3, 4, 5) and f.data.dtype == np.float32 for f in a)
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].data, a[1].data)
    assert a[0].captured_s <= a[1].captured_s <= a[2].captured_s


def test_a_paced_source_hands_frames_over_at_its_rate() -> None:
    frames = list(SyntheticSource((1, 1, 2, 2), frames=3, fps=50))
    # At 50 fps three frames span at least two periods (the pacer only ever waits).
    assert frames[-1].captured_s - frames[0].captured_s >= 2 / 50 - 1e-3


def _images(folder: Path) -> None:
    folder.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(folder / "a.png")
    Image.new("L", (10, 10), 128).save(folder / "b.jpg")
    (folder / "c.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")


def test_folder_frames_are_resized_normalised_and_a_bad_file_is_an_explicit_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "images"
    _images(folder)
    frames = list(FolderSource(folder, (1, 3, 16, 16), frames=None))
    assert [f.name for f in frames] == ["a.png", "b.jpg", "c.png"]
    red = frames[0].data
    assert red.shape == (1, 3, 16, 16) and red.dtype == np.float32
    assert red[0, 0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229)  # ImageNet normalisation
    assert frames[1].data.shape == (1, 3, 16, 16)  # grayscale converted to RGB
    assert frames[2].data is None and "cannot read image c.png" in frames[2].error
    cycled = list(FolderSource(folder, (1, 1, 8, 8), frames=5))
    assert [f.name for f in cycled] == ["a.png", "b.jpg", "c.png", "a.png", "b.jpg"]
    assert cycled[1].data[0, 0, 0, 0] == pytest.approx(128 / 255)
    assert load_image(folder / "a.png", (1, 1, 4, 4)).shape == (1, 1, 4, 4)


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgecutError, match="expected 'synthetic' or a folder of images"):
        open_source(str(tmp_path / "none"), (1, 3, 8, 8), frames=1, fps=0)
    with pytest.raises(EdgecutError, match="no images"):
        open_source(str(tmp_path), (1, 3, 8, 8), frames=1, fps=0)
    with pytest.raises(EdgecutError, match="1 or 3 input channels"):
        FolderSource(tmp_path, (1, 4, 8, 8), frames=1)
    with pytest.raises(EdgecutError, match="--fps must be >= 0"):
        list(SyntheticSource((1, 1, 2, 2), frames=1, fps=-1))
    assert len(list(open_source("synthetic", (1, 1, 2, 2), frames=None, fps=0))) == 100
