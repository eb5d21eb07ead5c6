"""Flight outputs people open in their own tools: the GeoJSON map and the replay bag."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from jzi_ros.data import bags
from jzi_ros.data.errors import BagError, DataError
from jzi_ros.evaluation import frame_row, geodesic_m
from jzi_ros.evaluation.flight_outputs import (
    CANDIDATES_TOPIC,
    ELLIPSE_VERTICES,
    FIX_FRAME_ID,
    FIX_TOPIC,
    write_geojson,
    write_replay_bag,
)
from jzi_ros.geo import ZoomGrid
from jzi_ros.localizer import CHI2_95_2DOF, Candidate, Estimate
from jzi_ros.outputs import OutputError

GRID = ZoomGrid(center_lat=47.05, center_lon=8.54, size_m=400.0, grid=2, levels=2)
"""Terminal cells of 100 m; latitude and longitude far apart, so a swapped pair shows."""
T0 = 1_700_000_000 * 10**9


def estimate_at(path, cov=((40.0, 12.0), (12.0, 10.0)), trusted=True, verified=False, candidates=()) -> Estimate:
    """An estimate at the centre of a terminal cell."""
    east, north = GRID.center_m(path)
    lat, lon = GRID.center_latlon(path)
    cands = [Candidate(p, *GRID.center_latlon(p), *GRID.center_m(p), prob) for p, prob in candidates]
    return Estimate(
        lat, lon, east, north, np.array(cov), 0.8, trusted, path, cands, GRID.terminal_size_m,
        {"total": 5.0}, verified, "ok" if verified else "too few inliers (3)", 40 if verified else 3,
    )  # fmt: skip


def rows_of(estimates: list[tuple[int, Estimate]]) -> list[dict]:
    """Frame rows with the truth 5 m east and 3 m north of each estimate."""
    rows = []
    for stamp_ns, est in estimates:
        truth = tuple(float(v) for v in GRID.frame.to_latlon(est.east_m + 5.0, est.north_m + 3.0))
        rows.append(frame_row(GRID, stamp_ns, T0, est, truth))
    return rows


FLIGHT = [
    (T0, estimate_at((0, 0), verified=True, candidates=[((0, 0), 0.7), ((0, 1), 0.2)])),
    (T0 + 10**8, estimate_at((0, 1), trusted=False, candidates=[((0, 1), 0.4)])),
    (T0 + 2 * 10**8, estimate_at((1, 2), cov=np.diag([900.0, 100.0]), candidates=[])),
]


def _strict(text: str) -> dict:
    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


# GeoJSON


def test_geojson_has_the_truth_line_and_per_frame_points_errors_and_ellipses_in_lon_lat_order(tmp_path):
    rows = rows_of(FLIGHT)
    path = write_geojson(list(reversed(rows)), tmp_path / "flight.geojson")  # written in time order all the same
    doc = _strict(path.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc  # RFC 7946: WGS84, no crs member
    kinds = [f["properties"]["kind"] for f in doc["features"]]
    assert (
        kinds.count("truth") == 1 and kinds.count("estimate") == kinds.count("error") == kinds.count("ellipse95") == 3
    )
    (truth,) = [f for f in doc["features"] if f["properties"]["kind"] == "truth"]
    assert truth["geometry"] == {"type": "LineString", "coordinates": [[r["true_lon"], r["true_lat"]] for r in rows]}
    points = [f for f in doc["features"] if f["properties"]["kind"] == "estimate"]
    assert [p["geometry"]["coordinates"] for p in points] == [[r["est_lon"], r["est_lat"]] for r in rows]
    for p, r in zip(points, rows, strict=True):
        lon, lat = p["geometry"]["coordinates"]
        assert 8 < lon < 9 and 47 < lat < 48
        props = p["properties"]
        assert props["stamp_ns"] == r["stamp_ns"] and props["t_s"] == r["t_s"]
        assert (props["status"], props["verified"], props["verdict"]) == (r["status"], r["verified"], r["verdict"])
        assert props["error_m"] == pytest.approx(math.hypot(5.0, 3.0), abs=0.05)
        assert props["confidence"] == r["confidence"] and props["mode"] == r["mode"] == "global"
    assert [p["properties"]["status"] for p in points] == ["FIX", "NO_FIX", "FIX"]
    errors = [f for f in doc["features"] if f["properties"]["kind"] == "error"]
    assert [e["geometry"]["coordinates"] for e in errors] == [
        [[r["true_lon"], r["true_lat"]], [r["est_lon"], r["est_lat"]]] for r in rows
    ]


def test_geojson_ellipse_axes_and_polygon_match_the_covariance(tmp_path):
    rows = rows_of(FLIGHT)
    doc = _strict(write_geojson(rows, tmp_path / "flight.geojson").read_text())
    point = [f for f in doc["features"] if f["properties"]["kind"] == "estimate"][2]["properties"]
    assert (point["sigma_major_m"], point["sigma_minor_m"]) == pytest.approx((30.0, 10.0))  # diag(900, 100)
    assert point["ellipse95_major_m"] == pytest.approx(30.0 * math.sqrt(CHI2_95_2DOF))
    assert point["ellipse_azimuth_deg"] == pytest.approx(90.0)  # the major axis points east
    ellipse = [f for f in doc["features"] if f["properties"]["kind"] == "ellipse95"][2]
    (ring,) = ellipse["geometry"]["coordinates"]
    assert len(ring) == ELLIPSE_VERTICES + 1 and ring[0] == ring[-1]
    lon, lat = np.array(ring[:-1]).T
    dist = geodesic_m(np.full_like(lat, rows[2]["est_lat"]), np.full_like(lon, rows[2]["est_lon"]), lat, lon)
    assert dist.max() == pytest.approx(30.0 * math.sqrt(CHI2_95_2DOF), rel=1e-3)
    assert dist.min() == pytest.approx(10.0 * math.sqrt(CHI2_95_2DOF), rel=1e-2)
    east = lon[np.argmax(dist)] - rows[2]["est_lon"]
    assert abs(east) > 1e-4  # the long axis runs east-west
    x, y = lon - lon.mean(), lat - lat.mean()
    assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # counter-clockwise exterior ring (RFC 7946)


def test_geojson_of_one_frame_has_a_truth_point_and_no_nan(tmp_path):
    (row,) = rows_of(FLIGHT[:1])
    row["confidence"] = float("nan")
    doc = _strict(write_geojson([row], tmp_path / "one.geojson").read_text())
    truth = doc["features"][0]
    assert truth["geometry"] == {"type": "Point", "coordinates": [row["true_lon"], row["true_lat"]]}
    assert doc["features"][1]["properties"]["confidence"] is None


# replay bag


def _input_bag(tmp_path, topic: str, compressed: bool) -> list[tuple[int, object]]:
    """Four camera frames written to a bag and read back as eval-bag reads them (stamp [ns], message)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "input"
    with bags.BagWriter(src, "sqlite3") as bag:
        for i in range(4):
            stamp = T0 + i * 10**8
            rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            msg = bags.compressed(stamp, "cam", rgb) if compressed else bags.image(stamp, "cam", rgb)
            bag.add(topic, msg, stamp + 1000)  # received a little after the stamp
    with bags.BagReader(src) as reader:
        return [(bags.stamp_of(m.msg, m.bag_ns), m.msg) for m in reader.messages([topic])]


def _raw(path, topic: str) -> list[bytes]:
    with AnyReader([path], default_typestore=bags.TYPESTORE) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [bytes(raw) for _, _, raw in reader.messages(connections=conns)]


@pytest.mark.parametrize("storage, compressed", [("mcap", True), ("sqlite3", False)])
def test_replay_bag_holds_the_localized_frames_byte_identical_beside_fixes_and_candidates(
    tmp_path, storage, compressed
):
    topic = "/cam/image/compressed" if compressed else "/cam/image_raw"
    frames = _input_bag(tmp_path, topic, compressed)
    estimates = [(frames[i][0], est) for i, (_, est) in zip((0, 1, 3), FLIGHT, strict=True)]  # frame 2 dropped
    out = write_replay_bag(estimates, frames, tmp_path / "replay", storage, image_topic=topic)
    with bags.BagReader(out) as reader:
        assert reader.topics == {
            topic: bags.COMPRESSED if compressed else bags.IMAGE,
            FIX_TOPIC: bags.NAVSATFIX,
            CANDIDATES_TOPIC: bags.POSE_ARRAY,
        }
        assert [reader.count(t) for t in (topic, FIX_TOPIC, CANDIDATES_TOPIC)] == [3, 3, 3]
        fixes = [m for m in reader.messages([FIX_TOPIC])]
        poses = [m.msg for m in reader.messages([CANDIDATES_TOPIC])]
        images = [m for m in reader.messages([topic])]
    input_raw = _raw(tmp_path / "input", topic)
    assert _raw(out, topic) == [input_raw[0], input_raw[1], input_raw[3]]
    assert [m.bag_ns for m in images] == [m.bag_ns for m in fixes] == [s for s, _ in estimates]
    for m, (stamp, est) in zip(fixes, estimates, strict=True):
        fix = m.msg
        assert bags.stamp_of(fix, 0) == stamp and fix.header.frame_id == FIX_FRAME_ID
        assert (fix.latitude, fix.longitude) == (est.lat, est.lon)
        assert fix.status.status == (0 if est.trusted else -1)
        assert np.allclose(np.asarray(fix.position_covariance).reshape(3, 3), est.fix_covariance_m2())
    assert [len(p.poses) for p in poses] == [2, 1, 0]
    first = poses[0].poses[1]
    cand = estimates[0][1].candidates[1]
    assert (first.position.x, first.position.y, first.position.z) == (cand.east_m, cand.north_m, cand.prob)
    assert first.orientation.w == 1.0 and poses[0].header.frame_id == FIX_FRAME_ID


def test_replay_bag_without_candidates_and_replacing_its_own_older_bag(tmp_path):
    frames = _input_bag(tmp_path, "/cam", compressed=False)
    estimates = [(frames[0][0], FLIGHT[0][1])]
    write_replay_bag(estimates, frames, tmp_path / "replay", image_topic="/cam")
    out = write_replay_bag(estimates, frames, tmp_path / "replay", image_topic="/cam", candidates=False)
    with bags.BagReader(out) as reader:
        assert set(reader.topics) == {"/cam", FIX_TOPIC}


def test_replay_bag_refuses_to_replace_a_folder_that_is_not_a_bag(tmp_path):
    frames = _input_bag(tmp_path, "/cam", compressed=False)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(OutputError, match="no rosbag2 bag"):
        write_replay_bag([(frames[0][0], FLIGHT[0][1])], frames, folder, image_topic="/cam")
    assert (folder / "holiday.jpg").read_bytes() == b"precious"


def test_replay_bag_refuses_frames_that_are_no_camera_messages_and_unknown_storages(tmp_path):
    fix = bags.navsatfix(T0, "gps", 47.0, 8.0, 0.0, np.eye(3))
    with pytest.raises(BagError, match="expected sensor_msgs/msg/Image"):
        write_replay_bag([(T0, FLIGHT[0][1])], [(T0, fix)], tmp_path / "replay")
    with pytest.raises(BagError, match="storage must be one of"):
        write_replay_bag([(T0, FLIGHT[0][1])], [], tmp_path / "replay", storage="rosbag1")
    assert not (tmp_path / "replay").exists()


def test_pose_array_builder_takes_n_by_3_positions_only():
    msg = bags.pose_array(T0, "map", np.array([[1.0, 2.0, 0.5]]))
    assert msg.__msgtype__ == bags.POSE_ARRAY and len(msg.poses) == 1 and msg.poses[0].orientation.w == 1.0
    assert bags.pose_array(T0, "map", np.zeros((0, 3))).poses == []
    with pytest.raises(DataError, match=r"\(N, 3\)"):
        bags.pose_array(T0, "map", np.zeros((2, 2)))
