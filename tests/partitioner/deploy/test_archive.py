"""check_pt2: every way torch 2.13's .pt2 loader would run code from an archive is refused first.

Each live payload below is first shown to run when the archive goes straight to
``torch.export.load`` (a marker file appears: the threat is real in this torch), then shown to be
refused by ``load_half`` with the member named, the marker never appearing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from partitioner.deploy.archive import check_pt2
from partitioner.deploy.artifact import load_half, load_split
from partitioner.errors import ArtifactError

Members = dict[str, bytes]  # archive member name (without the root directory) -> bytes
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
PROGRAM = "models/model.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"


class _Touch:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


def _pickle(marker: Path) -> bytes:
    return pickle.dumps(_Touch(marker), protocol=2)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits_cnn cut after relu2 (dynamic batch), as `edgecut split` writes it."""
    from partitioner.planner import Planner

    planner = Planner.create("digits_cnn")
    return planner.split(planner.cut_after("relu2"), tmp_path_factory.mktemp("split") / "s")


def _members(path: Path) -> tuple[str, Members]:
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/", 1)[0]
        return root, {i.filename[len(root) + 1 :]: z.read(i) for i in z.infolist()}


def _write(path: Path, root: str, members: Members, method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name[1:] if name.startswith("/") else f"{root}/{name}", data)
    return path


def _edit_json(members: Members, name: str, edit: Callable[[Any], None]) -> None:
    doc = json.loads(members[name])
    edit(doc)
    members[name] = json.dumps(doc).encode()


# ------------------------------------------------------------------ payloads, one per member kind


def _weights(m: Members, marker: Path) -> None:
    """A weight stored as a pickle, its config entry flagged use_pickle (torch.load, unsafe)."""

    def flag(config: Any) -> None:
        entry = next(iter(config["config"].values()))
        entry.update(use_pickle=True, tensor_meta=None)
        m["data/weights/" + entry["path_name"]] = _pickle(marker)

    _edit_json(m, WEIGHTS_CONFIG, flag)


def _constant_tensor(m: Members, marker: Path) -> None:
    """A tensor constant flagged use_pickle in the constants config."""
    m[CONSTANTS_CONFIG] = json.dumps(
        {
            "config": {
                "c": {
                    "path_name": "tensor_0",
                    "is_param": False,
                    "use_pickle": True,
                    "tensor_meta": None,
                }
            }
        }
    ).encode()
    m["data/constants/tensor_0"] = _pickle(marker)


def _opaque_object(m: Members, marker: Path) -> None:
    """An opaque object constant (plain pickle.loads)."""
    m[CONSTANTS_CONFIG] = json.dumps(
        {
            "config": {
                "c": {
                    "path_name": "opaque_obj_0",
                    "is_param": False,
                    "use_pickle": True,
                    "tensor_meta": None,
                }
            }
        }
    ).encode()
    m["data/constants/opaque_obj_0"] = _pickle(marker)


def _sample_inputs(m: Members, marker: Path) -> None:
    """Sample inputs (torch.load with weights_only=True, then weights_only=False)."""
    m[SAMPLE_INPUTS] = _pickle(marker)


def _legacy_weights(m: Members, marker: Path) -> None:
    """The pre-2.8 weights file, which torch prefers to the config when present."""
    m["data/weights/model.pt"] = _pickle(marker)


def _oddly_cased(m: Members, marker: Path) -> None:
    """Sample inputs under a name torch finds case-insensitively and a name check misses."""
    del m[SAMPLE_INPUTS]
    m["data/SAMPLE_INPUTS/model.pt"] = _pickle(marker)


def _shape_expression(m: Members, marker: Path) -> None:
    """A symbolic size in the serialized program (sympy.sympify evaluates it)."""

    def inject(program: Any) -> None:
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {
            "as_expr": {"expr_str": f"__import__('os').system('touch {marker}')", "hint": None}
        }

    _edit_json(m, PROGRAM, inject)


def _guards(m: Members, marker: Path) -> None:
    """Guards in the serialized program, exec'd by .module() once sample inputs exist."""
    buffer = io.BytesIO()
    torch.save(((torch.zeros(2, 1, 8, 8),), {}), buffer)  # benign, weights_only-loadable
    m[SAMPLE_INPUTS] = buffer.getvalue()
    _edit_json(
        m, PROGRAM, lambda p: p.update(guards_code=[f"__import__('os').system('touch {marker}')"])
    )


LIVE = {
    "weights": (_weights, "data/weights/model_weights_config.json", "use_pickle is True"),
    "constants": (_constant_tensor, CONSTANTS_CONFIG, "use_pickle is True"),
    "opaque object": (_opaque_object, "data/constants/opaque_obj_0", "custom object"),
    "sample inputs": (_sample_inputs, SAMPLE_INPUTS, "holds a pickle stream"),
    "legacy .pt": (_legacy_weights, "data/weights/model.pt", "legacy torch.save file"),
    "oddly cased name": (_oddly_cased, "data/SAMPLE_INPUTS/model.pt", "not a member"),
    "shape expression": (_shape_expression, PROGRAM, "not arithmetic over shape symbols"),
    "guards": (_guards, SAMPLE_INPUTS, "holds a pickle stream"),
}


def _plant(
    split: Path, tmp_path: Path, plant: Callable[[Members, Path], None]
) -> tuple[Path, Path]:
    """A copy of the split's head with ``plant`` applied; returns (head.pt2, marker)."""
    marker = tmp_path / "marker"
    root, members = _members(split / "head.pt2")
    plant(members, marker)
    return _write(tmp_path / "head.pt2", root, members), marker


@pytest.mark.parametrize("kind", list(LIVE))
def test_the_payload_runs_when_torch_loads_the_archive_unchecked(
    split: Path, tmp_path: Path, kind: str
) -> None:
    """The control: in this torch, each payload really runs. (Do not load such files.)"""
    path, marker = _plant(split, tmp_path, LIVE[kind][0])
    with contextlib.suppress(Exception):  # most payloads break the load after they ran
        torch.export.load(path).module()(torch.zeros(2, 1, 8, 8))
    assert marker.exists()


@pytest.mark.parametrize("kind", list(LIVE))
def test_loading_refuses_the_payload_and_names_the_member(
    split: Path, tmp_path: Path, kind: str
) -> None:
    plant, member, why = LIVE[kind]
    path, marker = _plant(split, tmp_path, plant)
    with pytest.raises(ArtifactError) as info:
        load_half(path)
    message = str(info.value)
    assert f"member {member!r}" in message and why in message and str(path) in message
    assert "\n" not in message
    assert not marker.exists()


# ------------------------------------------------------- refusals without a live payload in 2.13


def _program_edit(edit: Callable[[Any], None]) -> Callable[[Members, Path], None]:
    return lambda m, marker: _edit_json(m, PROGRAM, edit)


def _first_node(p: Any) -> Any:
    return p["graph_module"]["graph"]["nodes"][0]


REFUSED = {
    # torch resolves targets by getattr on torch: this one is os.system.
    "operator target": (
        _program_edit(lambda p: _first_node(p).update(target="torch.serialization.os.system")),
        PROGRAM,
        "is not an operator",
    ),
    "file-reading operator": (
        _program_edit(lambda p: _first_node(p).update(target="torch.ops.aten.from_file.default")),
        PROGRAM,
        "reaches outside the tensors",
    ),
    # Names become identifiers in the Python torch generates and execs.
    "node name": (
        _program_edit(
            lambda p: _first_node(p)["outputs"][0]["as_tensor"].update(name="x = os.system('t')")
        ),
        PROGRAM,
        "is not a plain identifier",
    ),
    "parameter name": (
        _program_edit(
            lambda p: p["graph_module"]["signature"]["input_specs"][0]["parameter"].update(
                parameter_name='conv1.w"); import os; ("'
            )
        ),
        PROGRAM,
        "is not a dotted name",
    ),
    "custom object argument": (
        _program_edit(
            lambda p: _first_node(p)["inputs"][0].update(
                arg={"as_custom_obj": {"name": "obj", "class_fqn": "__torch__.x"}}
            )
        ),
        PROGRAM,
        "argument kind 'as_custom_obj' is refused",
    ),
    "subgraph argument": (
        _program_edit(lambda p: _first_node(p)["inputs"][0].update(arg={"as_graph": {}})),
        PROGRAM,
        "argument kind 'as_graph' is refused",
    ),
    "custom object values": (
        _program_edit(
            lambda p: p["graph_module"]["graph"].update(custom_obj_values={"o": {"name": "o"}})
        ),
        PROGRAM,
        "custom objects",
    ),
    "guard grammar": (
        _program_edit(lambda p: p.update(guards_code=["__import__('os').getpid() == 0"])),
        PROGRAM,
        "guard",
    ),
    "named tuple": (
        _program_edit(
            lambda p: p["graph_module"].update(
                treespec_namedtuple_fields={"t": {"field_names": []}}
            )
        ),
        PROGRAM,
        "named tuples",
    ),
    "tree spec type": (
        _program_edit(
            lambda p: p["graph_module"]["module_call_graph"][0]["signature"].update(
                in_spec=json.dumps(
                    [1, {"type": "os.system", "context": "null", "children_spec": []}]
                )
            )
        ),
        PROGRAM,
        "container type 'os.system' is refused",
    ),
    "duplicate under case folding": (
        lambda m, marker: m.update({"Data/Sample_Inputs/Model.pt": _pickle(marker)}),
        "Data/Sample_Inputs/Model.pt",
        "the same name as 'data/sample_inputs/model.pt' to torch, which ignores case",
    ),
    "compiled library": (
        lambda m, marker: m.update({"data/aotinductor/model/model.so": b"\x7fELF"}),
        "data/aotinductor/model/model.so",
        "shared library",
    ),
    "pre-2.7 layout": (
        lambda m, marker: m.update({"/version": b"1", "/serialized_state_dict.pt": b"x"}),
        "version",
        "outside the archive's root directory",
    ),
    "extra member": (
        lambda m, marker: m.update({"extra/notes.txt": b"hello"}),
        "extra/notes.txt",
        "unknown to edgecut",
    ),
    "weight beyond its bytes": (
        lambda m, marker: _edit_json(
            m,
            WEIGHTS_CONFIG,
            lambda c: next(iter(c["config"].values()))["tensor_meta"]["sizes"].__setitem__(
                0, {"as_int": 1 << 40}
            ),
        ),
        WEIGHTS_CONFIG,
        "needs",
    ),
    "weight path": (
        lambda m, marker: _edit_json(
            m,
            WEIGHTS_CONFIG,
            lambda c: next(iter(c["config"].values())).update(
                path_name="../sample_inputs/model.pt"
            ),
        ),
        WEIGHTS_CONFIG,
        "is not a raw tensor file",
    ),
    "archive format": (
        lambda m, marker: m.update({"archive_format": b"pt3"}),
        "archive_format",
        "not what torch.export.save writes",
    ),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_every_construct_outside_the_allow_list_is_refused(
    split: Path, tmp_path: Path, kind: str
) -> None:
    plant, member, why = REFUSED[kind]
    path, marker = _plant(split, tmp_path, plant)
    with pytest.raises(ArtifactError) as info:
        check_pt2(path)
    message = str(info.value)
    assert f"member {member!r}" in message and why in message, message
    assert not marker.exists()


# ------------------------------------------------------------------------------ zip structure


def test_compressed_members_are_refused_before_inflating(split: Path, tmp_path: Path) -> None:
    """A zip bomb: a 1 GiB member that deflates to a few MB. Only stored members are accepted,
    so nothing is ever inflated and a member's size is the bytes it occupies."""
    root, members = _members(split / "head.pt2")
    path = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(f"{root}/{name}", data)
        info = zipfile.ZipInfo(f"{root}/data/weights/weight_999")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(1024):
                member.write(block)
    assert path.stat().st_size < 8 << 20
    with pytest.raises(ArtifactError, match="compressed \\(zip method 8\\).*refused before it is"):
        check_pt2(path)


@pytest.mark.parametrize(
    "damage,why",
    [
        (lambda data: b"junk" + data, "not where its locator says|before the first member"),
        (lambda data: data + b"trailer", "no zip end record at the end"),
        (lambda data: data[:-2] + struct.pack("<H", 5) + b"hello", "no zip end record at the end"),
        (lambda data: data[: len(data) // 2], "no zip end record at the end"),
        (lambda data: b"", "too short for a zip"),
    ],
)
def test_zips_two_readers_could_read_differently_are_refused(
    split: Path, tmp_path: Path, damage: Callable[[bytes], bytes], why: str
) -> None:
    path = tmp_path / "damaged.pt2"
    path.write_bytes(damage((split / "head.pt2").read_bytes()))
    with pytest.raises(ArtifactError, match=why):
        check_pt2(path)


def test_a_member_count_the_directory_does_not_hold_is_refused(split: Path, tmp_path: Path) -> None:
    data = bytearray((split / "head.pt2").read_bytes())
    end = len(data) - 22  # the end record: announce one member more than the directory holds
    total = struct.unpack_from("<H", data, end + 10)[0]
    struct.pack_into("<HH", data, end + 8, total + 1, total + 1)
    path = tmp_path / "count.pt2"
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="disagree|announces"):
        check_pt2(path)


def test_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        check_pt2(tmp_path / "none.pt2")
    with pytest.raises(ArtifactError, match="got a directory"):
        check_pt2(tmp_path)


# --------------------------------------------------------------------------- what edgecut writes


def test_the_splits_edgecut_writes_pass_and_load(split: Path, tmp_path: Path) -> None:
    for half in ("head.pt2", "tail.pt2"):
        check_pt2(split / half)
    art = load_split(split)
    x = torch.randn(3, 1, 8, 8)
    assert art.run(x)[0].shape == (3, 10)
    # A copy re-zipped by Python (other zip records than torch's) still passes.
    root, members = _members(split / "head.pt2")
    check_pt2(_write(tmp_path / "rezipped.pt2", root, members))


@pytest.mark.parametrize(
    "expression",
    [
        "Symbol('s0', positive=True, integer=True)",
        "s0",
        "2*s0 + 1",
        "FloorDiv(s0, 2) - (s12 // 4) * -3",
        "Max(s1, 1) <= 4096",
        # srepr, as torch writes a batch folded with windows (Swin) or a sum of sizes
        "Mul(Integer(4), Symbol('s77', positive=True, integer=True))",
        "Add(Mul(Integer(-1), Symbol('s0', integer=True)), Integer(-3), s1)",
    ],
)
def test_shape_expressions_torch_writes_pass(split: Path, tmp_path: Path, expression: str) -> None:
    def use(program: Any) -> None:
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {"as_expr": {"expr_str": expression, "hint": None}}

    path, _ = _plant(split, tmp_path, _program_edit(use))
    check_pt2(path)


@pytest.mark.parametrize(
    "expression",
    [
        "s0.__class__",
        "Symbol('s0', positive=__import__('os'))",
        "exec('1')",
        "s0 ** 99999999",
        "lambda: 0",
        "s0; s1",
        "'s0'",
        "(" * 40 + "s0" + ")" * 40,
        "1" * 600,
        "Mul(s0, __import__('os'))",
        "Integer(s0)",
        "Add()",
        "s0 or s1",
    ],
)
def test_shape_expressions_outside_the_grammar_are_refused(
    split: Path, tmp_path: Path, expression: str
) -> None:
    def use(program: Any) -> None:
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {"as_expr": {"expr_str": expression, "hint": None}}

    path, _ = _plant(split, tmp_path, _program_edit(use))
    with pytest.raises(ArtifactError, match=f"member '{PROGRAM}': shape expression"):
        check_pt2(path)


def _sums(n: int, width: int) -> str:
    """A product of ``n`` sums of ``width`` symbols: width**n terms once multiplied out."""
    return "*".join("(" + "+".join(f"s{i + j}" for j in range(width)) + ")" for i in range(n))


@pytest.mark.parametrize(
    "expression",
    [
        # sympy's Mod (what '%' becomes in sympify) on products of sums: minutes in torch.load
        f"({_sums(6, 2)}) % ({_sums(6, 2)})",
        # torch multiplies out every loaded size (3**12 terms: 44 s in torch.export.load here)
        _sums(12, 3),
        f"Mod({_sums(12, 3)}, s1)",
        f"Mul({_sums(4, 2)}, {_sums(4, 2)})",
        f"FloorDiv(s0, Max({_sums(7, 2)}, 1))",
        # Unicode: a space Python's tokenizer would not read as one, digits and letters
        "s0\u2003+ 1",
        "s0 + \u0661",
        "s\u2080",
        "\uff53\uff10",
    ],
)
def test_shape_expressions_torch_cannot_load_quickly_or_read_are_refused(
    split: Path, tmp_path: Path, expression: str
) -> None:
    def use(program: Any) -> None:
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {"as_expr": {"expr_str": expression, "hint": None}}

    path, _ = _plant(split, tmp_path, _program_edit(use))
    with pytest.raises(ArtifactError, match=f"member '{PROGRAM}': shape expression") as info:
        check_pt2(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [_sums(6, 2), f"Mod({_sums(6, 2)}, {_sums(6, 2)})", f"({_sums(3, 2)}) // ({_sums(3, 2)})"],
)
def test_products_of_sums_up_to_the_limit_pass(
    split: Path, tmp_path: Path, expression: str
) -> None:
    def use(program: Any) -> None:
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {"as_expr": {"expr_str": expression, "hint": None}}

    path, _ = _plant(split, tmp_path, _program_edit(use))
    check_pt2(path)


def _every_size(expression: Callable[[int], str]) -> Callable[[Members, Path], None]:
    """Each dim of each tensor value set to ``expression(n)``, n counting the dims."""

    def use(program: Any) -> None:
        n = 0
        for meta in program["graph_module"]["graph"]["tensor_values"].values():
            for d in range(len(meta["sizes"])):
                meta["sizes"][d] = {"as_expr": {"expr_str": expression(n), "hint": None}}
                n += 1

    return _program_edit(use)


def test_many_products_of_sums_within_the_limit_each_are_refused_together(
    split: Path, tmp_path: Path
) -> None:
    """torch took 0.4 s per 64-term product here: a program of thousands would hold a node for
    minutes, each one under the per-expression limit."""
    path, _ = _plant(split, tmp_path, _every_size(lambda n: _sums(6, 2).replace("s0", f"s{n}")))
    with pytest.raises(ArtifactError, match="past 1024 terms multiplied out"):
        check_pt2(path)
    # Products of two small sums, as a flattened H*W with dynamic sizes would be, pass.
    small = _every_size(lambda n: f"(FloorDiv(s{n}, 2) + 1)*(FloorDiv(s{n + 1}, 2) + 1)")
    path, _ = _plant(split, tmp_path, small)
    check_pt2(path)


@pytest.mark.parametrize("bound", [2**63, -(2**63) - 1, 10**4000, 1.5, "4"])
def test_range_bounds_beyond_64_bits_are_refused(split: Path, tmp_path: Path, bound: Any) -> None:
    edit = _program_edit(
        lambda p: p.setdefault("range_constraints", {}).update({"s0": {"max_val": bound}})
    )
    path, _ = _plant(split, tmp_path, edit)
    with pytest.raises(ArtifactError, match="bounds must be 64-bit integers or null"):
        check_pt2(path)


def test_a_guard_may_take_a_remainder_a_shape_expression_may_not(
    split: Path, tmp_path: Path
) -> None:
    guard = "L['a'].size()[0] % 4 == 0"
    path, _ = _plant(split, tmp_path, _program_edit(lambda p: p.update(guards_code=[guard])))
    check_pt2(path)
    derived = _program_edit(
        lambda p: p.setdefault("range_constraints", {}).update({"s0 % 4": {"min_val": 0}})
    )
    path, _ = _plant(split, tmp_path, derived)
    with pytest.raises(ArtifactError, match="shape expression 's0 % 4'"):
        check_pt2(path)


def test_the_guards_torch_writes_for_multi_input_tails_pass(split: Path, tmp_path: Path) -> None:
    guard = "L['layer2_1_relu2'].size()[0] == L['layer3_0_downsample_0'].size()[0]"
    path, _ = _plant(split, tmp_path, _program_edit(lambda p: p.update(guards_code=[guard])))
    check_pt2(path)


def test_the_guards_and_ranges_torch_writes_for_folded_batches_pass(
    split: Path, tmp_path: Path
) -> None:
    """A tail whose inputs hold the batch folded (``4*s0``) or reshaped: torch writes the
    derived dim as a range constraint and a reshape's divisibility as a joined guard."""
    guard = "(1024*L['a'].size()[0]) == (256*L['b'].size()[0]) or ((1024*L['a'].size()[0]) % (256*L['b'].size()[0])) == 0"

    def edit(program: Any) -> None:
        program.update(guards_code=[guard])
        program.setdefault("range_constraints", {})["4*s0"] = {"min_val": 4, "max_val": 16384}

    path, _ = _plant(split, tmp_path, _program_edit(edit))
    check_pt2(path)
    for bad_guard in ("s0 or __import__('os')", "L['a'].size()[0] or"):

        def set_guard(p: Any, g: str = bad_guard) -> None:
            p.update(guards_code=[g])

        path, _ = _plant(split, tmp_path, _program_edit(set_guard))
        with pytest.raises(ArtifactError, match="guard"):
            check_pt2(path)
    bad_range = _program_edit(
        lambda p: p.setdefault("range_constraints", {}).update({"__import__('os')": {}})
    )
    path, _ = _plant(split, tmp_path, bad_range)
    with pytest.raises(ArtifactError, match="shape expression"):
        check_pt2(path)


def test_a_split_dir_with_a_planted_half_is_refused_by_load_split(
    split: Path, tmp_path: Path
) -> None:
    """Through the manifest path too: sha256 updated to match, the archive check still holds."""
    copy = tmp_path / "copy"
    shutil.copytree(split, copy)
    marker = tmp_path / "marker"
    root, members = _members(copy / "tail.pt2")
    _sample_inputs(members, marker)
    _write(copy / "tail.pt2", root, members)
    manifest = json.loads((copy / "manifest.json").read_text())
    from partitioner.deploy.files import sha256_file

    manifest["files"]["tail.pt2"] = {
        "sha256": sha256_file(copy / "tail.pt2"),
        "bytes": (copy / "tail.pt2").stat().st_size,
    }
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"tail.pt2: member '{SAMPLE_INPUTS}'"):
        load_split(copy)
    assert not marker.exists()
