"""Maps of the real Zürich orthophoto (SWISSIMAGE, EPSG:2056, 0.5 m/px).

The views are checked against an independent oracle: pyproj for the
coordinates and a bilinear read of the raster's own pixels with OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyproj
import pytest
import rasterio
from conftest import shared

from jzi_ros.geo import MapDir, build_map

TO_LV95 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:2056", always_xy=True)
TO_WGS84 = pyproj.Transformer.from_crs("EPSG:2056", "EPSG:4326", always_xy=True)


def _latlon(e_lv95: float, n_lv95: float) -> tuple[float, float]:
    lon, lat = TO_WGS84.transform(e_lv95, n_lv95)
    return lat, lon


@pytest.fixture(scope="module")
def big_tif():
    return shared("zurich", "zurich_altstetten_0p5m.tif")


@pytest.fixture(scope="module")
def zurich_map(big_tif, tmp_path_factory) -> MapDir:
    out = tmp_path_factory.mktemp("zurich") / "map"
    centre = _latlon(2679281.25, 1247850.0)
    return build_map([big_tif], out, center=centre, size_m=256.0, grid=4, levels=3, view_px=64)


def _oracle(big_tif, mapdir: MapDir, index: int, shift_m: float = 0.0) -> np.ndarray:
    """The view as read straight from the raster: every view pixel centre
    projected to LV95 by pyproj and sampled bilinearly by OpenCV."""
    b = mapdir.view_bounds_m(index)
    p = mapdir.view_px
    step = (b.east_m - b.west_m) / p
    east = b.west_m + (np.arange(p) + 0.5) * step
    north = b.north_m - (np.arange(p) + 0.5) * step
    ee, nn = np.meshgrid(east + shift_m, north)
    lat, lon = mapdir.grid.frame.to_latlon(ee, nn)
    x, y = TO_LV95.transform(lon, lat)
    with rasterio.open(big_tif) as ds:
        image = np.moveaxis(ds.read(), 0, -1)
        left, top = ds.bounds.left, ds.bounds.top
        res = ds.res[0]
    cols = ((x - left) / res - 0.5).astype(np.float32)
    rows = ((top - y) / res - 0.5).astype(np.float32)
    return cv2.remap(image, cols, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_zurich_map_has_1_16_256_views_fully_covered(zurich_map):
    assert zurich_map.grid.num_views == 1 + 16 + 256
    assert zurich_map.views.shape == (273, 64, 64, 3)
    assert zurich_map.coverage_fraction.min() > 0.999
    assert zurich_map.sources[0]["crs"] == "EPSG:2056"
    assert zurich_map.sources[0]["resolution_m"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("index", [17, 17 + 37, 17 + 128, 17 + 255])
def test_zurich_views_match_a_direct_read_of_the_raster(big_tif, zurich_map, index):
    view = zurich_map.views[index].astype(float)
    direct = np.abs(view - _oracle(big_tif, zurich_map, index)).mean()
    shifted = np.abs(view - _oracle(big_tif, zurich_map, index, shift_m=1.0)).mean()
    assert direct < 2.0
    assert shifted > 3 * direct


def test_zurich_cell_centres_show_the_raster_pixel_under_them(big_tif, zurich_map):
    """At every level-2 cell centre (lat/lon -> LV95 -> raster pixel), the
    view's central pixels have the raster's colour there."""
    grid = zurich_map.grid
    levels2 = range(grid.level_offset(2), grid.num_views)
    with rasterio.open(big_tif) as ds:
        under = []
        for index in levels2:
            lat, lon = grid.center_latlon(grid.path_of_view(index))
            row, col = ds.index(*TO_LV95.transform(lon, lat))
            under.append(ds.read(window=((row, row + 1), (col, col + 1))).reshape(3))
    under = np.array(under, float)
    centres = np.array([zurich_map.views[i, 31:33, 31:33].reshape(-1, 3).mean(0) for i in levels2])
    errors = np.abs(under - centres).mean(1)
    wrong = np.abs(under - np.roll(centres, 1, axis=0)).mean(1)  # each view against its neighbour's pixel
    assert np.median(errors) < 5.0
    assert np.median(wrong) > 4 * np.median(errors)


def test_zurich_strip_tiles_render_the_same_pixels_as_the_big_image(big_tif, tmp_path):
    strips = sorted(shared("zurich", "strip").glob("strip_*.tif"))
    assert len(strips) == 25
    centre = _latlon(2679106.25, 1247850.0)  # inside the overlap of the strip and the big image
    kw = dict(center=centre, size_m=60.0, grid=4, levels=2, view_px=64)
    from_big = build_map([big_tif], tmp_path / "big", **kw)
    from_strips = build_map(strips, tmp_path / "strips", **kw)
    assert from_strips.coverage_fraction.min() > 0.999
    diff = np.abs(from_big.views.astype(int) - from_strips.views.astype(int))
    assert diff.mean() < 4.0  # both are JPEG-compressed copies of the same SWISSIMAGE pixels
    rolled = np.abs(np.roll(from_big.views, 2, axis=2).astype(int) - from_strips.views.astype(int))
    assert rolled.mean() > 2 * diff.mean()


def test_zurich_mosaic_of_big_image_and_strip_covers_beyond_the_big_image(big_tif, tmp_path):
    strips = sorted(shared("zurich", "strip").glob("strip_*.tif"))
    centre = _latlon(2679106.25, 1247700.0)  # half in the big image, half south of it
    mosaic = build_map([big_tif, *strips], tmp_path / "both", center=centre, size_m=80.0, levels=1, view_px=64)
    alone = build_map([big_tif], tmp_path / "alone", center=centre, size_m=80.0, levels=1, view_px=64)
    assert mosaic.coverage_fraction[0] > 0.999
    assert 0.4 < alone.coverage_fraction[0] < 0.6
    both = mosaic.coverage(0) & alone.coverage(0)
    assert np.abs(mosaic.views[0][both].astype(int) - alone.views[0][both].astype(int)).mean() < 4.0
