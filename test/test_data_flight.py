"""Simulated flights: trajectories, their configuration, and the bag they are written to."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import UTM_ORIGIN
from pyproj import Transformer

from jzi_ros.data import DataError, bags, render_frame
from jzi_ros.data.flight import START_NS, FlightConfig, Trajectory, lawnmower, random_walk, waypoints, write_flight
from jzi_ros.data.sensors import read_attitude_track, read_height_track
from jzi_ros.geo import BoundsM, ZoomGrid
from jzi_ros.geo.camera import CameraPose, Pinhole, camera_pose_from_body, heading_deg, height_above_ground
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.images import decode_message
from jzi_ros.tools.cli import main


def test_lawnmower_flies_lanes_west_east_and_back_from_north_to_south():
    traj = lawnmower(half_m=50.0, spacing_m=25.0, speed_mps=10.0)
    assert traj.east_north_m[:4].tolist() == [[-50, 50], [50, 50], [50, 25], [-50, 25]]
    assert traj.east_north_m[-1].tolist() == [50, -50]  # five lanes, the last west to east
    assert traj.duration_s == pytest.approx((5 * 100 + 4 * 25) / 10.0)
    east, north, heading = traj.at(5.0)  # halfway along the first lane, heading east
    assert (east, north, heading) == pytest.approx((0.0, 50.0, 90.0))
    assert traj.at(traj.duration_s)[2] == pytest.approx(90.0)  # at the end it keeps its last heading


def test_random_walk_is_seeded_and_stays_inside_the_square():
    a = random_walk(40.0, 8.0, 60.0, np.random.default_rng(3))
    b = random_walk(40.0, 8.0, 60.0, np.random.default_rng(3))
    assert np.array_equal(a.east_north_m, b.east_north_m)
    assert np.abs(a.east_north_m).max() <= 40.0
    assert a.duration_s == pytest.approx(60.0, abs=2.0)
    steps = np.diff(a.t_s)
    assert (steps > 0).all()


def test_waypoints_are_read_from_a_csv_in_the_grids_frame(tmp_path):
    grid = ZoomGrid(47.0, 8.0, 1000.0, 4, 1)
    csv = tmp_path / "wp.csv"
    lat2, lon2 = grid.frame.to_latlon(300.0, 400.0)
    csv.write_text(f"latitude,longitude\n47.0,8.0\n{lat2},{lon2}\n")
    traj = waypoints(csv, grid.frame, speed_mps=5.0)
    assert traj.east_north_m[-1] == pytest.approx([300.0, 400.0], abs=1e-6)
    assert traj.duration_s == pytest.approx(100.0)
    (tmp_path / "one.csv").write_text("lat,lon\n47.0,8.0\n")
    with pytest.raises(DataError, match="at least two waypoints"):
        waypoints(tmp_path / "one.csv", grid.frame, 5.0)
    with pytest.raises(DataError, match="no such waypoint file"):
        waypoints(tmp_path / "missing.csv", grid.frame, 5.0)


def test_trajectory_position_is_interpolated_in_time():
    traj = Trajectory(np.array([0.0, 10.0]), np.array([[0.0, 0.0], [0.0, 100.0]]))
    assert traj.at(2.5) == pytest.approx((0.0, 25.0, 0.0))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"speed_mps": -1.0}, "speed_mps must be positive"),
        ({"camera_hz": 0.0}, "camera_hz must be positive"),
        ({"altitude_m": float("nan")}, "altitude_m must be positive"),
        ({"storage": "zip"}, "storage must be one of mcap, sqlite3"),
        ({"tilt_deg": -1.0}, "tilt_deg must be zero or positive"),
        ({"image_px": 4}, "image_px must be an integer >= 8"),
        ({"geotiff": ()}, "give geotiff \\(rasters\\) or map"),
        ({"imu_hz": 0.0}, "imu_hz must be positive"),
        ({"imu_yaw_noise_deg": -1.0}, "imu_yaw_noise_deg must be zero or positive"),
        ({"height_noise_m": float("inf")}, "height_noise_m must be zero or positive"),
        ({"imu_yaw_bias_deg": float("nan")}, "imu_yaw_bias_deg must be a finite angle"),
        ({"height_topic": "/gps/fix"}, "each sensor needs its own topic"),
    ],
)
def test_flight_config_names_the_parameter_it_rejects(tmp_path, options, message):
    with pytest.raises(DataError, match=message):
        FlightConfig(**{"out": tmp_path / "bag", "geotiff": ("a.tif",), **options})


def test_flight_config_defaults_are_the_command_lines():
    cfg = FlightConfig(out="bag", geotiff=["a.tif"])
    assert (cfg.storage, cfg.trajectory, cfg.speed_mps, cfg.camera_hz, cfg.gps_hz) == ("mcap", "lawnmower", 8, 5, 10)
    assert (cfg.image_px, cfg.hfov_deg, cfg.tilt_deg, cfg.exposure_s) == (224, 60.0, 3.0, 0.004)
    assert cfg.frame_topic == "/camera/image_raw"
    assert (cfg.imu_topic, cfg.imu_hz, cfg.imu_yaw_noise_deg, cfg.imu_yaw_bias_deg, cfg.imu_tilt_noise_deg) == (
        "/imu/data",
        50.0,
        3.0,
        0.0,
        0.5,
    )
    assert (cfg.height_topic, cfg.height_hz, cfg.height_noise_m) == ("/rangefinder/range", 20.0, None)
    assert FlightConfig(out="bag", geotiff=["a.tif"], compressed=True).frame_topic == "/camera/image_raw/compressed"


def test_a_written_flight_reads_back_as_frames_camera_info_and_truth(utm_tif, tmp_path):
    config = FlightConfig(
        out=tmp_path / "flight",
        geotiff=(utm_tif,),
        trajectory="random",
        duration_s=2.0,
        camera_hz=2.0,
        gps_hz=4.0,
        image_px=32,
        altitude_m=30.0,
        compressed=True,
        quiet=True,
    )
    flight = write_flight(config)
    assert (flight.frames, flight.fixes, flight.duration_s) == (4, 8, 2.0)
    assert flight.image_topic == "/camera/image_raw/compressed" and flight.path == tmp_path / "flight"
    with bags.BagReader(flight.path) as reader:
        assert reader.topics == {
            flight.image_topic: bags.COMPRESSED,
            "/camera/camera_info": bags.CAMERA_INFO,
            "/gps/fix": bags.NAVSATFIX,
            "/gt/imu": bags.IMU,
            "/imu/data": bags.IMU,
            "/rangefinder/range": bags.RANGE,
            "/tf_static": "tf2_msgs/msg/TFMessage",
        }
        assert {t: reader.count(t) for t in reader.topics} == flight.topics
        track = bags.read_fix_track(reader, "/gps/fix")
        frames = [m.msg for m in reader.messages([flight.image_topic])]
    assert track.t_ns[0] == START_NS and np.all(np.diff(track.t_ns) == 250_000_000)
    assert decode_message(frames[0])[0].shape == (32, 32, 3)
    assert bags.stamp_of(frames[1], 0) == START_NS + 500_000_000
    with pytest.raises(bags.BagError, match="exists"):  # never overwrites a bag
        write_flight(config)


def test_a_camera_that_sees_more_than_the_area_is_refused(utm_tif, tmp_path):
    config = FlightConfig(out=tmp_path / "flight", geotiff=(utm_tif,), size_m=50.0, altitude_m=100.0, quiet=True)
    with pytest.raises(DataError, match="more than the 50 m area"):
        write_flight(config)
    assert not (tmp_path / "flight").exists()


def test_a_flight_over_a_map_is_refused_early_when_its_raster_shows_another_place(utm_tif, tmp_path, monkeypatch):
    from conftest import pattern, write_tif
    from rasterio.transform import from_origin

    from jzi_ros.geo import build_map

    mapdir = build_map([utm_tif], tmp_path / "map", grid=2, levels=1, view_px=32)
    far = write_tif(tmp_path / "far.tif", pattern(400, 400, 3), "EPSG:32632", from_origin(480000.0, 5230000.0, 1, 1))
    config = FlightConfig(out=tmp_path / "flight", map=mapdir.path, geotiff=(far,), duration_s=2.0, quiet=True)
    refused = r"far.tif covers 0 % of the \d+ m flight area .*: it must show the map's place"  # never a black bag
    with pytest.raises(DataError, match=refused):
        write_flight(config)
    assert not (tmp_path / "flight").exists()
    (tmp_path / "flight").mkdir()

    def rendered(*args, **kwargs):
        raise AssertionError("rendered before the output was checked")

    monkeypatch.setattr(LocalOrtho, "render", rendered)
    with pytest.raises(bags.BagError, match="exists"):  # an existing output is refused before any work
        write_flight(replace(config, geotiff=(utm_tif,)))


def test_a_duration_beyond_the_pattern_is_said_and_the_flight_ends_with_the_pattern(utm_tif, tmp_path, caplog):
    sensors = dict(imu_topic="", height_topic="", gt_imu_topic="")  # the pattern's length is all that matters
    config = FlightConfig(
        out=tmp_path / "flight",
        geotiff=(utm_tif,),
        duration_s=3600.0,
        camera_hz=0.2,
        image_px=32,
        quiet=True,
        **sensors,
    )
    with caplog.at_level("WARNING", logger="jzi_ros.data.flight"):
        flight = write_flight(config)
    assert flight.duration_s < 3600.0
    assert f"the lawnmower pattern over this area takes {flight.duration_s:.0f} s" in caplog.text
    assert "not at 3600 s" in caplog.text


def test_a_flight_over_a_map_with_a_surface_model_sees_its_relief(utm_tif, tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from jzi_ros.geo import build_map

    dsm = tmp_path / "dsm.tif"
    heights = np.full((400, 400), 400.0, np.float32)
    heights[150:250, 150:250] = 420.0  # a 20 m block in the middle
    profile = dict(driver="GTiff", width=400, height=400, count=1, dtype="float32", crs="EPSG:32632")
    with rasterio.open(dsm, "w", transform=from_origin(*UTM_ORIGIN, 1.0, 1.0), **profile) as out:
        out.write(heights[None])
    mapdir = build_map([utm_tif], tmp_path / "map", grid=2, levels=1, view_px=32, dsm=dsm)
    assert mapdir.has_surface
    config = FlightConfig(
        out=tmp_path / "flight",
        map=mapdir.path,
        duration_s=1.0,
        camera_hz=1.0,
        image_px=32,
        altitude_m=60.0,
        quiet=True,
    )
    assert write_flight(config).relief  # the map's own surface model, no --dsm needed
    assert not write_flight(replace(config, out=tmp_path / "flat", flat=True)).relief


# the robot's own sensors


def sensor_flight(utm_tif, out, **options):
    """A 4 s random flight at 30 m over the tiny raster: 4 frames, 200 IMU messages, 80 ranges."""
    config = dict(
        geotiff=(utm_tif,),
        trajectory="random",
        duration_s=4.0,
        camera_hz=1.0,
        gps_hz=2.0,
        image_px=32,
        altitude_m=30.0,
        quiet=True,
    )
    return write_flight(FlightConfig(out=out, **{**config, **options}))


def heading_errors_deg(flight) -> np.ndarray:
    """Heading of the image top from each IMU message minus the true heading (the direction of motion) [deg]."""
    with bags.BagReader(flight.path) as reader:
        track = read_attitude_track(reader, flight.imu_topic)
    true = [flight.trajectory.at((t - START_NS) / 1e9)[2] for t in track.stamps_ns]
    measured = [heading_deg(q) for q in track.quaternions]
    return (np.array(measured) - true + 180.0) % 360.0 - 180.0


def test_a_flight_carries_imu_attitude_and_rangefinder_height_at_their_rates(utm_tif, tmp_path):
    flight = sensor_flight(utm_tif, tmp_path / "flight")
    assert (flight.attitudes, flight.ranges) == (200, 80)
    with bags.BagReader(flight.path) as reader:
        assert (reader.topics["/imu/data"], reader.topics["/rangefinder/range"]) == (bags.IMU, bags.RANGE)
        assert {t: reader.count(t) for t in reader.topics} == flight.topics
        attitude = read_attitude_track(reader, "/imu/data")
        heights = read_height_track(reader, "/rangefinder/range")
        imu = next(reader.messages(["/imu/data"])).msg
    assert attitude.stamps_ns[0] == START_NS and np.all(np.diff(attitude.stamps_ns) == 20_000_000)
    assert heights.stamps_ns[0] == START_NS and np.all(np.diff(heights.stamps_ns) == 50_000_000)
    assert imu.orientation_covariance[8] == pytest.approx(math.radians(3.0) ** 2)  # the heading's variance
    # the heading errs by a slowly varying 3 degrees (standard deviation)
    errors = heading_errors_deg(flight)
    assert np.abs(errors).max() < 4 * 3.0
    truth = heading_errors_deg(replace(flight, imu_topic=flight.gt_imu_topic))  # the INS's true attitude
    assert len(truth) == flight.fixes and np.abs(truth).max() < 1e-6
    assert np.abs(np.diff(errors)).max() < 1.0  # slowly: no jumps between messages 20 ms apart
    # the camera tilts smoothly (standard deviation 3 degrees), and the IMU sees it
    tilts = np.array(
        [[p.pitch_deg, p.roll_deg] for p in (camera_pose_from_body(0, 0, 30, q) for q in attitude.quaternions)]
    )
    assert 0.3 < tilts.std() < 4 * 3.0 and np.abs(np.diff(tilts, axis=0)).max() < 3.0
    # the range, made vertical with the IMU's attitude, is the altitude (within 2 %) up to its noise (0.15 m)
    height_m = [height_above_ground(heights.at(t), attitude.at(t)) for t in heights.stamps_ns]
    assert np.abs(np.array(height_m) - 30.0).max() < 0.02 * 30.0 + 4 * 0.15
    slant_m = heights.ranges_m
    assert (slant_m >= np.array(height_m) - 1e-3).all()  # slant, never shorter than the vertical


def test_a_yaw_bias_turns_every_heading_by_it(utm_tif, tmp_path):
    plain = heading_errors_deg(sensor_flight(utm_tif, tmp_path / "plain"))
    biased = heading_errors_deg(sensor_flight(utm_tif, tmp_path / "biased", imu_yaw_bias_deg=10.0))
    # the bias is added to the REP-103 yaw (counter-clockwise); headings are clockwise: they read 10 degrees less
    np.testing.assert_allclose(biased - plain, -10.0, atol=1e-6)
    quiet = heading_errors_deg(sensor_flight(utm_tif, tmp_path / "quiet", imu_yaw_bias_deg=10.0, imu_yaw_noise_deg=0.5))
    assert quiet.mean() == pytest.approx(-10.0, abs=4 * 0.5)


def test_sensors_left_out_write_no_topic_and_change_nothing_else(utm_tif, tmp_path):
    full = sensor_flight(utm_tif, tmp_path / "full")
    bare = sensor_flight(utm_tif, tmp_path / "bare", imu_topic="", height_topic="")
    assert set(bare.topics) == {"/camera/image_raw", "/camera/camera_info", "/gps/fix", "/gt/imu", "/tf_static"}
    assert (bare.attitudes, bare.ranges) == (0, 0)

    def read(path):
        with bags.BagReader(path) as reader:
            frames = [decode_message(m.msg)[0] for m in reader.messages(["/camera/image_raw"])]
            return reader.topics, frames

    (bare_topics, bare_frames), (_, full_frames) = read(bare.path), read(full.path)
    assert set(bare_topics) == set(bare.topics)
    assert all(np.array_equal(a, b) for a, b in zip(bare_frames, full_frames, strict=True))  # the same flight
    again = sensor_flight(utm_tif, tmp_path / "again")
    assert all(np.array_equal(a, b) for a, b in zip(read(again.path)[1], full_frames, strict=True))


def test_the_imu_and_the_rangefinder_see_the_pose_each_frame_was_taken_from(utm_tif, tmp_path):
    """With noise-free sensors, each frame rendered anew from the IMU's attitude and the range's height
    at its stamp matches; rendered level (no tilt), it matches worse."""
    lat, lon = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(
        UTM_ORIGIN[0] + 200, UTM_ORIGIN[1] - 200
    )[::-1]
    options = dict(center=(lat, lon), size_m=300.0, image_px=64, tilt_deg=10.0, exposure_s=0.0)
    sensors = dict(imu_yaw_noise_deg=0.0, imu_tilt_noise_deg=0.0, height_noise_m=0.0)
    flight = sensor_flight(utm_tif, tmp_path / "flight", **options, **sensors)
    frame = ZoomGrid(lat, lon, 300.0, 4, 1).frame
    ortho = LocalOrtho.render([utm_tif], frame, BoundsM(-150, -150, 150, 150), 0.25)
    cam = Pinhole(64, 64, 60.0)
    with bags.BagReader(flight.path) as reader:
        attitude = read_attitude_track(reader, "/imu/data")
        heights = read_height_track(reader, "/rangefinder/range")
        frames = [(bags.stamp_of(m.msg, 0), decode_message(m.msg)[0]) for m in reader.messages(["/camera/image_raw"])]
    good, level = [], []
    for stamp, image in frames:
        q = attitude.at(stamp, max_age_ns=0)
        e, n, heading = flight.trajectory.at((stamp - START_NS) / 1e9)
        pose = camera_pose_from_body(e, n, height_above_ground(heights.at(stamp, max_age_ns=0), q), q)
        assert pose.yaw_deg == pytest.approx(heading)
        flat = CameraPose(e, n, pose.altitude_m, heading)
        good.append(np.corrcoef(image.ravel(), render_frame(ortho, cam, pose)[0].ravel())[0, 1])
        level.append(np.corrcoef(image.ravel(), render_frame(ortho, cam, flat)[0].ravel())[0, 1])
    assert min(good) > 0.95 and all(g > f for g, f in zip(good, level, strict=True))
    assert np.mean(level) < np.mean(good) - 0.1


def test_make_bag_names_its_topics_with_their_message_counts(utm_tif, tmp_path, capsys):
    args = ["make-bag", "--geotiff", str(utm_tif), "--out", str(tmp_path / "bag"), "--trajectory", "random"]
    args += ["--duration-s", "2", "--camera-hz", "1", "--image-px", "16", "--altitude-m", "30", "--quiet"]
    assert main([*args, "--imu-topic", "", "--height-topic", "/alt", "--imu-yaw-bias-deg", "5"]) == 0
    out = capsys.readouterr().out
    assert "  /gps/fix: 20 messages" in out and "  /alt: 40 messages" in out and "/imu/data" not in out
    assert "  /gt/imu: 20 messages" in out  # the true attitude, beside the truth's fixes
    with bags.BagReader(tmp_path / "bag") as reader:
        assert reader.topics["/alt"] == bags.RANGE and "/imu/data" not in reader.topics
