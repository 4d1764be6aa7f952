"""What ``--model`` means: a zoo name, ``pkg.module:factory``, or ``path/to/file.py:factory``.

:func:`load_model` resolves a spec to a :class:`LoadedModel` (an ``nn.Module`` in eval
mode plus the input shape to trace it with); :func:`parse_input_shape` reads
``--input-shape 1,3,224,224``. Every user mistake is a one-line :class:`ModelSpecError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from partitioner.errors import ModelSpecError

SPEC_FORMS = "a zoo name, pkg.module:factory or path/to/file.py:factory"

# Weights of user factories are seeded like the zoo's, so two loads give one model.
FACTORY_SEED = 0


@dataclass(frozen=True)
class LoadedModel:
    """A resolved ``--model``: the module (eval mode), its input shape, and where it came from."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]  # (B, ...) including the batch dimension
    source: str  # "zoo" | "module" | "file"
    # Integer inputs (token ids) are drawn in [0, id_limit); None: float32 normal inputs.
    id_limit: int | None = None

    def example_input(self, batch: int | None = None, seed: int = 0) -> torch.Tensor:
        """A seeded tensor of ``input_shape`` (``batch`` overrides dim 0): float32 normal,
        or int64 ids below ``id_limit`` for a model whose example input is integer."""
        shape = list(self.input_shape)
        if batch is not None:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise ValueError(f"batch must be an int >= 1, got {batch!r}")
            shape[0] = batch
        generator = torch.Generator().manual_seed(seed)
        if self.id_limit is not None:
            return torch.randint(0, self.id_limit, shape, generator=generator)
        return torch.randn(shape, generator=generator, dtype=torch.float32)


def _one_line(text: object) -> str:
    """Collapse an arbitrary message onto one line (user exceptions may span several)."""
    return " ".join(str(text).split())


def _describe_exception(exc: BaseException) -> str:
    message = _one_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


_SHAPE_ITEM = re.compile(r"[0-9]+")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parse ``1,3,224,224`` (spaces and surrounding ``[]``/``()`` allowed) into a tuple."""
    expected = "--input-shape as comma-separated positive integers such as 1,3,224,224"
    stripped = text.strip()
    if len(stripped) >= 2 and (stripped[0], stripped[-1]) in {("[", "]"), ("(", ")")}:
        stripped = stripped[1:-1].strip()
    if stripped.endswith(","):  # a Python-style 1-tuple: "(8,)"
        stripped = stripped[:-1]
    items = [item.strip() for item in stripped.split(",")]
    for item in items:
        if not _SHAPE_ITEM.fullmatch(item) or int(item) == 0:
            found = f"{item!r} is not a positive integer" if item else "an empty dimension"
            raise ModelSpecError(f"expected {expected}; got {text!r} ({found})")
    return tuple(int(item) for item in items)


def _validate_shape(shape: object, origin: str) -> tuple[int, ...]:
    if (
        isinstance(shape, tuple | list | torch.Size)
        and len(shape) > 0
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        return tuple(int(d) for d in shape)
    raise ModelSpecError(
        f"expected {origin} to be a non-empty tuple of positive ints; got {shape!r}"
    )


def _looks_like_path(target: str) -> bool:
    return "/" in target or "\\" in target or target.endswith(".py") or Path(target).is_file()


def short_name(spec: str) -> str:
    """The name a ``--model`` spec goes by where a path cannot (a repository's model
    directory): a zoo name as is, the factory's name for ``file.py:factory`` and
    ``pkg.module:factory``."""
    spec = spec.strip()
    return spec.rpartition(":")[2] if ":" in spec else spec


def load_model(spec: str, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """Resolve ``spec`` to a module in eval mode and the input shape to run it with.

    ``input_shape`` overrides the zoo entry's shape, and is required for user
    models unless the returned module has an ``example_input_shape`` attribute, or
    an ``example_input`` tensor: an integer one (token ids, as a language model
    reads) makes the inputs ids below its largest id plus one, of its shape unless
    ``input_shape`` says otherwise.
    """
    spec = spec.strip()
    if input_shape is not None:
        input_shape = _validate_shape(input_shape, "the input shape")
    if not spec:
        raise ModelSpecError(f"expected --model as {SPEC_FORMS}; got an empty string")

    if ":" not in spec:
        from partitioner.model.zoo import MODELS, create_model  # only when used

        if spec not in {entry.name for entry in MODELS.list()}:
            if _looks_like_path(spec):
                raise ModelSpecError(
                    f"expected path/to/file.py:factory; got {spec!r} (no ':factory' after the file)"
                )
            if "." in spec:
                raise ModelSpecError(
                    f"expected pkg.module:factory; got {spec!r} (no ':factory' after the module)"
                )
        entry = MODELS.get(spec)  # an unknown name raises, listing the zoo
        return LoadedModel(
            name=entry.name,
            module=create_model(entry.name),
            input_shape=input_shape or entry.input_shape,
            source="zoo",
        )

    target, _, factory_name = spec.rpartition(":")
    if not target or not factory_name.isidentifier():
        raise ModelSpecError(
            f"expected --model as {SPEC_FORMS}; got {spec!r} "
            f"({'no module or file before' if not target else 'not a Python name after'} ':')"
        )
    if _looks_like_path(target):
        module, source = _load_file(target, spec), "file"
        where = str(module.__file__)
        model = _call_factory(module, factory_name, spec, where)
    else:
        # The current directory is importable, as under `python -m`: `--model mypkg.nets:build`
        # finds ./mypkg whether edgecut was started as a script or as a module.
        with _cwd_importable():
            module, source = _import_module(target, spec), "module"
            model = _call_factory(module, factory_name, spec, module.__name__)

    example = getattr(model, "example_input", None)
    id_limit = None
    if isinstance(example, torch.Tensor) and example.dim() > 0:
        if not example.is_floating_point():
            id_limit = int(example.max()) + 1 if example.numel() else 1
        if input_shape is None:
            input_shape = _validate_shape(tuple(example.shape), f"{spec}'s example_input")
    if input_shape is None:
        declared = getattr(model, "example_input_shape", None)
        if declared is None:
            raise ModelSpecError(
                f"expected an input shape for {spec!r}: pass --input-shape (e.g. 1,3,224,224) "
                "or give the returned module an example_input_shape attribute; got neither"
            )
        input_shape = _validate_shape(declared, f"{spec}'s example_input_shape")
    return LoadedModel(
        name=spec, module=model.eval(), input_shape=input_shape, source=source, id_limit=id_limit
    )


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """The current directory first on ``sys.path`` while a user module imports and builds."""
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


def _import_module(module_name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSpecError(
            f"expected an importable module {module_name!r} for --model {spec!r}; "
            f"import failed with {_describe_exception(exc)}"
        ) from exc
    except Exception as exc:
        raise ModelSpecError(
            f"expected module {module_name!r} for --model {spec!r} to import cleanly; "
            f"it raised {_describe_exception(exc)}"
        ) from exc


def _load_file(target: str, spec: str) -> ModuleType:
    path = Path(target).expanduser()
    resolved = path.resolve()  # relative paths are taken from the current directory
    if not resolved.exists():
        raise ModelSpecError(
            f"expected an existing Python file for --model {spec!r}; {str(resolved)!r} does not exist"
        )
    if not resolved.is_file() or resolved.suffix != ".py":
        kind = "a directory" if resolved.is_dir() else f"a {resolved.suffix or 'suffix-less'} file"
        raise ModelSpecError(
            f"expected a .py file for --model {spec!r}; {str(resolved)!r} is {kind}"
        )

    # A name unique to this path, so two files called model.py never share a module.
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    module_name = f"_edgecut_user_{re.sub(r'[^0-9A-Za-z_]', '_', resolved.stem)}_{digest}"
    import_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if import_spec is None or import_spec.loader is None:
        raise ModelSpecError(
            f"expected a loadable Python file for --model {spec!r}; got {str(resolved)!r}"
        )
    module = importlib.util.module_from_spec(import_spec)
    # Registered before execution (dataclasses and pickling look modules up by name), and
    # the file's directory is importable while it runs, so it can import its neighbours.
    sys.modules[module_name] = module
    directory = str(resolved.parent)
    sys.path.insert(0, directory)
    try:
        import_spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[module_name]
        raise ModelSpecError(
            f"expected {str(resolved)!r} to import; import failed with {_describe_exception(exc)}"
        ) from exc
    except Exception as exc:
        del sys.modules[module_name]
        raise ModelSpecError(
            f"expected {str(resolved)!r} to run cleanly on import; it raised {_describe_exception(exc)}"
        ) from exc
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    return module


def _public_callables(module: ModuleType) -> list[str]:
    """Names a user probably meant: public callables defined in the module itself."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == module.__name__
    )


def _call_factory(module: ModuleType, factory_name: str, spec: str, where: str) -> nn.Module:
    factory = getattr(module, factory_name, None)
    if factory is None:
        candidates = _public_callables(module)
        available = ", ".join(candidates) if candidates else "none"
        raise ModelSpecError(
            f"expected a factory {factory_name!r} in {where!r} for --model {spec!r}; "
            f"no such attribute (callables defined there: {available})"
        )
    if not callable(factory):
        raise ModelSpecError(
            f"expected {factory_name!r} in --model {spec!r} to be a callable factory; "
            f"got a value of type {type(factory).__name__}"
        )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FACTORY_SEED)
            model = factory()
    except Exception as exc:
        raise ModelSpecError(
            f"expected factory {spec!r} to build a model when called with no arguments; "
            f"it raised {_describe_exception(exc)}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"expected factory {spec!r} to return a torch.nn.Module; "
            f"got {type(model).__module__}.{type(model).__qualname__}"
        )
    return model
