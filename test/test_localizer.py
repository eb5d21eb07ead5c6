"""The localizer: frames rendered at known places, covariance, priors, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from jzi_ros.data import CameraPose, Pinhole, render_frame
from jzi_ros.geo import MapDir, MapError, build_map
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer import (
    CHI2_95_2DOF,
    Calibration,
    Estimate,
    InputError,
    Localizer,
    LocalizerConfig,
    Prior,
    PriorError,
    ellipse_95,
    inside_ellipse_95,
    to_rgb,
)
from jzi_ros.localizer.errors import LocalizerError
from jzi_ros.localizer.refine import Attitude, RefineConfig


def covariance(centres: np.ndarray, probs: np.ndarray, cell_m: float, cal: Calibration = Calibration()) -> np.ndarray:
    """The covariance [m²] the calibration reports for one frame's candidates."""
    return cal.covariances(centres[None], probs[None], cell_m)[0]


def test_covariance_of_one_sure_cell_is_the_uniform_cells_variance():
    cov = covariance(np.zeros((1, 2)), np.array([1.0]), cell_m=39.0)
    assert np.allclose(cov, np.eye(2) * 39.0**2 / 12)


def test_covariance_grows_with_the_spread_of_likely_candidates():
    centres = np.array([[0.0, 0.0], [100.0, 0.0]])
    cov = covariance(centres, np.array([0.3, 0.3]), cell_m=10.0)
    assert cov[0, 0] == pytest.approx(100 / 12 + 0.5 * 100.0**2)
    assert cov[1, 1] == pytest.approx(100 / 12)
    assert cov[0, 1] == pytest.approx(0.0)
    sure = covariance(centres, np.array([0.99, 0.01]), cell_m=10.0)
    assert sure[0, 0] < cov[0, 0] / 10
    # a temperature above 1 flattens the probabilities: the sure search spreads further
    warm = covariance(centres, np.array([0.99, 0.01]), cell_m=10.0, cal=Calibration(temperature=4.0))
    assert warm[0, 0] > 10 * sure[0, 0]
    assert covariance(centres, np.array([0.3, 0.3]), 10.0, Calibration(covariance_scale=2.0)) == pytest.approx(2 * cov)


def _estimate(cov: np.ndarray) -> Estimate:
    return Estimate(47.0, 8.0, 10.0, 20.0, cov, 0.9, True, (0, 1), [], 10.0)


def test_the_fix_covariance_is_the_symmetric_horizontal_block_and_the_vertical_variance():
    est = _estimate(np.array([[4.0, 1.0], [1.2, 9.0]]))
    cov = est.fix_covariance_m2(25.0)
    assert np.allclose(cov, [[4.0, 1.1, 0], [1.1, 9.0, 0], [0, 0, 25.0]])
    assert est.fix_covariance_m2()[2, 2] == 1.0e4


def test_the_95_percent_ellipse_holds_points_by_their_mahalanobis_distance():
    est = _estimate(np.diag([4.0, 100.0]))  # sigma 2 m east, 10 m north
    r_east, r_north = 2.0 * np.sqrt(CHI2_95_2DOF), 10.0 * np.sqrt(CHI2_95_2DOF)
    assert est.contains(10.0 + 0.99 * r_east, 20.0) and not est.contains(10.0 + 1.01 * r_east, 20.0)
    assert est.contains(10.0, 20.0 - 0.99 * r_north) and not est.contains(10.0, 20.0 - 1.01 * r_north)
    offsets = np.array([[0.99 * r_east, 0.0], [1.01 * r_east, 0.0]])
    assert inside_ellipse_95(offsets, np.stack([est.covariance_m2] * 2)).tolist() == [True, False]
    width, height, angle = ellipse_95(est.covariance_m2)
    assert (width, height) == pytest.approx((2 * r_north, 2 * r_east)) and abs(abs(angle) - 90) < 1e-6


def test_the_expected_share_of_gaussian_samples_falls_inside_the_95_percent_ellipse():
    rng = np.random.default_rng(0)
    cov = np.array([[30.0, 12.0], [12.0, 10.0]])
    samples = rng.multivariate_normal([0, 0], cov, 20000)
    share = inside_ellipse_95(samples, np.broadcast_to(cov, (len(samples), 2, 2))).mean()
    assert share == pytest.approx(0.95, abs=0.005)


@pytest.mark.parametrize(
    "image, encoding, expect",
    [
        (np.array([[[1, 2, 3]]] * 8, np.uint8).repeat(8, 1), "rgb", [1, 2, 3]),
        (np.array([[[1, 2, 3]]] * 8, np.uint8).repeat(8, 1), "bgr", [3, 2, 1]),
        (np.array([[[1, 2, 3, 9]]] * 8, np.uint8).repeat(8, 1), "rgba", [1, 2, 3]),
        (np.array([[[1, 2, 3, 9]]] * 8, np.uint8).repeat(8, 1), "bgra", [3, 2, 1]),
        (np.full((8, 8), 7, np.uint8), "rgb", [7, 7, 7]),
        (np.full((8, 8, 1), 7, np.uint8), "rgb", [7, 7, 7]),
    ],
)
def test_images_in_common_layouts_become_rgb(image, encoding, expect):
    out = to_rgb(image, encoding)
    assert out.shape == (8, 8, 3) and out.flags.c_contiguous
    assert out[0, 0].tolist() == expect


@pytest.mark.parametrize(
    "image, encoding, message",
    [
        (np.zeros((8, 8, 3), np.float32), "rgb", "8-bit"),
        (np.zeros((0, 0, 3), np.uint8), "rgb", "empty"),
        (np.zeros((8, 8, 4), np.uint8), "rgb", "does not match"),
        (np.zeros((8, 8, 3), np.uint8), "yuv", "does not match"),
        ("not an image", "rgb", "numpy"),
    ],
)
def test_bad_images_are_refused_clearly(image, encoding, message):
    with pytest.raises(InputError, match=message):
        to_rgb(image, encoding)


@pytest.fixture(scope="module")
def setup(trained):
    """The zoom alone: the registration against the map is tested below and in test_refine."""
    map_dir, model, _ = trained
    loc = Localizer(map_dir, model, config=LocalizerConfig(beam=4, top_k=5, refine=RefineConfig(enabled=False)))
    ortho = LocalOrtho.for_map(loc.map, pad_m=loc.grid.terminal_size_m * 2)
    return loc, ortho


def _frames(loc, ortho, count=40, seed=3):
    rng = np.random.default_rng(seed)
    cam = Pinhole(64, 64, 60.0)
    half = loc.grid.size_m / 2 * 0.9
    out = []
    for _ in range(count):
        e, n = rng.uniform(-half, half, 2)
        pose = CameraPose(
            e, n, cam.altitude_for_footprint(rng.uniform(1, 2) * loc.grid.terminal_size_m), rng.uniform(0, 360)
        )
        out.append((render_frame(ortho, cam, pose)[0], e, n))
    return out


def test_localizer_finds_frames_of_the_map_it_was_trained_for(setup):
    loc, ortho = setup
    errors, inside = [], []
    for frame, e, n in _frames(loc, ortho):
        est = loc.localize(frame)
        errors.append(np.hypot(est.east_m - e, est.north_m - n))
        cov = est.covariance_m2
        assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
        d = np.array([est.east_m - e, est.north_m - n])
        inside.append(d @ np.linalg.solve(cov, d) <= 5.991)  # chi-square 95 %, 2 dof
        assert set(est.timings_ms) == {"decode", "encode", "search", "refine", "total"}
        assert not est.verified and est.verdict == "refinement is off"
        assert len(est.candidates) == 5 and est.candidates[0].path == est.path
        lat, lon = loc.grid.frame.to_latlon(est.east_m, est.north_m)
        assert (est.lat, est.lon) == pytest.approx((float(lat), float(lon)))
    cell = loc.grid.terminal_size_m
    # 16 cells: chance puts about 1 frame in 16 in the right cell
    assert np.mean(np.array(errors) < cell) > 0.6
    assert np.median(errors) < cell


def test_bgr_and_mono_frames_are_accepted(setup):
    loc, ortho = setup
    frame = _frames(loc, ortho, count=1)[0][0]
    rgb = loc.localize(frame)
    assert loc.localize(np.ascontiguousarray(frame[..., ::-1]), "bgr").path == rgb.path
    assert loc.localize(frame.mean(2).astype(np.uint8)).confidence >= 0.0


def test_a_prior_restricts_the_search_to_its_subtree(setup):
    loc, ortho = setup
    frame, e, n = _frames(loc, ortho, count=1, seed=9)[0]
    lat, lon = (float(v) for v in loc.grid.frame.to_latlon(e, n))
    tight = Prior(lat, lon, np.eye(2) * 1.0)
    prefix = loc.prior_prefix(tight)
    assert prefix == loc.grid.path_at(lat, lon, 1)
    est = loc.localize(frame, prior=tight)
    assert est.path[:1] == prefix
    assert loc.prior_prefix(Prior(lat, lon, np.eye(2) * 1e8)) == ()
    with pytest.raises(InputError, match="prior"):
        loc.localize(frame, prior=Prior(float("nan"), lon, np.eye(2)))


def test_temporal_smoothing_is_off_by_default_and_pulls_towards_the_track(trained, setup):
    loc, ortho = setup
    frames = _frames(loc, ortho, count=6, seed=5)
    raw = [loc.localize(f, stamp_s=i * 0.1) for i, (f, _, _) in enumerate(frames)]
    smooth = Localizer(*trained[:2], config=replace(loc.config, smoothing_noise_m2_s=1.0))
    filtered = [smooth.localize(f, stamp_s=i * 0.1) for i, (f, _, _) in enumerate(frames)]
    assert (filtered[0].east_m, filtered[0].north_m) == (raw[0].east_m, raw[0].north_m)
    jumps_raw = np.hypot(np.diff([r.east_m for r in raw]), np.diff([r.north_m for r in raw]))
    jumps_f = np.hypot(np.diff([r.east_m for r in filtered]), np.diff([r.north_m for r in filtered]))
    assert jumps_f.sum() < jumps_raw.sum()
    assert filtered[-1].covariance_m2[0, 0] < raw[-1].covariance_m2[0, 0]


def test_corrupt_input_raises_a_clear_error(setup):
    loc, _ = setup
    with pytest.raises(InputError):
        loc.localize(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(InputError):
        loc.localize(np.zeros((64, 64, 3), np.float64))


def test_a_prior_that_cannot_be_used_raises_a_prior_error(setup):
    loc, _ = setup
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    lat, lon = loc.grid.frame.to_latlon(0.0, 0.0)
    with pytest.raises(PriorError, match="position"):
        loc.localize(frame, prior=Prior(float("nan"), lon, np.eye(2)))
    with pytest.raises(PriorError, match="covariance"):
        loc.localize(frame, prior=Prior(lat, lon, np.diag([-1.0, 1.0])))
    with pytest.raises(PriorError, match="latitude"):
        loc.localize(frame, prior=Prior(200.0, lon, np.eye(2)))
    with pytest.raises(PriorError, match="2x2"):
        loc.localize(frame, prior=Prior(lat, lon, np.eye(4)))
    with pytest.raises(PriorError, match="semi-definite"):
        loc.localize(frame, prior=Prior(lat, lon, np.array([[1.0, 3.0], [3.0, 1.0]])))
    # the 3x3 ENU covariance a NavSatFix carries is taken as it comes
    assert loc.prior_prefix(Prior(lat, lon, np.diag([1.0, 1.0, 1e4]))) == loc.prior_prefix(Prior(lat, lon, np.eye(2)))


def test_a_map_of_another_region_or_not_indexed_is_refused(trained, tmp_path):
    map_dir, model, tif = trained
    other = build_map([tif], tmp_path / "other", grid=2, levels=2, view_px=64, size_m=100.0)
    with pytest.raises(MapError, match="another region"):
        Localizer(other.path, model)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(map_dir, copy, ignore=shutil.ignore_patterns("features"))
    with pytest.raises(MapError, match="jzi index-map"):
        Localizer(MapDir(copy), model)


def test_verified_fixes_are_the_registered_camera_position_with_the_candidate_first(trained):
    map_dir, model, _ = trained
    loc = Localizer(map_dir, model)
    zoom = Localizer(map_dir, model, config=LocalizerConfig(refine=RefineConfig(enabled=False)))
    assert loc.refiner is not None and loc.refine_summary()["matcher"] == "cfog"
    ortho = LocalOrtho.for_map(loc.map, pad_m=loc.grid.terminal_size_m * 2)
    cam = Pinhole(64, 64, 60.0)
    cell = loc.grid.terminal_size_m
    rng = np.random.default_rng(4)
    verified = 0
    for _ in range(8):
        e, n = rng.uniform(-0.3, 0.3, 2) * loc.grid.size_m
        pose = CameraPose(e, n, cam.altitude_for_footprint(1.5 * cell), rng.uniform(0, 360), 4.0, -3.0)
        frame = render_frame(ortho, cam, pose)[0]
        attitude = Attitude(pose.yaw_deg, pose.pitch_deg, pose.roll_deg)
        est = loc.localize(frame, camera=cam, attitude=attitude, height_m=pose.altitude_m)
        if not est.verified:
            assert est.verdict and est.verdict != "ok"
            continue
        verified += 1
        assert est.trusted and est.verdict == "ok" and est.inliers >= loc.config.refine.min_inliers
        assert np.hypot(est.east_m - e, est.north_m - n) < 0.1 * cell
        assert est.path == loc.grid.path_at(est.lat, est.lon)
        # the registered candidate comes first, the others keep the zoom's order
        before = [c.path for c in zoom.localize(frame).candidates]
        after = [c.path for c in est.candidates]
        assert after[1:] == [p for p in before if p != after[0]][: len(before) - 1]
        assert len(after) == loc.config.top_k and est.timings_ms["refine"] > 0
    assert verified >= 6


def test_a_frame_searched_over_the_map_with_its_heading_has_more_candidates_registered_than_published(trained):
    map_dir, model, _ = trained
    loc = Localizer(map_dir, model)
    asked: list[int] = []
    search = loc.backend.search

    def counting(query, beam, top_k, *args):
        asked.append(top_k)
        return search(query, beam, top_k, *args)

    loc.backend.search = counting  # type: ignore[method-assign]
    ortho = LocalOrtho.for_map(loc.map, pad_m=loc.grid.terminal_size_m * 2)
    cam = Pinhole(64, 64, 60.0)
    pose = CameraPose(5.0, -8.0, cam.altitude_for_footprint(1.5 * loc.grid.terminal_size_m), 40.0)
    frame = render_frame(ortho, cam, pose)[0]
    heading, tilt = Attitude(40.0, 0.0, 0.0), Attitude(None, 0.0, 0.0)
    first = loc.localize(frame, camera=cam, attitude=heading, height_m=pose.altitude_m, stamp_s=0.0)
    refine = loc.config.refine
    assert asked == [refine.global_candidates] and len(first.candidates) == loc.config.top_k
    assert loc.refine_summary()["global_candidates"] == refine.global_candidates
    assert first.verified, "the frame is needed verified: the next one is then tracked"
    loc.localize(frame, camera=cam, attitude=heading, height_m=pose.altitude_m, stamp_s=0.5)  # near the last fix
    assert asked[-1] == loc.config.top_k
    loc.reset()
    loc.localize(frame, camera=cam, attitude=tilt, height_m=pose.altitude_m, stamp_s=1.0)  # the heading searched
    assert asked[-1] == loc.config.top_k
    # a frame no candidate verifies keeps the zoom's confidence and covariance of the published candidates only
    five = Localizer(map_dir, model, config=replace(loc.config, refine=replace(refine, global_candidates=5)))
    horizon = Attitude(40.0, 80.0, 0.0)  # looking at the horizon: refused
    loc.reset()
    wide, narrow = (x.localize(frame, camera=cam, attitude=horizon, height_m=pose.altitude_m) for x in (loc, five))
    assert asked[-1] == refine.global_candidates and not wide.verified and "tilted" in wide.verdict
    assert [c.path for c in wide.candidates] == [c.path for c in narrow.candidates]
    assert wide.confidence == narrow.confidence and np.allclose(wide.covariance_m2, narrow.covariance_m2)


def test_without_a_pyramid_refinement_is_off_and_says_why(trained, tmp_path):
    import shutil

    map_dir, model, _ = trained
    old = tmp_path / "old_map"
    shutil.copytree(map_dir, old)
    (old / "ortho.tif").unlink()
    loc = Localizer(old, model)
    assert loc.refiner is None and loc.refine_summary() == {"on": False, "why": "the map has no orthophoto pyramid"}
    ortho = LocalOrtho.for_map(loc.map)
    frame = render_frame(ortho, Pinhole(64, 64, 60.0), CameraPose(0.0, 0.0, 20.0))[0]
    est = loc.localize(frame)
    assert not est.verified and est.verdict == "the map has no orthophoto pyramid"


def test_bad_knowledge_is_refused_and_a_registration_that_cannot_run_leaves_the_zooms_fix(trained):
    map_dir, model, _ = trained
    loc = Localizer(map_dir, model)
    ortho = LocalOrtho.for_map(loc.map)
    frame = render_frame(ortho, Pinhole(64, 64, 60.0), CameraPose(0.0, 0.0, 20.0))[0]
    for bad in ({"height_m": float("nan")}, {"height_m": 0.0}, {"attitude": Attitude(float("nan"), 0.0, 0.0)}):
        with pytest.raises(InputError, match="finite"):
            loc.localize(frame, **bad)
    est = loc.localize(frame, attitude=Attitude(0.0, 80.0, 0.0), height_m=20.0)  # looking at the horizon
    assert not est.verified and "tilted" in est.verdict
    assert est.path == est.candidates[0].path and np.isfinite(est.covariance_m2).all()


def test_frames_without_an_image_settings_out_of_range_and_nan_stamps_are_refused(setup, trained):
    loc, _ = setup
    for blank in (np.zeros((8, 8, 3), np.uint8), np.full((64, 64, 3), 128, np.uint8), np.full((64, 64), 3, np.uint8)):
        with pytest.raises(InputError, match="no image"):
            loc.localize(blank)
    frame = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="stamp"):
        loc.localize(frame, stamp_s=float("nan"))
    for bad in (
        {"beam": 0},
        {"top_k": 0},
        {"min_confidence": 1.5},
        {"smoothing_noise_m2_s": -1.0},
        {"map_precision": "float8"},
        {"greedy_above": 0.0},
        {"greedy_above": 1.5},
    ):
        with pytest.raises(LocalizerError, match=next(iter(bad))):
            LocalizerConfig(**bad)


def test_a_map_held_in_float16_is_half_the_memory_and_gives_the_same_fix(setup, trained):
    loc, _ = setup
    map_dir, model, _ = trained
    config = LocalizerConfig(beam=4, top_k=5, refine=RefineConfig(enabled=False), map_precision="float16")
    small = Localizer(map_dir, model, config=config)
    assert small.backend.views.nbytes * 2 == loc.backend.views.nbytes  # type: ignore[attr-defined]
    frame = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a, b = loc.localize(frame), small.localize(frame)
    assert a.path == b.path and a.confidence == pytest.approx(b.confidence, abs=1e-3)
