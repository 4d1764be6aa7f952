"""The ``.pt2`` archives a node accepts: every member checked before torch reads a byte.

A ``.pt2`` is a zip that ``torch.export.load`` turns into a program, and torch 2.13's loader
runs code from it in many places: it unpickles legacy tensor files (``data/weights/<model>.pt``,
``data/constants/<model>.pt``), payloads flagged ``use_pickle``, custom and opaque objects
(``custom_obj_*``, ``opaque_obj_*``) and non-empty sample inputs (falling back to
``weights_only=False``); it loads compiled libraries (``data/aotinductor/``); when its reader
fails it retries the pre-2.7 layout, which unpickles ``serialized_*.pt``; it hands shape
expressions to ``sympy.sympify`` (an ``eval``); it ``exec``s the program's guards and the Python
it generates from node and parameter names; and it resolves node targets by walking attributes
of ``torch``, so ``torch.serialization.os.system`` becomes a node that runs on the first frame.
Its reader finds members case-insensitively, and picks a different copy of a repeated name than
Python's ``zipfile`` does.

:func:`check_pt2` is the one gate in front of all that. It accepts exactly what
``torch.export.save`` writes for an edgecut split: stored (uncompressed) members under one
root, named as torch names them, no two alike ignoring case; raw tensor bytes described by
JSON configs that pickle nothing; empty sample inputs; a program whose nodes call ATen or
quantized-decomposed operators, whose names are identifiers, whose shape expressions and
guards fit a small grammar parsed here, and which holds no custom object, subgraph or
operator-valued argument. Anything else is refused with one line naming the file and member.
"""

from __future__ import annotations

import json
import keyword
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from partitioner.deploy.files import NotRegularFileError, open_regular
from partitioner.errors import ArtifactError

# ------------------------------------------------------------------------------- limits

MAX_MEMBERS = 100_000
MAX_PROGRAM_BYTES = 64 * 1024 * 1024  # models/model.json: ~1 MiB for resnet50
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a payload config: one entry per weight
MAX_TEXT_BYTES = 64  # archive_format, archive_version, byteorder, .data/*
MAX_JSON_DEPTH = 64
MAX_EXPR_CHARS = 512
MAX_NAME_CHARS = 512
# A shape expression's terms once multiplied out: torch expands each one on loading, k**n terms
# for a product of n sums of k (12 sums of 3 took torch 44 s here); torch writes a handful.
MAX_EXPANDED_TERMS = 64
# ... and over the whole program, counting the products of two sums (a 64-term one took torch
# 0.4 s here, and a 64 MiB program holds 100,000 of them); torch's own hold few or none.
MAX_PROGRAM_EXPANDED_TERMS = 1024

# ------------------------------------------------------------------------- the layout

MODEL = "model"  # torch.export.save names its one program "model"
PROGRAM = f"models/{MODEL}.json"
WEIGHTS_CONFIG = f"data/weights/{MODEL}_weights_config.json"
CONSTANTS_CONFIG = f"data/constants/{MODEL}_constants_config.json"
SAMPLE_INPUTS = f"data/sample_inputs/{MODEL}.pt"
TEXT_MEMBERS = {
    "archive_format": re.compile(r"pt2"),
    "archive_version": re.compile(r"0"),
    "byteorder": re.compile(r"little"),
    ".data/version": re.compile(r"[0-9]{1,4}\n?"),
    ".data/serialization_id": re.compile(r"[0-9]{1,64}"),
}
REQUIRED = {"archive_format", "archive_version", PROGRAM, WEIGHTS_CONFIG, CONSTANTS_CONFIG}
WEIGHT = re.compile(r"data/weights/(weight_[0-9]{1,9})")
CONSTANT = re.compile(r"data/constants/(tensor_[0-9]{1,9})")
MEMBER_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
ROOT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")

# What a legacy or foreign member would do in torch, for the refusal message.
KNOWN_DANGERS = (
    (re.compile(r"(data/(weights|constants)/[^/]+|serialized_[^/]+)\.pt"), "a legacy torch.save file, which torch unpickles"),
    (re.compile(r"data/aotinductor/.*"), "AOTInductor code, which torch loads as a shared library"),
    (re.compile(r"data/constants/(custom|opaque)_obj_.*"), "a custom object, which torch unpickles"),
    (re.compile(r"(version|serialized_.*)"), "part of the pre-2.7 layout, whose loader unpickles"),
)  # fmt: skip

# torch's ScalarType numbers -> element bytes (torch/_export/serde/schema.py).
ELEMENT_BYTES = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2,
    28: 2, 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8,
}  # fmt: skip
STRIDED = 7

# ------------------------------------------------------------------------ the program

# Node targets: operators of these namespaces, resolved by torch through torch.ops.
OP_NAMESPACES = ("aten", "quantized_decomposed", "prims")
TARGET = re.compile(
    rf"torch\.ops\.({'|'.join(OP_NAMESPACES)})\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)"
)
# ATen operators that reach outside the tensors: files and the console.
DENIED_OPS = frozenset({"from_file", "save", "load", "_print", "warn"})
# Symbolic-integer operators torch serializes by their Python names.
SYM_TARGETS = frozenset(
    {f"_operator.{op}" for op in ("getitem", "add", "sub", "mul", "floordiv", "mod", "neg",
                                  "eq", "ne", "lt", "le", "gt", "ge", "truediv", "pos")}
    | {f"torch.sym_{op}" for op in ("int", "float", "max", "min", "not", "sqrt", "ite")}
    | {"math.trunc"}
)  # fmt: skip
PROGRAM_KEYS = frozenset(
    {"graph_module", "opset_version", "range_constraints", "schema_version", "verifiers",
     "torch_version", "guards_code"}
)  # fmt: skip
GRAPH_MODULE_KEYS = frozenset(
    {"graph", "signature", "module_call_graph", "metadata", "treespec_namedtuple_fields"}
)
GRAPH_KEYS = frozenset(
    {"inputs", "outputs", "nodes", "tensor_values", "sym_int_values", "sym_bool_values",
     "sym_float_values", "is_single_tensor_return", "custom_obj_values"}
)  # fmt: skip
NODE_KEYS = frozenset({"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return",
                       "name"})  # fmt: skip
NODE_METADATA = frozenset({"stack_trace", "nn_module_stack", "torch_fn", "from_node"})
INPUT_SPECS = frozenset({"user_input", "parameter", "buffer", "tensor_constant", "constant_input"})
OUTPUT_SPECS = frozenset({"user_output", "buffer_mutation", "user_input_mutation"})
# Argument kinds (the ``as_*`` keys of torch's serialized unions) a program may use; refused:
# as_graph (subgraphs of higher-order ops), as_custom_obj, as_operator (a target as a value),
# as_string_to_argument and as_nested_tensors (nothing edgecut exports needs them).
ARGUMENT_KINDS = frozenset(
    {"as_none", "as_tensor", "as_tensors", "as_int", "as_ints", "as_float", "as_floats",
     "as_string", "as_strings", "as_sym_int", "as_sym_ints", "as_scalar_type",
     "as_memory_format", "as_layout", "as_device", "as_bool", "as_bools", "as_sym_bool",
     "as_sym_bools", "as_optional_tensors", "as_sym_float", "as_sym_floats",
     "as_optional_tensor", "as_complex", "as_int_lists", "as_float_lists", "as_expr",
     "as_name"}
)  # fmt: skip
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DOTTED = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
SYMBOL = re.compile(r"s[0-9]{1,9}")
VERIFIER = re.compile(r"[A-Z_]{1,32}")
TREESPEC_TYPES = frozenset({"builtins.tuple", "builtins.list", "builtins.dict"})


@dataclass(frozen=True)
class _Where:
    """Where in an archive a check is: file and member, for the one-line error."""

    path: Path
    member: str = ""

    def fail(self, what: str) -> NoReturn:
        member = f": member {self.member!r}" if self.member else ""
        raise ArtifactError(f"{self.path}{member}: {what}")

    def at(self, member: str) -> _Where:
        return _Where(self.path, member)


def check_pt2(path: str | Path) -> None:
    """Refuse ``path`` unless it is a ``.pt2`` that torch can load without running its code.

    Raises :class:`ArtifactError` naming the file and the member at fault.
    """
    where = _Where(Path(path))
    try:
        with open_regular(where.path) as f:
            members = _members(f, where)
            _check_layout(f, members, where)
    except FileNotFoundError:
        where.fail("no such file")
    except PermissionError:
        where.fail("cannot be read (permission denied)")
    except IsADirectoryError:
        where.fail("expected a .pt2 file, got a directory")
    except NotRegularFileError:
        where.fail("expected a .pt2 file, got a device, FIFO or socket")
    except OSError as exc:
        where.fail(f"cannot be read: {exc.strerror or exc}")


# ---------------------------------------------------------------------- zip structure


@dataclass(frozen=True)
class _Member:
    name: str  # without the root directory
    info: zipfile.ZipInfo


def _members(f: BinaryIO, where: _Where) -> dict[str, _Member]:
    """The members by name (root removed), once the zip is one both zip readers agree on."""
    size = f.seek(0, 2)
    entries, cd_offset = _central_directory(f, size, where)
    if entries > MAX_MEMBERS:
        where.fail(f"{entries} members, above the limit of {MAX_MEMBERS}")
    try:
        infos = zipfile.ZipFile(f).infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, struct.error) as exc:
        where.fail(f"not a .pt2 archive (a zip file): {exc}")
    if len(infos) != entries:
        where.fail(
            f"the zip's end record announces {entries} members, its directory holds {len(infos)}"
        )
    if not infos:
        where.fail("an empty archive; expected the members torch.export.save writes")
    root = infos[0].filename.split("/", 1)[0]
    if not ROOT_NAME.fullmatch(root):
        where.fail(f"root directory {root[:80]!r} is not a plain name")
    members: dict[str, _Member] = {}
    folded: dict[str, str] = {}
    for info in infos:
        full = info.filename
        if not full.startswith(root + "/"):
            where.at(full[:200]).fail(f"outside the archive's root directory {root!r}")
        name = full[len(root) + 1 :]
        member = where.at(name[:200])
        if len(full) > MAX_NAME_CHARS or not MEMBER_NAME.fullmatch(name) or ".." in name.split("/"):
            member.fail("not a plain relative name of letters, digits, '_', '.', '-' and '/'")
        # torch's reader finds members ignoring case: two names alike that way are one to it,
        # and it would not pick the copy Python's zipfile reads.
        if name.lower() in folded:
            member.fail(f"the same name as {folded[name.lower()]!r} to torch, which ignores case")
        folded[name.lower()] = name
        _check_entry(f, info, cd_offset, member)
        members[name] = _Member(name, info)
    return members


def _central_directory(f: BinaryIO, size: int, where: _Where) -> tuple[int, int]:
    """(member count, directory offset) from the end records, which must sit at the very end.

    torch's reader (miniz) and Python's zipfile find the directory the same way only when the
    end record has no comment and nothing precedes the first member: anything else could show
    one of them different bytes than the other.
    """
    if size < 22:
        where.fail(f"not a .pt2 archive: {size} bytes, too short for a zip")
    f.seek(size - 22)
    sig, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment = struct.unpack(
        "<IHHHHIIH", f.read(22)
    )
    if sig != 0x06054B50 or comment != 0:
        where.fail("not a .pt2 archive: no zip end record at the end of the file")
    if disk or cd_disk or on_disk != total:
        where.fail("a multi-disk zip; expected one file as torch.export.save writes")
    end = size - 22
    if size >= 22 + 20 + 56:
        f.seek(size - 22 - 20)
        loc_sig, _, zip64_offset, _ = struct.unpack("<IIQI", f.read(20))
        if loc_sig == 0x07064B50:
            if zip64_offset != size - 22 - 20 - 56:
                where.fail("the zip64 end record is not where its locator says")
            f.seek(zip64_offset)
            (sig64, record, _, _, disk64, cd_disk64, on_disk64, total64, cd_size64,
             cd_offset64) = struct.unpack("<IQHHIIQQQQ", f.read(56))  # fmt: skip
            if sig64 != 0x06064B50 or record != 44 or disk64 or cd_disk64 or on_disk64 != total64:
                where.fail("a malformed zip64 end record")
            for short, long, sentinel in (
                (total, total64, 0xFFFF),
                (cd_size, cd_size64, 0xFFFFFFFF),
                (cd_offset, cd_offset64, 0xFFFFFFFF),
            ):
                if short not in (long, sentinel):
                    where.fail("the zip's end record and zip64 end record disagree")
            total, cd_size, cd_offset, end = total64, cd_size64, cd_offset64, zip64_offset
    if cd_offset + cd_size != end:
        where.fail("bytes between the zip directory and its end record, or before the first member")
    return total, cd_offset


def _check_entry(f: BinaryIO, info: zipfile.ZipInfo, cd_offset: int, where: _Where) -> None:
    """One member: stored as is, unencrypted, its bytes inside the file before the directory.

    Only stored members are accepted (torch.export.save compresses nothing), so a member's
    declared size is the number of bytes it occupies: there is nothing to inflate.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        where.fail(
            f"compressed (zip method {info.compress_type}); torch.export.save stores members "
            "uncompressed, and a compressed one is refused before it is inflated"
        )
    if info.flag_bits & 0x1:
        where.fail("encrypted")
    if info.file_size != info.compress_size:
        where.fail(f"declares {info.file_size} bytes but stores {info.compress_size}")
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        where.fail("no local zip header where the directory points")
    method, name_len, extra_len = struct.unpack("<8xH16xHH", header)
    if method != zipfile.ZIP_STORED or f.read(name_len) != info.orig_filename.encode("utf-8"):
        where.fail("its local zip header disagrees with the zip directory")
    if info.header_offset + 30 + name_len + extra_len + info.compress_size > cd_offset:
        where.fail("its bytes run past the end of the archive's members")


def _read(f: BinaryIO, member: _Member, limit: int, where: _Where) -> bytes:
    size = member.info.file_size
    if size > limit:
        where.fail(f"{size} bytes, above the limit of {limit} for this member")
    f.seek(member.info.header_offset + 26)
    name_len, extra_len = struct.unpack("<HH", f.read(4))
    f.seek(member.info.header_offset + 30 + name_len + extra_len)
    data = f.read(size)
    if len(data) != size:
        where.fail("truncated")
    return data


def _head(f: BinaryIO, member: _Member) -> bytes:
    """A member's first bytes, to say what it holds."""
    f.seek(member.info.header_offset + 26)
    name_len, extra_len = struct.unpack("<HH", f.read(4))
    f.seek(member.info.header_offset + 30 + name_len + extra_len)
    return f.read(min(member.info.file_size, 4))


def _json(f: BinaryIO, member: _Member, limit: int, where: _Where) -> Any:
    data = _read(f, member, limit, where)
    if _looks_pickled(data):
        where.fail("holds a pickle stream, which torch would unpickle; expected JSON")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        where.fail("JSON nested too deeply")
    except (UnicodeDecodeError, ValueError) as exc:
        where.fail(f"expected JSON, got {str(exc).splitlines()[0][:120]}")


def _looks_pickled(data: bytes) -> bool:
    """A pickle stream (protocol 2+ opens with PROTO) or a torch.save zip."""
    return (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5) or data[:4] == b"PK\x03\x04"


# --------------------------------------------------------------------------- members


def _check_layout(f: BinaryIO, members: dict[str, _Member], where: _Where) -> None:
    weights = {m.group(1) for n in members if (m := WEIGHT.fullmatch(n))}
    constants = {m.group(1) for n in members if (m := CONSTANT.fullmatch(n))}
    for name, member in members.items():
        at = where.at(name)
        if name in TEXT_MEMBERS:
            data = _read(f, member, MAX_TEXT_BYTES, at)
            if not TEXT_MEMBERS[name].fullmatch(data.decode("ascii", "replace")):
                at.fail(f"holds {data[:32]!r}, not what torch.export.save writes there")
        elif name == SAMPLE_INPUTS:
            if member.info.file_size:
                pickled = _looks_pickled(_head(f, member))
                at.fail(
                    f"{'holds a pickle stream' if pickled else 'is not empty'}: sample inputs "
                    "are a torch.save file torch would unpickle; edgecut writes none"
                )
        elif name not in REQUIRED and not WEIGHT.fullmatch(name) and not CONSTANT.fullmatch(name):
            danger = next((why for rx, why in KNOWN_DANGERS if rx.fullmatch(name)), None)
            pickled = _looks_pickled(_head(f, member))
            at.fail(
                f"not a member of an edgecut split ({danger or 'unknown to edgecut'}"
                f"{'; it holds a pickle stream' if pickled else ''})"
            )
    missing = sorted((REQUIRED | {SAMPLE_INPUTS}) - set(members))
    if missing:
        where.at(missing[0]).fail("missing; torch.export.save writes it")
    used_weights = _check_payloads(f, members, WEIGHTS_CONFIG, WEIGHT, "data/weights/", where)
    used_constants = _check_payloads(
        f, members, CONSTANTS_CONFIG, CONSTANT, "data/constants/", where
    )
    for unused, prefix in ((weights - used_weights, "data/weights/"),
                           (constants - used_constants, "data/constants/")):  # fmt: skip
        if unused:
            where.at(prefix + sorted(unused)[0]).fail("not described by any payload config")
    program = where.at(PROGRAM)
    _Program(program).check(_json(f, members[PROGRAM], MAX_PROGRAM_BYTES, program))


def _check_payloads(
    f: BinaryIO,
    members: dict[str, _Member],
    config_name: str,
    path_name: re.Pattern[str],
    prefix: str,
    where: _Where,
) -> set[str]:
    """A payload config: raw tensors only, each inside its member's bytes; returns the files."""
    at = where.at(config_name)
    config = _json(f, members[config_name], MAX_CONFIG_BYTES, at)
    if (
        not isinstance(config, dict)
        or set(config) != {"config"}
        or not isinstance(config["config"], dict)
    ):
        at.fail('expected {"config": {name: payload}}')
    used: set[str] = set()
    for fqn, meta in config["config"].items():
        entry = f"payload {str(fqn)[:80]!r}"
        if not isinstance(fqn, str) or not DOTTED.fullmatch(fqn) or len(fqn) > MAX_NAME_CHARS:
            at.fail(f"{entry}: expected a dotted name of letters, digits and '_'")
        if not isinstance(meta, dict) or set(meta) != {
            "path_name", "is_param", "use_pickle", "tensor_meta"
        }:  # fmt: skip
            at.fail(f"{entry}: expected path_name, is_param, use_pickle and tensor_meta")
        if meta["use_pickle"] is not False:
            at.fail(f"{entry}: use_pickle is {meta['use_pickle']!r}; torch would unpickle it")
        if meta["is_param"] not in (True, False):
            at.fail(f"{entry}: is_param must be true or false")
        file = meta["path_name"]
        if not isinstance(file, str) or not path_name.fullmatch(prefix + file):
            at.fail(
                f"{entry}: path_name {str(file)[:80]!r} is not a raw tensor file such as "
                f"{path_name.pattern.removeprefix(prefix)}"
                + (" (custom objects are unpickled by torch)" if "obj_" in str(file) else "")
            )
        if prefix + file not in members:
            at.fail(f"{entry}: path_name {file!r} has no member {prefix + file!r}")
        _check_storage(meta["tensor_meta"], members[prefix + file].info.file_size, at, entry)
        used.add(file)
    return used


def _check_storage(meta: Any, stored_bytes: int, where: _Where, entry: str) -> None:
    """A raw tensor's declared shape must fit in the bytes stored for it, before torch allocates."""
    if not isinstance(meta, dict):
        where.fail(f"{entry}: tensor_meta must be an object")
    dtype = meta.get("dtype")
    if dtype not in ELEMENT_BYTES:
        where.fail(f"{entry}: dtype {dtype!r} is not a torch scalar type number")
    if meta.get("layout") != STRIDED or meta.get("device") != {"type": "cpu", "index": None}:
        where.fail(f"{entry}: expected a strided CPU tensor")
    if meta.get("requires_grad") not in (True, False):
        where.fail(f"{entry}: requires_grad must be true or false")
    dims = []
    for key in ("sizes", "strides"):
        values = meta.get(key)
        if not isinstance(values, list) or len(values) > 16:
            where.fail(f"{entry}: {key} must be a list of at most 16 integers")
        dims.append([_plain_int(v, where, f"{entry}: {key}") for v in values])
    sizes, strides = dims
    offset = _plain_int(meta.get("storage_offset"), where, f"{entry}: storage_offset")
    if len(sizes) != len(strides):
        where.fail(f"{entry}: {len(sizes)} sizes but {len(strides)} strides")
    itemsize = ELEMENT_BYTES[dtype]
    if any(s == 0 for s in sizes):
        needed = 0
    else:
        needed = offset + sum((s - 1) * st for s, st in zip(sizes, strides, strict=True)) + 1
        needed *= itemsize
    if needed > stored_bytes or stored_bytes % itemsize:
        where.fail(
            f"{entry}: shape {sizes} (strides {strides}, offset {offset}) needs {needed} bytes "
            f"of {itemsize}-byte elements; its file holds {stored_bytes}"
        )


def _plain_int(value: Any, where: _Where, what: str) -> int:
    """A SymInt that is a plain non-negative integer (weights have no symbolic shapes)."""
    if (
        not isinstance(value, dict)
        or set(value) != {"as_int"}
        or type(value["as_int"]) is not int
        or not 0 <= value["as_int"] < 1 << 48
    ):
        where.fail(f"{what}: expected {{'as_int': n}} with 0 <= n < 2**48, got {str(value)[:80]}")
    return int(value["as_int"])


# ------------------------------------------------------------------------------ program


class _Program:
    """The serialized program (``models/model.json``): what torch deserializes, then runs."""

    def __init__(self, where: _Where) -> None:
        self.where = where
        self.expanded_terms = 0  # the terms of every product of sums torch will multiply out

    def fail(self, what: str) -> NoReturn:
        self.where.fail(what)

    def check(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not {"graph_module", "schema_version"} <= set(doc):
            self.fail("expected a serialized ExportedProgram object")
        self._keys(doc, PROGRAM_KEYS, "the program")
        for namespace, version in _items(doc.get("opset_version", {}), self, "opset_version"):
            if namespace not in OP_NAMESPACES or type(version) is not int:
                self.fail(f"opset_version names {namespace!r}; expected {', '.join(OP_NAMESPACES)}")
        for symbol, bounds in _items(doc.get("range_constraints", {}), self, "range_constraints"):
            if not isinstance(bounds, dict):
                self.fail(f"range constraint {symbol[:80]!r}: expected a symbol such as s0")
            if not SYMBOL.fullmatch(symbol):  # a derived dim, such as 4*s0 (a folded batch)
                _parse(symbol, self, guard=False)
            for bound in bounds.values():
                # int64's: torch writes null for no bound; a 4,000-digit one would make every
                # bound torch computes from it (s0 to the 170th) a number of millions of digits.
                if bound is not None and (type(bound) is not int or not -(2**63) <= bound < 2**63):
                    self.fail(
                        f"range constraint {symbol[:80]!r}: bounds must be 64-bit integers or null"
                    )
        for verifier in _strings(doc.get("verifiers", []), self, "verifiers"):
            if not VERIFIER.fullmatch(verifier):
                self.fail(f"verifier {verifier[:80]!r} is not a dialect name such as TRAINING")
        for guard in _strings(doc.get("guards_code", []), self, "guards_code"):
            _parse(guard, self, guard=True)  # torch execs these as Python
        module = doc["graph_module"]
        if not isinstance(module, dict):
            self.fail("graph_module must be an object")
        self._keys(module, GRAPH_MODULE_KEYS, "graph_module")
        if module.get("metadata") or module.get("treespec_namedtuple_fields"):
            self.fail("graph_module carries metadata or named tuples; edgecut writes neither")
        self._graph(module.get("graph"))
        self._signature(module.get("signature"))
        for entry in _list(module.get("module_call_graph", []), self, "module_call_graph"):
            self._call_entry(entry)

    def _keys(self, obj: dict[str, Any], allowed: frozenset[str], what: str) -> None:
        extra = sorted(set(obj) - allowed)
        if extra:
            self.fail(f"{what} has field {extra[0][:80]!r}, which edgecut does not accept")

    def _graph(self, graph: Any) -> None:
        if not isinstance(graph, dict):
            self.fail("the graph must be an object")
        self._keys(graph, GRAPH_KEYS, "the graph")
        if graph.get("custom_obj_values"):
            self.fail("the graph holds custom objects, which torch unpickles")
        for key in ("tensor_values", "sym_int_values", "sym_bool_values", "sym_float_values"):
            for name, value in _items(graph.get(key, {}), self, key):
                self._name(name, key)
                self._walk(value, 0)
        for key in ("inputs", "outputs"):
            for arg in _list(graph.get(key, []), self, f"graph {key}"):
                self._argument(arg)
        for node in _list(graph.get("nodes", []), self, "nodes"):
            self._node(node)

    def _node(self, node: Any) -> None:
        if not isinstance(node, dict):
            self.fail("a node must be an object")
        self._keys(node, NODE_KEYS, "a node")
        target = node.get("target")
        label = f"node {str(node.get('name') or target)[:80]!r}"
        if not isinstance(target, str):
            self.fail(f"{label}: target must be a string")
        match = TARGET.fullmatch(target)
        if match is None and target not in SYM_TARGETS:
            self.fail(
                f"{label}: target {target[:120]!r} is not an operator; expected "
                f"torch.ops.<{'|'.join(OP_NAMESPACES)}>.<op>.<overload>"
            )
        if match is not None and (match.group(2) in DENIED_OPS or "file" in match.group(2)):
            self.fail(f"{label}: target {target!r} reaches outside the tensors")
        if node.get("name") is not None:
            self._name(node["name"], "node name")
        for named in _list(node.get("inputs", []), self, f"{label} inputs"):
            if not isinstance(named, dict) or not {"name", "arg"} <= set(named):
                self.fail(f"{label}: an input must name its argument")
            if named["name"] != "":
                self._name(named["name"], f"{label} argument name")
            if named.get("kind") not in (None, 1, 2):
                self.fail(f"{label}: argument kind {named.get('kind')!r}")
            self._argument(named["arg"])
        for arg in _list(node.get("outputs", []), self, f"{label} outputs"):
            self._argument(arg)
        for key, value in _items(node.get("metadata", {}), self, f"{label} metadata"):
            if key not in NODE_METADATA or not isinstance(value, str):
                self.fail(f"{label}: metadata {key[:80]!r} is not one torch.export.save writes")
            if key == "from_node":
                _json_depth(value, self, f"{label}: from_node")

    def _argument(self, arg: Any) -> None:
        if not isinstance(arg, dict) or len(arg) != 1:
            self.fail("an argument must be an object with one kind, such as as_tensor")
        self._walk(arg, 0)

    def _walk(self, value: Any, depth: int) -> None:
        """Any serialized value: argument kinds allowed, names plain, expressions parsed."""
        if depth > MAX_JSON_DEPTH:
            self.fail("a value nested too deeply")
        if isinstance(value, list):
            for item in value:
                self._walk(item, depth + 1)
            return
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            if key.startswith("as_") and key not in ARGUMENT_KINDS:
                self.fail(
                    f"argument kind {key[:40]!r} is refused (custom objects, subgraphs and "
                    "operator values run code from the archive)"
                )
            if key in ("name", "as_name") and item != "":
                self._name(item, key)
            elif key == "expr_str":
                if not isinstance(item, str):
                    self.fail("expr_str must be a string")
                _parse(item, self, guard=False)  # torch hands these to sympy.sympify
            elif key in ("device", "as_device") and item is not None:
                if not isinstance(item, dict) or item.get("type") != "cpu":
                    self.fail(f"device {str(item)[:80]}: expected the CPU")
            else:
                self._walk(item, depth + 1)

    def _signature(self, signature: Any) -> None:
        if not isinstance(signature, dict) or set(signature) != {"input_specs", "output_specs"}:
            self.fail("the signature must hold input_specs and output_specs")
        for key, kinds in (("input_specs", INPUT_SPECS), ("output_specs", OUTPUT_SPECS)):
            for spec in _list(signature[key], self, key):
                if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in kinds:
                    kind = next(iter(spec), "?") if isinstance(spec, dict) else "?"
                    self.fail(f"{key}: kind {str(kind)[:40]!r} is refused; expected one of "
                              f"{', '.join(sorted(kinds))}")  # fmt: skip
                body = next(iter(spec.values()))
                if not isinstance(body, dict):
                    self.fail(f"{key}: each spec must be an object")
                for field in ("parameter_name", "buffer_name", "tensor_constant_name"):
                    if field in body:
                        self._dotted(body[field], field)
                self._walk(body, 0)

    def _call_entry(self, entry: Any) -> None:
        if not isinstance(entry, dict) or not set(entry) <= {"fqn", "signature"}:
            self.fail("module_call_graph entries hold fqn and signature")
        if entry.get("fqn") != "":
            self._dotted(entry.get("fqn"), "fqn")
        signature = entry.get("signature")
        if signature is None:
            return
        if not isinstance(signature, dict) or not set(signature) <= {
            "inputs", "outputs", "in_spec", "out_spec", "forward_arg_names"
        }:  # fmt: skip
            self.fail("a module call signature holds inputs, outputs and tree specs")
        for key in ("inputs", "outputs"):
            for arg in _list(signature.get(key, []), self, key):
                self._argument(arg)
        for key in ("in_spec", "out_spec"):
            _check_treespec(signature.get(key), self, key)
        for name in _strings(signature.get("forward_arg_names") or [], self, "forward_arg_names"):
            self._name(name, "forward argument name")

    def _name(self, name: Any, what: str) -> None:
        # Names become Python identifiers in the code torch generates and execs.
        if (
            not isinstance(name, str)
            or len(name) > MAX_NAME_CHARS
            or not IDENTIFIER.fullmatch(name)
            or keyword.iskeyword(name)
            or name.startswith("__")
        ):
            self.fail(f"{what} {str(name)[:80]!r} is not a plain identifier")

    def _dotted(self, name: Any, what: str) -> None:
        # Attribute paths become getattr chains in the code torch generates.
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not DOTTED.fullmatch(name):
            self.fail(f"{what} {str(name)[:80]!r} is not a dotted name of letters, digits, '_'")


def _items(value: Any, program: _Program, what: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(value, dict):
        program.fail(f"{what} must be an object")
    return iter(value.items())


def _list(value: Any, program: _Program, what: str) -> list[Any]:
    if not isinstance(value, list):
        program.fail(f"{what} must be a list")
    return value


def _strings(value: Any, program: _Program, what: str) -> list[str]:
    items = _list(value, program, what)
    if not all(isinstance(v, str) for v in items):
        program.fail(f"{what} must be a list of strings")
    return items


def _json_depth(text: str, program: _Program, what: str) -> None:
    try:
        value = json.loads(text)
    except (RecursionError, ValueError):
        program.fail(f"{what} is not JSON torch can read")

    def depth(v: Any, d: int) -> None:
        if d > MAX_JSON_DEPTH:
            program.fail(f"{what} is nested too deeply")
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        for child in children:
            depth(child, d + 1)

    depth(value, 0)


def _check_treespec(text: Any, program: _Program, what: str) -> None:
    """A pytree spec (JSON text) of tuples, lists, dicts and leaves: what torch.export writes."""
    if not isinstance(text, str):
        program.fail(f"{what} must be a string")
    try:
        doc = json.loads(text)
    except (RecursionError, ValueError):
        program.fail(f"{what} is not JSON")
    if not isinstance(doc, list) or len(doc) != 2 or doc[0] != 1:
        program.fail(f"{what}: expected [1, spec]")

    def node(spec: Any, depth: int) -> None:
        if depth > MAX_JSON_DEPTH or not isinstance(spec, dict):
            program.fail(f"{what}: malformed or too deep")
        if set(spec) != {"type", "context", "children_spec"}:
            program.fail(f"{what}: a spec holds type, context and children_spec")
        kind, context, children = spec["type"], spec["context"], spec["children_spec"]
        if kind is None:
            if context is not None or children != []:
                program.fail(f"{what}: a leaf has no context or children")
            return
        if kind not in TREESPEC_TYPES:
            program.fail(f"{what}: container type {str(kind)[:80]!r} is refused; expected "
                         "tuples, lists and dicts")  # fmt: skip
        try:
            keys = json.loads(context) if isinstance(context, str) else ...
        except ValueError:
            keys = ...
        if not (keys is None or (isinstance(keys, list) and all(
            isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys
        ))):  # fmt: skip
            program.fail(f"{what}: a container's context must be null or a list of keys")
        for child in _list(children, program, what):
            node(child, depth + 1)

    node(doc[1], 0)


# ------------------------------------------------------------------ expression grammar

_TOKEN = re.compile(  # ASCII: no Unicode space, digit or letter that Python would read otherwise
    r"(?a)\s*(?:(?P<guard>L\['[A-Za-z_][A-Za-z0-9_]*'\]\.size\(\)\[[0-9]{1,2}\])"
    r"|(?P<int>[0-9]{1,19})|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>'[A-Za-z0-9_]{1,32}')"
    r"|(?P<op>//|==|!=|<=|>=|[-+*%<>(),=]))"
)
_FUNCTIONS = frozenset({"FloorDiv", "Mod", "Max", "Min"})
_SYMBOL_FLAGS = frozenset({"positive", "integer", "nonnegative", "real", "finite"})
_COMPARISONS = frozenset({"==", "!=", "<=", ">=", "<", ">"})


def _parse(text: str, program: _Program, *, guard: bool) -> None:
    """Accept ``text`` only if it is arithmetic over integers and shape symbols.

    Shape expressions (``guard=False``) go to ``sympy.sympify``, which ``eval``s them; guards
    (``guard=True``) are ``exec``ed as Python. Both are accepted only in this grammar::

        guard := expr (('or' | 'and') expr)*                             (guards)
        expr  := sum [cmp sum]            cmp := == != <= >= < >
        sum   := term (('+' | '-') term)*
        term  := unary (('*' | '//') unary)*   ('%' too in guards)
        unary := '-' unary | atom
        atom  := INT | '(' expr ')' | FloorDiv|Mod|Max|Min '(' expr, expr ')'
               | SYMBOL | Symbol('SYMBOL', flag=True|False, ...)        (shape expressions)
               | Add|Mul '(' expr (, expr)* ')' | Integer '(' ['-'] INT ')'   (shape expressions)
               | L['NAME'].size()[INT]                                   (guards)

    where SYMBOL is s0, s1, ... and flag is positive, integer, nonnegative, real or finite,
    and which multiplies out to at most MAX_EXPANDED_TERMS terms (the program's products of
    sums, to MAX_PROGRAM_EXPANDED_TERMS together).
    """
    kind = "guard" if guard else "shape expression"
    if len(text) > MAX_EXPR_CHARS:
        program.fail(f"{kind} of {len(text)} characters, above the limit of {MAX_EXPR_CHARS}")
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip(" \t\n\r\f\v")):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            program.fail(f"{kind} {text[:120]!r} is not arithmetic over shape symbols")
        group = m.lastgroup or ""
        tokens.append((group, m.group(group)))
        pos = m.end()
    tokens.append(("end", ""))
    _Parser(tokens, lambda why="is not arithmetic over shape symbols": program.fail(
        f"{kind} {text[:120]!r} {why}"
    ), guard, program).parse()  # fmt: skip


class _Parser:
    def __init__(
        self,
        tokens: list[tuple[str, str]],
        fail: Callable[..., NoReturn],
        guard: bool,
        program: _Program,
    ) -> None:
        self.tokens, self.i, self.fail, self.guard, self.depth = tokens, 0, fail, guard, 0
        self.program = program

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self, kind: str, value: str | None = None) -> str:
        k, v = self.tokens[self.i]
        if k != kind or (value is not None and v != value):
            self.fail()
        self.i += 1
        return v

    def parse(self) -> None:
        self.expr()
        # A guard may join comparisons: "a == b or a % b == 0" (a reshape's divisibility).
        while self.guard and self.peek() in (("name", "or"), ("name", "and")):
            self.i += 1
            self.expr()
        self.take("end")

    # Each rule returns how many terms its expression has once products of sums are multiplied
    # out, as torch's ShapeEnv does (safe_expand) for every symbolic size it loads.

    def expr(self) -> int:
        self.depth += 1
        if self.depth > 32:
            self.fail()
        terms = self.sum()
        if self.peek()[0] == "op" and self.peek()[1] in _COMPARISONS:
            self.i += 1
            terms += self.sum()
        self.depth -= 1
        return terms

    def sum(self) -> int:
        terms = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            self.i += 1
            terms += self.term()
        return terms

    def term(self) -> int:
        terms = self.unary()
        # '%' in a guard is Python's on ints; in a shape expression sympy.sympify makes it
        # sympy's Mod, whose evaluation of two products of sums runs for minutes (torch writes
        # Mod(a, b) there, which is torch's own and quick).
        ops = (
            (("op", "*"), ("op", "//"), ("op", "%")) if self.guard else (("op", "*"), ("op", "//"))
        )
        while self.peek() in ops:
            op = self.tokens[self.i][1]
            self.i += 1
            right = self.unary()
            terms = self.product(terms, right) if op == "*" else 1  # a // b, a % b: one term
        return terms

    def product(self, left: int, right: int) -> int:
        if left * right > MAX_EXPANDED_TERMS:
            self.fail(
                f"multiplies out to over {MAX_EXPANDED_TERMS} terms, which torch expands on "
                "loading for minutes"
            )
        if left > 1 and right > 1 and not self.guard:  # a sum times a sum: torch expands it
            self.program.expanded_terms += left * right
            if self.program.expanded_terms > MAX_PROGRAM_EXPANDED_TERMS:
                self.fail(
                    f"takes the program's products of sums past {MAX_PROGRAM_EXPANDED_TERMS} "
                    "terms multiplied out, which torch expands on loading for minutes"
                )
        return left * right

    def unary(self) -> int:
        if self.peek() == ("op", "-"):
            self.i += 1
            return self.unary()
        return self.atom()

    def atom(self) -> int:
        kind, value = self.peek()
        if kind == "int" or (kind == "guard" and self.guard):
            self.i += 1
        elif (kind, value) == ("op", "("):
            self.i += 1
            terms = self.expr()
            self.take("op", ")")
            return terms
        elif kind == "name" and value in _FUNCTIONS:
            self.i += 1
            self.take("op", "(")
            self.expr()
            self.take("op", ",")
            self.expr()
            self.take("op", ")")
        elif kind == "name" and value in ("Add", "Mul") and not self.guard:
            # sympy's srepr, as torch.export writes a folded batch: Mul(Integer(4), Symbol(..)).
            self.i += 1
            self.take("op", "(")
            terms = self.expr()
            while self.peek() == ("op", ","):
                self.i += 1
                right = self.expr()
                terms = terms + right if value == "Add" else self.product(terms, right)
            self.take("op", ")")
            return terms
        elif (kind, value) == ("name", "Integer") and not self.guard:
            self.i += 1
            self.take("op", "(")
            if self.peek() == ("op", "-"):
                self.i += 1
            self.take("int")
            self.take("op", ")")
        elif kind == "name" and not self.guard and SYMBOL.fullmatch(value):
            self.i += 1
        elif (kind, value) == ("name", "Symbol") and not self.guard:
            self.i += 1
            self.take("op", "(")
            if not SYMBOL.fullmatch(self.take("str").strip("'")):
                self.fail()
            while self.peek() == ("op", ","):
                self.i += 1
                if self.take("name") not in _SYMBOL_FLAGS:
                    self.fail()
                self.take("op", "=")
                if self.take("name") not in ("True", "False"):
                    self.fail()
            self.take("op", ")")
        else:
            self.fail()
        return 1
