"""The 3D world: heights beside the scene, rendering with relief and facades, panoramas, ground drives."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import rasterio
from conftest import shared

from jzi_ros.data.drive import RoadNetwork, write_drive
from jzi_ros.data.flight import FlightConfig
from jzi_ros.data.render3d import Facades, World3D, panorama_column, panorama_heading_deg
from jzi_ros.data.scene import STOREY_M, SceneFiles, SceneSpec, render_scene, render_world, write_scene
from jzi_ros.geo import BoundsM, LocalFrame
from jzi_ros.geo.camera import CameraPose, Pinhole
from jzi_ros.geo.ortho import LocalOrtho

FRAME = LocalFrame(47.05, 8.05)


def flat_world(half_m: float, gsd_m: float, heights_gsd_m: float, boxes, wall_rgb=None) -> World3D:
    """A grey world with boxes (west, south, east, north, height [m], RGB of the roof) on flat ground at 0 m."""
    n = round(2 * half_m / gsd_m)
    image = np.full((n, n, 3), 110, np.uint8)
    m = round(2 * half_m / heights_gsd_m)
    surface = np.zeros((m, m), np.float32)
    ids = np.full((m, m), -1, np.int32)
    centres = -half_m + (np.arange(m) + 0.5) * heights_gsd_m  # east of each column, and north of each row reversed
    for k, (west, south, east, north, height, rgb) in enumerate(boxes):
        cols = (centres >= west) & (centres <= east)
        rows = (centres[::-1] >= south) & (centres[::-1] <= north)
        surface[np.ix_(rows, cols)] = height
        ids[np.ix_(rows, cols)] = k
        # the roof's colour covers exactly the flat top: the cell centres inside the box
        c0, c1 = np.flatnonzero(cols)[[0, -1]]
        r0, r1 = np.flatnonzero(rows)[[0, -1]]
        x0, x1 = centres[c0], centres[c1]
        y1, y0 = centres[::-1][r0], centres[::-1][r1]
        px = lambda v: int(round((v + half_m) / gsd_m))  # noqa: E731
        image[px(-y1) : px(-y0), px(x0) : px(x1)] = rgb
    ortho = LocalOrtho(image, np.ones((n, n), bool), BoundsM(-half_m, -half_m, half_m, half_m), gsd_m, FRAME)
    facades = None
    if wall_rgb is not None:
        k = len(boxes)
        facades = Facades(
            ids,
            np.zeros(k, np.float32),
            np.tile(np.array(wall_rgb, np.float32), (k, 1)),
            np.full((k, 3), np.nan, np.float32),
            np.full(k, 3.0, np.float32),
            (180.0, 30.0),  # sun in the south
        )
    return World3D(ortho, surface, np.zeros_like(surface), heights_gsd_m, facades)


def project(camera: Pinhole, pose: CameraPose, points_enu: np.ndarray) -> np.ndarray:
    """OpenCV's projection of world points (N, 3) into a camera at ``pose`` (the oracle)."""
    rotation = pose.rotation()  # world from camera
    centre = np.array([pose.east_m, pose.north_m, pose.altitude_m])
    rvec, _ = cv2.Rodrigues(rotation.T)
    tvec = -rotation.T @ centre
    pixels, _ = cv2.projectPoints(points_enu.astype(np.float64), rvec, tvec, camera.K, np.zeros(5))
    return pixels.reshape(-1, 2)


def test_the_scene_writes_its_surface_and_terrain_models_on_the_orthophotos_grid(tmp_path):
    spec = SceneSpec(size_px=256, seed=3)
    tif = write_scene(tmp_path / "scene.tif", spec)
    files = SceneFiles.beside(tif)
    with rasterio.open(tif) as ortho, rasterio.open(files.dsm) as dsm, rasterio.open(files.dtm) as dtm:
        for model in (dsm, dtm):
            assert (model.crs, model.transform, model.shape) == (ortho.crs, ortho.transform, ortho.shape)
            assert model.count == 1 and model.dtypes[0] == "float32"
        surface, terrain = dsm.read(1), dtm.read(1)
    assert (surface >= terrain - 1e-4).all()
    assert 2.0 < np.ptp(terrain) < 30.0  # gentle terrain, not a flat floor
    world = render_world(spec)
    assert np.array_equal(world.image, render_scene(spec))  # the picture is the one drawn without heights
    assert world.buildings and {b.storeys for b in world.buildings} <= set(range(1, 9))
    for b in world.buildings[:20]:  # the roof stands the building's height above its base
        x, y = np.round(b.corners_px.mean(0)).astype(int)
        assert surface[y, x] == pytest.approx(b.base_m + b.eaves_m + b.ridge_m, abs=0.6)  # on the ridge if pitched
    roads = json.loads(files.roads.read_text())["features"]
    assert roads and all(f["geometry"]["type"] == "LineString" for f in roads)
    buildings = json.loads(files.buildings.read_text())
    assert len(buildings["features"]) == len(world.buildings) and "sun" in buildings


def test_both_seasons_stand_on_the_same_terrain_with_the_same_buildings():
    summer, autumn = (render_world(SceneSpec(size_px=256, seed=5, season=s)) for s in ("summer", "autumn"))
    assert np.array_equal(summer.dtm, autumn.dtm)
    assert [b.eaves_m for b in summer.buildings] == [b.eaves_m for b in autumn.buildings]
    parked = np.abs(summer.dsm - autumn.dsm) > 0.5
    assert 0 < parked.mean() < 0.01  # only the parked cars moved
    assert summer.sun != autumn.sun


@pytest.mark.parametrize("offset_m", [(0.0, 0.0), (35.0, -20.0)])
def test_a_roof_corner_lands_where_the_pinhole_formula_puts_it_with_its_relief_displacement(offset_m):
    world = flat_world(60.0, 0.1, 0.5, [(10.0, 5.0, 26.0, 17.0, 25.0, (230, 20, 20))], wall_rgb=(120, 120, 120))
    camera = Pinhole(320, 320, 70.0)
    pose = CameraPose(offset_m[0], offset_m[1], 100.0, yaw_deg=20.0)
    frame = world.render(camera.K, (320, 320), pose)
    red = (frame[..., 0] > 150) & (frame[..., 1] < 65)  # green halfway between the roof's and the rest's
    rows, cols = np.nonzero(red)
    assert len(rows) > 200
    # the roof's flat top spans the cell centres inside the box: (10.25 .. 25.75, 5.25 .. 16.75) at 25 m
    corners = np.array([[10.25, 16.75], [25.75, 16.75], [25.75, 5.25], [10.25, 5.25]])
    roof = project(camera, pose, np.column_stack([corners, np.full(4, 25.0)]))
    floor = project(camera, pose, np.column_stack([corners, np.zeros(4)]))
    centroid = np.array([cols.mean(), rows.mean()])
    assert np.linalg.norm(centroid - roof.mean(0)) < 1.0  # a plane parallel to the image: centroids map exactly
    row = int(round(centroid[1]))  # where the roof's outline crosses this row, from the projected corners
    crossings = [
        p[0] + (row - p[1]) * (q[0] - p[0]) / (q[1] - p[1])
        for p, q in zip(roof, np.roll(roof, -1, 0), strict=True)
        if (p[1] - row) * (q[1] - row) < 0
    ]
    inside = np.flatnonzero(red[row])
    assert abs(inside[0] - min(crossings)) < 1.0 and abs(inside[-1] - max(crossings)) < 1.0
    displacement = np.linalg.norm(roof.mean(0) - floor.mean(0))
    # relief displacement r * h / H grows with the distance from nadir
    r_px = np.linalg.norm(floor.mean(0) - camera.K[:2, 2])
    assert displacement == pytest.approx(r_px * 25.0 / (100.0 - 25.0), rel=0.02)
    assert displacement > 10.0


def test_a_street_camera_sees_the_facade_where_geometry_puts_it():
    wall = (40, 160, 200)
    world = flat_world(80.0, 0.25, 0.5, [(-20.0, 30.0, 20.0, 40.0, 12.0, (90, 90, 90))], wall_rgb=wall)
    camera = Pinhole(320, 240, 90.0)
    pose = CameraPose(0.0, 0.0, 1.6, yaw_deg=0.0, pitch_deg=90.0)  # looking north, horizontally
    frame = world.render(camera.K, (320, 240), pose).astype(float)
    # the wall's face: the steep triangles between the cell centres at 29.75 m (ground) and 30.25 m (roof)
    normal = np.array([0.0, -12.0, 0.5]) / math.hypot(12.0, 0.5)
    sun = np.array([0.0, -math.cos(math.radians(30.0)), math.sin(math.radians(30.0))])
    lit = 0.55 + 0.4 * float(normal @ sun)
    haze = 1 - math.exp(-30.0 / 2500.0)
    for height_m in (3.4, 6.4, 9.4):  # the wall between the windows: 0.4 m above each floor
        u, v = project(camera, pose, np.array([[0.3, 29.75 + 0.5 * height_m / 12.0, height_m]]))[0]
        expected = np.array(wall) * lit * (1 - haze) + np.array([205, 218, 230]) * haze
        assert frame[int(round(v)), int(round(u))] == pytest.approx(expected, abs=8), height_m
    height_m = STOREY_M + 1.6  # a window of the first floor: 1.5 m along the wall, in the middle of its 3 m bay
    u, v = project(camera, pose, np.array([[1.5, 29.75 + 0.5 * height_m / 12.0, height_m]]))[0]
    glass = np.array([62, 76, 92]) * lit * (1 - haze) + np.array([205, 218, 230]) * haze
    assert frame[int(round(v)), int(round(u))] == pytest.approx(glass, abs=8)
    u, v = project(camera, pose, np.array([[0.0, 30.0, 12.0 + 8.0]]))[0]
    assert frame[int(v), int(u)][2] > frame[int(v), int(u)][0] + 40  # above the roof: the blue sky


def test_a_panoramas_columns_map_to_headings():
    width = 720
    columns = np.arange(width)
    for yaw in (0.0, 37.0, 300.0):
        headings = panorama_heading_deg(columns, width, yaw)
        assert np.allclose(panorama_column(headings, width, yaw), columns)
        assert panorama_heading_deg((width - 1) / 2, width, yaw) == pytest.approx(yaw % 360)
    world = flat_world(100.0, 0.5, 1.0, [(40.0, -5.0, 50.0, 5.0, 30.0, (230, 20, 20))], wall_rgb=(220, 30, 30))
    pano = world.panorama(0.0, 0.0, 1.6, yaw_deg=45.0, size_px=(720, 360)).astype(float)
    red = (pano[..., 0] > 120) & (pano[..., 1] < 60) & (pano[..., 2] < 60)
    centre = np.flatnonzero(red.any(0)).mean()
    assert panorama_heading_deg(centre, 720, 45.0) == pytest.approx(90.0, abs=1.5)  # the building stands east


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """A ground drive through a small generated world (the drive and its scene)."""
    root = tmp_path_factory.mktemp("drive")
    tif = write_scene(root / "scene.tif", SceneSpec(size_px=768, seed=7, season="autumn"))
    config = FlightConfig(
        out=root / "bag",
        geotiff=(tif,),
        platform="ground",
        duration_s=20.0,
        speed_mps=5.0,
        camera_hz=2.0,
        image_px=96,
        odom_scale_error=0.05,
        odom_yaw_drift_dps=0.5,
        odom_yaw_noise_dps=0.2,
        seed=2,
        quiet=True,
    )
    return write_drive(config), config, tif


def test_a_ground_drive_stays_on_the_roads_and_writes_a_robots_sensors(drive):
    report, config, tif = drive
    assert report.relief and report.frames == 40 and report.odometry == 400
    topics = {"/camera/image_raw", "/camera/camera_info", "/gps/fix", "/gt/imu", "/imu/data", "/odom", "/tf_static"}
    assert set(report.topics) == topics
    from jzi_ros.data.bags import BagReader

    roads = RoadNetwork.from_geojson(SceneFiles.beside(tif).roads, FRAME)
    with BagReader(report.path) as reader:
        fixes = [m.msg for m in reader.messages([config.gt_topic])]
    a, b = roads.segments[:, 0], roads.segments[:, 1]
    for fix in fixes[::10]:
        p = np.array(FRAME.to_local(fix.latitude, fix.longitude), float)
        s = np.clip(np.einsum("ij,ij->i", p - a, b - a) / np.einsum("ij,ij->i", b - a, b - a), 0, 1)
        distance = np.hypot(*(a + s[:, None] * (b - a) - p).T)
        assert distance.min() < 0.5 * roads.widths_m[np.argmin(distance)] + 3.0  # on a road (corners rounded)
    with BagReader(report.path) as reader:
        (tf,) = [m.msg for m in reader.messages(["/tf_static"])]
        imu = [
            (m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec, m.msg) for m in reader.messages(["/imu/data"])
        ]
    (camera,) = tf.transforms  # base_link -> camera's optical frame: z ahead (body x), x right (-y), y down (-z)
    assert (camera.header.frame_id, camera.child_frame_id) == ("base_link", "camera")
    q = camera.transform.rotation
    assert np.allclose(np.abs([q.x, q.y, q.z, q.w]), 0.5) and np.sign([q.x, q.y, q.z, q.w]).tolist() in (
        [-1, 1, -1, 1],
        [1, -1, 1, -1],
    )
    for stamp_ns, msg in imu[::100]:  # the IMU's yaw (REP-103, CCW from east) follows the road: 90 - heading
        o = msg.orientation
        yaw = math.degrees(math.atan2(2 * (o.w * o.z + o.x * o.y), 1 - 2 * (o.y * o.y + o.z * o.z)))
        heading = report.trajectory.at((stamp_ns - imu[0][0]) / 1e9)[2]
        assert (yaw - (90.0 - heading) + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=4 * config.imu_yaw_noise_deg)


def test_wheel_odometry_drifts_by_the_configured_scale_and_yaw_rate(drive):
    from jzi_ros.data.bags import BagReader

    report, config, _ = drive
    with BagReader(report.path) as reader:
        odom = [m.msg for m in reader.messages([config.odom_topic])]
    xy = np.array([(o.pose.pose.position.x, o.pose.pose.position.y) for o in odom])
    yaw = np.unwrap([2 * math.atan2(o.pose.pose.orientation.z, o.pose.pose.orientation.w) for o in odom])
    times = np.arange(len(odom)) / config.odom_hz
    truth = np.array([report.trajectory.at(t)[:2] for t in times])
    true_heading = np.unwrap(np.radians([90.0 - report.trajectory.at(t)[2] for t in times]))
    travelled = np.hypot(*np.diff(xy, axis=0).T).sum()
    true_travelled = np.hypot(*np.diff(truth, axis=0).T).sum()
    assert travelled / true_travelled == pytest.approx(1.0 + config.odom_scale_error, abs=0.01)
    # the track's shape: the first 2 s of odometry, turned by the true starting yaw, lie on the truth
    start = slice(0, int(2 * config.odom_hz))
    c, s = math.cos(true_heading[0]), math.sin(true_heading[0])
    turned = xy[start] @ np.array([[c, s], [-s, c]]) + truth[0]
    assert np.hypot(*(turned - truth[start]).T).max() < 0.5 + 0.1 * np.hypot(*(truth[start][-1] - truth[0]))
    yaw_error_deg = math.degrees((yaw[-1] - yaw[0]) - (true_heading[-1] - true_heading[0]))
    expected = config.odom_yaw_drift_dps * times[-1]  # 10 deg
    noise = config.odom_yaw_noise_dps / config.odom_hz * math.sqrt(len(times))  # integrated white noise, 1 sigma
    assert yaw_error_deg == pytest.approx(expected, abs=4 * noise + 0.5)


def test_make_bag_drives_a_ground_robot_whose_bag_eval_bag_reads(trained, tmp_path):
    from jzi_ros.tools.cli import main

    map_dir, model, tif = trained
    bag = tmp_path / "drive"
    rc = main(
        ["make-bag", "--platform", "ground", "--geotiff", str(tif), "--out", str(bag), "--duration-s", "6"]
        + ["--camera-hz", "1", "--image-px", "64", "--quiet"]
    )
    assert rc == 0
    rc = main(
        ["eval-bag", "--bag", str(bag), "--map", str(map_dir), "--model", str(model), "--out", str(tmp_path / "eval")]
        + ["--image-topic", "/camera/image_raw", "--gt-topic", "/gps/fix", "--quiet"]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["frames_in_bag"] == 6 and metrics["frames_localized"] == 6


def test_street_samples_look_along_the_roads_and_are_labelled_by_the_cell_that_holds_the_camera(trained):
    from jzi_ros.data.aerial import heldout_cells
    from jzi_ros.data.street import StreetConfig, street_frames, street_roads, street_world
    from jzi_ros.geo import MapDir

    mapdir = MapDir(trained[0])
    cfg = StreetConfig(image_px=96, holdout_share=0.25)
    world, roads = street_world(mapdir), street_roads(mapdir)
    heldout = heldout_cells(mapdir.grid, cfg.holdout_share, 0)
    rng = np.random.default_rng(0)
    frames, poses = zip(
        *street_frames([world], roads, mapdir.grid, 24, rng, cfg, "train", heldout, batch=8), strict=True
    )
    frames, poses = np.concatenate(frames), np.concatenate(poses)
    assert frames.shape == (24, 72, 96, 3)
    top, bottom = frames[:, :12].astype(float).mean((0, 1, 2)), frames[:, -12:].astype(float).mean((0, 1, 2))
    assert top[2] > top[0] + 20  # the sky above
    assert abs(bottom[0] - bottom[2]) < 25  # grey road below
    rows, cols, _ = mapdir.grid.terminal_rows_cols_m(poses[:, 0], poses[:, 1])
    assert not heldout[rows, cols].any()  # training frames stay out of the held-out cells
    assert ((poses[:, 2] >= 0) & (poses[:, 2] < 360)).all() and ((poses[:, 3] >= 1.4) & (poses[:, 3] <= 2.2)).all()


def test_train_street_and_evaluate_street_run_from_the_command_line(trained, tmp_path):
    from jzi_ros.tools.cli import main

    map_dir, _, _ = trained
    model = tmp_path / "street.pt"
    rc = main(
        ["train", "--map", str(map_dir), "--street", "--out", str(model), "--samples", "160", "--val-samples", "40"]
        + ["--max-steps", "20", "--image-px", "64", "--dim", "64", "--depth", "2", "--batch", "32", "--quiet"]
    )
    assert rc == 0
    evaluate = ["evaluate", "--map", str(map_dir), "--model", str(model), "--street", "--samples", "24", "--flat"]
    fine = ["--fine-study", "--fine-frames", "4"]
    assert main(evaluate + ["--flat-scale-km", "2", *fine, "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    searches = metrics["results"]["street, map"]
    assert set(searches) == {"greedy", "beam 4", "flat retrieval"}  # the zoom beside flat retrieval, same frames
    assert all(s["count"] == 24 and s["search_ms"] > 0 for s in searches.values())
    # flat retrieval learns from the zoom's own training frames, cached beside the checkpoint
    assert metrics["flat_training"] == {"street": {"frames": 160, "from": "the model's training frames"}}
    scale = metrics["flat_scaling"]  # the search's cost at a region of 2 km, this map's cells
    assert scale["side_km"] == 2 and scale["terminal_cells"] > 16 and scale["flat_cosine_ms"] > 0
    fine_stage = metrics["fine_stage"]  # both designs (and their cascade) on the same 4 frames
    assert fine_stage["frames"] == {"train": 40, "test": 4, "image_px": 640}
    for design in ("cell_centre", "learned", "geometric", "learned_then_geometric"):
        assert fine_stage[design]["count"] == 4
    cell = fine_stage["terminal_m"]
    assert fine_stage["cell_centre"]["p90_m"] <= cell / 2**0.5  # the true cell's centre: within half a diagonal
    assert 0 <= fine_stage["geometric_verified"]["share"] <= 1

    # without the training cache (or with --flat-samples), flat retrieval renders its own frames
    from jzi_ros.evaluation.zoom import EvalConfig, _flat_training_frames
    from jzi_ros.geo import MapDir
    from jzi_ros.model import load_checkpoint

    loaded, extra = load_checkpoint(model)
    config = EvalConfig(map_dir, model, tmp_path / "unused", street=True, flat=True, flat_samples=8, quiet=True)
    feats, paths, origin = _flat_training_frames(config, MapDir(map_dir), loaded, "street", extra["train_config"])
    assert feats.shape == (8, loaded.encoder.dim) and paths.shape == (8, 2) and origin == "frames rendered for it"


def test_a_surface_model_in_a_feet_crs_is_read_in_metres_on_the_local_grid():
    import pyproj

    from jzi_ros.geo.heights import fill_gaps, read_heights

    dsm = shared("autzen", "autzen_dsm_2ft_m.tif")
    frame = LocalFrame(44.0562, -123.0690)
    heights = read_heights(dsm, frame, BoundsM(-300.0, -300.0, 300.0, 300.0), 2.0)
    assert heights.shape == (300, 300)
    assert 0.8 < np.isfinite(heights).mean() < 1.0  # water and shadows have no return
    assert 118 < np.nanmedian(heights) < 135 and 150 < np.nanmax(heights) < 200  # metres, not feet
    to_ft = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:2994", always_xy=True)
    with rasterio.open(dsm) as ds:
        for row, col in ((40, 50), (150, 150), (260, 210)):
            lat, lon = frame.to_latlon(-300.0 + (col + 0.5) * 2.0, 300.0 - (row + 0.5) * 2.0)
            expected = next(ds.sample([to_ft.transform(float(lon), float(lat))]))[0]
            if np.isfinite(expected) and np.isfinite(heights[row, col]):
                assert heights[row, col] == pytest.approx(expected, abs=1.5)  # a neighbouring cell at most
    filled = fill_gaps(heights)
    assert np.isfinite(filled).all() and np.allclose(filled[np.isfinite(heights)], heights[np.isfinite(heights)])


def test_a_lens_renders_what_opencv_undistorts_back_to_the_pinhole_view():
    world = flat_world(60.0, 0.1, 1.0, [(-20.0, -10.0, 15.0, 12.0, 0.0, (230, 20, 20))])
    rng = np.random.default_rng(0)
    world.ortho.image[:] = np.clip(cv2.GaussianBlur(rng.random((1200, 1200, 3)) * 255, (0, 0), 6) * 3 - 255, 0, 255)
    camera = Pinhole(320, 240, 70.0)
    pose = CameraPose(3.0, -4.0, 50.0, yaw_deg=25.0, pitch_deg=10.0)
    lens_k = camera.K.copy()
    lens_k[0, 2] += 40.0
    lens_k[1, 2] -= 25.0
    distortion = np.array([-0.26, 0.1, 0.001, -0.002, -0.03])
    ideal = world.render(camera.K, (320, 240), pose).astype(np.float32)
    lens = world.render(lens_k, (320, 240), pose, distortion)
    undone = cv2.undistort(lens, lens_k, distortion, newCameraMatrix=camera.K).astype(np.float32)
    inner = (slice(40, 200), slice(50, 270))
    grey = lambda im: im[inner].mean(-1).ravel()  # noqa: E731
    assert np.corrcoef(grey(undone), grey(ideal))[0, 1] > 0.97
    assert np.corrcoef(grey(lens.astype(np.float32)), grey(ideal))[0, 1] < 0.9  # the lens bends the view


def test_make_bag_renders_through_the_lens_its_camera_info_carries(utm_tif, tmp_path):
    from jzi_ros.data import bags
    from jzi_ros.data.flight import write_flight
    from jzi_ros.images import decode_message

    def fly(name, **lens):
        config = FlightConfig(
            out=tmp_path / name,
            geotiff=(utm_tif,),
            duration_s=2.0,
            camera_hz=2.0,
            image_px=96,
            altitude_m=30.0,
            tilt_deg=0.0,
            imu_topic="",
            height_topic="",
            exposure_s=0.0,
            seed=3,
            quiet=True,
            **lens,
        )
        write_flight(config)
        with bags.BagReader(config.out) as reader:
            info = next(reader.messages(["/camera/camera_info"])).msg
            frames = [decode_message(m.msg)[0] for m in reader.messages(["/camera/image_raw"])]
        return info, frames, config

    _, ideal, plain = fly("ideal")
    info, bent, config = fly("lens", distortion=(-0.3, 0.08, 0.0, 0.0, 0.0), principal_offset_px=(12.0, -8.0))
    k = np.asarray(info.k).reshape(3, 3)
    assert info.distortion_model == "plumb_bob" and np.allclose(info.d, [-0.3, 0.08, 0, 0, 0])
    assert np.allclose(k, config.lens_k) and k[0, 2] == pytest.approx(plain.camera.K[0, 2] + 12.0)
    inner = (slice(12, 84), slice(12, 84))
    for a, b in zip(ideal, bent, strict=True):  # same poses and colours: only the lens differs
        undone = cv2.undistort(b, k, np.asarray(info.d), newCameraMatrix=plain.camera.K).astype(np.float32)
        truth = a[inner].astype(np.float32)
        assert np.abs(undone[inner] - truth).mean() < 4.0  # OpenCV undoes the lens the CameraInfo names
        assert np.abs(b[inner].astype(np.float32) - truth).mean() > 10.0  # and the lens did bend the frame


def test_buildings_without_a_base_stand_on_the_terrain_and_other_geometries_are_skipped(tmp_path):
    lat, lon = FRAME.to_latlon(np.array([-5.0, 5.0, 5.0, -5.0, -5.0]), np.array([-5.0, -5.0, 5.0, 5.0, -5.0]))
    ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}},
            {"type": "Feature", "geometry": None, "properties": {}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": ring[0]}, "properties": {}},
        ],
    }
    (tmp_path / "b.geojson").write_text(json.dumps(doc))
    bounds = BoundsM(-20.0, -20.0, 20.0, 20.0)
    facades = Facades.from_geojson(tmp_path / "b.geojson", FRAME, bounds, 1.0)
    assert len(facades.base_m) == 1 and np.isnan(facades.base_m[0]) and (facades.ids == 0).sum() > 80
    ortho = LocalOrtho(np.zeros((40, 40, 3), np.uint8), np.ones((40, 40), bool), bounds, 1.0, FRAME)
    surface = np.full((40, 40), 100.0, np.float32)
    surface[facades.ids == 0] = 110.0
    world = World3D(ortho, surface, np.full((40, 40), 100.0, np.float32), 1.0, facades)
    assert world.facades is not None and world.facades.base_m[0] == pytest.approx(100.0)
    assert np.isnan(facades.base_m[0])  # the caller's buildings are left as they were
