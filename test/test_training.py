"""`jzi train` and `jzi evaluate`: learning, resuming, DDP, fine-tuning, presets."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from jzi_ros.data.scene import SceneSpec, write_scene
from jzi_ros.errors import JziError
from jzi_ros.geo import MapDir
from jzi_ros.model import ZoomModel, load_checkpoint
from jzi_ros.tools.cli import main, parse_args
from jzi_ros.train import TrainConfig, TrainResult, train

SMALL = "--image-px 64 --samples 300 --val-samples 60 --footprint-cells 1 2 --dim 32 --depth 1 --heads 4".split()
SMALL += ["--batch", "32", "--quiet"]


def test_training_drives_the_loss_down_and_localizes_its_own_views(trained):
    _, model_path, _ = trained
    _, extra = load_checkpoint(model_path)
    history = extra["train_state"]["history"]
    assert extra["train_state"]["step"] == 400
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    # validation frames are new positions and headings over the same (small) map
    assert history[-1]["path_acc"] > 0.5
    assert history[-1]["level_acc"][0] >= history[-1]["path_acc"]


def test_evaluate_in_its_documented_form_reports_each_query_source_apart(trained, tmp_path, capsys):
    map_dir, model_path, _ = trained
    autumn = write_scene(tmp_path / "autumn.tif", SceneSpec(size_px=512, seed=11, season="autumn"))
    out = tmp_path / "eval"
    args = ["evaluate", "--map", str(map_dir), "--model", str(model_path), "--aerial", "--out", str(out)]
    assert main([*args, "--samples", "200", "--query-rasters", str(autumn)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["results"]) == ["map", "autumn.tif"]
    assert report["calibration"]["frames"] >= 50 and report["min_confidence"] == 0.9
    for source in report["results"].values():
        greedy, beam = source["greedy"], source["beam 4"]
        for r in (greedy, beam):
            assert r["count"] == 200
            for key in (
                "R@40m",
                "R@50m",
                "R@100m",
                "R@1cell",
                "R@2cell",
                "R@4cell",
                "median_m",
                "mean_m",
                "path_accuracy",
                "level_accuracy",
                "topk_recall",
                "top_k",
                "fix_share",
                "confidence_reliability",
            ):
                assert key in r
            assert 0.0 <= r["confidence_reliability"]["ece"] <= 1.0
            assert 0.0 < r["ellipse95_coverage"] <= 1.0
            assert r["topk_recall"] >= r["path_accuracy"]
            if r["fix_count"]:
                assert 0.0 <= r["false_fix_rate"] <= 1.0 and 0.0 <= r["fix_ellipse95_coverage"] <= 1.0
    # the beam's candidates are registered against the map's pyramid (the greedy column is the zoom alone)
    own_beam = report["results"]["map"]["beam 4"]
    assert "verified_share" not in report["results"]["map"]["greedy"]
    assert own_beam["verified_share"] > 0.5 and own_beam["false_accept_rate"] == 0.0
    assert own_beam["verified_median_m"] < 0.25 * report["terminal_size_m"] and own_beam["refine_ms_p50"] > 0
    own, other = report["results"]["map"]["greedy"], report["results"]["autumn.tif"]["greedy"]
    assert own["path_accuracy"] > 0.5
    assert other["path_accuracy"] < own["path_accuracy"]  # another season is harder than the map's own pixels
    text = capsys.readouterr().out
    assert "queries from the map's own raster:" in text and "queries from autumn.tif:" in text
    assert "R@40m" in text and "beam 4" in text and "false fixes (>2 cells)" in text
    assert "verified against the map" in text and "false accepts (>2 cells)" in text
    assert "calibration of the model" in text


def test_training_resumes_where_it_stopped(trained, tmp_path):
    map_dir = trained[0]
    out = tmp_path / "m.pt"
    assert main(["train", "--map", str(map_dir), "--aerial", "--out", str(out), "--max-steps", "10", *SMALL]) == 0
    assert (
        main(["train", "--map", str(map_dir), "--aerial", "--out", str(out), "--max-steps", "20", "--resume", *SMALL])
        == 0
    )
    _, extra = load_checkpoint(out)
    assert extra["train_state"]["step"] == 20
    assert [h["step"] for h in extra["train_state"]["history"]] == [1, 10, 20]


def test_train_in_its_documented_form_runs_on_a_minute_budget(trained, tmp_path):
    map_dir = trained[0]
    out = tmp_path / "model.pt"
    small = "--image-px 64 --samples 200 --val-samples 40 --footprint-cells 1 2 --quiet".split()
    assert main(["train", "--map", str(map_dir), "--aerial", "--minutes", "0.5", "--out", str(out), *small]) == 0
    model, extra = load_checkpoint(out)
    assert extra["train_state"]["step"] >= 1 and extra["train_state"]["history"]
    assert MapDir(map_dir).load_features(model.identity()).shape[0] == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_two_processes_matches_one_process_on_the_same_batches(trained, tmp_path):
    map_dir = trained[0]
    fixed = "--max-steps 6 --dropout 0 --seed 3 --eval-every-s 100000".split()
    args = ["train", "--map", str(map_dir), "--aerial", *fixed, *SMALL]
    one = tmp_path / "one.pt"
    assert main([*args, "--out", str(one)]) == 0
    two = tmp_path / "two.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            "-m",
            "jzi_ros.tools.cli",
            *args,
            "--out",
            str(two),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    a, extra_a = load_checkpoint(one)
    b, extra_b = load_checkpoint(two)
    ha, hb = extra_a["train_state"]["history"], extra_b["train_state"]["history"]
    assert ha[-1]["step"] == hb[-1]["step"] == 6
    assert [h["loss"] for h in hb] == pytest.approx([h["loss"] for h in ha], rel=1e-4)
    # Adam turns float noise in near-zero gradients into whole steps, so compare the
    # weights as a whole: halves of a batch without averaged gradients differ by ~1e-2
    wa = torch.cat([p.flatten() for p in a.decoder.state_dict().values()])
    wb = torch.cat([p.flatten() for p in b.decoder.state_dict().values()])
    assert (wa - wb).norm() / wa.norm() < 1e-4


def test_fine_tuning_trains_the_last_blocks_and_reindexes_the_map(trained, tmp_path):
    map_dir, base, _ = trained
    out = tmp_path / "ft.pt"
    opts = "--fine-tune-blocks 1 --max-steps 2 --workers 0 --batch 4 --image-px 64 --footprint-cells 1 2 --dim 32"
    opts += " --depth 1 --val-samples 8 --quiet"
    assert main(["train", "--map", str(map_dir), "--aerial", "--out", str(out), *opts.split()]) == 0
    tuned, _ = load_checkpoint(out)
    before, _ = load_checkpoint(base)
    assert tuned.identity()["weights"] != before.identity()["weights"]
    assert torch.equal(tuned.encoder.backbone.conv_stem.weight, before.encoder.backbone.conv_stem.weight)  # frozen
    assert not torch.equal(tuned.encoder.backbone.conv_head.weight, before.encoder.backbone.conv_head.weight)
    assert MapDir(map_dir).load_features(tuned.identity()).shape[0] == 5


def test_presets_fill_what_the_command_line_leaves_unset():
    args = parse_args(["train", "--map", "m", "--out", "o", "--aerial", "--preset", "jzi_paper", "--depth", "2"])
    assert (args.encoder, args.image_px, args.query, args.tokens, args.dim, args.heads) == (
        "vit_base_patch14_dinov2",
        392,
        "halves",
        "cls",
        768,
        8,
    )
    assert args.depth == 2  # given on the command line: kept
    assert args.label_smoothing == 0.1 and args.lr == 3e-4 and args.holdout_by_area is True
    margs = parse_args(["build-map", "--geotiff", "a.tif", "--out", "m", "--preset", "jzi_paper"])
    assert (margs.size_m, margs.grid, margs.levels, margs.view_px) == (10000, 4, 4, 384)
    with pytest.raises(JziError, match="known presets: jzi_paper, robot"):
        parse_args(["train", "--map", "m", "--out", "o", "--aerial", "--preset", "nope"])


def test_a_preset_with_an_option_the_command_lacks_is_refused(tmp_path):
    preset = tmp_path / "odd.yaml"
    preset.write_text("train:\n  depth: 2\n  no_such_option: 1\n")
    with pytest.raises(JziError, match="unknown train option.*no_such_option"):
        parse_args(["train", "--map", "m", "--out", "o", "--aerial", "--preset", str(preset)])


def test_map_features_match_a_fresh_encoder_pass(trained):
    map_dir, model_path, _ = trained
    model, _ = load_checkpoint(model_path)
    mapdir = MapDir(map_dir)
    stored = torch.from_numpy(np.array(mapdir.load_features(model.identity()))).float()
    pooled, children = model.encode(list(np.asarray(mapdir.views)))
    fresh = torch.cat([pooled[:, None], children], 1)
    assert stored.shape == fresh.shape == (5, 1 + 4, 1280)
    assert torch.allclose(stored, fresh, rtol=2e-3, atol=2e-3)  # stored as float16
    assert not torch.allclose(stored[0], fresh[1], rtol=2e-3, atol=2e-3)


def test_train_from_python_continues_a_run_and_returns_the_model_and_its_history(trained):
    _, model_path, _ = trained
    _, extra = load_checkpoint(model_path)
    stored = TrainConfig.from_dict(extra["train_config"])
    assert stored.max_steps == 400 and stored.footprint_cells == (1.0, 2.0)
    out = model_path.with_name("continued.pt")  # beside the model: the encoded samples are cached there
    shutil.copy(model_path, out)
    config = dataclasses.replace(stored, out=out, resume=True, max_steps=410)
    result = train(config)
    assert isinstance(result, TrainResult) and isinstance(result.model, ZoomModel)
    assert result.steps == 410 and result.out == out and not result.fine_tuned and result.rank == 0
    assert result.history[: len(extra["train_state"]["history"])] == extra["train_state"]["history"]
    assert result.history[-1]["step"] == 410
    assert set(result.validation) == {"path_acc", "level_acc", "median_m"}
    _, written = load_checkpoint(out)
    assert written["train_state"]["step"] == 410
    assert written["train_config"] == config.to_dict()


def _weights(model: ZoomModel) -> torch.Tensor:
    return torch.cat([p.detach().flatten().float() for p in model.state_dict().values()])


def test_fine_tuning_is_seeded_so_the_same_seed_gives_the_same_weights(trained, tmp_path):
    tiny = dict(
        map=trained[0],
        aerial=True,
        fine_tune_blocks=1,
        max_steps=2,
        workers=0,
        batch=2,
        samples=8,
        val_samples=2,
        image_px=64,
        footprint_cells=(1.0, 2.0),
        dim=32,
        depth=1,
        quiet=True,
    )
    a = train(TrainConfig(out=tmp_path / "a.pt", seed=5, **tiny))
    b = train(TrainConfig(out=tmp_path / "b.pt", seed=5, **tiny))
    c = train(TrainConfig(out=tmp_path / "c.pt", seed=6, **tiny))
    assert a.steps == b.steps == 2 and a.fine_tuned
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert not torch.equal(_weights(a.model), _weights(c.model))
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_child_tokens_from_the_childrens_own_views_are_indexed_trained_and_localize(trained, tmp_path):
    from jzi_ros.geo import feature_key, terminal_number
    from jzi_ros.localizer import Localizer
    from jzi_ros.localizer.index import encode_terminal_views

    map_dir, base_model, _ = trained
    copy = shutil.copytree(map_dir, tmp_path / "map")
    config = TrainConfig(
        map=copy, out=tmp_path / "views.pt", aerial=True, image_px=64, samples=1200, val_samples=100,
        footprint_cells=(1.0, 2.0), holdout=0.0, max_steps=300, batch=64, dim=64, depth=2, tokens="views", quiet=True,
    )  # fmt: skip
    result = train(config)
    model = result.model.cpu()
    assert model.cfg.decoder.tokens == "views"
    mapdir = MapDir(copy)
    # stored apart from the patch-pooled features of the same encoder
    assert feature_key(model.feature_identity()) != feature_key(model.identity())
    feats = mapdir.load_features(model.feature_identity())
    pooled = mapdir.load_features(load_checkpoint(base_model)[0].identity())
    assert np.array_equal(feats[:, 0], pooled[:, 0])  # the views' own global tokens are the same
    g = mapdir.grid
    # the root's children are the level-1 views, and a level-1 view's children the terminal cells' own views
    assert np.array_equal(feats[0, 1:], feats[1 : 1 + g.actions, 0])
    terminal = encode_terminal_views(mapdir, model)[0].numpy()
    for view in range(1, g.num_views):
        path = g.path_of_view(view)
        for c in range(g.actions):
            t = int(terminal_number(np.array(path + (c,)), g.actions))
            np.testing.assert_allclose(feats[view, 1 + c], terminal[t], atol=2e-2, rtol=1e-2)  # float16
    assert not np.allclose(feats[1:, 1:], pooled[1:, 1:], atol=0.1)  # not the patches pooled
    assert result.validation["path_acc"] > 0.5  # it learns to zoom through them
    # the localizer reads the same features and zooms frames of the map into their own cells
    from jzi_ros.data.aerial import posed_frames_over_map
    from jzi_ros.localizer import LocalizerConfig
    from jzi_ros.localizer.refine import RefineConfig

    config = LocalizerConfig(beam=4, refine=RefineConfig(enabled=False))
    loc = Localizer(copy, result.out, config=config)
    onnx = Localizer(copy, result.out, backend="onnxruntime", config=config)  # its step graph has the match too
    hits = []
    for frame, pose in posed_frames_over_map(mapdir, 64, 20, footprint_cells=1.5, seed=4):
        est, other = loc.localize(frame), onnx.localize(frame)
        hits.append(np.hypot(est.east_m - pose.east_m, est.north_m - pose.north_m) < g.terminal_size_m)
        assert other.path == est.path and other.confidence == pytest.approx(est.confidence, abs=1e-4)
    assert np.mean(hits) > 0.5  # 16 cells: chance is 1 in 16
