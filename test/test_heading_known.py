"""`jzi train --heading-known`: north-up frames in training, validation, calibration and `jzi evaluate`."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math

import numpy as np
import pytest

from jzi_ros.data import AerialConfig, CameraPose, covered_frames, heldout_cells, render_frame, render_samples
from jzi_ros.data.aerial import north_up_as_known
from jzi_ros.evaluation import zoom
from jzi_ros.geo import MapDir
from jzi_ros.geo.ortho import LocalOrtho
from jzi_ros.localizer.refine import Registration
from jzi_ros.model import load_checkpoint
from jzi_ros.tools.cli import main, parse_args
from jzi_ros.tools.common import config_from
from jzi_ros.train import TrainConfig, TrainError, aerial_config, samples_key, train

calibrate_module = importlib.import_module("jzi_ros.train.calibrate")  # the package's `calibrate` is the function


def tiny(map_dir, out, **changes) -> TrainConfig:
    """A training run of a few seconds on the shared test map."""
    options = dict(
        map=map_dir,
        out=out,
        aerial=True,
        image_px=64,
        samples=200,
        val_samples=40,  # below the calibration's minimum: no calibration fit, a fast run
        footprint_cells=(1.0, 2.0),
        holdout=0.0,
        max_steps=20,
        batch=32,
        dim=32,
        depth=1,
        quiet=True,
    )
    return TrainConfig(**{**options, **changes})


@pytest.fixture(scope="module")
def heading_known_model(trained, tmp_path_factory):
    """(map dir, checkpoint) of a tiny model trained with heading_known on the shared test map."""
    map_dir = trained[0]
    out = tmp_path_factory.mktemp("heading_known") / "hk.pt"
    result = train(tiny(map_dir, out, heading_known=True, heading_error_deg=5.0))
    assert result.steps == 20 and result.heading_known
    return map_dir, out


def grey_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalized cross-correlation of two RGB frames' grey levels where ``mask`` holds."""
    x, y = a.astype(np.float64).mean(-1)[mask], b.astype(np.float64).mean(-1)[mask]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))


def ortho_of(map_dir) -> LocalOrtho:
    mapdir = MapDir(map_dir)
    return LocalOrtho.for_map(mapdir, pad_m=2 * mapdir.grid.terminal_size_m)


def test_heading_known_round_trips_through_the_command_line_and_the_checkpoint(heading_known_model):
    map_dir, out = heading_known_model
    _, extra = load_checkpoint(out)
    assert extra["train_config"]["heading_known"] is True and extra["train_config"]["heading_error_deg"] == 5.0
    stored = TrainConfig.from_dict(json.loads(json.dumps(extra["train_config"])))
    assert stored == tiny(map_dir, out, heading_known=True, heading_error_deg=5.0)
    args = parse_args(
        ["train", "--map", "m", "--out", "o.pt", "--aerial", "--heading-known", "--heading-error-deg", "4"]
    )
    config = config_from(TrainConfig, args)
    assert config.heading_known is True and config.heading_error_deg == 4.0
    plain = config_from(TrainConfig, parse_args(["train", "--map", "m", "--out", "o.pt", "--aerial"]))
    assert plain.heading_known is False and plain.heading_error_deg == 10.0


def test_a_frame_of_a_heading_known_run_is_north_up(trained):
    map_dir = trained[0]
    ortho = ortho_of(map_dir)
    config = tiny(map_dir, "m.pt", heading_known=True, heading_error_deg=0.0, domain_ops=())
    cfg = dataclasses.replace(aerial_config(config), photometric=0.0)
    assert cfg.heading_known and cfg.heading_error_deg == 0.0  # the run's settings reach the rendering
    camera = cfg.camera
    altitude = camera.altitude_for_footprint(1.5 * MapDir(map_dir).grid.terminal_size_m)
    for yaw in (90.0, 200.0, 33.0):
        pose = CameraPose(10.0, -5.0, altitude, yaw, 3.0, -2.0)
        warped = render_samples([ortho], [pose], cfg, np.random.default_rng(0), np.zeros(1, int))[0][0]
        raw = render_frame(ortho, camera, pose)[0]
        north = render_frame(ortho, camera, dataclasses.replace(pose, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0))[0]
        seen = warped.sum(-1) > 0  # the turn leaves the corners black
        assert 0.6 < seen.mean() < 1.0
        assert grey_ncc(warped, north, seen) > 0.8
        assert grey_ncc(raw, north, seen) < 0.4
        assert not warped[~seen].any()
    # without heading_known the frame is the camera's own, and the random stream is the one it always was
    plain = dataclasses.replace(cfg, heading_known=False)
    pose = CameraPose(10.0, -5.0, altitude, 90.0, 3.0, -2.0)
    frame = render_samples([ortho], [pose], plain, np.random.default_rng(0), np.zeros(1, int))[0][0]
    assert np.array_equal(frame, render_frame(ortho, camera, pose)[0])


def test_the_heading_error_turns_the_frames_by_about_that_much(trained):
    ortho = ortho_of(trained[0])
    camera = AerialConfig(image_px=64).camera
    pose = CameraPose(0.0, 0.0, camera.altitude_for_footprint(90.0), 60.0)
    frame = render_frame(ortho, camera, pose)[0]
    exact = north_up_as_known(frame, camera, pose, np.random.default_rng(1), 0.0)
    rng = np.random.default_rng(1)
    turned = [north_up_as_known(frame, camera, pose, rng, 20.0) for _ in range(8)]
    seen = exact.sum(-1) > 0
    # a 20 degree heading error leaves the frames turned: less alike the exact north-up frame
    assert np.mean([grey_ncc(t, exact, seen) for t in turned]) < 0.9 * grey_ncc(exact, exact, seen)


def test_training_validation_and_calibration_samples_are_north_up(trained):
    map_dir = trained[0]
    mapdir = MapDir(map_dir)
    ortho = ortho_of(map_dir)
    cfg = aerial_config(tiny(map_dir, "m.pt", heading_known=True, heading_error_deg=0.0, domain_ops=()))
    heldout = heldout_cells(mapdir.grid, 0.0)
    frames, poses, _ = next(covered_frames([ortho], mapdir.grid, 8, np.random.default_rng(3), cfg, "all", heldout))
    for frame, pose in zip(frames, poses, strict=True):
        north = render_frame(ortho, cfg.camera, dataclasses.replace(pose, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0))
        assert grey_ncc(frame, north[0], frame.sum(-1) > 0) > 0.7


def test_the_samples_cache_keeps_heading_known_samples_apart(trained):
    mapdir = MapDir(trained[0])
    identity = {"encoder": "x"}
    keys = [
        json.dumps(samples_key(tiny(mapdir.path, "m.pt", **changes), mapdir, identity), sort_keys=True)
        for changes in ({}, {"heading_known": True}, {"heading_known": True, "heading_error_deg": 3.0})
    ]
    assert len(set(keys)) == 3
    assert "heading" not in keys[0]  # other runs keep the cache keys they had before heading_known existed


@pytest.mark.parametrize("error", [-1.0, 91.0, math.nan, math.inf, "ten"])
def test_a_bad_heading_error_is_refused(error):
    with pytest.raises(TrainError, match="heading_error_deg must be"):
        TrainConfig(map="m", out="o.pt", aerial=True, heading_known=True, heading_error_deg=error)


def test_heading_known_with_geotagged_images_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(TrainError, match="aerial frames only"):
        TrainConfig(map="m", out="o.pt", aerial=True, data="train.csv", heading_known=True)
    with pytest.raises(TrainError, match="aerial frames only"):
        TrainConfig(map="m", out="o.pt", data="train.csv", heading_known=True)
    argv = ["train", "--map", str(tmp_path), "--out", str(tmp_path / "o.pt"), "--data", "train.csv", "--heading-known"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jzi: error:") and "aerial frames only" in err and "\n" not in err


def test_a_run_resumes_only_with_the_heading_it_was_trained_with(heading_known_model):
    map_dir, out = heading_known_model
    with pytest.raises(TrainError, match="was trained with heading_known"):
        train(tiny(map_dir, out, resume=True, max_steps=25))


def test_the_registration_calibration_registers_the_cameras_own_frames(trained, monkeypatch):
    """calibrate_registration hands the refiner raw frames (it turns them itself), heading known or not."""
    mapdir = MapDir(trained[0])
    seen: list[np.ndarray] = []

    class Recorder:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def refine(self, image, *args, **kwargs) -> Registration:
            seen.append(image.copy())
            return Registration(False, "recorded")

    monkeypatch.setattr(calibrate_module, "Refiner", Recorder)
    base = aerial_config(tiny(mapdir.path, "m.pt"))
    for cfg in (base, dataclasses.replace(base, heading_known=True)):
        assert calibrate_module.calibrate_registration(mapdir, cfg, frames=6) is None
    assert len(seen) == 12
    assert all(np.array_equal(a, b) for a, b in zip(seen[:6], seen[6:], strict=True))


def test_evaluate_turns_the_aerial_queries_of_a_heading_known_model_north_up(
    heading_known_model, tmp_path, monkeypatch, capsys
):
    map_dir, model_path = heading_known_model
    got: dict = {"queries": [], "encoded": [], "registered": []}

    def spy(name, record):
        real = getattr(zoom, name)

        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            got[record].append((args, result))
            return result

        monkeypatch.setattr(zoom, name, wrapper)

    spy("aerial_queries", "queries")
    spy("encode_queries", "encoded")
    spy("refined_metrics", "registered")
    out = tmp_path / "eval"
    argv = ["evaluate", "--map", str(map_dir), "--model", str(model_path), "--aerial", "--samples", "30"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["heading_known"] is True
    assert "the model is heading-known" in capsys.readouterr().out
    ((queries_args, queries),) = got["queries"]
    ((encode_args, _),) = got["encoded"]
    encoded = encode_args[1]
    ortho = ortho_of(map_dir)
    camera = AerialConfig(image_px=64).camera
    alike = []
    for image, pose in zip(encoded, queries.poses, strict=True):
        north = render_frame(ortho, camera, dataclasses.replace(pose, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0))[0]
        alike.append(grey_ncc(image, north, image.sum(-1) > 0))
    assert np.median(alike) > 0.7  # encoded north up (with an IMU's few degrees of heading error)
    # the registration gets the camera's own frames and the attitude they were turned with
    ((reg_args, _),) = got["registered"]
    frames, poses, attitudes = reg_args[2], reg_args[3], reg_args[5]
    assert frames is queries.images and poses is queries.poses
    errors = [(a.yaw_deg - p.yaw_deg + 180) % 360 - 180 for a, p in zip(attitudes, poses, strict=True)]
    assert 0 < np.std(errors) < 6.0
    # geotagged images have no attitude: a heading-known model refuses them
    csv = tmp_path / "q.csv"
    csv.write_text("image,latitude,longitude\n")
    assert (
        main(
            [
                "evaluate",
                "--map",
                str(map_dir),
                "--model",
                str(model_path),
                "--data",
                str(csv),
                "--out",
                str(tmp_path / "e2"),
            ]
        )
        == 2
    )
    assert "heading-known" in capsys.readouterr().err
