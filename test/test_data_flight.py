"""Simulated flights: trajectories, their configuration, and the bag they are written to."""

from __future__ import annotations

import numpy as np
import pytest

from jzi_ros.data import DataError, bags
from jzi_ros.data.flight import START_NS, FlightConfig, Trajectory, lawnmower, random_walk, waypoints, write_flight
from jzi_ros.geo import ZoomGrid
from jzi_ros.images import decode_message


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
    traj = waypoints(csv, grid, speed_mps=5.0)
    assert traj.east_north_m[-1] == pytest.approx([300.0, 400.0], abs=1e-6)
    assert traj.duration_s == pytest.approx(100.0)
    (tmp_path / "one.csv").write_text("lat,lon\n47.0,8.0\n")
    with pytest.raises(DataError, match="at least two waypoints"):
        waypoints(tmp_path / "one.csv", grid, 5.0)
    with pytest.raises(DataError, match="no such waypoint file"):
        waypoints(tmp_path / "missing.csv", grid, 5.0)


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
