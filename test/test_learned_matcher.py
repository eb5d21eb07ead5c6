"""The learned matcher: its training geometry, its descriptors across sources, the checkpoint and ONNX, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import shared

from jzi_ros.data.camera import render_frame
from jzi_ros.data.scene import SceneSpec, write_scene
from jzi_ros.evaluation.bag import frame_row
from jzi_ros.evaluation.registration import RegistrationStudyConfig, registration_study
from jzi_ros.geo import BoundsM, CameraPose, MapDir, Pinhole
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.inference.errors import BackendError
from jzi_ros.inference.export import export_for_map
from jzi_ros.inference.runtime import onnx_matcher_runner
from jzi_ros.localizer import Localizer, LocalizerConfig
from jzi_ros.localizer.errors import LocalizerError
from jzi_ros.localizer.matchers import DenseMatcher, cfog, learned_input, learned_reach_px
from jzi_ros.localizer.refine import Attitude, RefineConfig, Refiner, grey
from jzi_ros.model.descriptor import (
    DescriptorConfig,
    DescriptorNet,
    GreyFeatures,
    checkpoint_matcher,
    load_descriptor,
    matcher_state,
    torch_runner,
)
from jzi_ros.model.errors import CheckpointError
from jzi_ros.model.zoom import read_checkpoint
from jzi_ros.share import shipped_model
from jzi_ros.tools.cli import main
from jzi_ros.train.calibrate import calibrate_registration
from jzi_ros.train.matcher import Pairs, _inputs, _turned, correlation

CAMERA = Pinhole(64, 64, 60.0)


@pytest.fixture(scope="module")
def learned(trained, tmp_path_factory):
    """The trained fixture's model given a learned matcher by ``jzi train-matcher``, paired with an autumn raster."""
    map_dir, model, _ = trained
    root = tmp_path_factory.mktemp("learned")
    autumn = write_scene(root / "autumn.tif", SceneSpec(size_px=512, seed=11, season="autumn"))
    out = root / "learned.pt"
    argv = ["train-matcher", "--model", model, "--out", out, "--query-rasters", autumn, "--pairs", 150]
    assert main([*argv, "--max-steps", 40, "--no-calibrate", "--quiet"]) == 0
    return map_dir, out, autumn, model


def test_the_trainings_correlation_is_the_dense_matchers():
    rng = np.random.default_rng(0)
    ref = cv2_blur(rng.random((112, 112)).astype(np.float32))
    query = ref[20:68, 30:78].copy()
    mask = np.ones((48, 48), bool)
    mask[:6] = False
    expected = DenseMatcher()._correlate(cfog(query), mask, cfog(ref))
    as_tensor = lambda a: torch.from_numpy(a.transpose(2, 0, 1))[None]  # noqa: E731
    got = correlation(as_tensor(cfog(query)), torch.from_numpy(mask)[None], as_tensor(cfog(ref)))[0].numpy()
    assert got.shape == expected.shape == (65, 65)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.unravel_index(got.argmax(), got.shape) == (20, 30)


def cv2_blur(a: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), 1.5)


def test_turning_a_pair_moves_its_target_with_it():
    """Each of the eight turns and mirrors keeps the correlation's peak on the (moved) label."""
    rng = np.random.default_rng(1)
    refs, queries, targets = [], [], []
    for _ in range(16):
        ref = cv2_blur(rng.random((80, 80)).astype(np.float32))
        r, c = rng.integers(0, 33, 2)
        refs.append(ref)
        queries.append(ref[r : r + 48, c : c + 48])
        targets.append((r, c))
    pairs = Pairs(np.stack(queries), np.ones((16, 48, 48), bool), np.stack(refs), np.array(targets), np.zeros(16, bool))
    q, m, r, t = _turned(pairs, rng)
    assert not (t == pairs.target).all(), "some pairs were turned"
    for i in range(16):
        score = DenseMatcher()._correlate(cfog(q[i].copy()), m[i], cfog(r[i].copy()))
        assert np.unravel_index(score.argmax(), score.shape) == tuple(t[i])


def test_descriptors_of_colocated_crops_from_two_sources_peak_at_zero_offset(learned):
    """Crops of the autumn raster and of the summer map at the same place agree where they coincide."""
    map_dir, model, autumn, plain = learned
    mapdir = MapDir(map_dir)
    stored = read_checkpoint(model)["extra"]["matcher"]
    assert stored["report"]["held_out"]["cross_share"] > 0.2
    assert stored["report"]["held_out"]["learned"]["peak_within_1px"] >= 0.7, stored["report"]
    describe = checkpoint_matcher(stored).describe
    other = LocalOrtho.for_map(mapdir, rasters=[autumn])
    pyramid = mapdir.pyramid()
    gsd, hits = 1.5, 0
    places = [(-50.0, -40.0), (0.0, 0.0), (40.0, 30.0), (-30.0, 45.0), (45.0, -45.0)]
    for e, n in places:
        half_q, half_r = 24 * gsd, 56 * gsd
        query = grey(other.read(BoundsM(e - half_q, n - half_q, e + half_q, n + half_q), gsd)[0])
        ref = grey(pyramid.read(BoundsM(e - half_r, n - half_r, e + half_r, n + half_r), gsd)[0])
        score = DenseMatcher()._correlate(describe(query), np.ones(query.shape, bool), describe(ref))
        peak = np.array(np.unravel_index(score.argmax(), score.shape))
        hits += int(np.abs(peak - 32).max() <= 1)
    assert hits >= 4, f"{hits} of {len(places)} places peak at zero offset"


def test_the_learned_matcher_round_trips_through_the_checkpoint_and_onnx(learned, tmp_path):
    map_dir, model, _, _ = learned
    from_checkpoint = Localizer(map_dir, model)
    assert from_checkpoint.refine_summary()["matcher"] == "learned"
    export = export_for_map(model, map_dir, tmp_path / "export")
    from_export = Localizer(map_dir, export, backend="onnxruntime")
    assert from_export.refine_summary()["matcher"] == "learned"
    image = np.random.default_rng(3).random((70, 90)).astype(np.float32) * 255
    a = from_checkpoint.refiner.matcher.describe(image)  # type: ignore[union-attr]
    b = from_export.refiner.matcher.describe(image)  # type: ignore[union-attr]
    net = load_descriptor(read_checkpoint(model)["extra"]["matcher"])  # the trained network itself, in PyTorch
    assert net.cfg.window == 17  # train-matcher's default
    c = torch_runner(net)(learned_input(image, net.cfg.window))[0].transpose(1, 2, 0)
    assert a.shape == b.shape == c.shape == (70, 90, 8)
    np.testing.assert_allclose(a, c, atol=1e-4)
    np.testing.assert_allclose(b, c, atol=1e-4)
    with pytest.raises(BackendError, match="5 px or more"):  # under the graph's mirrored border: a clear refusal
        from_export.refiner.matcher.describe(np.zeros((4, 30), np.float32))  # type: ignore[union-attr]
    # an export made before the input channels moved into the graph (input grey_features, no window) still
    # describes alike
    unwindowed = DescriptorNet(DescriptorConfig(window=0)).eval()
    unwindowed.load_state_dict(net.state_dict())
    earlier = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        unwindowed,
        (torch.zeros(1, 10, 64, 64),),
        earlier,
        input_names=["grey_features"],
        dynamo=False,
        output_names=["descriptors"],
        dynamic_axes={"grey_features": axes, "descriptors": axes},
    )
    by_earlier = torch_runner(unwindowed)(learned_input(image))[0].transpose(1, 2, 0)
    np.testing.assert_allclose(onnx_matcher_runner(earlier.getvalue())(image), by_earlier, atol=1e-4)
    # cfog by name stays cfog; learned without one is refused
    cfog_config = LocalizerConfig(refine=RefineConfig(matcher="cfog"))
    assert Localizer(map_dir, model, config=cfog_config).refine_summary()["matcher"] == "cfog"
    with pytest.raises(LocalizerError, match="no learned matcher"):
        Localizer(map_dir, learned[3], config=LocalizerConfig(refine=RefineConfig(matcher="learned")))
    # checks fitted with it: the refinement asks its peak ratios; auto keeps CFOG where the fit found CFOG better
    state = read_checkpoint(model)
    for better, expected in ((True, "learned"), (False, "cfog")):
        checks = {"min_distinctiveness": 1.4, "min_distinctiveness_searched": 1.7, "better_than_cfog": better}
        state["extra"]["matcher"]["checks"] = checks
        torch.save(state, tmp_path / "fitted.pt")
        loc = Localizer(map_dir, tmp_path / "fitted.pt")
        assert loc.refine_summary()["matcher"] == expected
    forced = Localizer(map_dir, tmp_path / "fitted.pt", config=LocalizerConfig(refine=RefineConfig(matcher="learned")))
    assert forced.refiner.matcher.min_distinctiveness == 1.4  # type: ignore[union-attr]
    assert forced.refiner.matcher.searched_distinctiveness == 1.7  # type: ignore[union-attr]


def test_a_frame_from_another_place_is_refused_and_one_from_its_own_verified(learned, tmp_path):
    map_dir, model, autumn, plain = learned
    mapdir = MapDir(map_dir)
    matcher = Localizer(map_dir, model).refiner.matcher  # type: ignore[union-attr]
    refiner = Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(candidates=1), learned=matcher)
    assert refiner.matcher.name == "learned"
    here = LocalOrtho.for_map(mapdir, rasters=[autumn])
    elsewhere = LocalOrtho.for_map(mapdir, rasters=[write_scene(tmp_path / "far.tif", SceneSpec(512, seed=12))])
    height = CAMERA.altitude_for_footprint(100.0)
    verified = 0
    for e, n in [(-40.0, -30.0), (20.0, 10.0), (35.0, -40.0)]:
        pose = CameraPose(e, n, height, 30.0)
        right = render_frame(here, CAMERA, pose)[0]
        reg = refiner.refine(right, CAMERA, np.array([[e + 10, n - 5]]), Attitude(30.0, 0.0, 0.0), height_m=height)
        verified += reg.verified and np.hypot(reg.east_m - e, reg.north_m - n) < 5.0
        wrong = render_frame(elsewhere, CAMERA, pose)[0]
        reg = refiner.refine(wrong, CAMERA, np.array([[e, n]]), Attitude(30.0, 0.0, 0.0), height_m=height)
        assert not reg.verified, reg
    assert verified >= 2, "frames of the place itself (another season) verify"


def test_the_matcher_study_measures_the_learned_matcher(learned):
    map_dir, model, autumn, plain = learned
    config = RegistrationStudyConfig(
        map=map_dir, rasters=(autumn,), matchers=("cfog", "learned"), headings=("imu",), frames=3, model=model,
        footprint_cells=1.5, image_px=64, quiet=True,
    )  # fmt: skip
    rows = registration_study(config)
    assert {(r["matcher"], r["cross_source"]) for r in rows} == {
        ("cfog", False), ("learned", False), ("cfog", True), ("learned", True)
    }  # fmt: skip
    plain = RegistrationStudyConfig(map=map_dir, matchers=("learned",), frames=1, model=plain)
    with pytest.raises(Exception, match="no learned matcher"):
        registration_study(plain)


def test_the_checks_fitted_with_the_matcher_keep_wrong_places_out(learned):
    map_dir, model, autumn, _ = learned
    from jzi_ros.train.calibrate import AerialConfig
    from jzi_ros.train.matcher import fit_checks

    entry = read_checkpoint(model)["extra"]["matcher"]
    cfg = AerialConfig(image_px=64, footprint_cells=(1.0, 2.0))
    checks = fit_checks(MapDir(map_dir), cfg, (autumn,), entry, frames=12, quiet=True)
    defaults = RefineConfig()
    assert checks["min_distinctiveness"] >= defaults.min_distinctiveness
    assert checks["min_distinctiveness_searched"] >= defaults.min_distinctiveness_searched
    assert checks["wrong_tried"]["known"] > 0 and checks["wrong_tried"]["searched"] > 0
    assert set(checks["right_verified"]) == {"learned", "cfog"} and isinstance(checks["better_than_cfog"], bool)


def test_eval_bag_takes_the_nodes_matcher_setting_and_refuses_an_unknown_one(tmp_path):
    from jzi_ros.evaluation.bag import BagEvalConfig

    common = {"bag": tmp_path, "map": tmp_path, "model": tmp_path, "image_topic": "/i", "gt_topic": "/g"}
    assert BagEvalConfig(**common, matcher="cfog").matcher == "cfog"
    with pytest.raises(LocalizerError, match="unknown matcher 'loftr'"):
        BagEvalConfig(**common, matcher="loftr")


def test_a_windowed_descriptor_describes_the_map_once_for_every_crop(learned, tmp_path):
    """Normalized over a window, a descriptor depends on nearby ground alone: tiles of the map give any crop's."""
    map_dir, model, _, _ = learned
    torch.manual_seed(0)
    net = DescriptorNet(DescriptorConfig(window=17)).eval()
    state = read_checkpoint(model)
    state["extra"]["matcher"] = matcher_state(net)
    torch.save(state, tmp_path / "windowed.pt")
    from_checkpoint = Localizer(map_dir, tmp_path / "windowed.pt")
    from_export = Localizer(
        map_dir, export_for_map(tmp_path / "windowed.pt", map_dir, tmp_path / "export"), backend="onnxruntime"
    )
    reach = learned_reach_px(17)
    for loc in (from_checkpoint, from_export):
        assert loc.refiner.matcher.reach_px == reach == 28  # type: ignore[union-attr]
        assert loc.refiner.described() is not None
    # normalized by its whole image (a matcher trained before windows stored none): each crop described anew
    stored = matcher_state(DescriptorNet(DescriptorConfig(window=0)))
    stored["config"].pop("window")
    state["extra"]["matcher"] = stored
    torch.save(state, tmp_path / "whole.pt")
    whole_image = Localizer(map_dir, tmp_path / "whole.pt")
    assert whole_image.refiner.matcher.reach_px is None and whole_image.refiner.described() is None  # type: ignore
    image = np.random.default_rng(4).random((120, 150)).astype(np.float32) * 255
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    graph = from_export.refiner.matcher.describe  # type: ignore[union-attr]
    # the graph's inputs and network are the NumPy inputs and PyTorch network
    by_torch = torch_runner(net)(learned_input(image, 17))[0].transpose(1, 2, 0)
    np.testing.assert_allclose(graph(image), by_torch, atol=1e-4)
    whole = graph(image)
    part = graph(image[20:100, 30:130])
    inside = (slice(reach, -reach), slice(reach, -reach))
    np.testing.assert_allclose(part[inside], whole[20:100, 30:130][inside], atol=1e-4)
    near_edge = (slice(6, -6), slice(6, -6))
    assert np.abs(part[near_edge] - whole[20:100, 30:130][near_edge]).max() > 1e-3  # there a crop's own differ


def test_a_window_that_is_not_odd_or_too_wide_is_refused_by_train_matcher(tmp_path, capsys):
    for window in (4, 33):
        assert main(["train-matcher", "--model", str(tmp_path / "m.pt"), "--window", str(window)]) != 0
        assert f"window is 0 or odd from 3 to 31 px, not {window}" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not 2"):
        DescriptorConfig(window=2)
    assert DescriptorConfig.from_dict({"width": 16, "channels": 8}).window == 0  # a checkpoint made before windows


def test_the_training_feeds_the_network_the_inputs_its_export_computes():
    images = np.random.default_rng(5).random((2, 48, 60)).astype(np.float32) * 255
    for window in (0, 17):
        trained_on = _inputs(images, window).numpy()
        exported = np.concatenate([GreyFeatures(window=window)(torch.from_numpy(g)).numpy() for g in images])
        np.testing.assert_allclose(trained_on, exported, atol=2e-3)
    assert not np.allclose(_inputs(images, 17).numpy(), _inputs(images, 0).numpy(), atol=1e-2)


def test_a_windowed_matcher_gives_no_matches_for_a_view_under_its_window():
    """A view of a few pixels (low over a coarse map) is refused with no matches, not an error of the graph."""
    torch.manual_seed(0)
    matcher = checkpoint_matcher(matcher_state(DescriptorNet(DescriptorConfig(window=17)).eval()))
    assert matcher.min_px == 9 and matcher.reach_px == 28
    rng = np.random.default_rng(6)
    reference = rng.random((30, 30)).astype(np.float32) * 255
    for side, refused in ((8, True), (9, False)):
        query = np.ascontiguousarray(reference[5 : 5 + side, 7 : 7 + side])
        got = matcher.match(query, np.ones((side, side), bool), reference, True)
        assert (len(got) == 0) == refused


def test_a_descriptor_of_fewer_channels_registers_through_the_same_pipeline(learned, tmp_path, capsys):
    """``train-matcher --channels``: the checkpoint's descriptors have that many channels and register; 0 is refused."""
    _, _, autumn, model = learned
    out = tmp_path / "four.pt"
    argv = ["train-matcher", "--model", model, "--out", out, "--query-rasters", autumn, "--pairs", 40, "--channels", 4]
    assert main([*argv, "--max-steps", 2, "--no-calibrate", "--quiet"]) == 0
    matcher = checkpoint_matcher(read_checkpoint(out)["extra"]["matcher"])
    rng = np.random.default_rng(7)
    reference = cv2.GaussianBlur(rng.random((96, 96)).astype(np.float32) * 255, (0, 0), 1.5)
    assert matcher.describe(reference).shape == (96, 96, 4)
    query = np.ascontiguousarray(reference[20:60, 30:70])
    got = matcher.match(query, np.ones(query.shape, bool), reference, True)
    assert len(got)
    offsets = got.reference_px - got.query_px
    np.testing.assert_allclose(np.median(offsets, axis=0), (30, 20), atol=0.5)  # where the query was cut
    assert main(["train-matcher", "--model", str(tmp_path / "m.pt"), "--channels", "0"]) != 0
    assert "the descriptor has 1 channel or more, not 0" in capsys.readouterr().err


def test_the_fallback_matcher_registers_what_the_learned_one_verifies_nowhere(learned, tmp_path):
    """A frame the learned matcher refuses is registered again by CFOG, with CFOG's own checks and factor."""
    map_dir, model, _, _ = learned
    mapdir = MapDir(map_dir)
    state = read_checkpoint(model)
    # a learned matcher that verifies nothing, and factors told apart
    state["extra"]["matcher"]["checks"] = {"min_distinctiveness": 1e9, "min_distinctiveness_searched": 1e9}
    state["extra"]["calibration"] = {"registration_scale": 1.5, "fallback_registration_scale": 4.0}
    torch.save(state, tmp_path / "strict.pt")
    loc = Localizer(map_dir, tmp_path / "strict.pt")
    strict = loc.refiner.matcher  # type: ignore[union-attr]
    assert loc.refine_summary()["fallback_matcher"] == "cfog"
    here = LocalOrtho.for_map(mapdir)
    height = CAMERA.altitude_for_footprint(100.0)
    e, n = 20.0, 10.0
    frame = render_frame(here, CAMERA, CameraPose(e, n, height, 30.0))[0]
    at, heading = np.array([[e + 10, n - 5]]), Attitude(30.0, 0.0, 0.0)
    alone = Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(candidates=1, fallback_matcher=""), learned=strict)
    assert alone.fallback is None
    refused = alone.refine(frame, CAMERA, at, heading, height_m=height)
    assert not refused.verified and refused.matcher == "learned" and "ambiguous" in refused.verdict
    both = Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(candidates=1), learned=strict)
    reg = both.refine(frame, CAMERA, at, heading, height_m=height)
    assert reg.verified and reg.matcher == "cfog", reg
    assert np.hypot(reg.east_m - e, reg.north_m - n) < 5.0
    # the node's covariance of such a fix takes the fallback's factor, a learned one its own
    assert loc._registration_scale(reg) == 4.0 and loc._registration_scale(refused) == 1.5
    state["extra"]["calibration"]["fallback_registration_scale"] = 1.0
    torch.save(state, tmp_path / "strict1.pt")
    quick = LocalizerConfig(refine=RefineConfig(global_candidates=5, sweep_places=0))
    loc, loc1 = (Localizer(map_dir, tmp_path / name, config=quick) for name in ("strict.pt", "strict1.pt"))
    cell = loc.grid.terminal_size_m
    pose = CameraPose(e, n, CAMERA.altitude_for_footprint(1.5 * cell), 30.0, 4.0, -3.0)
    frame = render_frame(LocalOrtho.for_map(mapdir, pad_m=2 * cell), CAMERA, pose)[0]
    attitude = Attitude(pose.yaw_deg, pose.pitch_deg, pose.roll_deg)
    est, est1 = (x.localize(frame, camera=CAMERA, attitude=attitude, height_m=pose.altitude_m) for x in (loc, loc1))
    assert est.verified and est.matcher == "cfog" and np.hypot(est.east_m - e, est.north_m - n) < 0.1 * cell
    np.testing.assert_allclose(est.covariance_m2, 4.0 * est1.covariance_m2)
    row = frame_row(loc.grid, 0, 0, est, (est.lat, est.lon))
    assert row["matcher"] == "cfog"
    # with the heading searched the fallback does not run (CFOG seldom verifies a searched heading)
    searched = both.refine(frame, CAMERA, at, Attitude(None, 0.0, 0.0), height_m=height)
    assert searched.matcher == "learned" and not searched.verified
    # CFOG chosen as the matcher has no fallback; a learned fallback is refused
    assert Refiner(mapdir.grid, mapdir.pyramid(), RefineConfig(matcher="cfog"), learned=strict).fallback is None
    with pytest.raises(LocalizerError, match="fallback matcher"):
        RefineConfig(fallback_matcher="learned")


def test_a_matcher_is_taken_from_another_checkpoint_without_its_checks(learned, tmp_path, capsys):
    """``train-matcher --matcher-from``: another checkpoint's network, describing alike, without its map's checks."""
    _, source, autumn, model = learned
    state = read_checkpoint(source)
    state["extra"]["matcher"]["checks"] = {"min_distinctiveness": 1.3, "min_distinctiveness_searched": 1.7}
    torch.save(state, tmp_path / "source.pt")
    out = tmp_path / "taken.pt"
    argv = ["train-matcher", "--model", model, "--out", out, "--matcher-from", tmp_path / "source.pt"]
    assert main([*argv, "--no-calibrate", "--quiet"]) == 0
    printed = capsys.readouterr().out
    trainer = str((tmp_path / "source.pt").resolve())
    said = f"took the learned matcher of {trainer} (trained on its map's raster and autumn.tif)"
    assert said in printed and "no checks fitted (--no-calibrate)" in printed
    entry = read_checkpoint(out)["extra"]["matcher"]
    assert "checks" not in entry and entry["taken_from"] == trainer
    reference = cv2.GaussianBlur(np.random.default_rng(3).random((64, 64)).astype(np.float32) * 255, (0, 0), 1.5)
    np.testing.assert_array_equal(
        checkpoint_matcher(entry).describe(reference), checkpoint_matcher(state["extra"]["matcher"]).describe(reference)
    )
    assert "matcher" not in read_checkpoint(model)["extra"]  # --out: the model itself is untouched
    # a checkpoint without a matcher has none to give, and --checks-only keeps the model's own
    bare = tmp_path / "bare.pt"
    bare.write_bytes(Path(model).read_bytes())
    assert main(["train-matcher", "--model", str(model), "--out", str(tmp_path / "x.pt"), "--matcher-from", str(bare)])
    assert "has no learned matcher to take" in capsys.readouterr().err
    assert main([*argv, "--checks-only"]) != 0
    assert "not both" in capsys.readouterr().err
    assert main(["train-matcher", "--model", str(source), "--matcher-from", str(source), "--no-calibrate"]) != 0
    assert "would take its own matcher" in capsys.readouterr().err
    # a general model's registration is calibrated per map (jzi calibrate, with CFOG): no matcher for it
    assert main(["train-matcher", "--model", str(shipped_model()), "--matcher-from", str(out), "--no-calibrate"]) != 0
    assert "is a general model" in capsys.readouterr().err
    # a checkpoint that took its matcher passes on the one that trained it
    again = tmp_path / "again.pt"
    argv = ["train-matcher", "--model", str(model), "--out", str(again), "--matcher-from", str(out), "--no-calibrate"]
    assert main(argv) == 0
    assert read_checkpoint(again)["extra"]["matcher"]["taken_from"] == trainer


def test_a_taken_matcher_has_its_checks_and_factors_fitted_on_this_map(learned, tmp_path, monkeypatch):
    """Without ``--no-calibrate`` the taken network's checks and both registration factors are fitted here."""
    import functools

    import jzi_ros.train.matcher as training
    from jzi_ros.train.matcher import MatcherTrainConfig, train_matcher

    _, source, _, model = learned
    monkeypatch.setattr(training, "fit_checks", functools.partial(training.fit_checks, frames=12))
    monkeypatch.setattr(training, "calibrate_registration", functools.partial(calibrate_registration, frames=60))
    out = tmp_path / "fitted.pt"
    result = train_matcher(MatcherTrainConfig(model=model, out=out, matcher_from=source, quiet=True))
    extra = read_checkpoint(out)["extra"]
    checks = extra["matcher"]["checks"]
    assert checks["frames"] == 12 and checks == result.checks
    assert checks["min_distinctiveness"] >= RefineConfig().min_distinctiveness
    assert result.registration_scale is not None and result.fallback is not None
    assert extra["calibration"]["registration_scale"] == result.registration_scale
    assert extra["calibration"]["fallback_registration_scale"] == result.fallback.scale


def test_a_map_that_gives_too_few_pairs_trains_on_four_fifths_with_a_warning_and_refuses_fewer(
    trained, monkeypatch, caplog
):
    import math
    from itertools import islice

    import jzi_ros.train.matcher as training
    from jzi_ros.geo import MapDir
    from jzi_ros.train.config import TrainConfig
    from jzi_ros.train.errors import TrainError

    map_dir, model, _ = trained
    frames = training.registration_frames
    monkeypatch.setattr(training, "registration_frames", lambda *a: islice(frames(*a), 12))  # a map of 12 frames
    stored = read_checkpoint(model)["extra"]["train_config"]  # as train-matcher reads it
    config = TrainConfig.from_dict(stored | {"map": map_dir, "out": "unused.pt"})

    def pairs(count: int):
        rng = np.random.default_rng(0)
        return training.registration_pairs(MapDir(map_dir), config, count, 48, 8, rng, quiet=True)

    made = len(pairs(12).query)
    assert 4 <= made <= 12
    if made < 12:  # the frames gave fewer than asked: the short run itself is the warning's
        assert "training on those" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="jzi_ros.train.matcher"):
        assert len(pairs(made + 1).query) == made  # four fifths or more of those asked: trained on
    assert f"only {made} of {made + 1} matcher pairs could be made" in caplog.text
    with pytest.raises(TrainError, match="ask for fewer pairs, or build the map inside the imagery"):
        pairs(math.ceil(made / training.MIN_PAIRS_SHARE) + 1)


def test_real_photos_are_registered_with_a_checkpoints_learned_matcher_beside_cfog(learned, tmp_path):
    from test_tools_cli import jzi

    from jzi_ros.evaluation.errors import EvaluationError
    from jzi_ros.evaluation.photos import PhotoSet, register_photos

    folder = shared("dji_oblique")
    _, model, _, plain = learned
    rows = register_photos(PhotoSet.load(folder), model=model)
    # each row names the matcher that registered it (the registration's own record)
    by = {name: [r for r in rows if r["matcher"] == name] for name in ("cfog", "learned")}
    assert len(by["cfog"]) == len(by["learned"]) == len(rows) / 2 == 4 * 4 * 2  # pairs and mosaics, both projections
    for a, b in zip(by["cfog"], by["learned"], strict=True):  # the same photo, map and projection, matcher by matcher
        assert (a["photo"], a["map"], a["projection"]) == (b["photo"], b["map"], b["projection"])
    assert any(r["matches"] > 0 for r in by["learned"])  # its descriptors matched the real photos
    assert all(r["error_m"] < 2.0 for r in rows if r["verified"])  # no false accept
    with pytest.raises(EvaluationError, match="no learned matcher"):
        register_photos(PhotoSet.load(folder), model=plain)
    done = jzi("bench", "--photos", str(folder), "--model", str(model), "--out", str(tmp_path))  # as a user runs it
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "photos.md").read_text()
    assert "- cfog: " in report and "- learned: " in report
    assert sum("| learned |" in line for line in report.splitlines()) == len(by["learned"])
