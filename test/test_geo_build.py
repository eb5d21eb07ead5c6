"""Building maps from tiny GeoTIFFs written here: CRSs, mosaics, masks, errors, the format."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import rasterio
from conftest import UTM_ORIGIN, pattern, write_tif
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject

from jzi_ros.geo import (
    MapDir,
    MapError,
    RasterError,
    RasterMosaic,
    ZoomGrid,
    build_map,
    feature_key,
    largest_square_region,
    read_info,
)

# A 200 m region well inside the 400 m test raster.
CENTRE_E, CENTRE_N = UTM_ORIGIN[0] + 200.0, UTM_ORIGIN[1] - 200.0


def _centre_latlon() -> tuple[float, float]:
    import pyproj

    lon, lat = pyproj.Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(CENTRE_E, CENTRE_N)
    return lat, lon


def _build(tifs, out, **kw):
    kw.setdefault("center", _centre_latlon())
    kw.setdefault("size_m", 200.0)
    kw.setdefault("levels", 2)
    kw.setdefault("view_px", 64)
    return build_map(tifs, out, **kw)


def _to_geographic(src_path, dst_path):
    """Reproject a raster into EPSG:4326 (a second, geographic CRS)."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        out = np.zeros((3, height, width), np.uint8)
        reproject(
            src.read(),
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs="EPSG:4326",
            resampling=Resampling.bilinear,
        )
    return write_tif(dst_path, np.moveaxis(out, 0, -1), "EPSG:4326", transform)


def test_map_has_one_view_per_non_terminal_cell_in_breadth_first_order(utm_tif, tmp_path):
    mapdir = _build([utm_tif], tmp_path / "m", levels=3)
    assert mapdir.views.shape == (1 + 16 + 256, 64, 64, 3)
    assert mapdir.coverage_fraction.min() == pytest.approx(1.0)
    # the four level-1 views in a row, downsampled, reproduce the root view
    mosaic = mapdir.mosaic(1).astype(np.float32)
    pooled = mosaic.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    assert np.abs(pooled - mapdir.views[0]).mean() < 4.0
    # ... and a shifted arrangement does not
    assert np.abs(np.roll(pooled, 8, axis=1) - mapdir.views[0]).mean() > 10.0


def test_maps_from_two_crss_of_the_same_ground_agree(utm_tif, tmp_path):
    geo_tif = _to_geographic(utm_tif, tmp_path / "wgs84.tif")
    assert read_info(geo_tif).crs == "EPSG:4326"
    a = _build([utm_tif], tmp_path / "a")
    b = _build([geo_tif], tmp_path / "b")
    diff = np.abs(a.views.astype(int) - b.views.astype(int))
    assert diff.mean() < 6.0
    assert np.abs(np.roll(a.views, 3, axis=2).astype(int) - b.views.astype(int)).mean() > 3 * diff.mean()


def test_a_mosaic_of_two_files_renders_like_the_whole(tmp_path):
    image = pattern(400, 400, seed=3)
    whole = write_tif(tmp_path / "whole.tif", image, "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))
    west = write_tif(tmp_path / "west.tif", image[:, :220], "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))
    east = write_tif(
        tmp_path / "east.tif", image[:, 180:], "EPSG:32632", from_origin(UTM_ORIGIN[0] + 180, UTM_ORIGIN[1], 1.0, 1.0)
    )
    a = _build([whole], tmp_path / "a")
    b = _build([west, east], tmp_path / "b")
    assert b.coverage_fraction.min() == pytest.approx(1.0)
    diff = np.abs(a.views.astype(int) - b.views.astype(int))
    # identical but for view pixels that straddle the seam, which average only one file's part
    assert np.percentile(diff, 99.5) <= 1 and diff.mean() < 0.05
    assert len(b.sources) == 2


def test_the_finest_raster_wins_where_rasters_overlap(tmp_path):
    fine = pattern(400, 400, seed=5)
    coarse = np.full((100, 100, 3), 40, np.uint8)
    a = write_tif(tmp_path / "coarse.tif", coarse, "EPSG:32632", from_origin(*UTM_ORIGIN, 4.0, 4.0))
    b = write_tif(tmp_path / "fine.tif", fine, "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))
    mixed = _build([a, b], tmp_path / "mixed")
    fine_only = _build([b], tmp_path / "fine")
    assert np.array_equal(mixed.views, fine_only.views)
    assert [s["resolution_m"] for s in mixed.sources] == sorted(s["resolution_m"] for s in mixed.sources)


@pytest.mark.parametrize("kind", ["nodata", "alpha", "mask"])
def test_nodata_alpha_and_masks_are_not_coverage(tmp_path, kind):
    image = pattern(400, 400, seed=1)
    valid = np.ones((400, 400), bool)
    valid[:, :200] = False  # the western half holds no data
    transform = from_origin(*UTM_ORIGIN, 1.0, 1.0)
    path = tmp_path / f"{kind}.tif"
    if kind == "nodata":
        image = image.copy()
        image[image == 0] = 1
        image[~valid] = 0
        write_tif(path, image, "EPSG:32632", transform, nodata=0)
    elif kind == "alpha":
        write_tif(path, image, "EPSG:32632", transform, alpha=np.where(valid, 255, 0).astype(np.uint8))
    else:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            write_tif(path, image, "EPSG:32632", transform)
            with rasterio.open(path, "r+") as ds:
                ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    mapdir = _build([path], tmp_path / "m")
    assert mapdir.coverage_fraction[0] == pytest.approx(0.5, abs=0.03)
    cov = mapdir.coverage(0)
    assert not cov[:, :28].any() and cov[:, 36:].all()
    assert (mapdir.views[0][:, :28] == 0).all()
    # the default region is the largest square inside the valid half
    with RasterMosaic([path]) as mosaic:
        region = largest_square_region(mosaic)
    assert 185.0 < region.size_m < 200.0
    auto = build_map([path], tmp_path / "auto", levels=1, view_px=32)
    assert auto.coverage_fraction.min() > 0.999


def test_a_16_bit_raster_is_stretched_to_8_bits(tmp_path):
    image = pattern(400, 400).astype(np.uint16) * 16 + 1000
    path = write_tif(tmp_path / "u16.tif", image, "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))
    assert read_info(path).stretch is not None
    mapdir = _build([path], tmp_path / "m")
    assert mapdir.views.dtype == np.uint8
    assert mapdir.views[0].min() < 30 and mapdir.views[0].max() > 220


def test_default_region_is_the_largest_covered_square(utm_tif, tmp_path):
    mapdir = build_map([utm_tif], tmp_path / "m", levels=2, view_px=32)
    assert 390.0 < mapdir.grid.size_m <= 400.0
    lat, lon = _centre_latlon()
    assert mapdir.grid.center_lat == pytest.approx(lat, abs=2e-5)
    assert mapdir.grid.center_lon == pytest.approx(lon, abs=3e-5)
    assert mapdir.meta["build"]["region_coverage"] > 0.999


def test_a_region_outside_the_rasters_is_refused(utm_tif, tmp_path):
    with pytest.raises(RasterError, match="outside the rasters"):
        _build([utm_tif], tmp_path / "m", center=(10.0, 10.0))
    assert not (tmp_path / "m").exists()
    assert not (tmp_path / "m.partial").exists()


def test_a_map_too_big_for_the_disk_is_refused_with_its_size(utm_tif, tmp_path):
    with pytest.raises(MapError, match=r"needs .* TB on disk .* views of 224x224 px"):
        _build([utm_tif], tmp_path / "m", levels=12, view_px=224)
    assert not (tmp_path / "m.partial").exists()


def test_missing_corrupt_and_unreferenced_rasters_are_refused(tmp_path):
    with pytest.raises(RasterError, match="no such file"):
        read_info(tmp_path / "missing.tif")
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(RasterError, match="cannot read"):
        read_info(tmp_path / "corrupt.tif")
    with rasterio.open(
        tmp_path / "nocrs.tif",
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=3,
        dtype="uint8",
        transform=from_origin(0, 8, 1, 1),
    ) as ds:
        ds.write(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(RasterError, match="no CRS"):
        read_info(tmp_path / "nocrs.tif")
    plain = tmp_path / "plain.tif"  # no CRS and no geotransform: one error, without rasterio's warning before it
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 8, 8), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RasterError, match="no CRS"):
            read_info(plain)
    with pytest.raises(RasterError, match="no raster"):
        RasterMosaic([])


def test_an_existing_map_is_kept_unless_overwrite_is_asked(utm_tif, tmp_path):
    first = _build([utm_tif], tmp_path / "m", levels=1)
    first.save_features({"name": "enc"}, np.zeros((1, 4), np.float32))
    with pytest.raises(MapError, match="exists"):
        _build([utm_tif], tmp_path / "m", levels=1)
    assert MapDir(tmp_path / "m").feature_sets() == [{"name": "enc"}]
    second = _build([utm_tif], tmp_path / "m", levels=2, overwrite=True)
    assert second.grid.levels == 2


def test_features_of_several_encoders_live_side_by_side(utm_tif, tmp_path):
    mapdir = _build([utm_tif], tmp_path / "m", levels=2)
    vit = {"name": "vit_small_patch14_dinov2", "weights_sha256": "ab" * 8, "image_px": 224}
    eff = {"name": "efficientnet_lite0", "weights_sha256": "cd" * 8, "image_px": 224}
    mapdir.save_features(vit, np.ones((17, 384), np.float16))
    mapdir.save_features(eff, np.full((17, 1280), 2, np.float16))
    again = MapDir(mapdir.path)
    assert again.load_features(vit).shape == (17, 384)
    assert float(again.load_features(eff)[0, 0]) == 2.0
    assert sorted(d["name"] for d in again.feature_sets()) == ["efficientnet_lite0", "vit_small_patch14_dinov2"]
    other = dict(vit, weights_sha256="ef" * 8)
    assert feature_key(other) != feature_key(vit)
    with pytest.raises(MapError, match=r"not indexed for encoder vit_small_patch14_dinov2.*jzi index-map"):
        again.load_features(other)
    with pytest.raises(MapError, match="the map has 17"):
        again.save_features(vit, np.ones((3, 384), np.float16))


def test_a_broken_map_directory_says_so(utm_tif, tmp_path):
    with pytest.raises(MapError, match="not a jzi map"):
        MapDir(tmp_path)
    mapdir = _build([utm_tif], tmp_path / "m", levels=1)
    (mapdir.path / "views.npy").write_bytes(b"garbage")
    with pytest.raises(MapError, match="rebuild"):
        MapDir(mapdir.path)


def test_context_margin_widens_each_view(utm_tif, tmp_path):
    plain = _build([utm_tif], tmp_path / "a", levels=2, view_px=64)
    wide = _build([utm_tif], tmp_path / "b", levels=2, view_px=128, margin=0.5)
    b = wide.view_bounds_m(5)
    assert (b.east_m - b.west_m) == pytest.approx(2 * wide.grid.cell_size_m(1))
    # the centre half of a wide view shows the plain view's cell
    centre = wide.views[5, 32:96, 32:96].astype(int)
    assert np.abs(centre - plain.views[5].astype(int)).mean() < 3.0
    assert ZoomGrid.load(wide.path / "grid.yaml") == plain.grid


def test_a_region_largely_pure_black_without_nodata_is_warned_of(tmp_path, caplog):
    import pyproj

    rgb = pattern(400, 400)
    rgb[:160] = 0  # a band of zeros that the raster does not declare as no data
    to_latlon = pyproj.Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    lon, lat = to_latlon.transform(UTM_ORIGIN[0] + 200.0, UTM_ORIGIN[1] - 200.0)
    region = dict(grid=2, levels=1, view_px=64, center=(lat, lon), size_m=380.0)  # the band inside it either way
    black = write_tif(tmp_path / "black.tif", rgb, "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))
    with caplog.at_level("WARNING", logger="jzi_ros.geo.build"):
        build_map([black], tmp_path / "black", **region)
    assert re.search(r"\d+ % of the region's imagery is pure black", caplog.text) and "--nodata 0" in caplog.text
    caplog.clear()
    declared = write_tif(tmp_path / "declared.tif", rgb, "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0), nodata=0)
    with caplog.at_level("WARNING", logger="jzi_ros.geo.build"):
        build_map([declared], tmp_path / "declared", **region)
    assert "only" in caplog.text and "pure black" not in caplog.text  # declared: uncovered, not warned of as black
