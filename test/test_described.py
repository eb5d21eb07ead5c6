"""The map described once: tiles of a dense matcher's descriptors, assembled into a registration's crop."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from jzi_ros.data.camera import render_frame
from jzi_ros.geo import BoundsM, CameraPose, LocalFrame, Pinhole, ZoomGrid
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer.described import TILE_PX, DescribedMap
from jzi_ros.localizer.matchers import DenseMatcher, MatcherConfig, cfog
from jzi_ros.localizer.refine import Attitude, RefineConfig, Refiner, map_grey

GSD_M = 0.5
SIDE_M = 400.0


REACH_PX = 4
"""How far :func:`_local`'s descriptors depend on the image: a 5x5 Gaussian, then a 3x3 Sobel."""


def _local(grey: np.ndarray) -> np.ndarray:
    """A descriptor with no image-wide statistics: gradients and the grey value."""
    g = cv2.GaussianBlur(grey, (5, 5), 0)
    return np.stack([cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1), g], -1)


@pytest.fixture(scope="module")
def ortho() -> LocalOrtho:
    """Noise with structure at many scales over 400 m at 0.5 m/px, centred on the local origin."""
    rng = np.random.default_rng(3)
    n = int(SIDE_M / GSD_M)
    image = np.zeros((n, n, 3), np.float32)
    for sigma in (1.0, 4.0, 16.0):
        image += cv2.GaussianBlur(rng.normal(0, 40, (n, n, 3)).astype(np.float32), (0, 0), sigma)
    image = np.clip(image + 128, 0, 255).astype(np.uint8)
    half = SIDE_M / 2
    return LocalOrtho(image, np.ones((n, n), bool), BoundsM(-half, -half, half, half), GSD_M, LocalFrame(47.0, 8.0))


def test_a_crop_across_four_tiles_is_the_crop_described_whole(ortho):
    described = DescribedMap(ortho, _local, map_grey, max_mb=64, margin_px=REACH_PX)
    assert described.gsd(0.9) == pytest.approx(GSD_M * 2 ** (6.5 / 8))  # the ladder's step nearest 0.9 m/px
    # never finer than the map, and half a step off its own resolution
    assert described.gsd(0.3) == described.gsd(GSD_M) == pytest.approx(GSD_M * 2 ** (1 / 16))
    gsd = described.gsd(GSD_M)
    # around the lattice's origin: the crop takes a part of four tiles
    wanted = BoundsM(-40.3, -35.1, 38.2, 41.7)
    snapped, desc, valid = described.crop(wanted, gsd)
    assert described.described == 4
    # its north-west corner moved by under half a pixel, its size the pyramid's read's
    assert abs(snapped.west_m - wanted.west_m) <= gsd / 2 and abs(snapped.north_m - wanted.north_m) <= gsd / 2
    assert desc.shape[:2] == (round((41.7 + 35.1) / gsd), round((38.2 + 40.3) / gsd))
    rgb, seen = ortho.read(snapped, gsd)
    whole = _local(map_grey(rgb, seen))
    assert desc.shape == whole.shape and valid.all() == seen.all()
    inner = (slice(4, -4), slice(4, -4))  # the whole crop's own edges differ; the tiles' seams must not
    np.testing.assert_allclose(desc[inner], whole[inner], atol=1e-3)


def test_tiles_are_described_once_and_dropped_beyond_the_budget(ortho):
    calls = []

    def counted(grey):
        calls.append(grey.shape)
        return _local(grey)

    bounds, gsd = BoundsM(10.0, 10.0, 60.0, 60.0), GSD_M * 2
    kept = DescribedMap(ortho, counted, map_grey, max_mb=64, margin_px=REACH_PX)
    for _ in range(3):
        kept.crop(bounds, gsd)
    assert calls == [(TILE_PX + 2 * REACH_PX,) * 2]  # one tile, described once with its margin
    tile_mb = (TILE_PX**2 * 3 * 4 + TILE_PX**2) / 2**20
    tight = DescribedMap(ortho, counted, map_grey, max_mb=1.5 * tile_mb, margin_px=REACH_PX)  # room for one tile
    far = BoundsM(-190.0, -190.0, -150.0, -150.0)
    for b in (bounds, far, bounds):
        tight.crop(b, gsd)
    assert tight.described == 3  # the first tile was dropped for the second and described again


def _windowed() -> DenseMatcher:
    """CFOG normalized over a 17 px window: a dense matcher whose descriptors depend on nearby ground alone."""
    return DenseMatcher(MatcherConfig(), lambda g: cfog(g, window=17), "cfog-17", reach_px=1 + 4 + 8)


def test_registration_with_the_map_described_finds_the_pose_it_finds_without(ortho):
    camera = Pinhole(320, 240, 60.0)
    pose = CameraPose(23.0, -31.0, camera.altitude_for_footprint(60.0), 40.0)
    frame, covered = render_frame(ortho, camera, pose)
    assert covered == 1.0
    grid = ZoomGrid(47.0, 8.0, SIDE_M, 4, 2)
    for mb in (0.0, 64.0):
        refiner = Refiner(grid, ortho, RefineConfig(reference_cache_mb=mb))
        refiner.matcher = _windowed()
        for candidate in ((30.0, -20.0), (18.0, -40.0)):
            reg = refiner.refine(frame, camera, np.array([candidate]), Attitude(40.0, 0.0, 0.0), pose.altitude_m)
            assert reg.verified, reg.verdict
            # where the crop truly lies (its snapped bounds), else the fix is off by up to half a pixel
            assert math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) < 0.3 * GSD_M
        described = refiner.described()
        assert (described is None) == (mb == 0)
    # the second frame's crop was already described: no tile described anew
    cached = Refiner(grid, ortho)
    cached.matcher = _windowed()
    cached.refine(frame, camera, np.array([(30.0, -20.0)]), Attitude(40.0, 0.0, 0.0), pose.altitude_m)
    first = cached.described().described
    cached.refine(frame, camera, np.array([(30.0, -20.0)]), Attitude(40.0, 0.0, 0.0), pose.altitude_m)
    assert cached.described().described == first


def test_only_descriptors_of_nearby_ground_are_kept(ortho):
    refiner = Refiner(ZoomGrid(47.0, 8.0, SIDE_M, 4, 2), ortho)
    assert refiner.described() is None  # CFOG normalizes by its whole crop: each crop described anew
    refiner.matcher = _windowed()
    first = refiner.described()
    assert first is not None and refiner.described() is first and first.margin_px == 13
    refiner.matcher = _windowed()  # another matcher: the map described its own way
    assert refiner.described() is not first
