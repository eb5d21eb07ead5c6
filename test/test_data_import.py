"""Importers of geotagged images, tiled web maps, and street-view encoding."""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np
import pytest
import rasterio
import torch
from conftest import shared

from jzi_ros.data import DataError, bags
from jzi_ros.data.geotagged import load_geotagged
from jzi_ros.data.importers import import_bag, import_benchmark, import_exif, parse_sequence
from jzi_ros.geo import ZoomGrid, read_info
from jzi_ros.geo.tiles import stitch_tiles
from jzi_ros.model import EncoderConfig
from jzi_ros.model.encoder import pool_queries, prepare_queries
from jzi_ros.tools.cli import main


def test_exif_import_reads_the_gps_of_real_phone_photos(tmp_path, capsys):
    lund = shared("lund")
    report = import_exif(lund)
    assert len(report.rows) == 29 and not report.skipped
    lat = np.array([r["latitude"] for r in report.rows])
    lon = np.array([r["longitude"] for r in report.rows])
    assert (55.698 <= lat).all() and (lat <= 55.700).all()
    assert (13.194 <= lon).all() and (lon <= 13.196).all()
    first = next(r for r in report.rows if r["image"].endswith("01.jpg"))
    assert first["latitude"] == pytest.approx(55 + 41 / 60 + 53.4 / 3600)
    # a photo without GPS and an unreadable file are counted, not fatal
    folder = tmp_path / "photos"
    shutil.copytree(lund, folder)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(folder / "nogps.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "train.csv"
    assert main(["import", "exif", "--images", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "took 29" in printed and "skipped 1 (no GPS in EXIF)" in printed and "skipped 1 (unreadable image)" in printed
    )
    grid = ZoomGrid(55.699, 13.195, 1000.0, levels=3)
    data = load_geotagged(out, grid)
    assert len(data.images) == 29 and data.paths.shape == (29, 3)


def test_exif_import_keeps_only_photos_inside_the_region():
    far = ZoomGrid(47.0, 8.0, 1000.0, levels=2)
    report = import_exif(shared("lund"), far)
    assert not report.rows and report.skipped["outside the region"] == 29


def test_bag_import_matches_frames_to_fixes_by_time(tmp_path, capsys):
    bag = tmp_path / "drive"
    t0 = 1_700_000_000 * 10**9
    rng = np.random.default_rng(0)
    with bags.BagWriter(bag, "mcap") as w:
        for i in range(11):  # GPS at 1 Hz, 0..10 s, moving north 10 m/s (about 9e-5 deg/s)
            w.add("/gps", bags.navsatfix(t0 + i * 10**9, "gps", 47.0 + i * 9e-5, 8.0, 400.0, np.eye(3)), t0 + i * 10**9)
        for i in range(25):  # camera at 2 Hz for 12 s: the last frames outrun the GPS
            stamp = t0 + i * 500_000_000
            w.add("/cam", bags.compressed(stamp, "cam", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), stamp)
    assert (
        main(
            [
                "import",
                "bag",
                "--bag",
                str(bag),
                "--image-topic",
                "/cam",
                "--gps-topic",
                "/gps",
                "--out-dir",
                str(tmp_path / "out"),
                "--max-gap-s",
                "1.5",
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    with (tmp_path / "out" / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 22  # 0..10 s interpolated; 10.5 s is within half a gap of the last fix; 11-12 s are not
    assert "skipped 3 (no GPS fix within 1.5 s)" in printed
    mid = next(r for r in rows if int(r["stamp_ns"]) == t0 + 2_500_000_000)
    assert float(mid["latitude"]) == pytest.approx(47.0 + 2.5 * 9e-5)
    assert (tmp_path / "out" / rows[0]["image"]).is_file()


def test_fix_track_keeps_valid_fixes_sorted_by_stamp(tmp_path):
    bag = tmp_path / "fixes"
    t0 = 1_700_000_000 * 10**9
    with bags.BagWriter(bag, "mcap") as w:
        for i, (lat, fix) in enumerate([(47.2, True), (47.0, True), (float("nan"), True), (47.3, False)]):
            stamp = t0 + (2 - i) * 10**9  # written newest first
            w.add("/gps", bags.navsatfix(stamp, "gps", lat, 8.0, 400.0, np.eye(3), fix=fix), stamp)
        w.add("/bad", bags.navsatfix(t0, "gps", 47.0, 8.0, 400.0, np.eye(3), fix=False), t0)
    with bags.BagReader(bag) as reader:
        track = bags.read_fix_track(reader, "/gps")
        assert track.t_ns.tolist() == [t0 + 10**9, t0 + 2 * 10**9] and track.lat.tolist() == [47.0, 47.2]
        with pytest.raises(bags.BagError, match="no valid ground-truth fix on /bad"):
            bags.read_fix_track(reader, "/bad")
        with pytest.raises(bags.BagError, match="has no topic /nowhere"):
            bags.read_fix_track(reader, "/nowhere")


def test_bag_import_takes_every_nth_frame_and_rejects_bad_options(tmp_path):
    bag = tmp_path / "drive"
    t0 = 1_700_000_000 * 10**9
    rng = np.random.default_rng(0)
    with bags.BagWriter(bag, "sqlite3") as w:
        w.add("/gps", bags.navsatfix(t0, "gps", 47.0, 8.0, 400.0, np.eye(3)), t0)
        w.add("/gps", bags.navsatfix(t0 + 10**9, "gps", 47.001, 8.0, 400.0, np.eye(3)), t0 + 10**9)
        for i in range(6):
            stamp = t0 + i * 200_000_000
            w.add("/cam", bags.image(stamp, "cam", rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)), stamp)
    report = import_bag(bag, "/cam", "/gps", tmp_path / "out", every=2, quiet=True)
    assert [r["stamp_ns"] for r in report.rows] == [t0, t0 + 400_000_000, t0 + 800_000_000]
    assert report.skipped["not every n-th frame"] == 3
    assert all((tmp_path / "out" / "images" / f"{r['stamp_ns']}.jpg").is_file() for r in report.rows)
    with pytest.raises(DataError, match="every must be an integer >= 1"):
        import_bag(bag, "/cam", "/gps", tmp_path / "out", every=0)
    with pytest.raises(DataError, match="max_gap_s must be zero or positive"):
        import_bag(bag, "/cam", "/gps", tmp_path / "out", max_gap_s=-1.0)
    with pytest.raises(bags.BagError, match="carries sensor_msgs/msg/NavSatFix"):
        import_bag(bag, "/gps", "/gps", tmp_path / "out")


def _benchmark(root, grid: ZoomGrid):
    (root / "streetview").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for k in range(6):
        lat, lon = grid.center_latlon(tuple(int(a) for a in rng.integers(0, 16, 4)))
        path = grid.path_at(lat, lon)
        image_id = f"{1000 + k}"
        from PIL import Image

        Image.new("RGB", (64, 32), (k * 30, 80, 120)).save(root / "streetview" / f"{image_id}_undistorted.jpg")
        seq = " ".join(map(str, path)) if k != 5 else "0 0 0 0"  # one row disagrees on purpose
        rows.append({"image_id": image_id, "latitude": lat, "longitude": lon, "sequence": seq})
    rows.append({"image_id": "9999", "latitude": 38.9, "longitude": -77.0, "sequence": "1 2 3 4"})  # no image
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_benchmark_import_checks_our_paths_against_the_sequence_column(tmp_path):
    grid = ZoomGrid(38.9, -77.03, 10_000.0, grid=4, levels=4)
    _benchmark(tmp_path / "jzi", grid)
    report = import_benchmark(tmp_path / "jzi", grid)
    assert len(report.rows) == 6 and report.skipped["street view missing"] == 1
    assert "agree with the dataset's sequence for 5 of 6" in report.notes[0]
    other = import_benchmark(tmp_path / "jzi", ZoomGrid(38.9, -77.03, 10_000.0, grid=4, levels=3))
    assert "not the benchmark's" in other.notes[0]
    assert parse_sequence("[3, 7, 1, 12]") == (3, 7, 1, 12)


def test_tiled_web_map_folders_become_georeferenced_rasters(tmp_path):
    root = tmp_path / "tiles"
    z, x0, y0 = 17, 37496, 50123
    from PIL import Image

    for dx in range(3):
        for dy in range(2):
            d = root / str(z) / str(x0 + dx)
            d.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (256, 256), (40 * dx, 100, 50 * dy)).save(d / f"{y0 + dy}.png")
    (root / "layout.yaml").write_text("zoom: 17\nscheme: xyz\n")
    tif = stitch_tiles(root, tmp_path / "mosaic.tif")
    info = read_info(tif)
    assert info.crs == "EPSG:3857" and info.alpha_band == 4
    with rasterio.open(tif) as ds:
        assert (ds.width, ds.height) == (768, 512)
        size = 2 * math.pi * 6378137.0 / 2**z
        assert ds.bounds.left == pytest.approx(-math.pi * 6378137.0 + x0 * size)
        assert ds.bounds.top == pytest.approx(math.pi * 6378137.0 - y0 * size)
        px = ds.read(window=((300, 301), (600, 601))).ravel()  # tile dx=2, dy=1
        assert px.tolist() == [80, 100, 50, 255]
    # the TMS scheme flips y
    (root / "layout.yaml").write_text("zoom: 17\nscheme: tms\n")
    flipped = stitch_tiles(root, tmp_path / "tms.tif")
    with rasterio.open(flipped) as ds:
        assert ds.bounds.top == pytest.approx(math.pi * 6378137.0 - (2**z - 1 - (y0 + 1)) * size)


def test_street_views_are_encoded_as_two_halves_of_a_wide_resize():
    cfg = EncoderConfig(name="tf_efficientnet_lite0", image_px=32, query="halves")
    img = np.zeros((48, 120, 3), np.uint8)
    img[:, 60:] = 200  # right half bright
    x, n = prepare_queries([img, img], cfg)
    assert n == 2 and x.shape == (4, 3, 32, 32)
    assert x[0].mean() < 5 and x[1].mean() > 195  # left and right halves, in order
    pooled = torch.tensor([[1.0, 3.0], [3.0, 5.0], [0.0, 0.0], [2.0, 2.0]])
    assert pool_queries(pooled, n).tolist() == [[2.0, 4.0], [1.0, 1.0]]
    single, one = prepare_queries([img], EncoderConfig(name="tf_efficientnet_lite0", image_px=32))
    assert one == 1 and single.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("where, names", [("folder", "is a folder"), ("below_a_file", "afile is a file")])
def test_import_exif_refuses_an_out_it_cannot_write_before_reading_anything(tmp_path, capsys, where, names):
    from jzi_ros.tools.cli import main

    (tmp_path / "afile").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "afile" / "train.csv"
    code = main(["import", "exif", "--images", str(tmp_path / "nothing_here"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and names in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "x"
