"""The generated demo scene in two seasons: one layout, two dates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jzi_ros.data.errors import DataError
from jzi_ros.data.scene import SEASONS, SceneSpec, render_scene, write_scene

SMALL = 256


def scene(seed: int = 7, season: str = "summer") -> np.ndarray:
    return render_scene(SceneSpec(size_px=SMALL, seed=seed, season=season))


def edges(img: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the lightly smoothed grey image: where outlines are."""
    grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.5)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_the_default_season_is_summer_and_summer_is_the_scene_drawn_before_seasons_existed():
    summer = scene()
    assert SceneSpec().season == "summer" and SEASONS[0] == "summer"
    assert np.array_equal(summer, render_scene(SceneSpec(size_px=SMALL, seed=7)))
    # Channel statistics of this scene as drawn before seasons existed (any
    # change of its layout or colours moves them far more than the tolerance).
    pixels = summer.reshape(-1, 3).astype(np.float64)
    assert pixels.mean(0) == pytest.approx([92.8171, 100.4063, 77.8501], abs=0.02)
    assert pixels.std(0) == pytest.approx([36.5567, 31.1846, 22.6633], abs=0.02)


def test_each_season_is_deterministic_and_autumn_differs_from_summer():
    autumn = scene(season="autumn")
    assert np.array_equal(autumn, scene(season="autumn"))
    assert np.abs(autumn.astype(float) - scene().astype(float)).mean() > 10


def test_both_seasons_show_the_same_layout():
    summer, autumn = edges(scene()), edges(scene(season="autumn"))
    same_place = correlation(summer, autumn)
    other_place = correlation(summer, edges(scene(seed=8)))
    other_place_autumn = correlation(autumn, edges(scene(seed=8, season="autumn")))
    assert same_place > 0.5
    assert same_place > max(other_place, other_place_autumn) + 0.25


def test_what_is_green_in_summer_is_brown_or_yellow_in_autumn():
    summer, autumn = scene().astype(float), scene(season="autumn").astype(float)
    green = (summer[..., 1] > summer[..., 0] + 10) & (summer[..., 1] > summer[..., 2] + 10)
    assert green.mean() > 0.15  # fields, grass and trees
    greenness_summer = (summer[..., 1] - summer[..., 0])[green].mean()
    greenness_autumn = (autumn[..., 1] - autumn[..., 0])[green].mean()
    assert greenness_summer > 15
    assert greenness_autumn < greenness_summer - 15
    hue = [cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2HSV)[..., 0][green].mean() for img in (summer, autumn)]
    assert hue[1] < hue[0] - 8  # OpenCV hue in [0, 180): green 60, yellow 30, orange 15


def test_the_same_fields_are_harvested_or_ploughed_in_autumn():
    from jzi_ros.data.scene import _fields  # the painter of the fields, on a canvas that is all farmland

    size = 2 * SMALL
    painted = {}
    for season, look in (("summer", None), ("autumn", np.random.default_rng([7, 1]))):
        canvas = np.zeros((size, size, 3), np.float32)
        _fields(canvas, np.random.default_rng(7), np.ones((size, size), bool), look)
        painted[season] = canvas
    summer, autumn = painted["summer"], painted["autumn"]
    field = summer.sum(-1) > 0
    assert field.mean() > 0.5 and np.array_equal(field, autumn.sum(-1) > 0)  # the same fields
    assert np.abs(summer - autumn)[field].mean() > 20
    green = field & (summer[..., 1] > summer[..., 0] + 10)
    assert green.mean() > 0.05
    assert (autumn[..., 1] - autumn[..., 0])[green].mean() < (summer[..., 1] - summer[..., 0])[green].mean() - 20


def test_the_autumn_river_runs_lower_between_exposed_banks():
    def water_share(img: np.ndarray) -> float:
        f = cv2.blur(img, (3, 3)).astype(int)
        return float(((f[..., 2] > f[..., 0] + 4) & (f[..., 1] > f[..., 0] + 4)).mean())

    summer, autumn = water_share(scene()), water_share(scene(season="autumn"))
    assert summer > 0.1
    assert 0.6 * summer < autumn < 0.9 * summer


def test_an_unknown_season_is_refused_with_the_allowed_ones():
    with pytest.raises(DataError, match="summer, autumn.*'winter'"):
        SceneSpec(season="winter")


def test_both_seasons_are_written_on_the_same_georeference(tmp_path):
    import rasterio

    paths = {s: write_scene(tmp_path / f"scene_{s}.tif", SceneSpec(size_px=SMALL, season=s)) for s in SEASONS}
    with rasterio.open(paths["summer"]) as summer, rasterio.open(paths["autumn"]) as autumn:
        assert summer.crs == autumn.crs and summer.crs.to_epsg() == 32632
        assert summer.transform == autumn.transform
        assert summer.shape == autumn.shape == (SMALL, SMALL)
        assert "autumn" in autumn.tags()["DESCRIPTION"]
        pixels = {"summer": summer.read(), "autumn": autumn.read()}
    assert np.array_equal(np.moveaxis(pixels["autumn"], 0, -1), scene(season="autumn"))
    assert not np.array_equal(pixels["summer"], pixels["autumn"])
