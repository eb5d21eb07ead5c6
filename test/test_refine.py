"""Refinement and verification: a frame registered against the map's orthophoto."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest

from jzi_ros.data.camera import render_frame
from jzi_ros.geo import BoundsM, CameraPose, LocalFrame, Pinhole, ZoomGrid, image_to_ground
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer.errors import LocalizerError
from jzi_ros.localizer.matchers import cfog, make_matcher
from jzi_ros.localizer.refine import (
    SWEPT,
    Attitude,
    RefineConfig,
    Refiner,
    Registration,
    fit_similarity,
    grey,
)

SIDE_M = 240.0
GSD_M = 0.5
CAMERA = Pinhole(224, 224, 60.0)
HEIGHT_M = CAMERA.altitude_for_footprint(50.0)


def _town(seed: int) -> np.ndarray:
    """A synthetic orthophoto: blocks, roads and trees of many sizes and tones."""
    rng = np.random.default_rng(seed)
    n = int(SIDE_M / GSD_M)
    img = np.full((n, n, 3), 110, np.uint8)
    for _ in range(900):
        x, y = rng.integers(0, n, 2)
        w, h = rng.integers(4, 40, 2)
        colour = tuple(int(v) for v in rng.integers(30, 230, 3))
        if rng.uniform() < 0.7:
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
        else:
            cv2.circle(img, (int(x), int(y)), int(w // 2 + 2), colour, -1)
    for _ in range(12):  # roads
        p = rng.integers(0, n, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), (60, 60, 60), 5)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.8) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene():
    """A region with its grid (terminal cells of 15 m) and an orthophoto, as the map's pyramid would give it."""
    frame = LocalFrame(47.0, 8.0)
    half = SIDE_M / 2
    image = _town(0)
    ortho = LocalOrtho(image, np.ones(image.shape[:2], bool), BoundsM(-half, -half, half, half), GSD_M, frame)
    grid = ZoomGrid(47.0, 8.0, SIDE_M, 4, 2)
    return grid, ortho


def _register(scene, pose: CameraPose, candidate, attitude: Attitude, config=RefineConfig()):
    grid, ortho = scene
    frame, covered = render_frame(ortho, CAMERA, pose)
    assert covered == 1.0
    refiner = Refiner(grid, ortho, config)
    return refiner.refine(frame, CAMERA, np.array([candidate], float), attitude, height_m=pose.altitude_m)


def test_a_frame_rendered_at_a_known_pose_registers_within_a_pixel_of_the_map(scene):
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 30.0)
    reg = _register(scene, pose, (25.0, -8.0), Attitude(30.0, 0.0, 0.0))
    assert reg.verified and reg.verdict == "ok"
    assert math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) < GSD_M
    assert abs(reg.height_m - HEIGHT_M) < 0.02 * HEIGHT_M
    assert reg.inliers >= RefineConfig().min_inliers


def test_the_motion_gate_forgives_a_short_agreement_inside_it_and_nowhere_else(scene):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 30.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    strict = Refiner(grid, ortho, RefineConfig(min_distinctiveness=50.0, min_inlier_share=0.99))  # unreachable
    attitude = Attitude(30.0, 0.0, 0.0)
    start = np.array([[25.0, -8.0]])
    alone = strict.refine(frame, CAMERA, start, attitude, height_m=HEIGHT_M)
    assert not alone.verified and ("agree" in alone.verdict or "ambiguous" in alone.verdict)
    inside = strict.refine(frame, CAMERA, start, attitude, height_m=HEIGHT_M, gate=(np.array([14.0, -18.0]), 5.0))
    assert inside.verified and inside.verdict == "ok" and inside.candidate == -1, "the gate's centre is tried first"
    assert re.sub(r"[\d.]+", "N", inside.forgiven) == re.sub(r"[\d.]+", "N", alone.verdict)
    assert math.hypot(inside.east_m - pose.east_m, inside.north_m - pose.north_m) < GSD_M
    outside = strict.refine(frame, CAMERA, start, attitude, height_m=HEIGHT_M, gate=(np.array([40.0, -18.0]), 5.0))
    assert not outside.verified and ("agree" in outside.verdict or "ambiguous" in outside.verdict)
    # a gate grown over a large share of the crop (a long gap) is no evidence: it relaxes nothing
    wide = strict.refine(frame, CAMERA, start, attitude, height_m=HEIGHT_M, gate=(np.array([14.0, -18.0]), 60.0))
    assert not wide.verified and not wide.forgiven
    # the gate never replaces a hard check: a heading far off the attitude's stays refused
    turned = strict.refine(frame, CAMERA, start, Attitude(60.0, 0.0, 0.0), height_m=HEIGHT_M, gate=(start[0], 5.0))
    assert not turned.verified and not turned.forgiven


def test_a_match_that_does_not_stand_out_stands_only_when_seen_again_at_another_resolution(scene):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 30.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    attitude = Attitude(30.0, 0.0, 0.0)
    start = np.array([[25.0, -8.0]])

    def register(gate=None, **settings):
        refiner = Refiner(grid, ortho, RefineConfig(**settings))
        return refiner.refine(frame, CAMERA, start, attitude, height_m=HEIGHT_M, gate=gate)

    looked = register(sure_distinctiveness=math.inf)  # every verification takes the second look
    assert looked.verified and "confirm" in looked.timings_ms  # the right place is seen again
    assert math.hypot(looked.east_m - pose.east_m, looked.north_m - pose.north_m) < GSD_M
    blind = register(sure_distinctiveness=math.inf, confirm_px=(16,))  # a look too coarse to verify anything
    assert not blind.verified and blind.verdict.startswith("not seen again at 16 px")
    assert register(sure_distinctiveness=1.0, confirm_px=(16,)).verified  # a match that stands out needs none
    assert register(sure_distinctiveness=math.inf, confirm_px=()).verified  # none asked for
    gated = register(gate=(np.array([14.0, -18.0]), 5.0), sure_distinctiveness=math.inf, confirm_px=(16,))
    assert gated.verified and "confirm" not in gated.timings_ms  # tracking's gate vouches for the place
    refiner = Refiner(grid, ortho, RefineConfig(sure_distinctiveness=math.inf, confirm_px=(16,)))
    searched = refiner.refine(frame, CAMERA, start, Attitude(None, 0.0, 0.0), height_m=HEIGHT_M)
    assert searched.verified and "confirm" not in searched.timings_ms  # a searched heading's stands out already


@pytest.mark.parametrize("pixels, stands", [(1.5, True), (3.0, False)])
def test_the_second_look_must_see_the_frame_within_two_of_its_pixels(scene, monkeypatch, pixels, stands):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 30.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    register = Refiner._register

    def moved(self, *args, work_px=None, **kwargs):  # the second look verifies, ``pixels`` of its own east
        reg = register(self, *args, work_px=work_px, **kwargs)
        return replace(reg, east_m=reg.east_m + pixels * reg.gsd_m) if work_px and reg.verified else reg

    monkeypatch.setattr(Refiner, "_register", moved)
    refiner = Refiner(grid, ortho, RefineConfig(sure_distinctiveness=math.inf))
    reg = refiner.refine(frame, CAMERA, np.array([[25.0, -8.0]]), Attitude(30.0, 0.0, 0.0), height_m=HEIGHT_M)
    assert reg.verified == stands
    assert stands or reg.verdict.startswith("not seen again at 48 px or 96 px")


def test_a_frame_searched_with_its_heading_has_more_candidates_registered_and_looks_twice_past_the_first(
    scene, monkeypatch
):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 30.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    starts = np.array([[-90.0, 90.0], [25.0, -8.0]])  # a wrong place first (its crop misses the truth), then the right
    heading = Attitude(30.0, 0.0, 0.0)

    def refine(attitude=heading, gate=None, **settings):
        refiner = Refiner(grid, ortho, RefineConfig(**({"candidates": 1, "global_candidates": 2} | settings)))
        return refiner.refine(frame, CAMERA, starts, attitude, height_m=HEIGHT_M, gate=gate)

    found = refine()
    assert found.verified and found.candidate == 1
    assert math.hypot(found.east_m - pose.east_m, found.north_m - pose.north_m) < GSD_M
    assert not refine(Attitude(None, 0.0, 0.0)).verified  # a searched heading: the first candidate only
    assert not refine(gate=(starts[0], 5.0)).verified  # tracking: the gate and the first candidate only
    assert RefineConfig(candidates=5, global_candidates=16).registered(True, False) == 16
    assert RefineConfig(candidates=5, global_candidates=2).registered(True, False) == 5  # never fewer

    register = Refiner._register

    def blind_at_96(self, *args, work_px=None, **kwargs):  # the second look at 96 px never verifies
        reg = register(self, *args, work_px=work_px, **kwargs)
        return replace(reg, verified=False, verdict="blind") if work_px == 96 else reg

    monkeypatch.setattr(Refiner, "_register", blind_at_96)
    late = refine(sure_distinctiveness=math.inf)  # every verification takes the second look
    assert not late.verified and late.verdict.startswith("not seen again at 96 px")
    early = refine(candidates=2, sure_distinctiveness=math.inf)  # among the first candidates one look suffices
    assert early.verified and early.candidate == 1


def test_a_frame_none_of_whose_candidates_verifies_is_swept_over_a_small_map_nearest_first(scene, monkeypatch):
    grid, ortho = scene
    pose = CameraPose(80.0, 70.0, HEIGHT_M, 30.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    wrong = np.array([[-90.0, -90.0]])  # the zoom's only candidate: its crop misses the truth
    heading = Attitude(30.0, 0.0, 0.0)
    tried: list[np.ndarray] = []
    blind: set[int] = set()  # resolutions of the second look that never verify
    register = Refiner._register

    def counted(self, frame_grey, camera, centre_m, *args, **kwargs):
        if kwargs.get("work_px") is None:  # a registration, not a second look
            tried.append(np.asarray(centre_m, float))
        reg = register(self, frame_grey, camera, centre_m, *args, **kwargs)
        return replace(reg, verified=False, verdict="blind") if kwargs.get("work_px") in blind else reg

    monkeypatch.setattr(Refiner, "_register", counted)

    half = SIDE_M / 2
    whole = BoundsM(-half, -half, half, half)

    def refine(attitude=heading, height=HEIGHT_M, sweep=whole, image=frame, **settings):
        tried.clear()
        refiner = Refiner(grid, ortho, RefineConfig(**settings))
        return refiner.refine(image, CAMERA, wrong, attitude, height, HEIGHT_M, sweep=sweep)

    found = refine()  # a 240 m map, a 50 m footprint: 5 x 5 places
    assert found.verified and found.candidate == SWEPT
    assert math.hypot(found.east_m - pose.east_m, found.north_m - pose.north_m) < 2 * GSD_M
    off = [math.hypot(*(t - wrong[0])) for t in tried[1:]]
    assert len(tried) > 2 and off == sorted(off) and off[0] < 50.0  # the zoom's candidate, then nearest it first
    lattice = {(round(t[0]), round(t[1])) for t in tried[1:]}
    assert lattice <= {(x, y) for x in range(-96, 97, 48) for y in range(-96, 97, 48)}
    looked = refine(sure_distinctiveness=math.inf)  # every verification takes the second look
    assert looked.verified and looked.candidate == SWEPT and "confirm" in looked.timings_ms
    blind.add(96)
    assert not refine(sure_distinctiveness=math.inf).verified  # a place swept is a late candidate: every look
    blind.clear()
    for not_swept in (
        refine(sweep=None),  # a registration around the candidates alone (the matcher study, the calibration)
        refine(sweep_places=0),
        refine(sweep_places=24),  # the map needs 25
        refine(attitude=Attitude(None, 0.0, 0.0)),  # 24 headings a place: too dear
        refine(height=None),  # three heights a place
    ):
        assert not not_swept.verified and all(np.array_equal(t, wrong[0]) for t in tried)
    tried.clear()
    tracked = Refiner(grid, ortho).refine(frame, CAMERA, wrong, heading, HEIGHT_M, gate=(wrong[0], 5.0), sweep=whole)
    assert not tracked.verified and tried and all(np.array_equal(t, wrong[0]) for t in tried)  # a gate: no sweep
    box = BoundsM(50.0, 40.0, 110.0, 100.0)  # a prior's box: 2 x 2 places inside it
    boxed = refine(sweep=box)
    assert boxed.verified and boxed.candidate == SWEPT and len(tried) <= 5
    assert all(box.west_m < t[0] < box.east_m and box.south_m < t[1] < box.north_m for t in tried[1:])
    elsewhere = LocalOrtho(_town(5), np.ones((480, 480), bool), BoundsM(-half, -half, half, half), GSD_M, ortho.frame)
    stranger = refine(image=render_frame(elsewhere, CAMERA, pose)[0])  # a frame of another town: nowhere here
    assert not stranger.verified and len(tried) == 25  # the candidate and every place but the one beside it


def test_a_searched_headings_match_that_stands_out_only_as_a_known_headings_is_seen_again_at_every_look(
    scene, monkeypatch
):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 233.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    searched = Attitude(None, 0.0, 0.0)

    def refine(**settings):
        refiner = Refiner(grid, ortho, RefineConfig(**({"min_distinctiveness_searched": math.inf} | settings)))
        return refiner.refine(frame, CAMERA, np.array([[25.0, -8.0]]), searched, height_m=HEIGHT_M)

    seen = refine(min_distinctiveness=1.0)  # short of the searched check, enough for a known heading's
    assert seen.verified and seen.verdict == "ok" and "confirm" in seen.timings_ms and not seen.unconfirmed
    assert math.hypot(seen.east_m - pose.east_m, seen.north_m - pose.north_m) < 2 * GSD_M
    assert abs((seen.yaw_deg - 233.0 + 180) % 360 - 180) < 2.0
    blind = refine(min_distinctiveness=1.0, confirm_px=(16,))  # a look too coarse to verify anything
    assert not blind.verified and blind.verdict.startswith("ambiguous") and "not seen again at 16 px" in blind.verdict
    unlooked = refine(min_distinctiveness=1.0, confirm_px=())  # no second look: the searched check stands
    assert not unlooked.verified and unlooked.verdict.startswith("ambiguous") and "confirm" not in unlooked.timings_ms
    weak = refine(min_distinctiveness=math.inf)  # short of a known heading's check too: no second look
    assert not weak.verified and weak.verdict.startswith("ambiguous") and "confirm" not in weak.timings_ms
    strict = Refiner(grid, ortho, RefineConfig(min_distinctiveness_searched=math.inf, min_distinctiveness=1.0))
    band = (0.9 * HEIGHT_M, 1.1 * HEIGHT_M)
    look = strict._register(grey(frame), CAMERA, np.array([25.0, -8.0]), searched, HEIGHT_M, band, work_px=64)
    assert not look.verified and look.verdict.startswith("ambiguous") and not look.unconfirmed  # a look: no looks

    register = Refiner._register
    looks: list[tuple[int | None, float | None]] = []

    def blind_at_96(self, frame_grey, camera, centre, attitude, *args, work_px=None, **kwargs):
        looks.append((work_px, attitude.yaw_deg))
        reg = register(self, frame_grey, camera, centre, attitude, *args, work_px=work_px, **kwargs)
        return replace(reg, verified=False, verdict="blind") if work_px == 96 else reg

    monkeypatch.setattr(Refiner, "_register", blind_at_96)
    once = refine(min_distinctiveness=1.0)  # seen again at 48 px but not at 96: one look is not enough
    assert not once.verified and "not seen again at 96 px" in once.verdict
    assert [px for px, _ in looks] == [None, 48, 96]
    assert looks[0][1] is None and all(abs((yaw - 233.0 + 180) % 360 - 180) < 2.0 for _, yaw in looks[1:])


def test_a_frame_whose_heading_and_height_are_unknown_is_seen_again_at_its_heading_at_every_look(scene, monkeypatch):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 233.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    searched = Attitude(None, 0.0, 0.0)
    register = Refiner._register
    looks: list[tuple[int | None, float | None]] = []
    blind: set[int] = set()  # resolutions of the second look that never verify

    heights: list[float] = []  # the heights the second looks project the frame at

    def counted(self, frame_grey, camera, centre, attitude, height, *args, work_px=None, **kwargs):
        looks.append((work_px, attitude.yaw_deg))
        heights.extend([height] if work_px else [])
        reg = register(self, frame_grey, camera, centre, attitude, height, *args, work_px=work_px, **kwargs)
        return replace(reg, verified=False, verdict="blind") if work_px in blind else reg

    monkeypatch.setattr(Refiner, "_register", counted)

    def refine(height_m=None, gate=None, assumed=HEIGHT_M, **settings):
        looks.clear()
        heights.clear()
        config = RefineConfig(**({"min_distinctiveness_searched": 1.0} | settings))  # every match stands out
        refiner = Refiner(grid, ortho, config)
        candidates = np.array([[25.0, -8.0]])
        return refiner.refine(frame, CAMERA, candidates, searched, height_m, assumed, gate=gate)

    seen = refine()  # a camera alone: seen again at the heading it found, at 48 and at 96 px
    assert seen.verified and "confirm" in seen.timings_ms
    assert math.hypot(seen.east_m - pose.east_m, seen.north_m - pose.north_m) < 2 * GSD_M
    again = [(px, yaw) for px, yaw in looks if px is not None]
    assert [px for px, _ in again] == [48, 96] and all(abs((yaw - 233.0 + 180) % 360 - 180) < 2.0 for _, yaw in again)
    guessed = refine(assumed=0.85 * HEIGHT_M)  # the heights tried miss the true one: looked at again at the found one
    assert guessed.verified and len(heights) == 2
    assert all(abs(h - guessed.height_m) < 1e-6 and abs(h / HEIGHT_M - 1) < 0.05 for h in heights)
    # one standing out only as a known heading's must: looked at again at the found height too, not the one tried
    unconfirmed = dict(assumed=0.85 * HEIGHT_M, min_distinctiveness_searched=math.inf, min_distinctiveness=1.0)
    short = refine(**unconfirmed)
    assert short.verified and len(heights) == 2
    assert all(abs(h - short.height_m) < 1e-6 and abs(h / HEIGHT_M - 1) < 0.05 for h in heights)
    blind.add(96)
    once = refine()  # seen again at 48 px but not at 96: a chance match for all it knows
    assert not once.verified and "not seen again at 96 px" in once.verdict
    missed = refine(**unconfirmed)
    assert not missed.verified and missed.verdict.startswith("ambiguous") and "at 96 px" in missed.verdict
    ranged = refine(height_m=HEIGHT_M)  # its height known: a match that stands out is not looked at again
    assert ranged.verified and "confirm" not in ranged.timings_ms and all(px is None for px, _ in looks)
    tracked = refine(gate=(np.array([pose.east_m, pose.north_m]), 3.0))  # tracking's gate vouches for the place
    assert tracked.verified and all(px is None for px, _ in looks)


def test_a_surface_pass_from_a_searched_headings_match_checks_it_at_its_heading_and_is_seen_again(scene, monkeypatch):
    grid, ortho = scene
    pose = CameraPose(12.0, -20.0, HEIGHT_M, 233.0)
    frame = render_frame(ortho, CAMERA, pose)[0]
    laid: list[float | None] = []

    def on_surface(self, frame_grey, camera, start, yaw, attitude, *args, **kwargs):  # verifies the first pass only
        laid.append(attitude.yaw_deg)
        ok = len(laid) == 1
        return Registration(
            ok, "ok" if ok else "refused", east_m=float(start[0]), north_m=float(start[1]), yaw_deg=float(yaw)
        )

    monkeypatch.setattr(Refiner, "_on_surface", on_surface)

    def refine(**settings):
        laid.clear()
        config = RefineConfig(**({"min_distinctiveness_searched": math.inf, "min_distinctiveness": 1.0} | settings))
        refiner = Refiner(grid, ortho, config)
        refiner.surface = object()  # a surface model: each flat pass is followed by one on the surface
        return refiner.refine(frame, CAMERA, np.array([[25.0, -8.0]]), Attitude(None, 0.0, 0.0), height_m=HEIGHT_M)

    seen = refine()
    assert abs((laid[0] - 233.0 + 180) % 360 - 180) < 2.0  # laid on the surface at the heading the flat pass found
    assert seen.verified and "confirm" in seen.timings_ms  # the surface's fix was seen again, on the flat ground
    blind = refine(confirm_px=(16,))  # a look too coarse to see it: the surface's verification does not stand alone
    assert not blind.verified and "not seen again at 16 px" in blind.verdict


def test_a_candidate_is_skipped_only_next_to_one_already_registered(scene, monkeypatch):
    grid, ortho = scene
    centres: list[tuple[float, float]] = []

    def refused(self, frame, camera, centre, *args, **kwargs):
        centres.append((float(centre[0]), float(centre[1])))
        return Registration(False, "refused")

    monkeypatch.setattr(Refiner, "_register", refused)
    cell = grid.terminal_size_m
    starts = np.array([[0.0, 0.0], [cell, 0.0], [2.5 * cell, 0.0], [2.5 * cell + 2.0, cell], [0.0, -3 * cell]])
    frame = np.zeros((64, 64, 3), np.uint8)
    Refiner(grid, ortho).refine(frame, CAMERA, starts, Attitude(0.0, 0.0, 0.0), height_m=HEIGHT_M)
    # the second and fourth lie within a cell of one registered before them; the crops of the first
    # reach the third and fifth, which are registered all the same
    assert centres == [(0.0, 0.0), (2.5 * cell, 0.0), (0.0, -3 * cell)]


def test_a_frame_from_another_place_is_refused_with_a_reason(scene):
    pose = CameraPose(-60.0, 50.0, HEIGHT_M, 200.0)
    reg = _register(scene, pose, (50.0, -50.0), Attitude(200.0, 0.0, 0.0))
    assert not reg.verified
    assert reg.verdict and reg.verdict != "ok"


def test_a_frame_of_another_town_is_refused_everywhere(scene):
    grid, ortho = scene
    other = LocalOrtho(_town(7), ortho.valid, ortho.bounds, GSD_M, ortho.frame)
    refiner = Refiner(grid, ortho)
    for e, n in [(-40.0, -40.0), (0.0, 30.0), (45.0, 10.0)]:
        frame, _ = render_frame(other, CAMERA, CameraPose(e, n, HEIGHT_M, 0.0))
        reg = refiner.refine(frame, CAMERA, np.array([[e, n]]), Attitude(0.0, 0.0, 0.0), height_m=HEIGHT_M)
        assert not reg.verified, reg


def test_a_tilted_cameras_position_not_its_image_centre_is_recovered(scene):
    pose = CameraPose(-10.0, 15.0, HEIGHT_M, 75.0, 12.0, -8.0)
    centre = image_to_ground(CAMERA, pose) @ np.array([(CAMERA.width_px - 1) / 2, (CAMERA.height_px - 1) / 2, 1.0])
    image_centre = centre[:2] / centre[2]
    assert math.hypot(image_centre[0] - pose.east_m, image_centre[1] - pose.north_m) > 8.0
    reg = _register(scene, pose, tuple(image_centre), Attitude(75.0, 12.0, -8.0))
    assert reg.verified, reg.verdict
    assert math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) < GSD_M


def test_without_the_tilt_planar_pnp_recovers_position_height_and_tilt(scene):
    pose = CameraPose(5.0, 5.0, HEIGHT_M, 140.0, 10.0, 5.0)
    reg = _register(scene, pose, (0.0, 0.0), Attitude(140.0))
    assert reg.verified, reg.verdict
    # the covariance says how well a narrow view pins the position; the error stays within it
    err = np.array([reg.east_m - pose.east_m, reg.north_m - pose.north_m])
    assert err @ np.linalg.solve(reg.covariance_m2, err) < 13.8  # chi-square 2 dof, 99.9 %
    assert abs(reg.tilt_deg - math.hypot(10.0, 5.0)) < 3.0
    assert abs(reg.height_m - HEIGHT_M) < 0.05 * HEIGHT_M


def test_an_unknown_heading_is_searched_and_recovered(scene):
    pose = CameraPose(30.0, 20.0, HEIGHT_M, 233.0)
    reg = _register(scene, pose, (20.0, 30.0), Attitude(None, 0.0, 0.0))
    assert reg.verified, reg.verdict
    assert abs((reg.yaw_deg - 233.0 + 180) % 360 - 180) < 2.0
    assert math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) < 2 * GSD_M


def test_a_heading_off_the_imus_is_refused(scene):
    # a rotation-invariant matcher finds the frame's true heading; 30° from the IMU's it is refused
    sift = RefineConfig(matcher="sift")
    pose = CameraPose(30.0, 20.0, HEIGHT_M, 60.0)
    assert _register(scene, pose, (30.0, 20.0), Attitude(60.0, 0.0, 0.0), sift).verified
    reg = _register(scene, pose, (30.0, 20.0), Attitude(90.0, 0.0, 0.0), sift)
    assert not reg.verified and "heading" in reg.verdict, reg.verdict


def test_similarity_covariance_formula_on_known_values():
    # points symmetric about the nadir point: X^T X is diagonal with n on the translation entries
    rel = np.array([[-10.0, -10.0], [10.0, -10.0], [10.0, 10.0], [-10.0, 10.0], [0.0, 0.0]] * 4)
    residual = np.random.default_rng(0).normal(0, 0.3, rel.shape)
    ground = rel + np.array([100.0, -50.0]) + residual
    params, cov, rms_m = fit_similarity(rel, ground, 0.01)
    a, b, e, n = params
    assert a == pytest.approx(1.0, abs=0.02) and b == pytest.approx(0.0, abs=0.02)
    assert (e, n) == pytest.approx((100.0, -50.0), abs=0.2)
    fitted = np.c_[a * rel[:, 0] - b * rel[:, 1] + e, b * rel[:, 0] + a * rel[:, 1] + n]
    res = (ground - fitted).ravel()
    sigma2 = res @ res / (2 * len(rel) - 4)
    assert cov[2:, 2:] == pytest.approx(np.eye(2) * sigma2 / len(rel), rel=1e-6)
    assert rms_m == pytest.approx(np.sqrt(2 * np.mean(res**2)), rel=1e-6)
    # the floor on the residuals' standard deviation
    _, floored, _ = fit_similarity(rel, rel + 5.0, 0.5)
    assert floored[2:, 2:] == pytest.approx(np.eye(2) * 0.25 / len(rel), rel=1e-6)


def test_cfog_is_blind_to_contrast_inversion_and_gain():
    img = _town(3)[..., 0].astype(np.float32)
    a, b = cfog(img), cfog(255 - 0.5 * img)
    assert np.allclose(a, b, atol=1e-4)


def test_matchers_by_name():
    assert make_matcher("cfog").name == "cfog"
    assert make_matcher("sift-grad").name == "sift-grad"
    with pytest.raises(LocalizerError, match="unknown matcher"):
        make_matcher("loftr")
    with pytest.raises(LocalizerError, match="unknown matcher"):
        RefineConfig(matcher="nope")


def test_sift_registers_frames_of_the_maps_own_raster(scene):
    pose = CameraPose(0.0, -30.0, HEIGHT_M, 10.0)
    reg = _register(scene, pose, (5.0, -25.0), Attitude(10.0, 0.0, 0.0), RefineConfig(matcher="sift"))
    assert reg.verified, reg.verdict
    assert math.hypot(reg.east_m - pose.east_m, reg.north_m - pose.north_m) < 2 * GSD_M


def test_a_frame_registers_against_the_maps_pyramid_file_within_a_pixel(tmp_path):
    """The pyramid's pixel grid, the ground view and the matcher agree: no half-pixel shift anywhere."""
    from conftest import write_tif
    from rasterio.transform import from_origin

    from jzi_ros.geo import build_map

    tif = write_tif(tmp_path / "town.tif", _town(5), "EPSG:32632", from_origin(465000.0, 5212000.0, GSD_M, GSD_M))
    mapdir = build_map([tif], tmp_path / "map", grid=4, levels=2, view_px=32)
    ortho = LocalOrtho.for_map(mapdir, pad_m=30.0)
    refiner = Refiner(mapdir.grid, mapdir.pyramid())
    for e, n, yaw in [(-30.0, 25.0, 10.0), (20.0, -15.0, 200.0)]:
        pose = CameraPose(e, n, HEIGHT_M, yaw, 3.0, -2.0)
        frame, _ = render_frame(ortho, CAMERA, pose)
        reg = refiner.refine(frame, CAMERA, np.array([[e + 8, n - 5]]), Attitude(yaw, 3.0, -2.0), height_m=HEIGHT_M)
        assert reg.verified, reg.verdict
        assert math.hypot(reg.east_m - e, reg.north_m - n) < GSD_M


def test_the_registration_scale_puts_95_percent_of_truths_inside_the_ellipses():
    from jzi_ros.localizer.calibration import MIN_REGISTRATION_FRAMES, fit_registration_scale

    rng = np.random.default_rng(3)
    cov = np.array([[0.5, 0.1], [0.1, 0.3]])
    offsets = rng.multivariate_normal([0, 0], 4.0 * cov, size=4000)  # errors four times the claimed covariance
    scale = fit_registration_scale(offsets, np.repeat(cov[None], len(offsets), 0))
    assert scale == pytest.approx(4.0, rel=0.1)
    d2 = np.einsum("ni,ij,nj->n", offsets, np.linalg.inv(scale * cov), offsets)
    assert np.mean(d2 <= 5.991) == pytest.approx(0.95, abs=0.01)
    assert fit_registration_scale(offsets[: MIN_REGISTRATION_FRAMES - 1], np.repeat(cov[None], 29, 0)) is None


def test_the_heading_variance_of_each_fit_holds_over_repeated_noise():
    """The similarity's turn and the PnP's heading: their variances match the spread of many noisy fits."""
    from jzi_ros.geo.surface import camera_rt
    from jzi_ros.localizer.refine import pose_covariance

    rng = np.random.default_rng(5)
    rel = rng.uniform(-20, 20, (60, 2))
    turn = math.radians(7.0)
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    turns, variances = [], []
    for _ in range(300):
        ground = rel @ rot.T + [50.0, -20.0] + rng.normal(0, 0.4, rel.shape)
        (a, b, _, _), cov, _ = fit_similarity(rel, ground, 0.01)
        d = np.array([-b, a]) / (a * a + b * b)
        turns.append(math.degrees(math.atan2(b, a)))
        variances.append(math.degrees(1.0) ** 2 * d @ cov[:2, :2] @ d)
    assert np.var(turns) == pytest.approx(np.median(variances), rel=0.25)
    # a tilted camera over flat ground: the PnP's heading variance against its spread
    pose = CameraPose(0.0, 0.0, 1.0, 40.0, 15.0, 5.0)
    centre = np.array([5.0, -3.0, HEIGHT_M])
    rvec, tvec = camera_rt(pose.rotation(), centre)
    obj = np.c_[rng.uniform(-30, 40, (80, 2)), np.zeros(80)]
    clean, _ = cv2.projectPoints(obj, rvec, tvec, CAMERA.K, None)
    yaws, yaw_vars = [], []
    for _ in range(200):
        img = clean.reshape(-1, 2) + rng.normal(0, 0.5, (80, 2))
        _, r, t = cv2.solvePnP(obj, img, CAMERA.K, None, rvec.copy(), tvec.copy(), useExtrinsicGuess=True)
        cov, _ = pose_covariance(obj, img, CAMERA.K, r, t, 0.01)
        top = -cv2.Rodrigues(r)[0].T[:, 1]
        yaws.append(math.degrees(math.atan2(top[0], top[1])))
        yaw_vars.append(cov[3, 3])
    assert np.mean(yaws) == pytest.approx(40.0, abs=0.2)
    assert np.var(yaws) == pytest.approx(np.median(yaw_vars), rel=0.3)


def test_the_heading_scale_puts_95_percent_of_heading_errors_within_two_sigma():
    from jzi_ros.localizer.calibration import MIN_REGISTRATION_FRAMES, fit_heading_scale

    rng = np.random.default_rng(4)
    variances = rng.uniform(0.2, 2.0, 4000)
    errors = rng.normal(0, np.sqrt(2.25 * variances))  # errors 1.5 times the claimed standard deviation
    scale = fit_heading_scale(errors, variances)
    assert scale == pytest.approx(2.25, rel=0.1)
    assert np.mean(np.abs(errors) <= 1.96 * np.sqrt(scale * variances)) == pytest.approx(0.95, abs=0.01)
    assert fit_heading_scale(errors / 3, variances) == 1.0  # never below the fit's own variance
    assert fit_heading_scale(errors[: MIN_REGISTRATION_FRAMES - 1], variances[:29]) is None
    assert fit_heading_scale(errors, np.full(4000, np.nan)) is None  # no heading variance: nothing to fit
