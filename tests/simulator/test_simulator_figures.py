"""``edgecut simulate --out``'s figures and ``--policy A,B,C``'s comparison table.

The PNGs are drawn (size, not blank) and say what they show: log latency axes, curves
that differ in colour, dash and marker and are drawn widest first so none hides
another, queue axes from zero, an idle site named rather than drawn as a flat line,
units in every column; and a timeline never counts a negative number of frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from edgecut.cli import main
from partitioner.solve.plot import DPI, TICK_PT
from simulator.metrics import Timeline, add_intervals
from simulator.plots import plot_latency_cdf, plot_timeline

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
POLICIES = ["edge-only", "cloud-only", "adaptive"]
CDF_SIZE = (int(7.5 * DPI), int(5.2 * DPI))
TIMELINE_SIZE = (int(7.5 * DPI), int(5.8 * DPI))


def assert_drawn(png: Path, size: tuple[int, int], *, colours: int = 100) -> None:
    """The PNG has the figure's size and is a picture: many colours, some ink."""
    with Image.open(png) as image:
        assert image.size == size
        rgb = np.asarray(image.convert("RGB"))
    distinct = len(np.unique(rgb.reshape(-1, 3), axis=0))
    ink = np.any(rgb < 235, axis=-1).mean()  # pixels not (nearly) white
    assert distinct > colours, distinct
    assert ink > 0.02, ink


def smallest_font(fig) -> float:
    return min(
        t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
    )


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, str]:
    """Three policies on the quickstart fleet for 20 s: (--out directory, printed text)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("compare")
    argv = ["simulate", str(QUICKSTART), "--no-ray", "--quiet", "--duration-s", "20"]
    argv += ["--policy", ",".join(POLICIES), "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, printed.getvalue()


# --- the latency CDF -----------------------------------------------------------------


def test_latency_cdf_curves_are_distinct_and_none_is_hidden(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    same = rng.lognormal(np.log(0.1), 0.05, 5000)  # two policies with identical latencies
    curves = {"edge-only": same, "adaptive": same.copy(), "cloud-only": same * 30}
    png = tmp_path / "cdf.png"
    fig = plot_latency_cdf(curves, png, deadline_ms=300)
    assert_drawn(png, CDF_SIZE)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0.0, 1.0)
    assert "(ms" in ax.get_xlabel() and smallest_font(fig) >= TICK_PT
    lines = [line for line in ax.get_lines() if line.get_label().split(":")[0] in curves]
    assert [line.get_label().split(":")[0] for line in lines] == list(curves)
    for attr in ("get_color", "get_linestyle", "get_marker"):
        values = [getattr(line, attr)() for line in lines]
        assert len(set(values)) == len(values), attr
    # Drawn in order, each later curve narrower and on top: a coinciding one shows around it.
    widths = [line.get_linewidth() for line in lines]
    orders = [line.get_zorder() for line in lines]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 4 and legend[-1] == "deadline 300 ms"


def test_simulate_out_draws_a_comparison_cdf(compared) -> None:
    out, _ = compared
    assert_drawn(out / "latency_cdf.png", CDF_SIZE)
    for policy in POLICIES:
        assert_drawn(out / policy / "latency_cdf.png", CDF_SIZE)


# --- the cloud timeline --------------------------------------------------------------


def _site(queue: list[float], frames: int = 1000) -> dict:
    n = len(queue)
    return {
        "servers": 4,
        "frames": frames,
        "utilization": 0.5,
        "mean_queue": float(np.mean(queue)),
        "timeline": {"bin_s": 2.0, "utilization": [0.5] * n, "queue": queue, "in_system": queue},
    }


def test_timeline_queue_axis_starts_at_zero(tmp_path: Path) -> None:
    # A queue between 11.0 and 11.34 is steady; an axis from 11.0 would draw a trend.
    rng = np.random.default_rng(1)
    queue = list(11.0 + 0.34 * rng.random(60))
    png = tmp_path / "timeline.png"
    fig = plot_timeline({"metro": _site(queue), "south": _site([3.0] * 60)}, png)
    assert_drawn(png, TIMELINE_SIZE)
    util, waiting = fig.axes
    assert waiting.get_ylim()[0] == 0 and waiting.get_ylim()[1] >= 11.34
    assert util.get_ylim()[0] == 0 and util.get_ylim()[1] > 100  # a saturated line shows
    assert "(%)" in util.get_ylabel() and "frames" in waiting.get_ylabel()
    assert waiting.get_xlabel() == "simulated time (s)" and waiting.get_xlim() == (0, 120)
    assert smallest_font(fig) >= TICK_PT


def test_an_edge_only_run_draws_no_negative_queue(compared) -> None:
    out, _ = compared
    summary = json.loads((out / "edge-only" / "summary.json").read_text())
    site = summary["sites"]["edge-dc"]
    assert site["frames"] == 0 and min(site["timeline"]["queue"]) == 0
    png = out / "edge-only" / "cloud_timeline.png"
    assert_drawn(png, TIMELINE_SIZE, colours=20)  # text and grid only: fewer colours
    fig = plot_timeline(summary["sites"], png)
    for ax in fig.axes:
        assert ax.get_ylim()[0] == 0  # matplotlib pads a flat zero line to -0.05
        assert not ax.get_lines() and not ax.patches  # nothing drawn for an idle site
        assert any("no frame reached edge-dc" in t.get_text() for t in ax.texts)
    for policy in ("cloud-only", "adaptive"):
        assert_drawn(out / policy / "cloud_timeline.png", TIMELINE_SIZE)


def test_timeline_never_counts_a_negative_number_of_frames() -> None:
    # 1.1 s in 7 bins: the boundary 6 * width is not representable, and an interval ending
    # one ulp below it was once credited to bin 6 as an overlap of minus an ulp.
    tl = Timeline.zeros(1.1, 7)
    end = np.nextafter(6 * tl.width_s, 0.0)
    add_intervals(np.array([0.05]), np.array([end]), 1.1, tl.waiting_partial, tl.waiting_cover)
    waiting = tl.waiting()
    assert waiting.min() >= 0 and waiting[6] == 0
    assert waiting[1:6] == pytest.approx(1.0) and waiting[0] == pytest.approx(1 - 0.05 / 1.1 * 7)


# --- the comparison table ------------------------------------------------------------


def _cells(line: str, bar: str) -> list[str]:
    return [cell.strip() for cell in line.split(bar)[1:-1]]


def test_several_policies_print_one_comparison_table(compared) -> None:
    out, printed = compared
    assert printed.count("Policies compared") == 1
    table = printed[printed.index("Policies compared") :].splitlines()
    header = _cells(next(line for line in table if "┃" in line), "┃")
    assert header == [
        "policy", "p50 ms", "p95 ms", "p99 ms", "mean ms", "miss rate %", "throughput fps",
        "uplink MB", "edge energy J", "cloud busy %",
    ]  # fmt: skip
    rows = [_cells(line, "│") for line in table if line.startswith("│")]
    assert [row[0] for row in rows] == POLICIES
    # The numbers are the summaries', in the headers' units.
    for row, policy in zip(rows, POLICIES, strict=True):
        s = json.loads((out / policy / "summary.json").read_text())
        expected = [
            *(s["latency_ms"][q] for q in ("p50", "p95", "p99", "mean")),
            s["deadline_miss_rate"] * 100,
            s["throughput_fps"],
            s["uplink_bytes"] / 1e6,
            s["edge_energy_j"],
            s["cloud_utilization"] * 100,
        ]
        shown = [float(cell.replace(",", "")) for cell in row[1:]]
        assert shown == pytest.approx(expected, rel=0.01, abs=0.01), policy


def test_json_for_several_policies_keeps_its_contract(tmp_path: Path, capsys) -> None:
    argv = ["simulate", str(QUICKSTART), "--no-ray", "--json", "--duration-s", "5"]
    assert main([*argv, "--policy", "edge-only,adaptive"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["policies"] and list(out["policies"]) == ["edge-only", "adaptive"]
