"""The registration's covariance fitted on replayed flights (`jzi calibrate --from-replay`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jzi_ros.evaluation.bag import format_summary, frame_row, frame_statistics, matcher_factor, write_frames_csv
from jzi_ros.evaluation.errors import EvaluationError
from jzi_ros.evaluation.metrics import error_summary
from jzi_ros.evaluation.replay_calibration import calibrate_from_replays, fit_replays
from jzi_ros.geo import MapDir, ZoomGrid
from jzi_ros.localizer import Calibration, Estimate
from jzi_ros.localizer.calibration import CHI2_95_2DOF, ellipse_factor, fit_registration_scale, map_calibration
from jzi_ros.localizer.localizer import GROUND_MATCHER

GRID = ZoomGrid(center_lat=47.05, center_lon=8.54, size_m=400.0, grid=2, levels=2)


def fixes(grid: ZoomGrid, n: int, sigma_m: float, true_sigma_m: float, seed: int = 0) -> list[dict]:
    """Frame rows of ``n`` verified fixes published with an isotropic ``sigma_m``, the truths ``true_sigma_m`` off.

    Each fix carries a heading 1° (its sigma) from a truth 2° off.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        east, north = rng.uniform(-100, 100, 2)
        lat, lon = grid.frame.to_latlon(east, north)
        est = Estimate(
            float(lat), float(lon), east, north, np.eye(2) * sigma_m**2, 0.99, True, (0, 0), [],
            grid.terminal_size_m, {"total": 1.0}, verified=True, yaw_variance_deg2=1.0,
        )  # fmt: skip
        truth = grid.frame.to_latlon(*(np.array([east, north]) + rng.normal(0, true_sigma_m, 2)))
        row = frame_row(grid, i * 10**9, 0, est, (float(truth[0]), float(truth[1])))
        row["yaw_deg"], row["yaw_error_deg"] = 0.0, float(rng.normal(0, 2.0))
        rows.append(row)
    return rows


def write_replay(
    folder: Path,
    rows: list[dict],
    scale: float,
    digest: str | None = "abc",
    cell_m: float = 100.0,
    heading_scale: float = 1.0,
    **more,
) -> Path:
    """An eval-bag output folder: frames.csv and the metrics naming the calibration it ran with."""
    folder.mkdir(parents=True)
    write_frames_csv(rows, folder / "frames.csv")
    metrics = {
        "calibration": Calibration(registration_scale=scale, heading_scale=heading_scale).to_dict(),
        "verified_share": 1.0,
        "model_digest": digest,
        "terminal_size_m": cell_m,
        "registration": {"on": True, "matcher": "cfog"},
        **more,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_a_frame_row_holds_the_truths_squared_mahalanobis_distance_and_the_replay_the_factor_it_needs():
    rows = fixes(GRID, 200, sigma_m=10.0, true_sigma_m=20.0)
    d2 = np.array([r["mahalanobis2"] for r in rows])
    assert np.array_equal(d2 <= CHI2_95_2DOF, [r["inside_95"] for r in rows])
    assert np.mean(d2 <= CHI2_95_2DOF) < 0.6  # ellipses half as wide as the errors
    stats = frame_statistics(rows, GRID.terminal_size_m)
    assert stats["verified_ellipse_factor"] == pytest.approx(ellipse_factor(d2))
    assert 3.0 < stats["verified_ellipse_factor"] < 5.5  # about (20 / 10)² = 4
    assert "verified_ellipse_factor" not in frame_statistics(rows[:29], GRID.terminal_size_m)  # too few to say


def scaled(rows: list[dict], factor: float) -> list[dict]:
    """The rows as a replay whose registration factor was ``factor`` times theirs would have published them."""
    return [r | {k: r[k] * factor for k in ("cov_ee_m2", "cov_en_m2", "cov_nn_m2")} for r in rows]


def test_the_summary_points_to_the_refit_only_where_it_can_be_made():
    rows = fixes(GRID, 40, sigma_m=10.0, true_sigma_m=20.0)
    metrics = error_summary([r["error_m"] for r in rows], GRID.terminal_size_m) | frame_statistics(rows, 100.0)
    metrics |= {"frames_in_bag": 40, "frames_localized": 40, "frames_dropped": 0, "frames_without_truth": 0}
    metrics |= {"frames_rejected": 0, "terminal_size_m": 100.0}
    assert "its covariances need x" in format_summary(metrics)  # a recording scored: the factor, no refit
    assert "--from-replay" not in format_summary(metrics)
    replayed = metrics | {"calibration": {}, "registration": {"on": True, "matcher": "cfog"}}
    assert "jzi calibrate --from-replay" in format_summary(replayed)
    assert "instead of 1.00" in format_summary(replayed)  # the factor it would fit, beside the one it ran with
    # where a fallback matcher verified some fixes, the refit named is the one of the matcher's own
    learned = [r | {"matcher": "learned"} for r in rows]
    mixed = learned + [r | {"matcher": "cfog", "mahalanobis2": 100.0} for r in rows[:5]]
    own = matcher_factor(mixed, "learned")["matcher_ellipse_factor"]
    assert own == pytest.approx(ellipse_factor(np.array([r["mahalanobis2"] for r in learned])))
    assert matcher_factor(learned, "learned") == {}  # no fallback: the factor of all
    ran = replayed | {"matcher_ellipse_factor": own, "calibration": {"registration_scale": 1.5}}
    assert f"a registration factor of {own * 1.5:.2f} instead of 1.50" in format_summary(ran)
    street = replayed | {"registration": {"on": True, "matcher": GROUND_MATCHER}}
    assert "its covariances need x" in format_summary(street) and "--from-replay" not in format_summary(street)
    # a recording whose rows do not say which fixes verified: no factor at all
    assert "verified_ellipse_factor" not in frame_statistics(rows, 100.0, verified=False)


def test_replays_refit_the_registrations_factor_from_the_covariances_they_ran_with(tmp_path):
    rows = fixes(GRID, 200, sigma_m=10.0, true_sigma_m=20.0)
    # frames that did not verify (their errors large, their covariances the zoom's) are no registration's
    others = [r | {"verified": False} for r in fixes(GRID, 50, sigma_m=10.0, true_sigma_m=500.0, seed=1)]
    # fixes a fallback matcher verified carry its own factor (fallback_registration_scale): not this one's
    fallen = [r | {"matcher": "orb"} for r in fixes(GRID, 50, sigma_m=10.0, true_sigma_m=500.0, seed=2)]
    replay = write_replay(
        tmp_path / "eval", [r | {"matcher": "cfog"} for r in rows] + others + fallen, 2.0, heading_scale=2.0
    )
    base = Calibration(temperature=3.0, covariance_scale=7.0, registration_scale=5.0, heading_scale=1.5)
    fitted, errors, matcher, heading_fitted = fit_replays([replay], GRID, base, "abc")
    assert matcher == "cfog" and heading_fitted
    assert len(errors.offsets_m) == 200  # the verified fixes only
    assert np.allclose(errors.covariances_m2, np.eye(2) * 50.0)  # published 100 m²: 2 x 50 without the factor
    assert fitted.registration_scale == pytest.approx(fit_registration_scale(errors.offsets_m, errors.covariances_m2))
    assert 6.0 < fitted.registration_scale < 11.0  # about 2 x (20 / 10)²: the factor of the published ones
    assert (fitted.temperature, fitted.covariance_scale) == (3.0, 7.0)  # the zoom's calibration stays
    assert fitted.registration_frames == 200
    # headings 2° off with a sigma of 1° published under a heading factor of 2: about 2 x 4
    assert 5.0 < fitted.heading_scale < 12.0
    # the same fixes replayed with a factor 3 times larger give the same fit: it is the errors that count
    again = fit_replays([write_replay(tmp_path / "again", scaled(rows, 3.0), scale=6.0)], GRID, Calibration(), "abc")[0]
    assert again.registration_scale == pytest.approx(fitted.registration_scale)
    # a replay whose headings came out better than their sigmas keeps the registration's own (never below 1)
    calm = [r | {"yaw_error_deg": 0.1} for r in rows]
    kept = Calibration(heading_scale=1.5)
    assert fit_replays([write_replay(tmp_path / "calm", calm, 2.0)], GRID, kept, "abc")[0].heading_scale == 1.0


def test_a_replay_of_another_model_or_map_or_too_short_is_refused(tmp_path):
    rows = fixes(GRID, 40, sigma_m=10.0, true_sigma_m=10.0)
    with pytest.raises(EvaluationError, match="another model"):
        fit_replays([write_replay(tmp_path / "a", rows, 1.0, digest="other")], GRID, Calibration(), "abc")
    with pytest.raises(EvaluationError, match="50 m cells"):
        fit_replays([write_replay(tmp_path / "b", rows, 1.0, cell_m=50.0)], GRID, Calibration(), "abc")
    with pytest.raises(EvaluationError, match="29 verified fixes"):
        fit_replays([write_replay(tmp_path / "c", rows[:29], 1.0)], GRID, Calibration(), "abc")
    with pytest.raises(EvaluationError, match="holds no replay"):
        fit_replays([tmp_path], GRID, Calibration(), "abc")
    scored = write_replay(tmp_path / "d", rows, 1.0)
    (scored / "metrics.json").write_text(json.dumps({"terminal_size_m": 100.0}))  # jzi score's: no calibration
    with pytest.raises(EvaluationError, match="not a replay by jzi eval-bag"):
        fit_replays([scored], GRID, Calibration(), "abc")
    with pytest.raises(EvaluationError, match="at least one"):
        fit_replays([], GRID, Calibration(), "abc")
    with pytest.raises(EvaluationError, match="0 verified fixes"):
        fit_replays(
            [write_replay(tmp_path / "e", [r | {"verified": False} for r in rows], 1.0)], GRID, Calibration(), "abc"
        )
    broken = [r | {"cov_nn_m2": float("nan")} if i == 3 else r for i, r in enumerate(rows)]
    with pytest.raises(EvaluationError, match="1 verified fixes without a finite, positive definite covariance"):
        fit_replays([write_replay(tmp_path / "f", broken, 1.0)], GRID, Calibration(), "abc")
    elsewhere = ZoomGrid(center_lat=47.06, center_lon=8.54, size_m=400.0, grid=2, levels=2).to_dict()
    with pytest.raises(EvaluationError, match="another map"):
        fit_replays([write_replay(tmp_path / "g", rows, 1.0, region=elsewhere)], GRID, Calibration(), "abc")
    street = {"on": True, "matcher": GROUND_MATCHER}
    with pytest.raises(EvaluationError, match="replayed a street model"):
        fit_replays([write_replay(tmp_path / "h", rows, 1.0, registration=street)], GRID, Calibration(), "abc")
    learned = write_replay(tmp_path / "i", rows, 1.0, registration={"on": True, "matcher": "learned"})
    with pytest.raises(EvaluationError, match="different matchers"):
        fit_replays([write_replay(tmp_path / "j", rows, 1.0), learned], GRID, Calibration(), "abc")
    (tmp_path / "j" / "metrics.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="not the JSON eval-bag writes"):
        fit_replays([tmp_path / "j"], GRID, Calibration(), "abc")


def test_calibrate_from_replay_stores_the_fit_where_the_localizer_finds_it(trained, tmp_path, capsys):
    from jzi_ros.localizer import Localizer
    from jzi_ros.model import load_checkpoint
    from jzi_ros.tools.cli import main

    map_dir, model_path, _ = trained
    shutil.copytree(map_dir, tmp_path / "map")  # the session's map stays as the other tests use it
    mapdir = MapDir(tmp_path / "map")
    model, extra = load_checkpoint(model_path)
    digest = model.digest()
    own = map_calibration(mapdir, extra, digest, False)  # the checkpoint's: the map has no record yet
    rows = fixes(mapdir.grid, 120, sigma_m=2.0, true_sigma_m=4.0)
    replay = write_replay(tmp_path / "eval", rows, own.registration_scale, digest, mapdir.grid.terminal_size_m)
    argv = ["calibrate", "--map", str(mapdir.path), "--model", str(model_path), "--from-replay", str(replay)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fitted on 120 verified fixes of 1 replay(s)" in printed and "(in-sample)" in printed
    record = mapdir.load_calibration(digest)
    assert record["replays"] == [str(replay)]
    loc = Localizer(mapdir.path, model_path)
    assert loc.calibration.registration_scale == pytest.approx(record["calibration"]["registration_scale"])
    assert loc.calibration.registration_scale > 2.5 * own.registration_scale  # errors twice the ellipses
    assert loc.calibration.temperature == own.temperature  # the zoom's calibration is the checkpoint's
    # a replay of another model: one line, no traceback
    other = write_replay(tmp_path / "other", rows, 1.0, "0123", mapdir.grid.terminal_size_m)
    assert main([*argv[:-1], str(other)]) == 2
    assert "replayed another model" in capsys.readouterr().err


def test_calibrate_from_replay_keeps_to_one_source_of_frames_and_to_drones(trained, tmp_path, capsys):
    from jzi_ros.tools.cli import main

    map_dir, model_path, tif = trained
    argv = ["calibrate", "--map", str(map_dir), "--model", str(model_path), "--from-replay", str(tmp_path)]
    assert main([*argv, "--query-rasters", str(tif)]) == 2
    assert "give one" in capsys.readouterr().err
    # a ground robot's fixes fuse the odometry's region: their covariance is no registration's times a factor
    assert main([*argv[:3], "--model", "general-street", *argv[5:]]) == 2
    assert "is a street model" in capsys.readouterr().err


def test_calibrate_from_replays_writes_a_record_naming_them(tmp_path, utm_tif):
    from jzi_ros.geo import build_map

    mapdir = build_map([utm_tif], tmp_path / "map", grid=2, levels=2, view_px=32)
    rows = fixes(mapdir.grid, 60, sigma_m=1.0, true_sigma_m=2.0)  # ellipses half as wide as the errors
    replay = write_replay(tmp_path / "eval", rows, 1.0, "d1", mapdir.grid.terminal_size_m)
    fit = calibrate_from_replays(mapdir, [replay], Calibration(temperature=2.0), "d1", "model.pt")
    record = mapdir.load_calibration("d1")
    assert record["model"] == "model.pt" and record["replays"] == [str(replay)]
    assert record["replay_matcher"] == fit.matcher == "cfog"  # the factor is that matcher's
    assert Calibration.from_dict(record["calibration"]) == fit.calibration
    assert record["calibration"]["temperature"] == 2.0  # the zoom's calibration is kept
    assert fit.frames == fit.headings == 60 and fit.replay_scales == (1.0,)
    assert fit.before < 0.7 and fit.after >= 0.95
