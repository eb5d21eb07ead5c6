"""Domain augmentations: shape and determinism, that each op changes what it models and keeps the rest."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jzi_ros.data import DataError
from jzi_ros.data.augment import DOMAIN_OPS, domain, grey, haze, jpeg, resolution, season

H, W = 60, 90  # non-square on purpose
THIRD = W // 3  # columns [0, THIRD) vegetation, [THIRD, 2 THIRD) road, [2 THIRD, W) shadow
SEEDS = range(20)
NAMES = list(DOMAIN_OPS)


def _scene(seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB: textured green vegetation, grey road and dark shadow, side by side."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 1.5)
    tex = (tex / tex.std())[..., None]  # (H, W, 1), unit std
    img = np.empty((H, W, 3), np.float32)
    img[:, :THIRD] = np.array([60, 130, 50]) + 25 * tex[:, :THIRD] * np.array([0.6, 1.0, 0.5])
    img[:, THIRD : 2 * THIRD] = 135 + 25 * tex[:, THIRD : 2 * THIRD] + rng.normal(0, 2, (H, THIRD, 3))
    img[:, 2 * THIRD :] = np.array([40, 42, 48]) + 12 * tex[:, 2 * THIRD :]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _luminance(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_luminance(a).ravel(), _luminance(b).ravel())[0, 1])


def _green_dominant(pixels: np.ndarray) -> np.ndarray:
    p = pixels.reshape(-1, 3).astype(int)
    return (p[:, 1] > p[:, 0]) & (p[:, 1] > p[:, 2])


def _laplacian_energy(image: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(_luminance(image), cv2.CV_64F)).mean())


def test_scene_has_what_the_tests_rely_on():
    img = _scene()
    assert _green_dominant(img[:, :THIRD]).all()
    assert _luminance(img[:, 2 * THIRD :]).mean() < 60 < _luminance(img[:, THIRD : 2 * THIRD]).mean()


def test_domain_ops_are_listed_in_order_with_jpeg_last():
    assert NAMES == ["grey", "false_colour", "curve", "season", "haze", "resolution", "shadow", "lens", "jpeg"]


@pytest.mark.parametrize("name", NAMES)
def test_op_keeps_shape_and_dtype_and_leaves_its_input_alone(name):
    img = _scene()
    before = img.copy()
    for seed in SEEDS:
        out = DOMAIN_OPS[name](img, np.random.default_rng(seed))
        assert out.shape == (H, W, 3)
        assert out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("name", NAMES)
def test_op_is_deterministic_for_a_seed_and_random_across_seeds(name):
    img = _scene()
    op = DOMAIN_OPS[name]
    np.testing.assert_array_equal(op(img, np.random.default_rng(7)), op(img, np.random.default_rng(7)))
    outs = [op(img, np.random.default_rng(seed)) for seed in range(5)]
    assert any(not np.array_equal(outs[0], other) for other in outs[1:])


@pytest.mark.parametrize("name", ["curve", "season", "haze", "resolution", "shadow", "jpeg"])
def test_op_changes_the_image_but_keeps_it_correlated(name):
    img = _scene()
    for seed in SEEDS:
        out = DOMAIN_OPS[name](img, np.random.default_rng(seed))
        assert np.abs(out.astype(int) - img).mean() > 1.0, seed  # at least 1 grey level on average
        assert _correlation(img, out) > 0.7, seed  # seen >= 0.89 over 300 seeds


def test_grey_makes_three_equal_channels_that_follow_the_luminance():
    img = _scene()
    for seed in SEEDS:
        out = grey(img, np.random.default_rng(seed))
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 1], out[..., 2])
        assert not np.array_equal(out, img)
        assert _correlation(img, out) > 0.7, seed


def test_false_colour_makes_green_vegetation_no_longer_green_dominant():
    img = _scene()
    for seed in SEEDS:
        out = DOMAIN_OPS["false_colour"](img, np.random.default_rng(seed))
        assert _green_dominant(out[:, :THIRD]).mean() < 0.05, seed


def test_season_changes_vegetation_much_more_than_road():
    img = _scene()
    for seed in SEEDS:
        diff = np.abs(season(img, np.random.default_rng(seed)).astype(int) - img).mean(axis=2)
        vegetation, road = diff[:, :THIRD].mean(), diff[:, THIRD : 2 * THIRD].mean()
        assert vegetation > 3.0, seed
        assert vegetation > 5 * road, seed  # seen >= 38 times over 300 seeds


def test_haze_reduces_contrast_and_brightens():
    img = _scene()
    for seed in SEEDS:
        out = haze(img, np.random.default_rng(seed))
        assert _luminance(out).std() < 0.9 * _luminance(img).std(), seed
        assert _luminance(out).mean() > _luminance(img).mean(), seed
        assert out[..., 2].mean() - out[..., 0].mean() > img[..., 2].mean() - img[..., 0].mean(), seed  # bluish


def test_resolution_reduces_high_frequencies():
    img = _scene()
    for seed in SEEDS:
        out = resolution(img, np.random.default_rng(seed))
        assert _laplacian_energy(out) < 0.8 * _laplacian_energy(img), seed


@pytest.mark.parametrize("name", ["resolution", "shadow", "jpeg", "curve"])
def test_op_does_not_move_content(name):
    img = np.full((H, W, 3), 40, np.uint8)
    img[20:32, 50:62] = 220  # bright square, centre at (row 25.5, column 55.5)
    rows, cols = np.mgrid[0:H, 0:W]
    for seed in SEEDS:
        lum = _luminance(DOMAIN_OPS[name](img, np.random.default_rng(seed)))
        weight = np.where(lum > (lum.min() + lum.max()) / 2, lum - lum.min(), 0.0)  # the square, not the background
        assert abs((weight * rows).sum() / weight.sum() - 25.5) < 0.5, seed
        assert abs((weight * cols).sum() / weight.sum() - 55.5) < 0.5, seed


def test_jpeg_encodes_rgb_not_bgr():
    # JPEG keeps luma (weights R 0.299, G 0.587, B 0.114) better than chroma: with the colour order
    # right, blue loses more than red; swapped, red would.
    rng = np.random.default_rng(0)
    tex = np.stack([cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 1.0) for _ in range(3)], -1)
    img = np.clip(128 + 40 * tex / tex.std(), 0, 255).astype(np.uint8)
    for seed in range(5):
        error = np.abs(jpeg(img, np.random.default_rng(seed)).astype(int) - img).mean(axis=(0, 1))  # (3,) RGB
        assert error[2] > 1.08 * error[0], (seed, error)


def test_domain_keeps_shape_and_dtype_and_is_deterministic():
    img = _scene()
    for p in (0.5, 1.0):
        out = domain(img, np.random.default_rng(3), p=p)
        assert out.shape == (H, W, 3)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, domain(img, np.random.default_rng(3), p=p))
    assert not np.array_equal(domain(img, np.random.default_rng(3), p=1.0), img)


def test_domain_applies_named_ops_in_domain_ops_order():
    img = _scene()
    out = domain(img, np.random.default_rng(5), ops=("jpeg", "grey"), p=1.0)
    rng = np.random.default_rng(5)
    rng.random()
    expected = grey(img, rng)
    rng.random()
    expected = jpeg(expected, rng)
    np.testing.assert_array_equal(out, expected)


def test_domain_with_no_ops_or_zero_probability_returns_the_image_unchanged():
    img = _scene()
    np.testing.assert_array_equal(domain(img, np.random.default_rng(0), ops=()), img)
    np.testing.assert_array_equal(domain(img, np.random.default_rng(0), p=0.0), img)


def test_domain_raises_on_an_unknown_op_naming_it_and_the_known_ones():
    with pytest.raises(DataError, match="'snow'") as info:
        domain(_scene(), np.random.default_rng(0), ops=("haze", "snow"))
    assert all(name in str(info.value) for name in NAMES)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_domain_raises_on_a_probability_outside_0_1(p):
    with pytest.raises(DataError, match="probability"):
        domain(_scene(), np.random.default_rng(0), p=p)


def test_lens_gives_the_frame_a_real_lens_and_the_localizer_s_rectification_leave_in_place():
    img = _scene()
    for seed in SEEDS:
        out = DOMAIN_OPS["lens"](img, np.random.default_rng(seed))
        seen = out.sum(axis=2) > 0
        assert 0.8 < seen.mean() <= 1.0, seed  # black only where the off-centre lens did not see
        assert np.abs(out.astype(int) - img).mean() > 1.0, seed  # resampled twice: softer
        # the content stays where it was (the label stays true): the seen part matches the original
        assert _correlation(img[seen][None], out[seen][None]) > 0.9, seed
