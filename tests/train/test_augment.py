"""Augmentation: shifts move pixels as expected; mixup and cutmix keep targets aligned."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from slimkit.errors import ConfigError
from slimkit.train import AugmentConfig, Augmenter, TrainConfig, cross_entropy_loss
from slimkit.train.augment import cutmix, cutmix_box, mixup, one_hot_targets, shift_images


def _reference_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Pixel by pixel: out[i, j] = image[i - dy, j - dx] where that exists, else 0."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


def test_shift_moves_a_pixel_by_the_expected_amount() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    x[1, 0, 0, 0] = 1.0  # shifted off the image: gone
    out = shift_images(x, torch.tensor([2, -1]), torch.tensor([-1, 0]))
    assert out[0, 0, 5, 3] == 1.0 and out[0].sum() == 1.0
    assert out[1].sum() == 0.0


def test_shift_matches_the_pixel_loop_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 7, 9, generator=generator)
    dy = torch.tensor([-2, -1, 0, 1, 2, 3])
    dx = torch.tensor([2, 0, -2, 1, -1, 0])
    out = shift_images(x, dy, dx)
    for n in range(6):
        assert torch.equal(out[n], _reference_shift(x[n], int(dy[n]), int(dx[n])))


def test_random_shifts_stay_within_range_and_keep_labels(digits) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.train.x[:64], digits.train.y[:64]
    out, targets = Augmenter(AugmentConfig(shift=2), num_classes=10, seed=0)(x, y)
    assert torch.equal(targets, y)
    seen = set()
    for n in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[n], _reference_shift(x[n], dy, dx))
        ]
        assert matches, f"sample {n} is not a shift of its input by at most 2 pixels"
        seen.update(matches)
    assert len(seen) > 10  # many different shifts, not one


def test_augmenter_is_deterministic_by_seed(digits) -> None:  # type: ignore[no-untyped-def]
    config = AugmentConfig(shift=2, mixup_alpha=0.4, cutmix_alpha=1.0)
    x, y = digits.train.x[:32], digits.train.y[:32]
    first = [Augmenter(config, 10, seed=5)(x, y) for _ in range(2)]
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    other = Augmenter(config, 10, seed=6)(x, y)
    assert not torch.equal(first[0][0], other[0])


def test_mixup_targets_sum_to_one_and_follow_the_images(digits) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.train.x[:48], digits.train.y[:48]
    mixed, targets = Augmenter(AugmentConfig(mixup_alpha=0.4), num_classes=10, seed=1)(x, y)
    assert targets.shape == (48, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(48))
    checked = 0
    for n in range(len(x)):
        lam = float(targets[n, y[n]])
        if lam == 1.0:  # the partner has the same label: the target stays one-hot
            continue
        # find the partner m whose blend reproduces the mixed image with this weight
        residuals = ((mixed[n][None] - lam * x[n][None] - (1 - lam) * x) ** 2).flatten(1).sum(1)
        m = int(residuals.argmin())
        checked += 1
        assert float(residuals[m]) < 1e-8
        expected = lam * one_hot_targets(y[n : n + 1], 10) + (1 - lam) * one_hot_targets(
            y[m : m + 1], 10
        )
        torch.testing.assert_close(targets[n : n + 1], expected)
    assert checked > 30


def test_mixup_function_against_its_formula() -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(3, 2, 2, 2)
    targets = one_hot_targets(torch.tensor([0, 1, 2]), 3)
    perm = torch.tensor([2, 0, 1])
    mixed, mixed_targets = mixup(x, targets, 0.25, perm)
    torch.testing.assert_close(mixed[0], 0.25 * x[0] + 0.75 * x[2])
    torch.testing.assert_close(mixed_targets[0], torch.tensor([0.25, 0.0, 0.75]))


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=generator)
    y = torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([1, 2, 3, 0])
    box = (2, 1, 6, 5)  # top, left, bottom, right: 4 x 4 = 16 of 64 pixels
    mixed, targets = cutmix(x, one_hot_targets(y, 4), box, perm)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:6, 1:5] = True
    for n in range(4):
        assert torch.equal(mixed[n, 0][inside], x[perm[n], 0][inside])
        assert torch.equal(mixed[n, 0][~inside], x[n, 0][~inside])
        assert targets[n, y[n]] == pytest.approx(1 - 16 / 64)
        assert targets[n, y[perm[n]]] == pytest.approx(16 / 64)


def test_augmenter_cutmix_targets_match_the_pasted_pixels() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 8, 8, generator=generator)  # distinct pixels identify their source
    y = torch.arange(16)  # distinct labels identify the partner in the targets
    mixed, targets = Augmenter(AugmentConfig(cutmix_alpha=1.0), num_classes=16, seed=3)(x, y)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    pasted_somewhere = False
    for n in range(16):
        own = mixed[n] == x[n]
        share = float(own.float().mean())
        expected = torch.zeros(16)
        expected[n] += share
        if not bool(own.all()):
            pasted_somewhere = True
            source = mixed[n][~own][0]
            m = int((x == source).flatten(1).any(1).nonzero()[0])
            assert torch.equal(mixed[n][~own], x[m][~own])  # one partner fills the whole box
            expected[m] += 1 - share
        torch.testing.assert_close(targets[n], expected)
    assert pasted_somewhere


def test_cutmix_box_area_follows_lambda() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    top, left, bottom, right = cutmix_box(100, 100, 0.75, rng)
    area = (bottom - top) * (right - left)
    assert area <= 2500  # clipping only removes area
    assert 0 <= top <= bottom <= 100 and 0 <= left <= right <= 100


def test_label_smoothing_with_probability_targets_matches_the_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=generator)
    probabilities = torch.softmax(torch.randn(5, 4, generator=generator), dim=1)
    model = torch.nn.Identity()
    loss = cross_entropy_loss(label_smoothing=0.2)(model, logits, probabilities)
    smoothed = 0.8 * probabilities + 0.2 / 4
    expected = -(smoothed * F.log_softmax(logits, dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    labels = torch.tensor([0, 3, 1, 2, 2])
    torch.testing.assert_close(
        cross_entropy_loss(0.2)(model, logits, labels),
        cross_entropy_loss(0.2)(model, logits, one_hot_targets(labels, 4)),
    )


def test_augment_config_serializes_with_the_train_config() -> None:
    config = TrainConfig(epochs=2, augment=AugmentConfig(shift=2, mixup_alpha=0.2))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["augment"]["shift"] == 2
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig(augment={"cutmix_alpha": 1.0}).augment == AugmentConfig(cutmix_alpha=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": -1}, "shift must be an int >= 0"),
        ({"shift": 1.5}, "shift must be an int >= 0"),
        ({"mixup_alpha": -0.2}, "mixup_alpha must be a number >= 0"),
        ({"cutmix_alpha": "x"}, "cutmix_alpha"),
        ({"mix_probability": 1.5}, r"mix_probability must be in \[0, 1\]"),
    ],
)
def test_bad_augment_values_name_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_augment_options_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown augmentation option.*jitter"):
        TrainConfig(augment={"jitter": 2})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="augment must be None, an AugmentConfig"):
        TrainConfig(augment=2)  # type: ignore[arg-type]
