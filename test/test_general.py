"""A general model: trained across places, it localizes on maps it never saw; each map gets its own calibration."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from jzi_ros.data.errors import CoverageError
from jzi_ros.errors import JziError
from jzi_ros.geo import MapDir, MapError
from jzi_ros.localizer import Localizer, LocalizerConfig
from jzi_ros.localizer.estimate import inside_ellipse_95
from jzi_ros.localizer.index import zoomable
from jzi_ros.localizer.refine import RefineConfig
from jzi_ros.model import load_checkpoint
from jzi_ros.model.zoom import read_checkpoint
from jzi_ros.share import SHIPPED_MODELS, resolve_model, shipped_model
from jzi_ros.train import TrainConfig, TrainError, train
from jzi_ros.train.calibrate import calibrate_map, ensure_calibrated
from jzi_ros.train.general import Recipe, train_general

ROOT = Path(__file__).resolve().parent.parent
ZOOM_ONLY = LocalizerConfig(refine=RefineConfig(enabled=False))


@pytest.fixture(scope="module")
def general(tmp_path_factory) -> Path:
    """A tiny general model trained across two maps of a generated world of another seed than ``trained``'s."""
    root = tmp_path_factory.mktemp("general")
    recipe = root / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "grid": 2,
                "levels": 2,
                "view_px": 64,
                "train": {
                    "image_px": 64,
                    "footprint_cells": [1.0, 2.0],
                    "holdout": 0.0,
                    "max_steps": 150,
                    "dim": 64,
                    "depth": 2,
                    "eval_every_s": 600,
                },
                "places": [
                    {"name": "a", "scene": {"seed": 21, "size_px": 384}, "size_m": 180, "samples": 400},
                    {
                        "name": "b",  # another map of the same world: smaller cells, centred elsewhere
                        "scene": {"seed": 21, "size_px": 384},
                        "size_m": 96,
                        "offset_m": [40, -40],
                        "samples": 400,
                    },
                ],
            }
        )
    )
    result = train_general(Recipe.read(recipe), root / "general.pt", root / "work", {"quiet": True})
    assert result.steps == 150
    return result.out


def test_general_checkpoint_is_general_and_holds_only_the_decoder(general: Path) -> None:
    maps = general.parent / "work" / "maps"
    a, b = MapDir(maps / "a").grid, MapDir(maps / "b").grid
    assert np.allclose(a.frame.to_local(b.center_lat, b.center_lon), (40, -40), atol=1.0)  # offset_m
    state = read_checkpoint(general)
    assert state["config"]["general"] is True
    assert "encoder" not in state and state["encoder_weights"] == "imagenet-lite0"
    assert [p["name"] for p in state["extra"]["general"]["recipe"]["places"]] == ["a", "b"]
    recorded = state["extra"]["train_config"]
    assert recorded["map"] == "" and recorded["out"] == "general.pt"  # no paths of the machine it was trained on
    model, _ = load_checkpoint(general)  # the packaged weights give the identity it was trained with
    assert model.cfg.general and model.identity() == state["identity"]


def test_general_model_localizes_on_a_map_of_another_region_and_scale(general: Path, trained) -> None:
    map_dir, _, tif = trained  # another seed, size and cell size than either training place
    mapdir = MapDir(map_dir)
    model, _ = load_checkpoint(general)
    assert mapdir.grid.terminal_size_m not in (45.0, 24.0)
    loc = Localizer(mapdir, general, config=ZOOM_ONLY)  # indexed for it on first use
    assert mapdir.load_features(model.identity()).shape[0] == mapdir.grid.num_views
    est = loc.localize(np.asarray(mapdir.views[1]))  # a level-1 cell's view, as a frame of the place
    half = mapdir.grid.size_m / 2
    assert abs(est.east_m) < half and abs(est.north_m) < half  # a terminal cell of this map
    assert len(est.path) == mapdir.grid.levels and est.cell_size_m == mapdir.grid.terminal_size_m


def test_a_map_specific_model_is_refused_on_another_map_in_one_line(general: Path, trained) -> None:
    _, specific, _ = trained
    other = general.parent / "work" / "maps" / "a"  # a place of the general model: not the specific model's map
    with pytest.raises(MapError) as err:
        Localizer(other, specific, config=ZOOM_ONLY)
    assert "\n" not in str(err.value) and "trained for another region" in str(err.value)


def test_general_model_is_refused_on_a_map_of_another_grid(general: Path, tmp_path: Path, utm_tif: Path) -> None:
    from jzi_ros.geo import build_map

    mapdir = build_map([utm_tif], tmp_path / "m", grid=2, levels=3, view_px=32)
    with pytest.raises(MapError, match="zooms through 2 x 2 grids of at most 2 levels"):
        Localizer(mapdir, general, config=ZOOM_ONLY)


def test_general_model_zooms_through_a_map_of_fewer_levels(general: Path, tmp_path: Path, utm_tif: Path) -> None:
    import torch

    from jzi_ros.geo import build_map
    from jzi_ros.inference.export import export_for_map

    model, _ = load_checkpoint(general)
    full, cut = model.decoder, model.decoder.first_levels(1)
    assert cut.cfg.levels == 1 and full.cfg.levels == 2
    torch.manual_seed(0)
    query, views = torch.randn(3, full.cfg.feat_dim), torch.randn(3, 2, full.cfg.view_tokens, full.cfg.feat_dim)
    first = full(query, views, torch.zeros(3, 1, dtype=torch.long))[:, 0]
    assert torch.allclose(cut(query, views[:, :1], torch.zeros(3, 0, dtype=torch.long))[:, 0], first, atol=1e-5)

    mapdir = build_map([utm_tif], tmp_path / "m", grid=2, levels=1, view_px=64)
    assert zoomable(mapdir, model).cfg.decoder.levels == 1 and model.cfg.decoder.levels == 2  # a cut copy
    done = ensure_calibrated(mapdir, general, quiet=True)  # calibrated as the cut model it is on this map
    assert done is not None and ensure_calibrated(mapdir, general) is None
    loc = Localizer(mapdir, general)
    assert loc.calibration == done.calibration
    frame = np.asarray(mapdir.views[0])
    est = loc.localize(frame)
    assert len(est.path) == 1 and est.cell_size_m == mapdir.grid.terminal_size_m
    exported = Localizer(mapdir, export_for_map(general, mapdir.path, tmp_path / "export"), backend="onnxruntime")
    assert exported.localize(frame).path == est.path  # the cut decoder's ONNX graph zooms the same


def _coverage(mapdir: MapDir, loc: Localizer, frames) -> float:
    """Share of FIX-worthy frames (all, here) whose 95 % ellipse holds the truth."""
    hits = []
    for image, pose in frames:
        est = loc.localize(image)
        east, north = mapdir.grid.frame.to_local(est.lat, est.lon)
        truth = np.array([pose.east_m - east, pose.north_m - north])
        hits.append(inside_ellipse_95(truth[None], est.covariance_m2[None, :2, :2])[0])
    return float(np.mean(hits))


def test_per_map_calibration_moves_ellipse_coverage_toward_95(general: Path, trained) -> None:
    from jzi_ros.data import covered_frames, heldout_cells, source_ortho
    from jzi_ros.train.calibrate import map_aerial_config

    map_dir, _, _ = trained
    mapdir = MapDir(map_dir)
    model, extra = load_checkpoint(general)
    before = Localizer(mapdir, general, config=ZOOM_ONLY)
    assert not before.calibration.fitted  # no calibration of its own on a map it never saw
    done = calibrate_map(mapdir, model, extra["train_config"], frames=300, quiet=True)
    assert done.path.is_file() and mapdir.load_calibration(model.digest())["frames"] >= 250
    after = Localizer(mapdir, general, config=ZOOM_ONLY)
    assert after.calibration == done.calibration  # the node and every command read it from the map
    assert ensure_calibrated(mapdir, general) is None  # once per map

    cfg = map_aerial_config(model, extra["train_config"])
    orthos = [source_ortho(mapdir, cfg.max_footprint_m(mapdir.grid), None)]
    rng = np.random.default_rng(123)  # other poses than the fit's
    frames = [
        (image, pose)
        for images, poses, _ in covered_frames(orthos, mapdir.grid, 150, rng, cfg, "all", heldout_cells(mapdir.grid, 0))
        for image, pose in zip(images, poses, strict=True)
    ]
    raw, fitted = _coverage(mapdir, before, frames), _coverage(mapdir, after, frames)
    assert abs(fitted - 0.95) < abs(raw - 0.95), (raw, fitted)


def test_fine_tuning_starts_from_the_general_model(general: Path, trained, tmp_path: Path) -> None:
    map_dir, _, _ = trained
    config = TrainConfig(
        map=map_dir,
        out=tmp_path / "tuned.pt",
        aerial=True,
        init=general,
        image_px=64,
        samples=200,
        val_samples=60,
        footprint_cells=(1.0, 2.0),
        holdout=0.0,
        max_steps=5,
        quiet=True,
    )
    result = train(config)
    tuned, start = load_checkpoint(result.out)[0], load_checkpoint(general)[0]
    assert not tuned.cfg.general and tuned.cfg.region == MapDir(map_dir).grid.to_dict()
    assert tuned.cfg.decoder == start.cfg.decoder  # its decoder, trained on from there
    with pytest.raises(TrainError, match="heading_known"):  # its frames were not north up
        train(replace(config, heading_known=True, out=tmp_path / "north_up.pt"))


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_shipped_models_match_their_model_card(name: str) -> None:
    path = shipped_model(name)
    card = (ROOT / "models" / "README.md").read_text()
    section = card[card.index(f"## `{name}.pt`") :]
    stated = re.search(r"sha256[^0-9a-f]*([0-9a-f]{64})", section)
    assert stated, f"the model card states {name}.pt's sha256"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stated.group(1)
    model, extra = load_checkpoint(path)
    assert model.cfg.general and (model.cfg.decoder.grid, model.cfg.decoder.levels) == (4, 2)
    recipe = yaml.safe_load((ROOT / "models" / f"{name}.yaml").read_text())
    assert [p["name"] for p in extra["general"]["recipe"]["places"]] == [p["name"] for p in recipe["places"]]
    street = bool(recipe["train"].get("street"))
    assert extra["train_config"]["street"] is street and extra["train_config"]["aerial"] is not street
    assert extra["train_config"]["map"] == ""  # nothing of the machine it was trained on


def test_models_are_given_by_path_or_by_a_shipped_name(tmp_path: Path, monkeypatch) -> None:
    assert resolve_model(None) == resolve_model("") == shipped_model() == shipped_model("general-aerial.pt")
    assert resolve_model("general-street") == shipped_model("general-street") != shipped_model()
    assert resolve_model("mine.pt") == Path("mine.pt")  # not shipped: left for the loader to report
    monkeypatch.chdir(tmp_path)
    Path("general-street").write_bytes(b"")
    assert resolve_model("general-street") == Path("general-street")  # a file of that name wins
    with pytest.raises(JziError, match="no shipped model 'general-boat'; shipped: general-aerial"):
        shipped_model("general-boat")
    from jzi_ros.train.config import TrainConfig
    from jzi_ros.train.matcher import MatcherTrainConfig, train_matcher

    monkeypatch.chdir(tmp_path.parent)  # no file named after a shipped model here
    assert TrainConfig(map="m", out="o.pt", aerial=True, init="general-aerial").init == shipped_model()
    matcher = MatcherTrainConfig(model="general-aerial", matcher_from="general-street")
    assert (matcher.model, matcher.matcher_from) == (shipped_model(), shipped_model("general-street"))
    with pytest.raises(JziError, match="is a general model"):  # refused for what it is, not as a missing file
        train_matcher(MatcherTrainConfig(model="general-aerial"))


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"grid": 4}, "a recipe needs places"),
        ({"places": [{"name": "x", "size_m": 100}]}, "place 1 needs name, size_m and one of scene or raster"),
        ({"places": [{"name": "x", "size_m": 100, "scene": {}, "colour": 1}]}, "unknown: colour"),
        ({"places": [{"name": "x", "size_m": 100, "raster": "none.tif"}]}, "place x needs .*none.tif"),
        ({"train": {"map": "m"}, "places": [{"name": "x", "size_m": 1, "scene": {}}]}, "train may not set map"),
        ({"places": [{"name": "x", "size_m": 1, "scene": {}}, {"name": "x", "size_m": 2, "scene": {}}]}, "two places"),
    ],
)
def test_a_bad_recipe_says_what_is_wrong(tmp_path: Path, doc: dict, message: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TrainError, match=message):
        Recipe.read(path, tmp_path)


def test_a_street_recipe_needs_heights_at_every_place(tmp_path: Path) -> None:
    (tmp_path / "flat.tif").write_bytes(b"")
    doc = {"train": {"street": True}, "places": [{"name": "flat", "size_m": 100, "raster": "flat.tif"}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(TrainError, match="street recipe's places need heights: flat has no dsm"):
        Recipe.read(tmp_path / "recipe.yaml", tmp_path)


def test_a_general_street_model_registers_on_the_ground_and_is_calibrated_with_street_frames(
    tmp_path: Path, trained, utm_tif: Path
) -> None:
    from jzi_ros.geo import build_map

    recipe = tmp_path / "street.yaml"
    place = {"name": "s", "scene": {"seed": 21, "size_px": 384}, "size_m": 180, "samples": 96, "val_samples": 32}
    train = {"street": True, "image_px": 64, "holdout": 0.0, "max_steps": 10, "dim": 64, "depth": 1}
    recipe.write_text(yaml.safe_dump({"grid": 2, "levels": 2, "view_px": 64, "train": train, "places": [place]}))
    result = train_general(Recipe.read(recipe), tmp_path / "street.pt", tmp_path / "work", {"quiet": True})
    recorded = read_checkpoint(result.out)["extra"]["train_config"]
    assert recorded["street"] and not recorded["aerial"]

    _, _, tif = trained  # another world (its roads and heights beside it), a map it never saw
    mapdir = build_map([tif], tmp_path / "map", grid=2, levels=2, view_px=64)
    loc = Localizer(mapdir, result.out)
    assert loc.street and loc.refine_summary()["matcher"] == "street view on the ground plane"
    done = ensure_calibrated(mapdir, result.out, quiet=True)
    assert done is not None and mapdir.load_calibration(load_checkpoint(result.out)[0].digest())["frames"] >= 250
    assert Localizer(mapdir, result.out).calibration == done.calibration
    with pytest.raises(CoverageError, match="% of the map's region .at least") as refused:  # a raster of elsewhere
        calibrate_map(mapdir, *load_checkpoint(result.out)[:1], {"street": True}, quiet=True, query_rasters=[utm_tif])
    assert "roads" not in str(refused.value)  # the map's own heights and roads are not at fault

    flat = build_map([utm_tif], tmp_path / "flat", grid=2, levels=2, view_px=64)  # no heights, no roads
    with pytest.raises(TrainError, match="no street frames to calibrate a street model on"):
        calibrate_map(flat, *load_checkpoint(result.out)[:1], {"street": True}, quiet=True)
    assert ensure_calibrated(flat, result.out, quiet=True) is None  # it runs uncalibrated there, with a warning


def test_flat_retrieval_beside_a_general_model_renders_a_fixed_number_of_the_maps_frames(
    general: Path, trained, monkeypatch
) -> None:
    import jzi_ros.evaluation.zoom as zoom

    map_dir, _, _ = trained
    model, extra = load_checkpoint(general)
    asked: list[int] = []

    class EnoughError(Exception):
        pass

    def render(*args, count: int, **kwargs):
        asked.append(count)
        raise EnoughError

    monkeypatch.setattr(zoom, "render_queries", render)
    for flat_samples, expected in ((None, zoom.FLAT_SAMPLES_GENERAL), (8, 8)):
        config = zoom.EvalConfig(
            map_dir, general, map_dir / "unused", aerial=True, flat=True, flat_samples=flat_samples
        )
        with pytest.raises(EnoughError):  # the general model's training frames are of other places: never used
            zoom._flat_training_frames(config, MapDir(map_dir), model, "aerial", extra["train_config"])
        assert asked[-1] == expected
    assert extra["train_config"]["samples"] != zoom.FLAT_SAMPLES_GENERAL  # not the training's count


def test_a_raster_of_another_season_is_calibrated_across(general: Path, trained, tmp_path: Path, capsys) -> None:
    import shutil

    from jzi_ros.data.scene import SceneSpec, write_scene

    map_dir, _, _ = trained
    shutil.copytree(map_dir, tmp_path / "map")  # the session's map keeps its calibration as the other tests left it
    mapdir = MapDir(tmp_path / "map")
    autumn = write_scene(tmp_path / "autumn.tif", SceneSpec(size_px=512, seed=11, season="autumn"))
    model, extra = load_checkpoint(general)
    own = calibrate_map(mapdir, model, extra["train_config"], frames=120, quiet=True)
    across = calibrate_map(mapdir, model, extra["train_config"], frames=120, quiet=True, query_rasters=[autumn])
    record = mapdir.load_calibration(model.digest())
    assert record["query_rasters"] == [str(autumn)]  # what it was fit across is recorded beside the fit
    assert across.calibration != own.calibration  # the autumn frames were drawn and changed the fit
    with pytest.raises(TrainError, match="no such raster"):
        calibrate_map(mapdir, model, extra["train_config"], query_rasters=[tmp_path / "missing.tif"])

    from jzi_ros.tools.cli import main

    argv = ["calibrate", "--map", str(mapdir.path), "--model", str(general), "--frames", "60", "--quiet"]
    assert main([*argv, "--query-rasters", str(autumn)]) == 0
    assert f"frames (the map's raster and {autumn})" in capsys.readouterr().out  # says what it was fit across
    assert main([*argv, "--query-rasters", str(tmp_path / "missing.tif")]) == 2  # one line, no traceback
    assert "no such raster" in capsys.readouterr().err
    assert main([*argv[:5], "--frames", "0"]) == 2  # too few frames asked: one line, before any work
    assert "at least 50 frames, not 0" in capsys.readouterr().err
