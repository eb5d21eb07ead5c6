"""Real street photos zoomed through maps of their overhead context (`jzi bench --street-photos`)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyproj
import pytest
import rasterio
from conftest import pattern, shared

from jzi_ros.evaluation import EvaluationError
from jzi_ros.evaluation.street_photos import (
    CRS,
    MALL_LATLON,
    StreetPhotoConfig,
    StreetSample,
    context_geotiff,
    mask_marker,
    query_photo,
)
from jzi_ros.geo import MapDir
from jzi_ros.tools.cli import main

CAR = 6 * 9
"""Pixels of the red car beside the marker."""


def _marked(size: int = 240, dot: tuple[int, int] = (124, 113)) -> np.ndarray:
    """A grey textured image with the samples' marker (a red dot in a white ring at ``dot`` (x, y)) and a red car."""
    image = np.repeat(pattern(size, size).mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    cv2.circle(image, dot, 14, (255, 255, 255), -1)
    cv2.circle(image, dot, 10, (230, 30, 40), -1)
    image[dot[1] + 25 : dot[1] + 31, dot[0] - 30 : dot[0] - 21] = (200, 20, 20)  # a car: red, but smaller
    return image


def _red(image: np.ndarray) -> int:
    rgb = image.astype(int)
    return int(((rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)).sum())


def _sample_folder(tmp_path, dot=(124, 113)):
    folder = tmp_path / "demo_samples"
    folder.mkdir()
    cv2.imwrite(str(folder / "42_ground_query.jpg"), pattern(405, 720)[..., ::-1])
    cv2.imwrite(str(folder / "42_sat_step_2.png"), _marked(dot=dot)[..., ::-1])
    (folder / "42_sat_step_2.png").rename(folder / "42_sat_step_2.jpg")  # lossless, under the samples' name
    return folder


def test_the_marker_is_painted_out_and_its_centre_is_the_truth():
    image = _marked()
    assert _red(image) > 200 + CAR
    painted, (x, y) = mask_marker(image)
    assert abs(x - 124) < 0.5 and abs(y - 113) < 0.5  # the dot's centre, not pulled towards the car
    assert _red(painted) == CAR  # the dot went, the car stays
    white = (painted.min(-1) > 240)[90:140, 100:150]
    assert white.sum() < 20  # the ring went with the dot
    assert np.array_equal(painted[:60], image[:60])  # the rest is left as it was


def test_a_context_without_a_round_marker_is_refused():
    grey = np.full((200, 200, 3), 128, np.uint8)
    with pytest.raises(EvaluationError, match="no red dot"):
        mask_marker(grey)
    roof = grey.copy()
    roof[90:110, 85:115] = (200, 20, 20)  # a red roof where the dot would be
    with pytest.raises(EvaluationError, match="not a round dot"):
        mask_marker(roof)


def test_the_context_geotiff_puts_the_truth_at_the_marker(tmp_path):
    (sample,) = StreetSample.find(_sample_folder(tmp_path, dot=(101, 130)).parent)
    tif = context_geotiff(sample, tmp_path / "context.tif", 480.0)
    with rasterio.open(tif) as src:
        assert pyproj.CRS(src.crs.to_wkt()).equals(pyproj.CRS(CRS))
        assert src.res == pytest.approx((2.0, 2.0))  # 480 m over 240 px
        assert src.xy(130, 101) == pytest.approx((0.0, 0.0), abs=1e-6)  # the dot's pixel centre is the origin
        lon, lat = pyproj.Transformer.from_crs(src.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(0.0, 0.0)
        assert (lat, lon) == pytest.approx(MALL_LATLON)
        assert _red(np.moveaxis(src.read(), 0, -1)) == CAR


def test_a_photo_is_cut_to_the_street_camera_s_four_to_three_about_its_centre(tmp_path):
    (sample,) = StreetSample.find(_sample_folder(tmp_path).parent)
    photo = query_photo(sample)
    assert photo.shape == (405, 540, 3)
    assert np.abs(photo.astype(int) - pattern(405, 720)[:, 90:630]).mean() < 8  # the middle, up to JPEG


def test_bad_settings_and_empty_folders_are_refused_in_one_line(tmp_path):
    with pytest.raises(EvaluationError, match="no street samples"):
        StreetSample.find(tmp_path)
    with pytest.raises(EvaluationError, match="at most half"):
        StreetPhotoConfig(tmp_path, tmp_path / "m.pt", tmp_path / "out", window_m=600.0)
    with pytest.raises(EvaluationError, match="context must be one of"):
        StreetPhotoConfig(tmp_path, tmp_path / "m.pt", tmp_path / "out", context="sat_final")
    assert StreetPhotoConfig(tmp_path, tmp_path / "m.pt", tmp_path / "out", context="sat_step_1").side_m == 1500.0


def test_real_street_photos_zoom_through_maps_cut_about_their_truth(tmp_path, capsys):
    root = shared("jzi_samples")
    out = tmp_path / "bench"
    assert main(["bench", "--street-photos", str(root), "--quick", "--out", str(out)]) == 0
    report = json.loads((out / "street_photos.json").read_text())
    assert report["samples"] == 2 and len(report["rows"]) == 2  # --quick: two photos, one map each
    assert "| chance | 6.2 % | 0.4 % |" in capsys.readouterr().out
    for row in report["rows"]:
        grid = MapDir(out / "maps" / f"{row['sample']}_{row['window']}").grid
        truth = np.array(row["truth_m"])
        assert np.abs(truth).max() < grid.size_m / 2
        cell = grid.centers_m(np.array([row["true_path"]]))[0]
        assert np.abs(cell - truth).max() <= grid.terminal_size_m / 2 + 0.1  # the true path holds the truth
        for search in ("greedy", "beam 4"):
            best = grid.centers_m(np.array([row[search]["path"]]))[0]
            assert row[search]["error_m"] == pytest.approx(float(np.hypot(*(best - truth))), abs=0.1)  # truth_m: 0.1 m
        with rasterio.open(out / f"{row['sample']}_sat_step_2.tif") as src:
            r, c = src.index(0.0, 0.0)
            around = np.moveaxis(src.read(window=((r - 20, r + 20), (c - 20, c + 20))), 0, -1)
            assert _red(around) == 0  # the map never shows the marker
    assert report["rows"][0]["truth_m"] != report["rows"][1]["truth_m"]
