"""Simulated flights into rosbag2 files, and their replay through the localizer."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from jzi_ros.data import CameraPose, Pinhole, bags
from jzi_ros.data.fixes import FixTrack
from jzi_ros.data.render3d import World3D
from jzi_ros.data.scene import SceneFiles
from jzi_ros.evaluation import select_realtime
from jzi_ros.geo import BoundsM, MapDir
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.images import decode_message
from jzi_ros.tools.cli import main


def test_ground_truth_is_interpolated_between_fixes_and_missing_beyond_the_gap():
    truth = FixTrack(
        np.array([0, 10**9, 2 * 10**9, 10 * 10**9]), np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0, 11.0, 12.0, 13.0])
    )
    assert truth.at(500_000_000, 1.0) == pytest.approx((0.5, 10.5))
    assert truth.at(2 * 10**9, 1.0) == pytest.approx((2.0, 12.0))
    assert truth.at(2_300_000_000, 1.0) == pytest.approx((2.0, 12.0))  # nearest within half a gap
    assert truth.at(6 * 10**9, 1.0) is None  # 8 s without fixes
    assert truth.at(-(10**9), 1.0) is None


def test_realtime_replay_takes_the_newest_frame_when_free():
    stamps = (np.arange(10) * 0.1 * 1e9).astype(np.int64)  # 10 Hz
    assert select_realtime(stamps, 0.05).tolist() == list(range(10))  # faster than the camera: none dropped
    # 0.25 s per frame: free at 0.25 s it takes frame 2 (frame 1 is dropped), free at 0.5 s frame 5, ...
    assert select_realtime(stamps, 0.25).tolist() == [0, 2, 5, 7, 9]


@pytest.fixture(scope="module")
def flight(trained, tmp_path_factory):
    map_dir = trained[0]
    root = tmp_path_factory.mktemp("flight")
    out = {}
    for storage, compressed in (("mcap", False), ("sqlite3", True)):
        bag = root / f"flight_{storage}"
        args = [
            "make-bag",
            "--map",
            str(map_dir),
            "--out",
            str(bag),
            "--storage",
            storage,
            "--trajectory",
            "random",
            "--duration-s",
            "12",
            "--camera-hz",
            "2",
            "--image-px",
            "64",
            "--speed-mps",
            "6",
            "--tilt-deg",
            "0",
            "--altitude-m",
            str(Pinhole(64, 64, 60).altitude_for_footprint(1.5 * MapDir(map_dir).grid.terminal_size_m)),
            "--seed",
            "4",
            "--quiet",
        ] + (["--compressed"] if compressed else [])
        assert main(args) == 0
        out[storage] = bag
    return out


def test_make_bag_writes_frames_camera_info_imu_range_and_truth_in_both_formats(flight):
    for storage, bag in flight.items():
        with bags.BagReader(bag) as reader:
            image_topic = "/camera/image_raw" if storage == "mcap" else "/camera/image_raw/compressed"
            assert reader.topics == {
                image_topic: bags.IMAGE if storage == "mcap" else bags.COMPRESSED,
                "/camera/camera_info": bags.CAMERA_INFO,
                "/gps/fix": bags.NAVSATFIX,
                "/gt/imu": bags.IMU,
                "/imu/data": bags.IMU,
                "/rangefinder/range": bags.RANGE,
                "/tf_static": "tf2_msgs/msg/TFMessage",
            }
            assert reader.count(image_topic) == 24 and reader.count("/gps/fix") == reader.count("/gt/imu") == 120
            assert reader.count("/imu/data") == 600 and reader.count("/rangefinder/range") == 240
            frame = next(reader.messages([image_topic])).msg
            array, _ = decode_message(frame)
            assert array.shape == (64, 64, 3)
    assert any(p.suffix == ".mcap" for p in flight["mcap"].iterdir())
    assert any(p.suffix == ".db3" for p in flight["sqlite3"].iterdir())


def test_make_bag_frames_reproject_to_their_ground_truth(trained, flight):
    """Each frame, rendered anew at the ground-truth position (heading towards
    where the truth is half a second later) from the scene's 3D world, matches the bag's frame; 10 m off it does not."""
    mapdir = MapDir(trained[0])
    grid = mapdir.grid
    ortho = LocalOrtho.render(
        [s["path"] for s in mapdir.sources],
        grid.frame,
        BoundsM(-grid.size_m / 2, -grid.size_m / 2, grid.size_m / 2, grid.size_m / 2),
        0.25,
    )
    scene = SceneFiles.beside(trained[2])  # the scene's own surface model: the flight rendered its relief
    world = World3D.over(ortho, scene.dsm, scene.dtm, scene.buildings)
    cam = Pinhole(64, 64, 60.0)
    altitude = cam.altitude_for_footprint(1.5 * grid.terminal_size_m)
    with bags.BagReader(flight["mcap"]) as reader:
        fixes = [(bags.stamp_of(m.msg, m.bag_ns), m.msg) for m in reader.messages(["/gps/fix"])]
        frames = [
            (bags.stamp_of(m.msg, m.bag_ns), decode_message(m.msg)[0]) for m in reader.messages(["/camera/image_raw"])
        ]
    t = np.array([s for s, _ in fixes])
    east, north = grid.frame.to_local([f.latitude for _, f in fixes], [f.longitude for _, f in fixes])
    good, off = [], []
    for stamp, frame in frames[1:-1]:
        e, n = float(np.interp(stamp, t, east)), float(np.interp(stamp, t, north))
        ahead = stamp + 5 * 10**8  # the camera's top points where it will be half a second later
        e2, n2 = float(np.interp(ahead, t, east)), float(np.interp(ahead, t, north))
        heading = math.degrees(math.atan2(e2 - e, n2 - n))
        ref = world.render(cam.K, (64, 64), CameraPose(e, n, altitude, heading))
        far = world.render(cam.K, (64, 64), CameraPose(e + 10, n, altitude, heading))
        a = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        good.append(
            cv2.matchTemplate(a, cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.TM_CCOEFF_NORMED)[0, 0]
        )
        off.append(
            cv2.matchTemplate(a, cv2.cvtColor(far, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.TM_CCOEFF_NORMED)[0, 0]
        )
    assert np.median(good) > 0.7
    assert np.median(off) < np.median(good) - 0.3


def eval_bag(trained, bag, image_topic: str, out, *extra: str) -> int:
    """`jzi eval-bag` on the trained fixture's map and model."""
    map_dir, model, _ = trained
    return main(
        [
            "eval-bag",
            "--bag",
            str(bag),
            "--map",
            str(map_dir),
            "--model",
            str(model),
            "--image-topic",
            image_topic,
            "--gt-topic",
            "/gps/fix",
            "--out",
            str(out),
            *extra,
        ]
    )


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_eval_bag_measures_a_flight_and_writes_everything(trained, flight, tmp_path, storage, capsys):
    topic = "/camera/image_raw" if storage == "mcap" else "/camera/image_raw/compressed"
    out = tmp_path / "eval"
    sensors = ["--imu-topic", "/imu/data", "--height-topic", "/rangefinder/range"]
    sensors += ["--camera-info-topic", "/camera/camera_info", "--gt-imu-topic", "/gt/imu"]
    assert eval_bag(trained, flight[storage], topic, out, "--quiet", *sensors) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames_in_bag"] == 24 and metrics["frames_localized"] == 24
    assert metrics["count"] == 24 and metrics["frames_without_truth"] == 0
    assert metrics["frames_without_attitude"] == 0 and metrics["frames_without_height"] == 0
    cell_m = MapDir(trained[0]).grid.terminal_size_m
    assert metrics["median_m"] < cell_m
    assert 0.0 <= metrics["ellipse95_coverage"] <= 1.0
    # frames from the map's own raster with the IMU's attitude register against the map's pyramid
    assert metrics["refinement"]["on"] and metrics["verified_share"] >= 0.9, metrics["refusals"]
    assert metrics["false_accept_rate"] == 0 and metrics["verified_median_m"] < 0.25 * cell_m
    assert set(metrics["latency_ms"]) == {"decode", "encode", "search", "refine", "total"}
    lines = (out / "frames.csv").read_text().splitlines()
    assert len(lines) == 25 and "error_m" in lines[0] and "verified" in lines[0]
    for png in ("trajectory.png", "error_cdf.png", "error_time.png"):
        assert (out / png).stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "R@40m" in printed and "trajectory.png" in printed
    # the estimates bag reads back with rosbags and with the mcap library
    with bags.BagReader(out / "estimates") as reader:
        fixes = [m.msg for m in reader.messages(["/jzi/fix"])]
    assert len(fixes) == 24
    frame_stamps = sorted(int(line.split(",")[0]) for line in lines[1:])
    assert sorted(f.header.stamp.sec * 10**9 + f.header.stamp.nanosec for f in fixes) == frame_stamps
    from mcap.reader import make_reader

    mcap_file = next((out / "estimates").glob("*.mcap"))
    with mcap_file.open("rb") as f:
        msgs = list(make_reader(f).iter_messages(topics=["/jzi/fix"]))
    assert len(msgs) == 24 and msgs[0][0].name == "sensor_msgs/msg/NavSatFix"
    # a continuous flight is tracked after its first verified fix; the camera frames ride along for a bag viewer
    assert metrics["search_modes"].get("tracking", 0) >= 20 and metrics["recoveries"] == []
    assert "searched: global" in printed and "tracking" in printed
    with bags.BagReader(out / "estimates") as reader:
        assert reader.count(topic) == reader.count("/jzi/candidates") == 24
    geo = json.loads((out / "flight.geojson").read_text())
    assert sum(f["properties"]["kind"] == "estimate" for f in geo["features"]) == 24
    # the headings of verified fixes against the INS's, and the trajectories for evo
    heading = metrics["heading"]
    assert heading["count"] == round(metrics["verified_share"] * 24) and heading["median_abs_deg"] < 3.0
    assert heading["within_2sigma"] >= 0.75, heading
    assert "heading of" in printed and "truth.tum" in printed
    _assert_tum(out, 24, round(metrics["fix_share"] * 24))


def _assert_tum(out, truths: int, fixes: int) -> None:
    """truth.tum and fixes.tum: a header line, then one pose per row (8 numbers, a unit quaternion), by time."""
    for name, count in (("truth.tum", truths), ("fixes.tum", fixes)):
        lines = (out / name).read_text().splitlines()
        assert lines[0].startswith("#") and len(lines) == count + 1, name
        values = np.array([[float(v) for v in line.split()] for line in lines[1:]])
        assert values.shape == (count, 8) and np.all(np.diff(values[:, 0]) > 0)
        assert np.allclose(np.linalg.norm(values[:, 4:], axis=1), 1.0)


def test_after_a_camera_blackout_tracking_recovers_and_eval_bag_says_how_fast(trained, tmp_path, capsys):
    map_dir = trained[0]
    bag = tmp_path / "blackout"
    altitude = Pinhole(64, 64, 60).altitude_for_footprint(1.5 * MapDir(map_dir).grid.terminal_size_m)
    args = ["make-bag", "--map", str(map_dir), "--out", str(bag), "--trajectory", "random", "--duration-s", "12"]
    args += ["--camera-hz", "2", "--image-px", "64", "--speed-mps", "6", "--tilt-deg", "0", "--seed", "5"]
    assert main([*args, "--altitude-m", str(altitude), "--blackout", "4:3", "--quiet"]) == 0
    with bags.BagReader(bag) as reader:
        assert reader.count("/camera/image_raw") == 24 - 6, "no frame within the 3 s blackout"
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "x"), "--blackout", "4"])
    assert "START_S:DURATION_S" in capsys.readouterr().err
    sensors = ["--imu-topic", "/imu/data", "--height-topic", "/rangefinder/range", "--quiet"]
    assert eval_bag(trained, bag, "/camera/image_raw", tmp_path / "eval", *sensors) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    (gap,) = metrics["recoveries"]
    assert gap["at_s"] == pytest.approx(3.5) and gap["length_s"] == pytest.approx(3.5)
    assert gap["frames_to_verified"] is not None and gap["frames_to_verified"] <= 5
    assert "after the 3.5 s gap at 3.5 s: verified again at frame" in capsys.readouterr().out
    assert eval_bag(trained, bag, "/camera/image_raw", tmp_path / "off", *sensors, "--no-tracking") == 0
    metrics = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert metrics["search_modes"] == {"global": 18} and not metrics["tracking"]["on"]


def test_eval_bag_without_the_topic_lists_the_topics_it_has(trained, flight, tmp_path, capsys):
    assert eval_bag(trained, flight["mcap"], "/front/image", tmp_path) == 2
    err = capsys.readouterr().err
    assert "no topic /front/image" in err and "/camera/image_raw (sensor_msgs/msg/Image)" in err
    assert eval_bag(trained, flight["mcap"], "/camera/camera_info", tmp_path) == 2
    assert "carries sensor_msgs/msg/CameraInfo" in capsys.readouterr().err
    assert eval_bag(trained, tmp_path / "nothing", "/camera/image_raw", tmp_path) == 2
    assert "no such bag" in capsys.readouterr().err


def test_eval_bag_realtime_mode_drops_frames_like_the_node(trained, flight, tmp_path):
    assert eval_bag(trained, flight["mcap"], "/camera/image_raw", tmp_path, "--realtime", "--quiet") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == "realtime"
    assert metrics["frames_localized"] + metrics["frames_dropped"] == 24


def test_eval_bag_refuses_an_unwritable_out_before_localizing(trained, flight, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = eval_bag(trained, flight["mcap"], "/camera/image_raw", tmp_path / "afile" / "eval", "--quiet")
    err = capsys.readouterr().err
    assert code != 0 and "cannot write" in err and "Traceback" not in err


def _copy_with_corrupt_frames(src, dst, topic: str, corrupt) -> None:
    """``src`` rewritten to ``dst`` with the frames whose index ``corrupt(i)`` holds replaced by garbage bytes."""
    with bags.BagReader(src) as reader, bags.BagWriter(dst) as writer:
        frame_i = 0
        for m in reader.messages(list(reader.topics)):
            msg = m.msg
            if m.topic == topic:
                if corrupt(frame_i):
                    msg = bags.compressed(bags.stamp_of(msg, m.bag_ns), "camera", np.zeros((8, 8, 3), np.uint8))
                    msg.data = np.frombuffer(b"not a jpeg at all", np.uint8)
                frame_i += 1
            writer.add(m.topic, msg, m.bag_ns)


def test_a_bag_of_corrupt_frames_says_so_and_one_corrupt_frame_spoils_nothing(trained, flight, tmp_path, capsys):
    topic = "/camera/image_raw/compressed"
    _copy_with_corrupt_frames(flight["sqlite3"], tmp_path / "all_bad", topic, lambda i: True)
    assert eval_bag(trained, tmp_path / "all_bad", topic, tmp_path / "eval_bad", "--quiet") != 0
    err = capsys.readouterr().err
    assert "every frame" in err and "refused" in err and "ground truth" not in err and "Traceback" not in err
    # a rosbag2 folder named *.bag (as `jzi make-bag --out sim.bag` writes it) reads back, and --realtime
    # measures its speed past a corrupt first frame
    _copy_with_corrupt_frames(flight["sqlite3"], tmp_path / "sim.bag", topic, lambda i: i == 0)
    assert eval_bag(trained, tmp_path / "sim.bag", topic, tmp_path / "eval_rt", "--quiet", "--realtime") == 0
    metrics = json.loads((tmp_path / "eval_rt" / "metrics.json").read_text())
    assert metrics["mode"] == "realtime" and metrics["frames_localized"] >= 1


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--beam", "0"], "beam 0"),
        (["--top-k", "0"], "top_k 0"),
        (["--min-confidence", "1.5"], "min_confidence 1.5"),
        (["--model-text"], "not a jzi checkpoint"),
        (["--image-topic", "/gps/fix"], "carries sensor_msgs/msg/NavSatFix"),
        (["--model-north-up"], "--heading-known) and needs the camera's heading for every frame: give --imu-topic"),
        (["--max-speed-mps", "-1"], "max-speed-mps must be finite and above 0"),
    ],
)
def test_bad_eval_bag_inputs_give_one_clear_line_and_touch_nothing(trained, flight, tmp_path, capsys, extra, names):
    map_dir, model, _ = trained
    if extra == ["--model-text"]:
        model = tmp_path / "model.pt"
        model.write_text("a text file, not a model")
        extra = []
    if extra == ["--model-north-up"]:  # a model of `jzi train --heading-known`, and no IMU given
        import torch

        state = torch.load(model, map_location="cpu", weights_only=True)
        state["extra"].setdefault("train_config", {})["heading_known"] = True
        model = tmp_path / "north_up.pt"
        torch.save(state, model)
        extra = []
    before = {p: p.stat().st_mtime_ns for p in [*map_dir.rglob("*"), *flight["mcap"].rglob("*")]}
    argv = ["eval-bag", "--bag", str(flight["mcap"]), "--map", str(map_dir), "--model", str(model)]
    argv += ["--gt-topic", "/gps/fix", "--out", str(tmp_path / "eval"), "--quiet"]
    argv += extra if "--image-topic" in extra else ["--image-topic", "/camera/image_raw", *extra]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and names in err, err
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the inputs are untouched
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_eval_bag_never_replaces_its_input_or_a_folder_it_did_not_write(trained, flight, tmp_path, capsys):
    for out, names in ((flight["mcap"], "holds the input"), (flight["mcap"].parent, "holds the input")):
        assert eval_bag(trained, flight["mcap"], "/camera/image_raw", out, "--quiet") != 0
        assert names in capsys.readouterr().err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    assert eval_bag(trained, flight["mcap"], "/camera/image_raw", notes, "--quiet") != 0
    assert "no evaluation output this project wrote" in capsys.readouterr().err
    assert (notes / "todo.txt").read_text() == "keep me" and any(flight["mcap"].iterdir())


def test_score_reproduces_eval_bag_on_a_recording_of_the_running_node(trained, flight, tmp_path, capsys):
    """The node runs on the flight's messages over DDS while a recorder writes its fixes and poses beside the
    truth, as `ros2 bag record` would; `jzi score` on that recording gives eval-bag's numbers, and evo reads
    the trajectories both write."""
    pytest.importorskip("rclpy", reason="rclpy is not installed (make test installs the ROS 2 wheels)")
    import random
    import shutil
    import subprocess
    import time

    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix, Range

    from jzi_ros.ros.harness import Client, Recorder, start_node

    sensors = {"/imu/data": Imu, "/rangefinder/range": Range, "/camera/camera_info": CameraInfo}
    truths = {"/gps/fix": NavSatFix, "/gt/imu": Imu}
    args = ["--imu-topic", "/imu/data", "--height-topic", "/rangefinder/range", "--gt-imu-topic", "/gt/imu"]
    args += ["--camera-info-topic", "/camera/camera_info", "--quiet"]
    assert eval_bag(trained, flight["mcap"], "/camera/image_raw", tmp_path / "replay", *args) == 0
    replayed = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    domain = random.randint(1, 200)
    proc = start_node(
        domain,
        map_path=trained[0],
        model_path=trained[1],
        imu_topic="/imu/data",
        height_topic="/rangefinder/range",
        camera_info_topic="/camera/camera_info",
    )
    client = Client(domain, "/camera/image_raw", compressed=False)
    publishers = {t: client.node.create_publisher(m, t, 10) for t, m in (sensors | truths).items()}
    recorded = {"/jzi/fix": NavSatFix, "/jzi/pose": PoseWithCovarianceStamped, "/camera/image_raw": Image}
    recorder = Recorder(client.node, tmp_path / "recording", recorded | truths)
    try:
        client.wait_for_node(proc)
        with bags.BagReader(flight["mcap"]) as reader:
            messages = sorted(
                reader.messages([*sensors, *truths, "/camera/image_raw"]), key=lambda m: bags.stamp_of(m.msg, m.bag_ns)
            )
        for m in messages:  # as `ros2 bag play`, each frame waiting for its fix: the node drops none
            cdr = bytes(bags.TYPESTORE.serialize_cdr(m.msg, m.msgtype))
            if m.topic != "/camera/image_raw":
                publishers[m.topic].publish(cdr)
                continue
            stamp = bags.stamp_of(m.msg, m.bag_ns)
            client.spin(0.05)  # the sensors' messages before the frame reach the node before it
            for _ in range(3):  # best-effort, as cameras publish: a frame lost on the way is sent again
                client.pub.publish(cdr)
                end = time.monotonic() + 5.0
                while not client.has_fix(stamp) and time.monotonic() < end:
                    client.spin(0.02)
                if client.has_fix(stamp):
                    break
        client.spin(1.0)
        assert proc.poll() is None
    finally:
        recorder.close()
        client.close()
        proc.terminate()
        proc.communicate(timeout=20)
    assert recorder.counts["/jzi/fix"] == 24
    score = ["score", "--bag", str(tmp_path / "recording"), "--map", str(trained[0]), "--gt-topic", "/gps/fix"]
    score += ["--pose-topic", "/jzi/pose", "--gt-imu-topic", "/gt/imu", "--image-topic", "/camera/image_raw"]
    assert main([*score, "--out", str(tmp_path / "score")]) == 0
    printed = capsys.readouterr().out
    scored = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert scored["fixes_recorded"] == scored["count"] == 24 and scored["frames_unanswered"] == 0
    # the node reads the same messages at the frames' stamps as eval-bag: the same fixes
    assert abs(scored["fix_share"] - replayed["fix_share"]) <= 1 / 24 + 1e-9
    assert abs(scored["verified_share"] - replayed["verified_share"]) <= 1 / 24 + 1e-9
    cell_m = MapDir(trained[0]).grid.terminal_size_m
    assert scored["fix_median_m"] == pytest.approx(replayed["fix_median_m"], abs=0.05 * cell_m)
    assert scored["false_fix_rate"] == replayed["false_fix_rate"] == 0.0
    assert scored["heading"]["count"] >= 20 and set(scored["latency_ms"]) == {"node"}
    assert "fixes: 24 recorded" in printed and "published as FIX" in printed
    _assert_tum(tmp_path / "score", 24, round(scored["fix_share"] * 24))
    for png in ("trajectory.png", "error_cdf.png"):
        assert (tmp_path / "score" / png).stat().st_size > 10_000
    evo = shutil.which("evo_ape", path=str(Path(sys.executable).parent))
    if evo is None:
        pytest.skip("evo is not installed (make test installs it on Python 3.11 and later)")
    for out in ("replay", "score"):
        ran = subprocess.run(
            [evo, "tum", "truth.tum", "fixes.tum"],
            cwd=tmp_path / out,
            env=dict(os.environ, HOME=str(tmp_path), MPLBACKEND="Agg"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        rmse = float(re.search(r"rmse\s+([\d.]+)", ran.stdout).group(1))
        assert rmse < cell_m, ran.stdout
