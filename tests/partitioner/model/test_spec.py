"""Tests for ``--model`` resolution and ``--input-shape`` parsing.

User models are small files written to ``tmp_path``; every error case checks that the
message is one line naming what was expected and what arrived.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from partitioner.errors import ModelSpecError
from partitioner.model.spec import LoadedModel, load_model, parse_input_shape

TINY_MODEL = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def make():
    model = Tiny()
    model.example_input_shape = (1, 4)
    return model


def make_without_shape():
    return Tiny()


def make_bad_shape():
    model = Tiny()
    model.example_input_shape = (1, -4)
    return model


def explode():
    raise ValueError("boom\\nsecond line")


def not_a_module():
    return [1, 2]


def needs_argument(width):
    return nn.Linear(width, 2)


NOT_CALLABLE = 3
"""


def _write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def _error(spec: str, input_shape: tuple[int, ...] | None = None) -> str:
    with pytest.raises(ModelSpecError) as info:
        load_model(spec, input_shape)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "tiny_model.py", TINY_MODEL)


@pytest.fixture
def tiny_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module holding TINY_MODEL, under a name no other test uses."""
    name = f"edgecut_test_models_{uuid.uuid4().hex[:8]}"
    _write(tmp_path / "importable" / f"{name}.py", TINY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path / "importable"))
    yield name
    sys.modules.pop(name, None)


# --- success paths ------------------------------------------------------------------------


def test_zoo_name_uses_the_entry_shape() -> None:
    loaded = load_model("resnet18")
    assert (loaded.name, loaded.source, loaded.input_shape) == ("resnet18", "zoo", (1, 3, 224, 224))
    assert not loaded.module.training


def test_explicit_shape_overrides_the_zoo_shape() -> None:
    loaded = load_model("resnet18", (2, 3, 32, 32))
    assert loaded.input_shape == (2, 3, 32, 32)
    with torch.no_grad():
        assert loaded.module(loaded.example_input()).shape == (2, 1000)


def test_module_factory(tiny_module: str) -> None:
    loaded = load_model(f"{tiny_module}:make")
    assert (loaded.source, loaded.name, loaded.input_shape) == (
        "module",
        f"{tiny_module}:make",
        (1, 4),
    )
    assert not loaded.module.training


def test_module_factory_from_an_installed_package_with_explicit_shape() -> None:
    loaded = load_model("partitioner.model.zoo.digits:DigitsCNN", (1, 1, 8, 8))
    assert loaded.source == "module"
    with torch.no_grad():
        assert loaded.module(loaded.example_input(batch=3)).shape == (3, 10)


def test_file_factory_with_absolute_path(tiny_file: Path) -> None:
    loaded = load_model(f"{tiny_file}:make")
    assert (loaded.source, loaded.input_shape) == ("file", (1, 4))
    with torch.no_grad():
        assert loaded.module(loaded.example_input()).shape == (1, 2)


def test_file_factory_with_path_relative_to_cwd(
    tiny_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_file.parent.parent)
    loaded = load_model(f"{tiny_file.parent.name}/{tiny_file.name}:make")
    assert loaded.source == "file"
    monkeypatch.chdir(tiny_file.parent)
    assert load_model(f"{tiny_file.name}:make").source == "file"


def test_file_can_import_its_neighbours(tmp_path: Path) -> None:
    helper = f"edgecut_helper_{uuid.uuid4().hex[:8]}"
    _write(tmp_path / f"{helper}.py", "from torch import nn\nWIDTH = 5\n")
    model_file = _write(
        tmp_path / "net.py",
        f"from torch import nn\nimport {helper}\n\ndef make():\n    return nn.Linear({helper}.WIDTH, 1)\n",
    )
    try:
        loaded = load_model(f"{model_file}:make", (1, 5))
        assert loaded.module.in_features == 5  # type: ignore[union-attr]
        assert str(tmp_path) not in sys.path
    finally:
        sys.modules.pop(helper, None)


def test_two_files_with_the_same_name_stay_distinct(tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a" / "model.py", "from torch import nn\ndef make(): return nn.Linear(2, 3)\n"
    )
    second = _write(
        tmp_path / "b" / "model.py", "from torch import nn\ndef make(): return nn.Linear(2, 7)\n"
    )
    assert load_model(f"{first}:make", (1, 2)).module.out_features == 3  # type: ignore[union-attr]
    assert load_model(f"{second}:make", (1, 2)).module.out_features == 7  # type: ignore[union-attr]


def test_user_factory_weights_are_seeded(tiny_file: Path) -> None:
    state = torch.random.get_rng_state()
    first = load_model(f"{tiny_file}:make").module.state_dict()
    second = load_model(f"{tiny_file}:make").module.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first["fc.weight"], second["fc.weight"])


def test_example_input_is_seeded_float32_with_batch_override() -> None:
    loaded = LoadedModel("m", torch.nn.Identity(), (1, 3, 4, 4), "zoo")
    x = loaded.example_input()
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x, loaded.example_input())
    assert not torch.equal(x, loaded.example_input(seed=1))
    assert loaded.example_input(batch=5).shape == (5, 3, 4, 4)
    state = torch.random.get_rng_state()
    loaded.example_input(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError):
        loaded.example_input(batch=0)


# --- user errors --------------------------------------------------------------------------


def test_unknown_zoo_name_lists_models_and_a_close_match() -> None:
    message = _error("resnet81")
    assert "'resnet81'" in message and "did you mean 'resnet18'" in message
    assert "mobilenet_v2" in message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    message = _error(f"{missing}:make")
    assert "does not exist" in message and str(missing) in message


def test_file_that_is_not_python(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\0")
    message = _error(f"{weights}:make")
    assert "expected a .py file" in message and ".pt file" in message


def test_directory_is_not_a_python_file(tmp_path: Path) -> None:
    assert "is a directory" in _error(f"{tmp_path}/:make")


def test_module_not_importable_includes_the_import_error() -> None:
    message = _error("edgecut_no_such_module_xyz:make")
    assert "No module named 'edgecut_no_such_module_xyz'" in message
    assert "ModuleNotFoundError" in message


def test_file_with_a_failing_import_includes_the_import_error(tmp_path: Path) -> None:
    broken = _write(tmp_path / "broken.py", "import edgecut_missing_dependency_xyz\n")
    message = _error(f"{broken}:make")
    assert "No module named 'edgecut_missing_dependency_xyz'" in message
    assert not any(name.startswith("_edgecut_user_broken_") for name in sys.modules)


def test_file_that_raises_on_import(tmp_path: Path) -> None:
    broken = _write(tmp_path / "raises.py", "raise RuntimeError('bad\\nmodule')\n")
    assert "RuntimeError: bad module" in _error(f"{broken}:make")


def test_missing_factory_lists_the_callables(tiny_file: Path, tiny_module: str) -> None:
    for spec in (f"{tiny_file}:mkae", f"{tiny_module}:mkae"):
        message = _error(spec)
        assert "'mkae'" in message
        assert "make" in message and "explode" in message and "Tiny" in message
        assert "NOT_CALLABLE" not in message


def test_factory_that_is_not_callable(tiny_file: Path) -> None:
    assert "got a value of type int" in _error(f"{tiny_file}:NOT_CALLABLE")


def test_factory_that_raises_reports_type_and_message(tiny_file: Path) -> None:
    message = _error(f"{tiny_file}:explode")
    assert "ValueError: boom second line" in message


def test_factory_that_needs_arguments(tiny_file: Path) -> None:
    assert "TypeError" in _error(f"{tiny_file}:needs_argument")


def test_factory_returning_a_non_module_names_the_type(tiny_file: Path) -> None:
    message = _error(f"{tiny_file}:not_a_module")
    assert "torch.nn.Module" in message and "builtins.list" in message


def test_user_model_without_any_shape_asks_for_input_shape(tiny_file: Path) -> None:
    message = _error(f"{tiny_file}:make_without_shape")
    assert "--input-shape" in message
    assert load_model(f"{tiny_file}:make_without_shape", (1, 4)).input_shape == (1, 4)


def test_user_model_with_a_malformed_declared_shape(tiny_file: Path) -> None:
    message = _error(f"{tiny_file}:make_bad_shape")
    assert "example_input_shape" in message and "(1, -4)" in message


def test_malformed_explicit_shape() -> None:
    assert "(1, 0)" in _error("resnet18", (1, 0))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("model.py", "no ':factory'"),
        ("some/dir/model", "no ':factory'"),
        ("pkg.module", "no ':factory'"),
        (":make", "no module or file"),
        ("pkg.module:", "not a Python name"),
        ("pkg.module:1abc", "not a Python name"),
    ],
)
def test_malformed_specs(spec: str, fragment: str) -> None:
    assert fragment in _error(spec)


# --- --input-shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1,3,224,224", (1, 3, 224, 224)),
        (" 1, 3 ,224 , 224 ", (1, 3, 224, 224)),
        ("[1,3,224,224]", (1, 3, 224, 224)),
        ("(1, 3, 224, 224)", (1, 3, 224, 224)),
        ("8", (8,)),
        ("(8,)", (8,)),
    ],
)
def test_parse_input_shape_accepts(text: str, shape: tuple[int, ...]) -> None:
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "[]",
        "1,,3",
        "1,3,a",
        "0,3",
        "-1,3",
        "1.5,3",
        "[1,3",
        "(1,3]",
        "1;3",
        "1 3",
        "1,3,,",
    ],
)
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(ModelSpecError) as info:
        parse_input_shape(text)
    message = str(info.value)
    assert "comma-separated positive integers" in message and repr(text) in message
    assert "\n" not in message


@given(
    shape=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6),
    brackets=st.sampled_from(["{}", "[{}]", "({})"]),
    separator=st.sampled_from([",", ", ", " , "]),
)
def test_parse_input_shape_round_trips(shape: list[int], brackets: str, separator: str) -> None:
    text = brackets.format(separator.join(str(d) for d in shape))
    assert parse_input_shape(text) == tuple(shape)


def test_module_factory_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `edgecut` started as a console script has its own directory, not the cwd, on sys.path;
    # `--model mypkg.nets:build` must still find ./mypkg, as `python -m` would.
    package = f"cwdpkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "nets.py").write_text(TINY_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    loaded = load_model(f"{package}.nets:make")
    assert (loaded.source, loaded.input_shape) == ("module", (1, 4))
    assert str(tmp_path) not in sys.path  # only while the module imports and builds


TOKEN_MODEL = """
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids):
        return self.fc(self.embed(ids))


def make():
    model = Tagger()
    model.example_input = torch.tensor([[3, 49, 0, 7]])
    return model
"""


def test_a_model_reading_token_ids_gets_integer_inputs(tmp_path: Path) -> None:
    path = tmp_path / f"tagger_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TOKEN_MODEL)
    loaded = load_model(f"{path}:make")
    assert loaded.input_shape == (1, 4)
    ids = loaded.example_input(batch=3)
    assert ids.dtype == torch.int64 and ids.shape == (3, 4)
    assert 0 <= int(ids.min()) and int(ids.max()) < 50  # below the example's largest id + 1
    longer = load_model(f"{path}:make", (1, 12)).example_input()
    assert longer.dtype == torch.int64 and longer.shape == (1, 12)
    with torch.no_grad():
        assert loaded.module(ids).shape == (3, 4, 3)
