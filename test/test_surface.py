"""Frames onto the terrain: the surface model, rays cast onto it, orthorectification and registration on it."""

from __future__ import annotations

import importlib
import math

import cv2
import numpy as np
import pytest
from conftest import pattern, shared

from jzi_ros.geo import BoundsM, CameraPose, LocalFrame, Pinhole, ZoomGrid
from jzi_ros.geo.lens import Lens
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.geo.surface import Surface, camera_rt, orthorectify
from jzi_ros.localizer.refine import Attitude, RefineConfig, Refiner, solve_pose

GSD = 0.5
HALF = 300.0
BOUNDS = BoundsM(-HALF, -HALF, HALF, HALF)


def hills(amplitude_m: float = 30.0) -> Surface:
    """Rolling hills with a 12 m block of buildings: heights [m] on a 0.5 m grid of 400 m."""
    n = int(2 * HALF / GSD)
    east = -HALF + (np.arange(n) + 0.5) * GSD
    e, nn = np.meshgrid(east, east[::-1])
    z = 100 + amplitude_m * np.sin(e / 45.0) * np.cos(nn / 60.0)
    z[(np.abs(e - 20) < 15) & (np.abs(nn - 35) < 10)] += 12.0
    return Surface(z.astype(np.float32), BOUNDS, GSD)


def texture() -> LocalOrtho:
    """The map: a textured orthophoto of the same 400 m (what the camera sees on the surface)."""
    n = int(2 * HALF / GSD)
    return LocalOrtho(pattern(n, n, seed=3), np.ones((n, n), bool), BOUNDS, GSD, LocalFrame(47.0, 8.0))


def photograph(surface: Surface, ortho: LocalOrtho, camera: Pinhole, rotation: np.ndarray, centre: np.ndarray):
    """The frame a camera takes of the textured surface: each pixel's ray cast onto it (an independent path)."""
    u, v = np.meshgrid(np.arange(camera.width_px), np.arange(camera.height_px))
    rays = np.c_[u.ravel(), v.ravel(), np.ones(u.size)] @ np.linalg.inv(camera.K).T
    points = surface.cast(centre, rays @ rotation.T)
    col = ((points[:, 0] - BOUNDS.west_m) / GSD - 0.5).reshape(u.shape).astype(np.float32)
    row = ((BOUNDS.north_m - points[:, 1]) / GSD - 0.5).reshape(u.shape).astype(np.float32)
    return cv2.remap(ortho.image, col, row, cv2.INTER_LINEAR)


def dsm_beside(raster, path, height_of):
    """A float32 surface model on ``raster``'s grid, ``height_of(rows, cols)`` [m]; (its path, (rows, cols))."""
    import rasterio

    with rasterio.open(raster) as ds:
        profile = dict(ds.profile, count=1, dtype="float32", nodata=-9999.0)
        shape = (ds.height, ds.width)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.asarray(height_of(rows, cols), np.float32), 1)
    return path, shape


def test_the_surface_reads_bilinearly_and_rays_meet_it_first_where_it_stands_highest():
    plane = Surface(np.full((50, 50), 10.0, np.float32), BoundsM(0, 0, 50, 50), 1.0)
    assert plane.at(25.3, 7.9) == pytest.approx(10.0)
    assert np.isnan(plane.at(60.0, 5.0))
    ramp = Surface(np.tile(np.arange(50, dtype=np.float32), (50, 1)), BoundsM(0, 0, 50, 50), 1.0)
    assert ramp.at(20.0, 30.0) == pytest.approx(19.5)  # the cell centred at 19.5 m holds 19
    crop = ramp.read(BoundsM(10, 10, 20, 20), 0.5)
    assert crop.shape == (20, 20) and crop[0, 0] == pytest.approx(9.75)
    # a vertical ray meets the plane at its height; an oblique one at the analytic point
    hit = plane.cast(np.array([25.0, 25.0, 60.0]), np.array([[0.0, 0.0, -1.0], [1.0, 0.0, -2.0], [0.0, 0.0, 1.0]]))
    assert hit[0] == pytest.approx([25.0, 25.0, 10.0], abs=1e-3)
    assert hit[1] == pytest.approx([50.0, 25.0, 10.0], abs=1e-2) or np.isnan(hit[1]).all()
    assert np.isnan(hit[2]).all()  # upwards
    # a tower in the way stops the ray on its wall, not on the ground behind it
    z = np.full((50, 50), 10.0, np.float32)
    z[:, 30:35] = 40.0  # a wall from east 30 to 35 m, 30 m high
    wall = Surface(z, BoundsM(0, 0, 50, 50), 1.0)
    hit = wall.cast(np.array([10.0, 25.0, 35.0]), np.array([[1.0, 0.0, -0.5]]))[0]
    assert 29.5 <= hit[0] <= 30.5 and hit[2] > 20.0


def test_a_tilted_frame_over_hills_is_laid_back_onto_the_map_by_the_surface_not_by_a_flat_ground():
    surface, ortho = hills(), texture()
    camera = Pinhole(160, 120, 60.0)
    pose = CameraPose(0.0, 0.0, 1.0, 40.0, 25.0, 3.0)  # looking 25° ahead, heading 40°
    centre = np.array([-10.0, 5.0, float(surface.at(-10.0, 5.0)) + 90.0])
    frame = photograph(surface, ortho, camera, pose.rotation(), centre)
    area = BoundsM(-60, -60, 90, 90)
    truth, _ = ortho.read(area, 1.0)
    laid = orthorectify(frame, Lens.of(camera), pose.rotation(), centre, surface, area, 1.0)
    flat = Surface(np.full_like(surface.heights, float(surface.at(-10.0, 5.0))), BOUNDS, GSD)
    laid_flat = orthorectify(frame, Lens.of(camera), pose.rotation(), centre, flat, area, 1.0)

    def agreement(o) -> float:
        both = o.valid & laid.valid
        a, b = o.image[both].astype(float).ravel(), truth[both].astype(float).ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert laid.valid.mean() > 0.3
    assert agreement(laid) > 0.9  # the surface puts every pixel where the map has it
    assert agreement(laid_flat) < agreement(laid) - 0.2  # a flat ground misplaces the hills' pixels
    # each cell's frame pixel projects back to it (OpenCV's projection of the cell's 3D point)
    r, c = np.argwhere(laid.valid)[len(np.argwhere(laid.valid)) // 2]
    e, n = area.west_m + (c + 0.5), area.north_m - (r + 0.5)
    px = Lens.of(camera).project(np.array([[e, n, float(surface.at(e, n))]]), *camera_rt(pose.rotation(), centre))
    assert px[0] == pytest.approx(laid.frame_px[r, c], abs=1e-3)


def test_the_pose_against_3d_points_recovers_the_centre_and_heading_with_a_covariance_that_holds():
    rng = np.random.default_rng(0)
    camera = Pinhole(200, 150, 60.0)
    truth = np.array([12.0, -7.0, 230.0])
    pose = CameraPose(0.0, 0.0, 1.0, 75.0, 20.0, -4.0)
    obj = np.c_[rng.uniform(-40, 80, 200), rng.uniform(-60, 60, 200), rng.uniform(100, 140, 200)]
    rvec, tvec = camera_rt(pose.rotation(), truth)
    img, _ = cv2.projectPoints(obj, rvec, tvec, camera.K, None)
    img = img.reshape(-1, 2) + rng.normal(0, 0.3, (200, 2))
    centre, yaw, cov, rms = solve_pose(obj, img, camera.K, truth + [8.0, -6.0, 5.0], 71.0, 20.0, -4.0, 0.01)
    assert yaw == pytest.approx(75.0, abs=0.2)
    err = centre - truth
    assert np.linalg.norm(err) < 0.5
    assert err[:2] @ np.linalg.inv(cov[:2, :2]) @ err[:2] < 13.8  # inside the 99.9 % ellipse
    assert cov.shape == (4, 4) and 0 < cov[3, 3] < 1.0  # the heading's variance [deg²]
    assert (yaw - 75.0) ** 2 / cov[3, 3] < 10.8  # within 3.3 of its standard deviations
    assert 0 < rms < 1.0


def test_registration_on_the_surface_places_a_tilted_frame_over_hills_that_the_flat_ground_misplaces():
    surface, ortho = hills(amplitude_m=35.0), texture()
    grid = ZoomGrid(47.0, 8.0, 300.0, 4, 2)
    camera = Pinhole(192, 144, 60.0)
    config = RefineConfig()
    results = {}
    for tilt in (5.0, 20.0, 28.0):
        pose = CameraPose(0.0, 0.0, 1.0, 120.0, tilt, 0.0)
        centre = np.array([15.0, -20.0, float(surface.at(15.0, -20.0)) + 80.0])
        frame = photograph(surface, ortho, camera, pose.rotation(), centre)
        attitude = Attitude(121.0, tilt + 0.3, -0.2)  # an IMU's errors
        for name, model in (("flat", None), ("surface", surface)):
            reg = Refiner(grid, ortho, config, model).refine(
                frame, camera, np.array([[30.0, -5.0]]), attitude, height_m=80.0
            )
            error = math.hypot(reg.east_m - centre[0], reg.north_m - centre[1])
            results[name, tilt] = (reg.verified, error, reg)
    for tilt, within_m in ((5.0, 1.5), (20.0, 1.5)):
        verified, error, reg = results["surface", tilt]
        assert verified and error < within_m, (tilt, reg.verdict, error)
        assert reg.altitude_m == pytest.approx(float(surface.at(15.0, -20.0)) + 80.0, abs=3.0)
        assert reg.height_m == pytest.approx(80.0, abs=3.0)
    # over 35 m hills at 20-28° the flat ground is refused or metres off
    for tilt in (20.0, 28.0):
        verified, error, _ = results["flat", tilt]
        assert not verified or error > 2 * results["surface", tilt][1]
    # at 28° the flat pass finds no pose to start from; the surface's second chance must stand out as a
    # searched heading's does, and here does not: refused, never placed wrong
    verified, error, _ = results["surface", 28.0]
    assert not verified or error < 4.0


def test_a_map_built_with_a_surface_model_keeps_it_and_one_added_later_too(tmp_path, utm_tif):

    from jzi_ros.geo import MapDir, build_map
    from jzi_ros.geo.surface import add_surface

    dsm, shape = dsm_beside(utm_tif, tmp_path / "dsm.tif", lambda rows, cols: 200 + cols * 0.1)
    built = build_map([utm_tif], tmp_path / "map", levels=2, view_px=32, dsm=dsm)
    assert built.has_surface
    s = built.surface()
    assert np.isfinite(s.heights).all()  # the margin beyond the raster is filled from around it
    inside = s.heights[s.heights.shape[0] // 2, s.heights.shape[1] // 4 : 3 * s.heights.shape[1] // 4]
    assert 200.0 <= inside.min() and inside.max() <= 200 + shape[1] * 0.1 and (np.diff(inside) >= 0).all()
    plain = build_map([utm_tif], tmp_path / "plain", levels=2, view_px=32)
    assert not plain.has_surface
    add_surface(plain, dsm)
    assert MapDir(plain.path).has_surface
    with pytest.raises(Exception, match="already has a surface model"):
        add_surface(MapDir(plain.path), dsm)
    # from the command line, as a user adds one to a map built without: said, and refused twice
    from test_tools_cli import jzi

    cli_map = build_map([utm_tif], tmp_path / "cli", levels=2, view_px=32).path
    done = jzi("build-pyramid", "--map", str(cli_map), "--dsm", str(dsm))
    assert done.returncode == 0 and "surface model:" in done.stdout, done.stderr
    again = jzi("build-pyramid", "--map", str(cli_map), "--dsm", str(dsm))
    assert again.returncode != 0 and "already has a surface model" in again.stderr
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(Exception, match="cannot read the elevation model"):
        build_map([utm_tif], tmp_path / "never", levels=2, view_px=32, dsm=bad)
    assert not (tmp_path / "never").exists()


def test_real_oblique_photos_project_onto_their_surface_model_as_opencv_projects_them_back():
    from jzi_ros.evaluation.photos import PhotoSet, projection_errors

    photos = PhotoSet.load(shared("dji_oblique"))
    assert len(photos.photos) == 4 and photos.lens.d[0] == pytest.approx(-0.264, abs=1e-3)
    for row in projection_errors(photos):
        assert row["hit"] > 0.9
        assert row["max_px"] < 0.1  # the lens model and OpenCV's projectPoints agree over the whole image
        assert row["max_off_surface_m"] < 0.05


def test_the_omega_phi_kappa_poses_agree_with_the_photogrammetry_reconstruction():
    import json

    from jzi_ros.evaluation.photos import _opk_rows, opk_rotation

    folder = shared("dji_oblique")
    recon = json.loads((folder / "reconstruction.json").read_text())[0]
    for name, _x, _y, _z, omega, phi, kappa in _opk_rows(folder / "odm_xyz_opk.csv"):
        world_from_camera = cv2.Rodrigues(np.array(recon["shots"][name]["rotation"]))[0].T
        assert opk_rotation(omega, phi, kappa) == pytest.approx(world_from_camera, abs=2e-3)


def test_real_oblique_photos_register_against_the_others_orthophotos_near_their_surveyed_centres(tmp_path):
    from test_tools_cli import jzi

    from jzi_ros.evaluation.photos import PhotoSet, register_photos

    folder = shared("dji_oblique")
    done = jzi("bench", "--photos", str(folder), "--out", str(tmp_path))  # the command a user runs
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "photos.md").read_text()
    rows_of = [line for line in report.splitlines() if line.startswith("| 100_0005_")]
    assert len(rows_of) == 4 + 4 * 3 * 2 + 4 * 2  # projection rows; pairs and mosaics, flat and on the surface
    rows = register_photos(PhotoSet.load(folder))
    verified = [r for r in rows if r["verified"]]
    assert all(r["error_m"] < 2.0 for r in verified)  # no false accept
    surface = [r for r in rows if r["projection"] == "surface" and r["inliers"] > 0]
    flat = [r for r in rows if r["projection"] == "flat" and r["inliers"] > 0]
    # laid on the surface, more of the matches agree than on a flat ground
    assert sum(r["inliers"] for r in surface) > sum(r["inliers"] for r in flat)


def test_the_registration_of_a_map_with_a_surface_model_is_calibrated_on_frames_rendered_over_it(tmp_path, utm_tif):

    from jzi_ros.data import AerialConfig
    from jzi_ros.geo import build_map

    calibration = importlib.import_module("jzi_ros.train.calibrate")

    # 4 m of relief under a 70-120 m flight
    dsm, _ = dsm_beside(
        utm_tif, tmp_path / "dsm.tif", lambda rows, cols: 300 + 4 * np.sin(cols / 25) * np.cos(rows / 30)
    )
    mapdir = build_map([utm_tif], tmp_path / "map", levels=2, view_px=32, dsm=dsm)
    rendered = []
    real_world = calibration._world
    calibration._world = lambda o, s: rendered.append(s) or real_world(o, s)  # type: ignore[assignment]
    try:
        fitted = calibration.calibrate_registration(
            mapdir, AerialConfig(image_px=128, footprint_cells=(3.0, 5.0)), frames=60
        )
    finally:
        calibration._world = real_world  # type: ignore[assignment]
    assert len(rendered) == 1  # one 3D world: the map's own raster over its surface model
    assert fitted is not None and fitted.frames >= 30 and 0.2 < fitted.scale < 20.0
    assert 0.2 < fitted.heading_scale < 20.0
