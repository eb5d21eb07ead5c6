"""The ground robot's fine stage: street frames laid on the ground plane and registered against the map."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import UTM_ORIGIN, write_tif
from rasterio.transform import from_origin

from jzi_ros.data.drive import RoadNetwork
from jzi_ros.data.render3d import World3D
from jzi_ros.data.scene import SceneFiles
from jzi_ros.geo import BoundsM, CameraPose, LocalFrame, MapDir, Pinhole
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer.errors import LocalizerError
from jzi_ros.localizer.ground import GroundConfig, GroundRegistrar, street_view, yaw_for_facing
from jzi_ros.localizer.matchers import DenseMatcher
from jzi_ros.localizer.refine import Attitude, grey

CAMERA = Pinhole(640, 480, 90.0)
HEIGHT_M = 1.6


def _street_pose(east: float, north: float, facing_deg: float) -> CameraPose:
    """A level camera HEIGHT_M above the ground looking towards ``facing_deg`` (clockwise from north)."""
    return CameraPose(east, north, HEIGHT_M, yaw_for_facing(facing_deg, 90.0, 0.0), 90.0, 0.0)


@pytest.fixture
def ground_tif(tmp_path):
    """A 300 m GeoTIFF at 0.25 m/px of ground texture with detail from half a metre up."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((1200, 1200)).astype(np.float32), (0, 0), 3)
    grey_ = ((texture - texture.min()) / np.ptp(texture) * 255).astype(np.uint8)
    return write_tif(
        tmp_path / "ground.tif", np.repeat(grey_[..., None], 3, -1), "EPSG:32632", from_origin(*UTM_ORIGIN, 0.25, 0.25)
    )


def test_a_street_frame_at_a_known_pose_lies_on_the_map_within_a_ground_pixel(ground_tif):
    frame = LocalFrame(*_tif_centre(ground_tif))
    ortho = LocalOrtho.render([ground_tif], frame, BoundsM(-100.0, -100.0, 100.0, 100.0), 0.25)
    world = World3D(ortho)  # flat: the ground is the map
    matcher, gsd, reach = DenseMatcher(), 0.5, 4.0
    for facing in (0.0, 37.0, 90.0, 200.0):
        pose = _street_pose(10.0, -20.0, facing)
        assert pose.facing_deg() == pytest.approx(facing)
        rgb = world.render(CAMERA.K, (CAMERA.width_px, CAMERA.height_px), pose)
        view = street_view(grey(rgb), CAMERA, CameraPose(0.0, 0.0, HEIGHT_M, pose.yaw_deg, 90.0, 0.0), gsd, 12.0)
        assert view.valid.mean() > 0.3
        b = view.bounds
        window = BoundsM(
            pose.east_m + b.west_m - reach,
            pose.north_m + b.south_m - reach,
            pose.east_m + b.east_m + reach,
            pose.north_m + b.north_m + reach,
        )
        ref, _ = ortho.read(window, gsd)
        score = matcher._correlate(matcher.describe(view.image), view.valid, matcher.describe(grey(ref)))
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        assert abs(x - reach / gsd) <= 1 and abs(y - reach / gsd) <= 1, (facing, x, y)
    with pytest.raises(LocalizerError, match="no ground"):  # looking at the sky
        street_view(grey(rgb), CAMERA, CameraPose(0.0, 0.0, HEIGHT_M, 0.0, 170.0, 0.0), gsd, 12.0)


def _tif_centre(path) -> tuple[float, float]:
    import rasterio
    from pyproj import Transformer

    with rasterio.open(path) as src:
        b = src.bounds
        lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform(
            (b.left + b.right) / 2, (b.bottom + b.top) / 2
        )
    return float(lat), float(lon)


@pytest.fixture(scope="module")
def street(trained):
    """The trained scene's map, its 3D world (the scene over its surface model, with facades) and roads."""
    mapdir = MapDir(trained[0])
    files = SceneFiles.beside(trained[2])
    half = mapdir.grid.size_m / 2
    ortho = LocalOrtho.render([trained[2]], mapdir.grid.frame, BoundsM(-half, -half, half, half), 0.5)
    world = World3D.over(ortho, files.dsm, files.dtm, files.buildings)
    roads = RoadNetwork.from_geojson(files.roads, mapdir.grid.frame).clipped(half - 20.0)
    return mapdir, world, roads


def _on_roads(roads: RoadNetwork, rng, count: int) -> list[tuple[float, float, float]]:
    """(east, north, facing) of ``count`` places along a drive on the roads, 15 m apart."""
    path = roads.drive(15.0 * count + 30.0, rng)
    step = np.diff(path, axis=0)
    length = np.r_[0.0, np.cumsum(np.hypot(*step.T))]
    out = []
    for s in 15.0 + 15.0 * np.arange(count):
        i = int(np.searchsorted(length, s)) - 1
        d = step[min(i, len(step) - 1)]
        e, n = path[i] + (s - length[i]) / max(np.hypot(*d), 1e-9) * d
        out.append((float(e), float(n), math.degrees(math.atan2(d[0], d[1])) % 360.0))
    return out


def test_a_ground_fix_is_verified_where_the_robot_is_and_refused_from_another_street(street):
    mapdir, world, roads = street
    registrar = GroundRegistrar(mapdir.pyramid(), GroundConfig())
    rng = np.random.default_rng(3)
    places = _on_roads(roads, rng, 6)
    elsewhere = roads.drive(800.0, np.random.default_rng(7))  # points all over the road network
    verified, errors = 0, []
    for e, n, facing in places:
        pose = _street_pose(e, n, facing)
        rgb = world.render(CAMERA.K, (CAMERA.width_px, CAMERA.height_px), pose)
        attitude = Attitude(pose.yaw_deg, 90.0, 0.0)
        prior = np.eye(2) * 2.0**2
        start = np.array([e, n]) + rng.normal(0, 1.5, 2)
        here = registrar.register(rgb, CAMERA, start, 6.0, attitude, HEIGHT_M, prior)
        if here.verified:
            verified += 1
            errors.append(math.hypot(here.east_m - e, here.north_m - n))
        # another street: a prior on the roads 60 m or more away, and a window there without one
        far = max(elsewhere, key=lambda p: math.hypot(p[0] - e, p[1] - n))
        assert math.hypot(far[0] - e, far[1] - n) >= 60.0
        there = registrar.register(rgb, CAMERA, far, 6.0, attitude, HEIGHT_M, prior)
        assert not there.verified, there.verdict
        alone = registrar.register(rgb, CAMERA, far, 25.0, attitude, HEIGHT_M)
        assert not alone.verified or math.hypot(alone.east_m - e, alone.north_m - n) < 2.0, alone.verdict
    assert verified >= 4, verified
    assert np.median(errors) < 1.5, errors
