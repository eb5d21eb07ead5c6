"""The map's orthophoto pyramid: georeferencing, COG layout, crops at any resolution, coverage, failures."""

from __future__ import annotations

import cv2
import numpy as np
import pyproj
import pytest
import rasterio
import yaml
from conftest import UTM_ORIGIN, pattern, shared, write_tif
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin

from jzi_ros.geo import BoundsM, MapDir, MapError, Pyramid, RasterMosaic, ZoomGrid, add_pyramid, build_map
from jzi_ros.geo import pyramid as pyramid_module
from jzi_ros.geo.pyramid import PAD_CELLS, PYRAMID_FILE, write_pyramid
from jzi_ros.tools.cli import main

TO_WGS84 = pyproj.Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)

# An 800 x 800 px raster at 0.5 m/px (400 m) in UTM 32N with a white 6 x 6 px square whose
# centre lies at a known UTM position; the region is 300 m around the raster's centre.
RES_M = 0.5
SQUARE_ROW, SQUARE_COL = 240, 530  # top-left source pixel of the square
SQUARE_E = UTM_ORIGIN[0] + (SQUARE_COL + 3) * RES_M
SQUARE_N = UTM_ORIGIN[1] - (SQUARE_ROW + 3) * RES_M


def _latlon(east: float, north: float) -> tuple[float, float]:
    lon, lat = TO_WGS84.transform(east, north)
    return lat, lon


def _source(path, valid=None):
    image = pattern(800, 800, seed=2) // 2 + 40  # darker than the square
    image[SQUARE_ROW : SQUARE_ROW + 6, SQUARE_COL : SQUARE_COL + 6] = 255
    if valid is not None:
        image[image == 0] = 1
        image[~valid] = 0
    return write_tif(path, image, "EPSG:32632", from_origin(*UTM_ORIGIN, RES_M, RES_M), nodata=0)


def _build(tif, out, **kw):
    centre = _latlon(UTM_ORIGIN[0] + 200.0, UTM_ORIGIN[1] - 200.0)
    kw.setdefault("size_m", 300.0)
    return build_map([tif], out, center=centre, grid=4, levels=2, view_px=32, **kw)


@pytest.fixture(scope="module")
def ortho_map(tmp_path_factory) -> MapDir:
    root = tmp_path_factory.mktemp("pyramid")
    return _build(_source(root / "src.tif"), root / "map")


def _strip_pyramid(mapdir: MapDir) -> MapDir:
    """Turn a map into one built before maps had a pyramid."""
    (mapdir.path / PYRAMID_FILE).unlink()
    meta = yaml.safe_load((mapdir.path / "map.yaml").read_text())
    del meta["pyramid"]
    (mapdir.path / "map.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return MapDir(mapdir.path)


def test_build_map_writes_the_pyramid_and_records_it_in_map_yaml(ortho_map):
    record = ortho_map.meta["pyramid"]
    assert ortho_map.has_pyramid and record["file"] == PYRAMID_FILE == "ortho.tif"
    assert record["gsd_m"] == pytest.approx(RES_M, rel=1e-3)
    # the region grown by PAD_CELLS terminal cells (300 m + 2 x 2 x 18.75 m), within the raster's 400 m
    side = 300.0 + 2 * PAD_CELLS * ortho_map.grid.terminal_size_m
    assert record["bounds_m"] == pytest.approx([-side / 2, -side / 2, side / 2, side / 2], abs=record["gsd_m"])
    assert record["width_px"] == record["height_px"] == round(side / record["gsd_m"])
    assert record["bytes"] == (ortho_map.path / PYRAMID_FILE).stat().st_size
    assert record["overviews"] == [2, 4]
    with ortho_map.pyramid() as pyr:
        assert pyr.frame == ortho_map.grid.frame
        assert tuple(pyr.bounds) == pytest.approx(record["bounds_m"])
        assert pyr.gsd_m == record["gsd_m"]
    assert not list(ortho_map.path.parent.glob("*.partial*"))


def test_the_file_is_a_cog_in_the_regions_local_frame(ortho_map):
    grid = ortho_map.grid
    with rasterio.open(ortho_map.path / PYRAMID_FILE) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.compression.name == "jpeg" and ds.photometric.name == "ycbcr"
        assert ds.overviews(1) and max(ds.width, ds.height) / ds.overviews(1)[-1] < 256
        assert ds.mask_flag_enums[0] == [MaskFlags.per_dataset]
        # plain rasterio: the CRS puts the region's centre at (0, 0), the transform at the pixel it says
        to_file = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        x, y = to_file.transform(grid.center_lon, grid.center_lat)
        assert (x, y) == pytest.approx((0.0, 0.0), abs=1e-6)
        col, row = ~ds.transform * (0.0, 0.0)
        west, _, _, north = ortho_map.meta["pyramid"]["bounds_m"]
        gsd = ortho_map.meta["pyramid"]["gsd_m"]
        assert (col, row) == pytest.approx((-west / gsd, north / gsd))
        assert abs(col - ds.width / 2) < 1 and abs(row - ds.height / 2) < 1
        # pixel edges on the region's north-west corner
        col, row = ~ds.transform * (-grid.size_m / 2, grid.size_m / 2)
        assert (col, row) == pytest.approx((round(col), round(row)), abs=1e-6)


def test_a_feature_at_a_known_position_appears_at_the_pixel_read_says(ortho_map):
    frame = ortho_map.grid.frame
    east, north = (float(v) for v in frame.to_local(*_latlon(SQUARE_E, SQUARE_N)))
    with ortho_map.pyramid() as pyr:
        for gsd in (0.5, 0.35):
            box = BoundsM(east - 13.3, north - 9.1, east + 11.7, north + 15.2)
            rgb, valid = pyr.read(box, gsd)
            assert rgb.shape == (round(24.3 / gsd), round(25.0 / gsd), 3) and valid.all()
            rows, cols = np.nonzero(rgb.min(-1) > 200)
            assert 0 < len(rows) < 0.2 * rgb.shape[0] * rgb.shape[1]
            # pixel (r, c) has its centre at (west + (c + 0.5) gsd, north - (r + 0.5) gsd)
            expect_col = (east - box.west_m) / gsd - 0.5
            expect_row = (box.north_m - north) / gsd - 0.5
            assert cols.mean() == pytest.approx(expect_col, abs=0.5)
            assert rows.mean() == pytest.approx(expect_row, abs=0.5)


def test_a_read_of_the_whole_extent_at_its_resolution_is_the_stored_image(ortho_map):
    with ortho_map.pyramid() as pyr, rasterio.open(ortho_map.path / PYRAMID_FILE) as ds:
        rgb, valid = pyr.read(pyr.bounds, pyr.gsd_m)
        assert np.array_equal(rgb, np.moveaxis(ds.read(), 0, -1))
        assert valid.all()
        # half a pixel east: each pixel is the mean of two neighbours (bilinear, pixel centres)
        g = pyr.gsd_m
        b = pyr.bounds
        shifted, _ = pyr.read(BoundsM(b.west_m + 100.5 * g, b.south_m + 100 * g, b.west_m + 200.5 * g, b.north_m), g)
        mean = (rgb[:-100, 100:200].astype(float) + rgb[:-100, 101:201]) / 2
        assert np.abs(shifted - mean).mean() < 1.0


def test_a_read_at_4x_the_gsd_matches_a_downsampled_full_resolution_read(ortho_map):
    with ortho_map.pyramid() as pyr:
        g = pyr.gsd_m
        box = BoundsM(-40.0, -30.0, -40.0 + 320 * g, -30.0 + 240 * g)
        fine, _ = pyr.read(box, g)
        coarse, valid = pyr.read(box, 4 * g)
        assert coarse.shape == (60, 80, 3) and valid.all()
        pooled = fine.reshape(60, 4, 80, 4, 3).astype(float).mean(axis=(1, 3))
        # the test pattern's colours are noise from pixel to pixel at this scale, which JPEG's chroma
        # subsampling blurs; the grey levels must agree closely
        diff = np.abs(coarse - pooled).mean()
        assert diff < 5.0 and np.abs(coarse.mean(-1) - pooled.mean(-1)).mean() < 3.0
        assert np.corrcoef(coarse.mean(-1).ravel(), pooled.mean(-1).ravel())[0, 1] > 0.95


@pytest.fixture
def from_file(monkeypatch):
    """Read through GDAL (the path of pyramids too large to keep in memory), not from the decoded copy."""
    import jzi_ros.geo.pyramid as pyramid_module

    monkeypatch.setattr(pyramid_module, "MEMORY_PIXELS", 0)


def test_a_small_pyramid_is_read_from_memory_as_from_the_file(ortho_map, monkeypatch):
    import jzi_ros.geo.pyramid as pyramid_module

    grid = ortho_map.grid
    half = grid.size_m / 2
    boxes = [BoundsM(-half / 2, -half / 3, half / 4, half / 2), BoundsM(-half, -half, half, half)]
    for box in boxes:
        for gsd in (0.7, 1.3, 3.1):
            with ortho_map.pyramid() as pyr:
                mem_rgb, mem_valid = pyr.read(box, gsd)
                assert pyr._memory is not None
            monkeypatch.setattr(pyramid_module, "MEMORY_PIXELS", 0)
            with ortho_map.pyramid() as pyr:
                file_rgb, file_valid = pyr.read(box, gsd)
                assert pyr._memory is None
            monkeypatch.undo()
            assert mem_rgb.shape == file_rgb.shape
            both = mem_valid & file_valid
            assert both.sum() >= 0.9 * file_valid.sum()  # they may differ on edge pixels only
            diff = np.abs(mem_rgb[both].astype(int) - file_rgb[both].astype(int))
            assert diff.mean() < 8.0, (box, gsd, diff.mean())


def test_outside_the_pyramid_is_black_and_invalid_and_a_crop_across_its_edge_partly_valid(ortho_map, from_file):
    with ortho_map.pyramid() as pyr:
        b = pyr.bounds
        rgb, valid = pyr.read(BoundsM(b.east_m + 10, 0.0, b.east_m + 50, 20.0), 0.5)
        assert rgb.shape == (40, 80, 3) and not rgb.any() and not valid.any()
        rgb, valid = pyr.read(BoundsM(b.east_m - 10, b.north_m - 10, b.east_m + 30, b.north_m + 30), 1.0)
        assert rgb.shape == (40, 40, 3)
        assert valid[30:, :10].all() and not valid[:30].any() and not valid[:, 10:].any()
        assert not rgb[~valid].any() and rgb[valid].all()
        # the same at 4x coarser (overviews): 10 m inside = 2.5 px, of which 2 lie wholly inside
        _, valid = pyr.read(BoundsM(b.east_m - 10, b.north_m - 10, b.east_m + 30, b.north_m + 30), 4.0)
        assert valid.shape == (10, 10) and valid[8:, :2].all() and valid.sum() == 4


def test_the_coverage_mask_of_the_rasters_comes_back_from_read(tmp_path):
    valid = np.ones((800, 800), bool)
    valid[:, :400] = False  # the western half of the raster holds no data
    mapdir = _build(_source(tmp_path / "half.tif", valid), tmp_path / "m", size_m=200.0)
    with mapdir.pyramid() as pyr:
        rgb, covered = pyr.read(BoundsM(-20.0, -10.0, 20.0, 10.0), 0.5)
        assert not covered[:, :38].any() and covered[:, 42:].all()
        assert not rgb[:, :38].any()
        _, covered = pyr.read(BoundsM(-80.0, -40.0, 80.0, 40.0), 2.0)  # from the overviews
        assert not covered[:, :38].any() and covered[:, 42:].all()


def test_a_map_without_a_pyramid_says_how_to_add_one_and_add_pyramid_adds_it(ortho_map, tmp_path):
    old = _strip_pyramid(_build(_source(tmp_path / "src.tif"), tmp_path / "old"))
    assert not old.has_pyramid
    with pytest.raises(MapError) as err:
        old.pyramid()
    assert str(err.value) == (
        f"map {old.path} has no orthophoto pyramid (built before it existed); "
        f"add one with `jzi build-pyramid --map {old.path}`"
    )
    record = add_pyramid(old)
    again = MapDir(old.path)
    assert again.has_pyramid and again.meta["pyramid"] == record
    assert record["width_px"] == ortho_map.meta["pyramid"]["width_px"]
    with again.pyramid() as a, ortho_map.pyramid() as b:
        assert np.array_equal(a.read(a.bounds, 1.0)[0], b.read(b.bounds, 1.0)[0])
    with pytest.raises(MapError, match="already has an orthophoto pyramid; pass --overwrite"):
        add_pyramid(again)
    coarse = add_pyramid(again, gsd_m=2.0, overwrite=True)
    assert coarse["gsd_m"] == 2.0 and MapDir(old.path).meta["pyramid"]["gsd_m"] == 2.0
    assert sorted(p.name for p in old.path.iterdir() if "partial" in p.name or "render" in p.name) == []


def test_build_pyramid_from_the_command_line_with_other_rasters(tmp_path, capsys):
    src = _source(tmp_path / "src.tif")
    old = _strip_pyramid(_build(src, tmp_path / "old"))
    moved = src.rename(tmp_path / "moved.tif")
    assert main(["build-pyramid", "--map", str(old.path), "--quiet"]) == 2
    assert "is missing (moved?); give the rasters with --geotiff" in capsys.readouterr().err
    assert main(["build-pyramid", "--map", str(old.path), "--geotiff", str(moved), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "orthophoto pyramid: ortho.tif" in out and f"wrote {old.path / PYRAMID_FILE}" in out
    assert MapDir(old.path).meta["pyramid"]["sources"] == [str(moved.resolve())]
    assert main(["build-pyramid", "--map", str(old.path), "--geotiff", str(moved), "--pyramid-gsd-m", "-1"]) == 2
    assert "--pyramid-gsd-m must be" in capsys.readouterr().err


def test_build_map_reports_the_pyramid_from_the_command_line(tmp_path, capsys):
    src = _source(tmp_path / "src.tif")
    argv = ["build-map", "--geotiff", str(src), "--size-m", "300", "--levels", "2", "--view-px", "32"]
    assert main([*argv, "--pyramid-gsd-m", "1.0", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "orthophoto pyramid: ortho.tif" in out and "at 1 m/px" in out and "the bytes of the source pixels" in out
    assert MapDir(tmp_path / "m").meta["pyramid"]["gsd_m"] == 1.0


def test_a_failing_write_leaves_no_file_behind(tmp_path, monkeypatch):
    src = _source(tmp_path / "src.tif")
    grid = ZoomGrid(*_latlon(UTM_ORIGIN[0] + 200.0, UTM_ORIGIN[1] - 200.0), 300.0, 4, 2)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(pyramid_module, "BLOCK_PX", 256)

    def interrupted(iterable, total):
        assert total == 9
        for i, item in enumerate(iterable):
            if i == 3:
                raise KeyboardInterrupt
            yield item

    with RasterMosaic([src]) as mosaic:
        with pytest.raises(KeyboardInterrupt):
            write_pyramid(mosaic, grid, out / PYRAMID_FILE, progress=interrupted)
        assert list(out.iterdir()) == []

        def broken_copy(source, target, **options):
            (target.parent / target.name).write_bytes(b"half a COG")
            raise rasterio.errors.RasterioIOError("disk full")

        monkeypatch.setattr(pyramid_module.rasterio.shutil, "copy", broken_copy)
        with pytest.raises(MapError, match="cannot write the orthophoto pyramid .*disk full"):
            write_pyramid(mosaic, grid, out / PYRAMID_FILE)
        assert list(out.iterdir()) == []
    # and a map whose pyramid fails is not built at all
    with pytest.raises(MapError, match="disk full"):
        _build(src, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src.tif"]


def test_a_missing_or_corrupt_pyramid_file_is_refused_with_the_fix(tmp_path):
    with pytest.raises(MapError, match=r"no orthophoto pyramid at .*jzi build-pyramid --map"):
        Pyramid(tmp_path / "ortho.tif")
    (tmp_path / "ortho.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(MapError, match="cannot read the orthophoto pyramid"):
        Pyramid(tmp_path / "ortho.tif")


# -- the real Zürich orthophoto (SWISSIMAGE, EPSG:2056, 0.5 m/px) -------------------------------------


def test_zurich_pyramid_crops_match_the_rasters_own_pixels(tmp_path, from_file):
    tif = shared("zurich", "zurich_altstetten_0p5m.tif")
    to_wgs84 = pyproj.Transformer.from_crs("EPSG:2056", "EPSG:4326", always_xy=True)
    to_lv95 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:2056", always_xy=True)
    lon, lat = to_wgs84.transform(2679281.25, 1247850.0)
    mapdir = build_map([tif], tmp_path / "zurich", center=(lat, lon), size_m=256.0, grid=4, levels=2, view_px=32)
    record = mapdir.meta["pyramid"]
    assert record["gsd_m"] == 0.5 and record["overviews"]
    with rasterio.open(tif) as ds:
        image = np.moveaxis(ds.read(), 0, -1)
        left, top, res = ds.bounds.left, ds.bounds.top, ds.res[0]
    frame = mapdir.grid.frame
    with mapdir.pyramid() as pyr:
        for east, north in [(0.0, 0.0), (-70.3, 41.9), (55.0, -90.2)]:
            box = BoundsM(east - 40, north - 40, east + 40, north + 40)
            rgb, valid = pyr.read(box, 0.5)
            assert rgb.shape == (160, 160, 3) and valid.all()

            # oracle: every crop pixel centre projected to LV95 by pyproj, sampled bilinearly by OpenCV
            def oracle(shift_m: float, box=box) -> np.ndarray:
                centres = (np.arange(160) + 0.5) * 0.5
                ee, nn = np.meshgrid(box.west_m + centres + shift_m, box.north_m - centres)
                la, lo = frame.to_latlon(ee, nn)
                x, y = to_lv95.transform(lo, la)
                cols = ((x - left) / res - 0.5).astype(np.float32)
                rows = ((top - y) / res - 0.5).astype(np.float32)
                return cv2.remap(image, cols, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

            diff = np.abs(rgb.astype(float) - oracle(0.0)).mean()
            assert diff < 6.0  # JPEG twice (the source and the pyramid)
            assert np.abs(rgb.astype(float) - oracle(0.5)).mean() > 1.5 * diff  # one pixel off is worse
            # 4x coarser, from the overviews: close to the average of the full-resolution pixels
            coarse, valid = pyr.read(box, 2.0)
            assert coarse.shape == (40, 40, 3) and valid.all()
            pooled = rgb.reshape(40, 4, 40, 4, 3).astype(float).mean(axis=(1, 3))
            assert np.abs(coarse - pooled).mean() < 4.0
