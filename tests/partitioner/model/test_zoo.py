"""Tests for the model zoo: every registered model, the registry itself, and the digits model.

Model tests parametrize over ``MODELS.list()`` through a module-scoped fixture, so a new
entry is built once and checked (forward, determinism, eval mode, torch.export) for free.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from partitioner.errors import ConfigError, ModelSpecError
from partitioner.model.zoo import MODELS, ModelEntry, create_model, digits
from partitioner.model.zoo.registry import register_model

# num_params of torchvision's definitions, as documented on each model's page at
# pytorch.org/vision (GoogLeNet: the released model, without its auxiliary heads).
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "googlenet": 6_624_904,
    "mobilenet_v2": 3_504_872,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
}

# Models whose checks here take more than ~5 s on 2 cores (building vgg16 twice, training
# digits_cnn on a cold cache). Still run by default; `-m "not slow"` skips them.
SLOW_MODELS = {"vgg16", "digits_cnn"}

BATCH = torch.export.Dim("batch", min=1, max=4096)


def _model_param(name: str) -> object:
    return pytest.param(name, id=name, marks=[pytest.mark.slow] if name in SLOW_MODELS else [])


@pytest.fixture(scope="module", params=[_model_param(entry.name) for entry in MODELS.list()])
def zoo_model(request: pytest.FixtureRequest) -> tuple[ModelEntry, nn.Module]:
    """One registered model, built once per module (tests are grouped by model)."""
    entry = MODELS.get(request.param)
    return entry, create_model(entry.name)


def _test_input(entry: ModelEntry, batch: int, seed: int = 0) -> torch.Tensor:
    shape = (batch, *entry.test_input_shape[1:])
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- every registered model ---------------------------------------------------------------


def test_forward_at_test_shape(zoo_model: tuple[ModelEntry, nn.Module]) -> None:
    entry, model = zoo_model
    with torch.no_grad():
        logits = model(_test_input(entry, batch=entry.test_input_shape[0]))
    assert logits.shape == (1, entry.num_classes)
    assert torch.isfinite(logits).all()


def test_is_in_eval_mode(zoo_model: tuple[ModelEntry, nn.Module]) -> None:
    _, model = zoo_model
    assert not any(module.training for module in model.modules())


def test_weights_are_deterministic_and_leave_global_rng_alone(
    zoo_model: tuple[ModelEntry, nn.Module],
) -> None:
    entry, model = zoo_model
    rng_before = torch.random.get_rng_state()
    again = create_model(entry.name)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_export_with_dynamic_batch_matches_eager(zoo_model: tuple[ModelEntry, nn.Module]) -> None:
    entry, model = zoo_model
    x = _test_input(entry, batch=2)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: BATCH},))
    exported = program.module()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)
        # A batch size other than the example's proves the batch dimension stayed symbolic.
        x3 = _test_input(entry, batch=3, seed=1)
        torch.testing.assert_close(exported(x3), model(x3), rtol=1e-5, atol=1e-5)


def test_registered_shapes_are_consistent(zoo_model: tuple[ModelEntry, nn.Module]) -> None:
    entry, _ = zoo_model
    assert entry.input_shape[0] == 1 and entry.test_input_shape[0] == 1
    assert len(entry.test_input_shape) == len(entry.input_shape)
    assert entry.test_input_shape[1] == entry.input_shape[1]  # same channels, smaller image
    assert entry.description


@pytest.mark.parametrize(
    "zoo_model", [_model_param(name) for name in sorted(TORCHVISION_PARAMS)], indirect=True
)
def test_parameter_count_matches_torchvision(zoo_model: tuple[ModelEntry, nn.Module]) -> None:
    entry, model = zoo_model
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[entry.name]


# --- the registry -------------------------------------------------------------------------


def test_zoo_holds_the_models_the_design_promises() -> None:
    names = [entry.name for entry in MODELS.list()]
    assert names == sorted(names)
    assert set(TORCHVISION_PARAMS) | {"digits_cnn"} <= set(names)
    for entry in MODELS.list():
        if entry.name in TORCHVISION_PARAMS:
            assert entry.input_shape == (1, 3, 224, 224)
            assert entry.num_classes == 1000


def test_unknown_name_lists_the_zoo_and_suggests_a_close_match() -> None:
    with pytest.raises(ModelSpecError) as info:
        MODELS.get("resnet81")
    message = str(info.value)
    assert "'resnet81'" in message
    assert "did you mean 'resnet18'" in message
    assert all(entry.name in message for entry in MODELS.list())
    assert "\n" not in message


def test_unknown_name_without_a_close_match_has_no_suggestion() -> None:
    with pytest.raises(ModelSpecError) as info:
        create_model("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_registering_a_name_twice_is_refused() -> None:
    before = MODELS.list()
    with pytest.raises(ValueError, match="resnet18"):
        register_model(
            "resnet18",
            input_shape=(1, 3, 8, 8),
            test_input_shape=(1, 3, 8, 8),
            num_classes=2,
            description="duplicate",
        )(lambda: nn.Identity())
    assert MODELS.list() == before
    assert MODELS.get("resnet18").num_classes == 1000


def test_entry_rejects_nonsense_shapes() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        ModelEntry("bad", nn.Identity, (1, 0, 8), (1, 1, 8), 2, "bad")


# --- digits: data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split() -> digits.DigitsSplit:
    return digits.digits_split()


def test_digits_split_sizes_types_and_range(split: digits.DigitsSplit) -> None:
    assert split.x_train.shape == (1347, 1, 8, 8)
    assert split.x_test.shape == (450, 1, 8, 8)  # 25% of 1,797, rounded up
    assert split.y_train.shape == (1347,) and split.y_test.shape == (450,)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    for x in (split.x_train, split.x_test):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(split.x_train.max()) == 1.0  # scaled by /16, not by the observed maximum


def test_digits_split_is_stratified_and_fixed(split: digits.DigitsSplit) -> None:
    train_counts = Counter(split.y_train.tolist())
    test_counts = Counter(split.y_test.tolist())
    assert set(train_counts) == set(test_counts) == set(range(10))
    for label in range(10):
        total = train_counts[label] + test_counts[label]
        assert abs(test_counts[label] - 0.25 * total) <= 1, label
    again = digits.digits_split()
    assert torch.equal(again.x_train, split.x_train)
    assert torch.equal(again.y_test, split.y_test)


# --- digits: training, evaluation, cache --------------------------------------------------

ONE_EPOCH = digits.DigitsTrainConfig(epochs=1)


def _must_not_train(*args: object, **kwargs: object) -> nn.Module:
    raise AssertionError("digits_cnn was retrained although its weights are cached")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("batch_size", 0),
        ("seed", -1),
        ("weight_decay", -1e-4),
    ],
)
def test_train_config_validates_fields(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"DigitsTrainConfig\.{field}"):
        digits.DigitsTrainConfig(**{field: value})  # type: ignore[arg-type]


def test_training_is_reproducible_and_restores_global_state() -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.random.get_rng_state()
    first = digits.train_digits_cnn(ONE_EPOCH).state_dict()
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), rng)
    second = digits.train_digits_cnn(ONE_EPOCH).state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other_seed = digits.train_digits_cnn(digits.DigitsTrainConfig(epochs=1, seed=1)).state_dict()
    assert not torch.equal(first["conv1.weight"], other_seed["conv1.weight"])


def test_training_reports_progress_once_per_epoch() -> None:
    reports: list[tuple[int, float]] = []
    digits.train_digits_cnn(
        digits.DigitsTrainConfig(epochs=2),
        progress=lambda epoch, loss: reports.append((epoch, loss)),
    )
    assert [epoch for epoch, _ in reports] == [1, 2]
    assert all(loss > 0 for _, loss in reports)


def test_evaluate_accuracy_counts_correct_and_restores_mode() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.eye(3)[torch.zeros(x.shape[0], dtype=torch.long)]  # always class 0

    model = Constant().train()
    x = torch.zeros(5, 1)
    y = torch.tensor([0, 0, 1, 2, 0])
    assert digits.evaluate_accuracy(model, x, y, batch_size=2) == pytest.approx(3 / 5)
    assert model.training
    with pytest.raises(ValueError):
        digits.evaluate_accuracy(model, x, y[:4])


@pytest.mark.slow
def test_zoo_digits_model_reaches_97_percent(split: digits.DigitsSplit) -> None:
    model = create_model("digits_cnn")  # trains once into the cache if absent
    assert digits.evaluate_accuracy(model, split.x_test, split.y_test) >= 0.97


@pytest.mark.slow
def test_zoo_digits_model_reuses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    first = create_model("digits_cnn")  # makes sure the cache exists
    assert digits.cache_path(digits.DEFAULT_CONFIG).is_file()

    monkeypatch.setattr(digits, "train_digits_cnn", _must_not_train)
    second = create_model("digits_cnn")
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def test_cache_round_trip_in_a_fresh_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(digits.CACHE_DIR_ENV, str(tmp_path))
    path = digits.cache_path(ONE_EPOCH)
    assert path.parent == tmp_path
    assert re.fullmatch(r"digits_cnn-[0-9a-f]{12}\.pt", path.name)
    assert not path.exists()

    trained = digits.trained_digits_cnn(ONE_EPOCH)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    monkeypatch.setattr(digits, "train_digits_cnn", _must_not_train)
    cached = digits.trained_digits_cnn(ONE_EPOCH)
    assert not cached.training
    for key, value in trained.state_dict().items():
        assert torch.equal(value, cached.state_dict()[key]), key


def test_corrupt_cache_file_is_retrained_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(digits.CACHE_DIR_ENV, str(tmp_path))
    path = digits.cache_path(ONE_EPOCH)
    path.write_bytes(b"not a checkpoint")
    model = digits.trained_digits_cnn(ONE_EPOCH)
    reference = digits.train_digits_cnn(ONE_EPOCH)
    assert torch.equal(model.state_dict()["fc2.weight"], reference.state_dict()["fc2.weight"])
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["fc2.weight"], reference.state_dict()["fc2.weight"])


def test_cache_key_follows_config_and_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    base = digits.cache_path(ONE_EPOCH)
    assert digits.cache_path(digits.DigitsTrainConfig(epochs=1, lr=1e-3)) != base
    assert digits.cache_path(digits.DigitsTrainConfig(epochs=1)) == base
    monkeypatch.setattr(digits, "CODE_VERSION", digits.CODE_VERSION + 1)
    assert digits.cache_path(ONE_EPOCH) != base
