"""Tracking (search near the last verified fix) and heading-known models, on the shared trained model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from jzi_ros.data import CameraPose, Pinhole, render_frame
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer import InputError, Localizer, LocalizerConfig, Odometry, Tracker, TrackingConfig
from jzi_ros.localizer.errors import LocalizerError
from jzi_ros.localizer.localizer import Prior
from jzi_ros.localizer.refine import Attitude, RefineConfig


def test_the_tracked_region_grows_with_time_and_is_dropped_after_misses_or_when_time_runs_back():
    t = Tracker(TrackingConfig(max_speed_mps=10.0, reacquire_after=3))
    assert t.region(0.0) is None, "no lock before a verified fix"
    t.update(1.0, True, np.array([5.0, -2.0]), np.diag([4.0, 1.0]))
    region = t.region(1.5)
    assert np.allclose(region.centre, [5.0, -2.0]) and region.radius == pytest.approx(10.0 * 0.5 + 3 * 2.0)
    assert t.region(3.0)[1] == pytest.approx(10.0 * 2.0 + 6.0)
    assert t.region(None) is None, "without a stamp the elapsed time is unknown"
    t.update(1.5, False, np.zeros(2), np.eye(2))
    t.update(2.0, False, np.zeros(2), np.eye(2))
    assert t.region(2.1) is not None and t.misses == 2
    t.update(2.5, False, np.zeros(2), np.eye(2))
    assert t.region(2.6) is None, "global again after reacquire_after misses"
    t.update(3.0, True, np.array([1.0, 1.0]), np.eye(2))
    assert t.region(2.5) is not None, "a frame half a second out of order keeps the lock"
    assert t.region(1.5) is None and t.lock is None, "a stamp well before the last one starts a new sequence"
    t.update(3.0, True, np.array([1.0, 1.0]), np.eye(2))
    assert Tracker(TrackingConfig(enabled=False)).region(0.0) is None
    t_off = Tracker(TrackingConfig(enabled=False))
    t_off.update(0.0, True, np.zeros(2), np.eye(2))
    assert t_off.region(0.1) is None
    for bad in ({"max_speed_mps": 0.0}, {"max_speed_mps": float("inf")}, {"reacquire_after": 0}):
        with pytest.raises(LocalizerError):
            TrackingConfig(**bad)


def test_odometry_moves_the_gate_by_its_displacement_turned_into_the_map_and_widens_it_with_distance():
    t = Tracker(
        TrackingConfig(
            max_speed_mps=10.0, reacquire_after=2, odom_error_share=0.05, odom_turn_error_m=0.5, odom_max_radius_m=40.0
        )
    )
    # the odometry's x axis points north-east in the map: at the fix the robot faces 45° (clockwise from north)
    # and its odometry yaw is 0, so one metre along odometry x is (0.707, 0.707) east-north
    t.update(0.0, True, np.array([100.0, 50.0]), np.eye(2) * 0.25, Odometry(3.0, 4.0, 0.0), heading_deg=45.0)
    region = t.region(2.0, Odometry(3.0 + 10.0, 4.0, 0.0))
    assert region.odometry
    assert np.allclose(region.centre, [100.0 + 10 / np.sqrt(2), 50.0 + 10 / np.sqrt(2)])
    assert region.radius == pytest.approx(3 * np.sqrt(0.25 + 0.5**2 + (1 / 3) ** 2)), "3 sigma of the fix and the drift"
    assert np.allclose(region.covariance_m2, np.eye(2) * (0.25 + 0.5**2 + 1 / 9)) and region.heading_deg == 45.0
    t.update(2.0, False, np.zeros(2), np.eye(2), Odometry(13.0, 4.0, 0.0))
    t.update(3.0, False, np.zeros(2), np.eye(2), Odometry(13.0, 14.0, 90.0))  # turned left, drove 10 m
    region = t.region(3.0, Odometry(13.0, 14.0, 90.0))
    assert t.misses == 2 and region is not None, "misses do not drop a lock the odometry carries"
    turn = np.radians(45.0)
    moved = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]) @ np.array([10.0, 10.0])
    assert np.allclose(region.centre, np.array([100.0, 50.0]) + moved)
    turned = np.radians(90.0) * 0.5  # odom_turn_error_m 0.5 per radian
    assert region.radius == pytest.approx(3 * np.sqrt(0.25 + 1.0 + turned**2 + 1 / 9)), "driven and turned since"
    assert region.heading_deg == pytest.approx(315.0), "a left turn of 90° from facing north-east: north-west"
    assert t.region(4.0, Odometry(13.0, 300.0, 90.0)) is None and t.lock is None, "dropped once the region passes 40 m"
    # without a heading at the fix the odometry cannot be turned into the map: the disc of top speed
    t.update(5.0, True, np.array([0.0, 0.0]), np.eye(2), Odometry(0.0, 0.0, 0.0))
    region = t.region(6.0, Odometry(5.0, 0.0, 0.0))
    assert not region.odometry and np.allclose(region.centre, 0.0) and region.radius == pytest.approx(10.0 + 3.0)
    t.update(6.0, False, np.zeros(2), np.eye(2), Odometry(5.0, 0.0, 0.0))
    t.update(7.0, False, np.zeros(2), np.eye(2), Odometry(10.0, 0.0, 0.0))
    assert t.region(7.5, Odometry(12.0, 0.0, 0.0)) is None, "a lock the odometry cannot carry drops after misses"
    with pytest.raises(LocalizerError):
        Odometry(float("nan"), 0.0, 0.0)
    for bad in ({"odom_error_share": -0.1}, {"odom_turn_error_m": float("nan")}, {"odom_max_radius_m": 0.0}):
        with pytest.raises(LocalizerError):
            TrackingConfig(**bad)


@pytest.fixture(scope="module")
def flight(trained):
    """Frames along a straight line over the trained map, 0.2 s apart, with their poses."""
    loc = Localizer(trained[0], trained[1])
    grid = loc.grid
    ortho = LocalOrtho.for_map(loc.map, pad_m=2 * grid.terminal_size_m)
    cam = Pinhole(64, 64, 60.0)
    cell = grid.terminal_size_m
    poses = [
        CameraPose(-0.25 * grid.size_m + 0.08 * cell * i, -0.1 * grid.size_m + 0.05 * cell * i, 1.5 * cell, 30.0)
        for i in range(8)
    ]
    poses = [replace(p, altitude_m=cam.altitude_for_footprint(1.5 * cell)) for p in poses]
    return [render_frame(ortho, cam, p)[0] for p in poses], poses, cam


def _knowing(pose: CameraPose, cam: Pinhole) -> dict:
    return {
        "camera": cam,
        "attitude": Attitude(pose.yaw_deg, pose.pitch_deg, pose.roll_deg),
        "height_m": pose.altitude_m,
    }


def _wrong_zoom(loc: Localizer) -> None:
    """Make the zoom's candidates all the map's far corner cell (a zoom that is lost)."""
    real = loc.backend.search
    far = loc.grid.path_at(*loc.grid.frame.to_latlon(0.45 * loc.grid.size_m, 0.45 * loc.grid.size_m))

    def search(query, beam, top_k, prefix=(), greedy_above=1.0):
        res = real(query, beam, top_k, prefix, greedy_above)
        return replace(res, paths=torch.tensor(far).expand_as(res.paths).clone())

    loc.backend.search = search  # type: ignore[method-assign]


def test_after_a_verified_fix_the_next_frames_are_tracked_and_registered_at_the_last_fix_first(trained, flight):
    frames, poses, cam = flight
    loc = Localizer(trained[0], trained[1])
    cell = loc.grid.terminal_size_m
    first = loc.localize(frames[0], stamp_s=0.0, **_knowing(poses[0], cam))
    assert first.mode == "global" and first.verified
    _wrong_zoom(loc)  # from here on only the tracking can find the camera
    for i in range(1, len(frames)):
        est = loc.localize(frames[i], stamp_s=0.2 * i, **_knowing(poses[i], cam))
        assert est.mode == "tracking"
        assert est.verified, est.verdict
        assert np.hypot(est.east_m - poses[i].east_m, est.north_m - poses[i].north_m) < 0.1 * cell
    # the same lost zoom without tracking: nothing verifies, unless the map is swept (it is small enough)
    unswept = LocalizerConfig(tracking=TrackingConfig(enabled=False), refine=RefineConfig(sweep_places=0))
    lost = Localizer(trained[0], trained[1], config=unswept)
    _wrong_zoom(lost)
    est = lost.localize(frames[3], stamp_s=0.6, **_knowing(poses[3], cam))
    assert est.mode == "global" and not est.verified
    swept = Localizer(trained[0], trained[1], config=replace(unswept, refine=RefineConfig()))
    _wrong_zoom(swept)
    est = swept.localize(frames[3], stamp_s=0.6, **_knowing(poses[3], cam))
    assert est.mode == "global" and est.verified, est.verdict
    assert np.hypot(est.east_m - poses[3].east_m, est.north_m - poses[3].north_m) < 0.1 * cell
    # a prior's box is what is swept: the map's part of it, else the whole map
    half = swept.grid.size_m / 2
    box = swept._box((np.array([half - 5.0, 0.0]), np.array([20.0, 10.0])))
    assert (box.west_m, box.south_m, box.east_m, box.north_m) == (half - 25.0, -10.0, half, 10.0)
    whole = swept._box(None)
    assert (whole.west_m, whole.south_m, whole.east_m, whole.north_m) == (-half, -half, half, half)
    lat, lon = swept.grid.frame.to_latlon(poses[3].east_m, poses[3].north_m)
    near = swept.localize(frames[3], prior=Prior(float(lat), float(lon), np.eye(2) * 4.0), stamp_s=0.8,
                          **_knowing(poses[3], cam))  # fmt: skip
    assert near.mode == "prior" and near.verified, near.verdict  # its 12 m box swept around the truth


def test_tracking_gives_way_to_a_prior_and_to_a_global_search_after_misses_or_a_new_sequence(trained, flight):
    frames, poses, cam = flight
    loc = Localizer(trained[0], trained[1], config=LocalizerConfig(tracking=TrackingConfig(reacquire_after=2)))
    assert loc.localize(frames[0], stamp_s=0.0, **_knowing(poses[0], cam)).verified
    lat, lon = loc.grid.frame.to_latlon(poses[1].east_m, poses[1].north_m)
    prior = Prior(float(lat), float(lon), np.eye(2) * 25.0)
    assert loc.localize(frames[1], prior=prior, stamp_s=0.2, **_knowing(poses[1], cam)).mode == "prior"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # no place on the map
    misses = [loc.localize(noise, stamp_s=0.4 + 0.2 * k, **_knowing(poses[2], cam)) for k in range(2)]
    assert [m.mode for m in misses] == ["tracking", "tracking"] and not any(m.verified for m in misses)
    assert loc.localize(frames[3], stamp_s=1.0, **_knowing(poses[3], cam)).mode == "global"
    assert loc.localize(frames[4], stamp_s=1.2, **_knowing(poses[4], cam)).mode == "tracking"
    assert loc.localize(frames[0], stamp_s=0.0, **_knowing(poses[0], cam)).mode == "global", "time ran backwards"
    loc.reset()
    assert loc.localize(frames[1], stamp_s=5.0, **_knowing(poses[1], cam)).mode == "global"


def test_a_heading_known_model_sees_frames_north_up_and_refuses_frames_without_a_heading(trained, flight):
    frames, poses, cam = flight
    loc = Localizer(trained[0], trained[1], config=LocalizerConfig(tracking=TrackingConfig(enabled=False)))
    loc.heading_known = True  # as a checkpoint of `jzi train --heading-known` sets it
    for knowing in ({}, {"attitude": Attitude(None, 0.0, 0.0)}):
        with pytest.raises(InputError, match="--heading-known"):
            loc.localize(frames[0], **knowing)
    north_up = replace(poses[2], yaw_deg=0.0)
    ortho = LocalOrtho.for_map(loc.map, pad_m=2 * loc.grid.terminal_size_m)
    frame = render_frame(ortho, cam, north_up)[0]
    turned = np.ascontiguousarray(np.rot90(frame))  # the same view with the image's top to the east
    a = loc.localize(frame, attitude=Attitude(0.0, 0.0, 0.0), camera=cam)
    b = loc.localize(turned, attitude=Attitude(90.0, 0.0, 0.0), camera=cam)
    assert [c.path for c in a.candidates] == [c.path for c in b.candidates]
    assert np.allclose([c.prob for c in a.candidates], [c.prob for c in b.candidates], atol=1e-5)
    assert (a.east_m, a.north_m) == pytest.approx((b.east_m, b.north_m), abs=0.05 * loc.grid.terminal_size_m)
    wrong = loc.localize(turned, attitude=Attitude(0.0, 0.0, 0.0), camera=cam)
    assert [c.prob for c in wrong.candidates] != pytest.approx([c.prob for c in a.candidates], abs=1e-3)


def test_a_verified_fix_where_the_robot_cannot_be_is_refused_and_the_prior_bounds_it_too():
    from jzi_ros.localizer.localizer import _outside
    from jzi_ros.localizer.refine import Registration

    gate = (np.array([100.0, 50.0]), 30.0)  # the last fix, and how far the robot can have moved since
    box = (np.array([100.0, 50.0]), np.array([20.0, 10.0]))  # a prior's centre and half-widths
    at = lambda e, n, ok=True: Registration(ok, "ok", east_m=e, north_m=n)  # noqa: E731
    assert _outside(at(120.0, 60.0), gate, None, 10.0) == ""
    assert _outside(at(139.0, 50.0), gate, None, 10.0) == ""  # beyond the gate, within the slack of a false fix
    assert "farther than the robot can have moved (30 m)" in _outside(at(141.0, 50.0), gate, None, 10.0)
    assert _outside(at(900.0, 50.0, ok=False), gate, None, 10.0) == ""  # nothing to refuse
    assert _outside(at(125.0, 62.0), None, box, 5.0) == ""
    assert _outside(at(100.0, 66.0), None, box, 5.0) == "verified outside the prior's box"


def test_a_registration_far_from_the_tracked_fix_is_not_published(trained, flight):
    frames, poses, cam = flight
    loc = Localizer(trained[0], trained[1])
    grid = loc.grid
    ortho = LocalOrtho.for_map(loc.map, pad_m=2 * grid.terminal_size_m)
    assert loc.localize(frames[0], stamp_s=0.0, **_knowing(poses[0], cam)).verified
    # the robot cannot be on the far side of the map 0.2 s later: whatever the frame shows, no FIX there
    far = replace(poses[0], east_m=-poses[0].east_m, north_m=-poses[0].north_m)
    est = loc.localize(render_frame(ortho, cam, far)[0], stamp_s=0.2, **_knowing(far, cam))
    assert est.mode == "tracking" and not est.verified and not est.trusted


def test_where_the_map_registers_frames_only_verified_fixes_are_published_as_fix_unless_asked(trained, flight):
    frames, poses, cam = flight
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # verifies nowhere
    for trust in (False, True):
        loc = Localizer(
            trained[0],
            trained[1],
            config=LocalizerConfig(min_confidence=0.0, trust_unverified=trust, tracking=TrackingConfig(enabled=False)),
        )
        est = loc.localize(noise, **_knowing(poses[0], cam))
        assert not est.verified
        assert est.trusted is trust
    # without a registration stage the zoom's confidence decides, as before
    off = Localizer(
        trained[0], trained[1], config=LocalizerConfig(min_confidence=0.0, refine=RefineConfig(enabled=False))
    )
    assert off.localize(noise, **_knowing(poses[0], cam)).trusted
