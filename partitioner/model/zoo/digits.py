"""The real-data model: a small CNN trained on scikit-learn's 8x8 handwritten digits.

:func:`digits_split` gives a fixed stratified train/test split, :func:`train_digits_cnn`
trains :class:`DigitsCNN` reproducibly on the CPU in seconds, and the zoo entry
``digits_cnn`` loads the trained weights from a cache (training once if absent), so
that compression of the edge head can be measured as real accuracy, not assumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from partitioner.errors import ConfigError
from partitioner.model.zoo.registry import register_model

# Part of the cache key: bump it whenever DigitsCNN, the data split or the training loop
# changes, so that weights trained by older code are never loaded into newer code.
CODE_VERSION = 2

CACHE_DIR_ENV = "EDGECUT_CACHE_DIR"
DIGITS_INPUT_SHAPE = (1, 1, 8, 8)
DIGITS_NUM_CLASSES = 10
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    """Images (N, 1, 8, 8) float32 in [0, 1] and labels (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_split() -> DigitsSplit:
    """The 1,797 digits, split 75/25 stratified by class with a fixed seed."""
    # Imported here so that `import partitioner.model.zoo` stays cheap.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8), pixels 0..16
    labels = digits.target.astype(np.int64)  # (N,)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return DigitsSplit(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test)),
    )


class DigitsCNN(nn.Module):
    """Three conv-BN-ReLU layers and a two-layer classifier, for (B, 1, 8, 8) digits.

    Wider than 8x8 digits strictly need (about 160k parameters) on purpose: the head
    must leave room for int8 quantization, 50% channel pruning, low-rank factorisation
    and distillation into a depthwise-separable student to show a measurable trade-off.
    Flat attribute names keep node names short (``conv2``, ``fc1``).
    """

    def __init__(self, num_classes: int = DIGITS_NUM_CLASSES, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 2 * 2, 128)
        self.relu4 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))  # (B, 32, 8, 8)
        x = self.relu2(self.bn2(self.conv2(x)))  # (B, 64, 8, 8)
        x = self.pool1(x)  # (B, 64, 4, 4)
        x = self.relu3(self.bn3(self.conv3(x)))  # (B, 128, 4, 4)
        x = self.pool2(x)  # (B, 128, 2, 2)
        x = torch.flatten(x, 1)  # (B, 512)
        x = self.dropout(self.relu4(self.fc1(x)))  # (B, 128)
        return self.fc2(x)  # (B, 10)


@dataclass(frozen=True)
class DigitsTrainConfig:
    """How :func:`train_digits_cnn` trains: AdamW with a cosine learning-rate decay."""

    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> ConfigError:
            value = getattr(self, field)
            return ConfigError(f"DigitsTrainConfig.{field}: expected {expected}, got {value!r}")

        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "an int >= 1")
        if not isinstance(self.lr, int | float) or not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a finite float > 0")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise bad("batch_size", "an int >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "an int >= 0")
        if not isinstance(self.weight_decay, int | float) or not (
            math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            raise bad("weight_decay", "a finite float >= 0")


DEFAULT_CONFIG = DigitsTrainConfig()

# Called once per epoch with (epoch starting at 1, mean training loss of that epoch).
ProgressCallback = Callable[[int, float], None]


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[torch.Tensor]:
    """Index batches of one epoch, in an order drawn from ``rng`` alone."""
    order = torch.from_numpy(rng.permutation(n))
    yield from torch.split(order, batch_size)


@contextlib.contextmanager
def reproducible_cpu() -> Iterator[None]:
    """Deterministic kernels on one intra-op thread, restoring both settings afterwards.

    One thread because reductions split across threads round differently (the weights
    would depend on the core count), and because on a busy 2-core machine two spinning
    OpenMP threads made these tiny batches 5-10x slower than one thread (measured).
    """
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def train_digits_cnn(
    config: DigitsTrainConfig = DEFAULT_CONFIG, *, progress: ProgressCallback | None = None
) -> DigitsCNN:
    """Train a fresh :class:`DigitsCNN` on the training split; returned in ``eval()`` mode.

    Initial weights and dropout come from a forked torch RNG seeded with ``config.seed``
    and the batch order from a numpy Generator with the same seed, so one config on one
    machine always yields the same weights and the caller's RNG state is untouched.
    """
    split = digits_split()
    return train_classifier(DigitsCNN, split.x_train, split.y_train, config, progress=progress)


def train_classifier(
    build: Callable[[], nn.Module],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    config: DigitsTrainConfig | Any,
    *,
    progress: ProgressCallback | None = None,
) -> Any:
    """Train ``build()`` on (x_train, y_train) by cross-entropy: AdamW, one-cycle learning rate.

    ``config`` has ``epochs``, ``lr``, ``batch_size``, ``seed`` and ``weight_decay``. Initial
    weights and dropout come from a forked torch RNG seeded with ``config.seed`` and the batch
    order from a numpy Generator with the same seed, so one config on one machine always yields
    the same weights and the caller's RNG state is untouched. Returned in ``eval()`` mode.
    """
    rng = np.random.default_rng(config.seed)
    n_train = x_train.shape[0]
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    with torch.random.fork_rng(devices=[]), reproducible_cpu():
        torch.manual_seed(config.seed)
        model = build()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
        model.train()
        for epoch in range(1, config.epochs + 1):
            loss_sum = 0.0
            for index in shuffled_batches(n_train, config.batch_size, rng):
                loss = F.cross_entropy(model(x_train[index]), y_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item() * index.numel()
            if progress is not None:
                progress(epoch, loss_sum / n_train)
    return model.eval()


def evaluate_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``; runs in eval mode, no grad."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"expected equal, non-zero numbers of inputs and labels, got {x.shape[0]} and {y.shape[0]}"
        )
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                logits = model(x[start : start + batch_size])
                correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / x.shape[0]


def cache_dir() -> Path:
    """Where trained weights are kept: ``$EDGECUT_CACHE_DIR``, else ``~/.cache/edgecut``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "edgecut"


def cache_path(config: DigitsTrainConfig = DEFAULT_CONFIG) -> Path:
    """The cache file for ``config``: named by a hash of the config and :data:`CODE_VERSION`."""
    key = json.dumps(
        {"code_version": CODE_VERSION, **dataclasses.asdict(config)}, sort_keys=True
    ).encode()
    return cache_dir() / f"digits_cnn-{hashlib.sha256(key).hexdigest()[:12]}.pt"


def save_atomically(state: dict[str, torch.Tensor], path: Path) -> None:
    # Write to a temporary file in the same directory and rename it over the target:
    # a concurrent reader sees either no file or a whole one, never a partial write.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            torch.save(state, tmp_file)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; the cache is ordinary data
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def trained_digits_cnn(config: DigitsTrainConfig = DEFAULT_CONFIG) -> DigitsCNN:
    """A :class:`DigitsCNN` trained with ``config``: from the cache, else trained and cached."""
    return cached_or_trained(DigitsCNN, cache_path(config), lambda: train_digits_cnn(config))


def cached_or_trained(build: Callable[[], nn.Module], path: Path, train: Callable[[], Any]) -> Any:
    """``build()`` with the weights cached at ``path``; when they are absent, truncated or
    incompatible, ``train()``'s model, written to ``path`` (a warning if it cannot be)."""
    model = build()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, TypeError):
        pass  # absent (FileNotFoundError), truncated or incompatible: train and (over)write it
    model = train()
    try:
        save_atomically(model.state_dict(), path)
    except OSError as exc:
        warnings.warn(f"could not cache trained weights at {path}: {exc}", stacklevel=3)
    return model


@register_model(
    "digits_cnn",
    input_shape=DIGITS_INPUT_SHAPE,
    test_input_shape=DIGITS_INPUT_SHAPE,
    num_classes=DIGITS_NUM_CLASSES,
    description="3-conv CNN trained on scikit-learn's 8x8 digits (cached weights), chain",
)
def digits_cnn() -> nn.Module:
    return trained_digits_cnn(DEFAULT_CONFIG)
