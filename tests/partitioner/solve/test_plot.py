"""``edgecut plan --plot``: the PNG is drawn (size, not blank) and legible: log latency
axes, at most ~28 cut labels of 8 pt or more, the plan's and the breakpoint cuts always
labelled, and lines that differ in colour and dash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from edgecut.cli import main
from partitioner.planner import Planner
from partitioner.solve.plot import DPI, MAX_CUT_LABELS, TICK_PT, plot_plan, thin_labels

SHAPE = (1, 3, 32, 32)  # resnet18 keeps its 70 cuts at any input size


def assert_drawn(png: Path, size: tuple[int, int]) -> None:
    """The PNG has the figure's size and is a picture: many colours, much ink."""
    with Image.open(png) as image:
        assert image.size == size
        rgb = np.asarray(image.convert("RGB"))
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    ink = np.any(rgb < 235, axis=-1).mean()  # pixels not (nearly) white
    assert len(colours) > 200, len(colours)
    assert ink > 0.04, ink


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner.create("resnet18", input_shape=SHAPE, codec="int8", bandwidth_mbps=20)


@pytest.mark.parametrize(("n", "keep"), [(70, [0, 69, 40, 41]), (41, [0, 40]), (5, [2]), (200, [])])
def test_thin_labels_keeps_the_marked_cuts_and_spaces_the_rest(n: int, keep: list[int]) -> None:
    chosen = thin_labels(n, keep)
    assert set(keep) <= set(chosen) and chosen == sorted(set(chosen))
    assert len(chosen) <= MAX_CUT_LABELS + len(keep)
    if n > MAX_CUT_LABELS:
        unmarked = [i for i in chosen if i not in keep]
        gaps = [abs(a - b) for a in unmarked for b in chosen if a != b]
        assert min(gaps) >= 2  # never two neighbouring cuts, whose text would touch
    else:
        assert chosen == list(range(n))


def test_plan_figure_is_legible(planner: Planner, tmp_path: Path) -> None:
    plan = planner.cut_after("layer2.1.add")  # an interior cut: its label must be drawn
    table = planner.sweep(1, 200)
    png = tmp_path / "plan.png"
    fig = plot_plan(planner.cost, plan, table, png)
    assert_drawn(png, (15 * DPI, 6 * DPI))

    ax_cut, ax_bw = fig.axes
    assert ax_cut.get_yscale() == "log"
    assert (ax_bw.get_xscale(), ax_bw.get_yscale()) == ("log", "log")
    labels = [t for t in ax_cut.get_xticklabels() if t.get_text()]
    names = [t.get_text() for t in labels]
    assert 10 <= len(labels) <= MAX_CUT_LABELS + len(table.entries) + 1
    assert {"cloud-only", "edge-only", "layer2.1.add"} <= set(names)
    ticks = {*ax_cut.get_xticks(minor=True), *ax_cut.get_xticks()}
    assert ticks == set(range(70))  # every cut keeps its tick, labelled or not
    chosen = labels[names.index("layer2.1.add")]
    assert chosen.get_color() == "crimson" and chosen.get_fontweight() == "bold"
    # Every word on the figure, tick labels and legends included, is 8 pt or more.
    assert min(t.get_fontsize() for t in texts(fig)) >= TICK_PT
    for ax in (ax_cut, ax_bw):
        assert ax.get_legend() is not None
        assert "(ms" in ax.get_ylabel()
    assert "Mbit/s" in ax_bw.get_xlabel()
    # Lines of different cuts differ in colour and in dash, and none is under the envelope.
    cut_lines = [line for line in ax_bw.get_lines() if not line.get_label().startswith("_")]
    styles = [(line.get_color(), line.get_linestyle()) for line in cut_lines]
    assert len(set(styles)) == len(styles)
    envelope = next(line for line in cut_lines if line.get_label().startswith("best cut"))
    others = [line for line in cut_lines if line is not envelope and len(line.get_xdata()) > 2]
    assert all(line.get_zorder() > envelope.get_zorder() for line in others)


def test_plan_plot_command_writes_the_figure(tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    argv = ["plan", "--model", "resnet18", "--input-shape", "1,3,32,32", "--plot", str(png)]
    assert main(argv) == 0
    assert_drawn(png, (15 * DPI, 6 * DPI))
