"""Scenario files: the examples load, and every mistake names its file and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgecut.cli import main
from partitioner.errors import ConfigError
from simulator.fields import FieldError
from simulator.policies import POLICIES, PolicyConfig
from simulator.scenario import load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))

BASE: dict[str, Any] = {
    "name": "t",
    "duration_s": 10,
    "policy": "adaptive",
    "fleet": [
        {
            "name": "a",
            "count": 3,
            "fps": 5,
            "model": "digits_cnn",
            "network": {"traces": ["TMobile-LTE-short", "Verizon-LTE-short"]},
        },
        {"name": "b", "count": 2, "fps": 1, "network": {"mbps": 5}},
    ],
    "cloud": [{"name": "dc", "servers": 2, "batching": {"max_batch": 4, "window_ms": 2}}],
}


def load(edit=None, tmp_path: Path | None = None) -> Any:
    data = copy.deepcopy(BASE)
    if edit:
        edit(data)
    if tmp_path is None:
        return scenario_from_dict(data, source="s.yaml")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_scenario(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.cameras > 0 and scenario.source == str(path)


def test_defaults_and_resolution(tmp_path: Path) -> None:
    trace = tmp_path / "mine.up"
    trace.write_text("1\n2\n3\n")
    scenario = load(lambda d: d["fleet"][0]["network"]["traces"].append("mine.up"), tmp_path)
    a, b = scenario.fleet
    # Packaged names stay names; files are made absolute from the scenario's folder.
    assert a.network.traces == ("TMobile-LTE-short", "Verizon-LTE-short", str(trace))
    assert a.jitter_s == pytest.approx(0.2) and a.arrival == "periodic"
    assert b.network.kind == "constant" and b.network.profile_name() == "lte"
    assert scenario.site_index(b) == 0 and scenario.policy_of(b).name == "adaptive"
    assert scenario.cloud[0].batching.max_batch == 4


def expect_error(edit, *needles: str, tmp_path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(edit, tmp_path)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_typo_in_a_field_is_named_with_a_suggestion() -> None:
    message = expect_error(
        lambda d: d["fleet"][1].update(fsp=5), "s.yaml", "fleet[1].fsp", "unknown field"
    )
    assert "did you mean 'fps'" in message
    expect_error(lambda d: d.update(duraton_s=3), "duraton_s", "did you mean 'duration_s'")
    expect_error(
        lambda d: d["cloud"][0]["batching"].update(max_bach=2),
        "cloud[0].batching.max_bach",
        "did you mean 'max_batch'",
    )


def test_missing_trace_file_is_named(tmp_path: Path) -> None:
    expect_error(
        lambda d: d["fleet"][0]["network"]["traces"].append("nowhere.up"),
        "fleet[0].network.traces[2]",
        "no such trace file 'nowhere.up'",
        tmp_path=tmp_path,
    )
    expect_error(
        lambda d: d["fleet"][0]["network"].update(traces=["ATT-LTE-drivin"]),
        "did you mean 'ATT-LTE-driving'",
    )


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d["fleet"][0].update(fps=-5), "fleet[0].fps"),
        (lambda d: d["fleet"][1]["network"].update(mbps=-1), "fleet[1].network.mbps"),
        (lambda d: d["fleet"][1].update(count=0), "fleet[1].count"),
        (lambda d: d.update(duration_s=0), "duration_s"),
        (lambda d: d["cloud"][0].update(servers=-2), "cloud[0].servers"),
        (lambda d: d["cloud"][0]["batching"].update(window_ms=-1), "cloud[0].batching.window_ms"),
        (lambda d: d["fleet"][0]["network"].update(rtt_ms=-3), "fleet[0].network.rtt_ms"),
        (
            lambda d: d["fleet"][1]["network"].update(
                mbps=None, distribution={"kind": "uniform", "min_mbps": -1, "max_mbps": 3}
            ),
            "fleet[1].network.distribution.min_mbps",
        ),
    ],
)
def test_negative_or_zero_values_are_named(edit, field: str) -> None:
    expect_error(edit, f"{field}: ")


@pytest.mark.parametrize(
    "edit,needles",
    [
        (lambda d: d["fleet"][0].update(fps="fast"), ["fleet[0].fps", "expected a number"]),
        (lambda d: d["fleet"][0].update(count=2.5), ["fleet[0].count", "expected an integer"]),
        (lambda d: d["fleet"][0].update(arrival="burst"), ["fleet[0].arrival", "periodic"]),
        (
            lambda d: d["fleet"][0].update(arrival="poisson", start_jitter_s=0.1),
            ["fleet[0].start_jitter_s", "periodic cameras only"],
        ),
        (lambda d: d.update(policy="adaptiv"), ["policy.name", "did you mean 'adaptive'"]),
        (lambda d: d.update(policy={"name": "fixed"}), ["policy.cut_after", "needs cut_after"]),
        (
            lambda d: d.update(policy={"name": "edge-only", "alpha": 0.5}),
            ["policy.alpha", "unknown field"],
        ),
        (lambda d: d["fleet"][1].update(site="dcc"), ["fleet[1].site", "did you mean 'dc'"]),
        (
            lambda d: d["fleet"][1].update(network={"mbps": 5, "preset": "lte"}),
            ["fleet[1].network", "exactly one of"],
        ),
        (lambda d: d["fleet"][1].update(codec="gzip"), ["fleet[1].codec", "int8"]),
        (lambda d: d["fleet"].append(dict(d["fleet"][1])), ["fleet[2].name", "duplicate"]),
        (lambda d: d.update(cloud=[]), ["fleet[0]", "no cloud"]),
        (lambda d: d.update(fleet={"name": "x"}), ["fleet", "expected a list"]),
        (lambda d: d.pop("policy"), ["policy", "is required"]),
    ],
)
def test_other_mistakes_are_named(edit, needles: list[str]) -> None:
    expect_error(edit, "s.yaml", *needles)


def test_config_dataclasses_validate_on_their_own() -> None:
    with pytest.raises(FieldError) as info:
        PolicyConfig(name="adaptive", alpha=0.0)
    assert info.value.field_name == "alpha"
    assert set(POLICIES) >= {"edge-only", "cloud-only", "fixed", "adaptive", "planned"}


def test_cli_fails_at_load_and_runs_nothing(tmp_path: Path, capsys) -> None:
    data = copy.deepcopy(BASE)
    data["fleet"][0]["network"]["traces"].append("missing.up")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    for command in ("simulate", "sweep"):
        argv = [command, str(path), "--no-ray", "--out", str(out)]
        if command == "sweep":
            argv += ["--bandwidths", "1,5"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "fleet[0].network.traces[2]" in err, err
        assert not out.exists()
    with pytest.raises(SystemExit) as info:  # refused while parsing: exit 2, one line
        main(["simulate", str(tmp_path / "absent.yaml"), "--no-ray"])
    assert info.value.code == 2 and "absent.yaml': no such file" in capsys.readouterr().err
    path.write_text("fleet: [unclosed\n")
    assert main(["simulate", str(path), "--no-ray"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unknown_model_or_device_fails_before_running(tmp_path: Path, capsys) -> None:
    for edit, needle in (
        (lambda d: d["fleet"][1].update(device="rpi5"), "fleet[1]: unknown device 'rpi5'"),
        (lambda d: d["fleet"][1].update(model="resnet19"), "fleet[1]"),
        (lambda d: d.update(policy={"name": "fixed", "cut_after": "conv9"}), "policy: no node"),
    ):
        data = copy.deepcopy(BASE)
        edit(data)
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(data))
        assert main(["simulate", str(path), "--no-ray", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert needle in err, err
        assert not (tmp_path / "o").exists()
