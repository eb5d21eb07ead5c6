"""Backends and export: ONNX Runtime against PyTorch on the CPU; TensorRT where a GPU is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from jzi_ros.geo import MapDir
from jzi_ros.inference import BackendError, make_backend
from jzi_ros.inference.export import export_onnx, read_meta
from jzi_ros.localizer import Localizer, LocalizerConfig
from jzi_ros.model import ZoomModel, load_checkpoint, save_checkpoint
from jzi_ros.tools.cli import main

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (make test installs it)")


@pytest.fixture(scope="module")
def model_and_feats(trained):
    map_dir, model_path, _ = trained
    model, _ = load_checkpoint(model_path)
    feats = np.asarray(MapDir(map_dir).load_features(model.identity()))
    return model, feats


def test_onnx_export_writes_a_query_encoder_and_a_one_step_decoder_for_any_rows(model_and_feats, tmp_path):
    import onnx

    model, _ = model_and_feats
    out = export_onnx(model, tmp_path / "onnx", beam=4)
    meta = read_meta(out)
    assert meta["identity"] == model.identity() and meta["opset"] >= 17 and meta["beam"] == 4
    assert meta["decoder"] == "step"
    dims = lambda values: [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in values]  # noqa: E731
    dec = onnx.load(str(out / "decoder.onnx"))
    cfg = model.cfg.decoder
    cache = list(cfg.cache_shape(1))
    cache[1] = "rows"  # the beam's paths: as many as a level keeps
    assert [i.name for i in dec.graph.input] == ["level", "tokens", "keys", "values"]
    assert dims(dec.graph.input) == [[], ["rows", 1 + cfg.view_tokens, cfg.dim], cache, cache]
    logits, new_keys, new_values = dims(dec.graph.output)  # the cache's other axes follow from the inputs'
    assert logits == ["rows", cfg.actions] and new_keys[:2] == new_values[:2] == cache[:2]
    enc = onnx.load(str(out / "encoder.onnx"))
    s = model.cfg.encoder.image_px
    assert dims(enc.graph.input) == [[meta["query_crops"], 3, s, s]]
    assert dims(enc.graph.output) == [[1, cfg.feat_dim], [1, cfg.dim]]  # the feature and the decoder's first token


@pytest.mark.parametrize("tokens", ["children", "match", "views"])
def test_onnx_step_graph_gives_the_pytorch_step_at_every_level(model_and_feats, tokens, tmp_path):
    import dataclasses

    from jzi_ros.model.search import ViewTokens

    model, feats = model_and_feats
    if tokens != model.cfg.decoder.tokens:  # the same encoder before a new decoder of those tokens
        cfg = dataclasses.replace(model.cfg, decoder=dataclasses.replace(model.cfg.decoder, tokens=tokens))
        torch.manual_seed(0)
        other = ZoomModel(cfg)
        other.encoder.load_state_dict(model.encoder.state_dict())
        save_checkpoint(tmp_path / f"{tokens}.pt", other, {})
        model = load_checkpoint(tmp_path / f"{tokens}.pt")[0]
    ort_b = make_backend("onnxruntime", model, feats, beam=4)
    assert ort_b.step_rows is None  # the graph's own rows: none padded
    cfg = model.cfg.decoder
    views = ViewTokens.project(model.decoder, feats)
    first = model.decoder.query_token(torch.randn(4, cfg.feat_dim))
    keys_a = keys_b = values_a = values_b = torch.zeros(cfg.cache_shape(4))
    with torch.no_grad():
        for level in range(cfg.levels):
            block = views.take(torch.tensor([level, level + 1, level, 1]), torch.float32)
            tokens = torch.cat([first[:, None], block], dim=1)
            la, keys_a, values_a = model.decoder.step(torch.tensor(level), tokens, keys_a, values_a)
            before = (tokens.numpy(), keys_b.numpy(), values_b.numpy())
            lb, keys_b, values_b = (torch.from_numpy(x) for x in ort_b.step(level, *before))
            assert torch.allclose(la, lb, atol=1e-4) and torch.allclose(keys_a, keys_b, atol=1e-4)
            # fewer rows than the beam (the root's one, a greedy level's): each row gives what it gave among four
            for rows in (slice(1, 2), slice(0, 3)):
                tok, k, v = before[0][rows], before[1][:, rows], before[2][:, rows]
                lc, kc, _ = ort_b.step(level, tok, k, v)
                assert lc.shape == (tok.shape[0], cfg.actions) and kc.shape[1] == tok.shape[0]
                np.testing.assert_allclose(lc, lb[rows].numpy(), atol=1e-5)
                np.testing.assert_allclose(kc, keys_b[:, rows].numpy(), atol=1e-5)
            if level + 1 < cfg.levels:
                first = model.decoder.action_token(level + 1, torch.tensor([0, 1, 2, 3]) % cfg.actions)


def test_two_backends_started_at_once_export_a_checkpoint_once(model_and_feats, tmp_path, monkeypatch):
    import threading

    from jzi_ros.inference import exported

    model, feats = model_and_feats
    save_checkpoint(tmp_path / "m.pt", model, {})
    fresh = load_checkpoint(tmp_path / "m.pt")[0]  # a checkpoint with no export beside it yet
    exports: list[Path] = []
    real = exported.export_onnx

    def counted(*args, **kwargs):
        exports.append(Path(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(exported, "export_onnx", counted)
    backends: list = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            backends.append(make_backend("onnxruntime", fresh, feats, beam=4))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(backends) == 2
    assert exports == [tmp_path / "m.pt.onnx-b4"], "the second waited for the first's export and used it"
    image = [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    assert np.array_equal(backends[0].encode(image), backends[1].encode(image))


def test_an_export_of_the_full_sequence_decoder_is_stale(model_and_feats, tmp_path):
    import yaml

    from jzi_ros.inference.exported import is_stale

    model, _ = model_and_feats
    out = export_onnx(model, tmp_path / "onnx", beam=4)
    assert not is_stale(out, model, 4)
    meta = read_meta(out)
    del meta["decoder"]  # written before the one-step decoder
    (out / "export.yaml").write_text(yaml.safe_dump(meta))
    assert is_stale(out, model, 4)


def test_onnxruntime_matches_pytorch_features_and_search(model_and_feats, trained):
    model, feats = model_and_feats
    torch_b = make_backend("torch", model, feats)
    ort_b = make_backend("onnxruntime", model, feats, beam=4)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80, 96, 3), dtype=np.uint8) for _ in range(6)]
    a, b = torch_b.encode(images), ort_b.encode(images)  # the export's rows: the feature, then the first token
    f = model.cfg.decoder.feat_dim
    assert np.allclose(a.numpy(), b[:, :f], rtol=1e-4, atol=1e-4), float(np.abs(a.numpy() - b[:, :f]).max())
    with torch.no_grad():
        assert np.allclose(model.decoder.query_token(a.clone()).numpy(), b[:, f:], atol=1e-4)
    for beam, top_k, prefix in ((4, 5, ()), (1, 3, ()), (4, 5, (2,))):  # greedy: the same fixed-batch graph, padded
        ra, rb = torch_b.search(a, beam, top_k, prefix), ort_b.search(b, beam, top_k, prefix)
        assert np.array_equal(ra.paths.numpy(), rb.paths), (beam, prefix)
        assert np.allclose(ra.probs.numpy(), rb.probs, atol=1e-4) and np.allclose(ra.log_probs.numpy(), rb.log_probs)
    # greedy until unsure: sure everywhere is greedy, never sure the beam; the two searches agree in between
    assert np.array_equal(ort_b.search(b, 4, 3, (), 1e-9).paths[:, 0], ort_b.search(b, 1, 3).paths[:, 0])
    assert np.array_equal(ort_b.search(b, 4, 5, (), 1.0).paths, ort_b.search(b, 4, 5).paths)
    for sure in (0.3, 0.6, 0.9):
        ra, rb = torch_b.search(a, 4, 5, (), sure), ort_b.search(b, 4, 5, (), sure)
        assert np.array_equal(ra.paths.numpy(), rb.paths) and np.allclose(ra.probs.numpy(), rb.probs, atol=1e-4)


def test_localizer_on_onnxruntime_gives_the_torch_answer(trained):
    map_dir, model_path, _ = trained
    frame = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = Localizer(map_dir, model_path, config=LocalizerConfig(beam=4)).localize(frame)
    b = Localizer(map_dir, model_path, backend="onnxruntime", config=LocalizerConfig(beam=4)).localize(frame)
    assert a.path == b.path
    assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
    assert np.allclose(a.covariance_m2, b.covariance_m2, rtol=1e-3)


def test_unknown_or_unavailable_backends_are_refused_clearly(model_and_feats):
    model, feats = model_and_feats
    with pytest.raises(BackendError, match="unknown backend"):
        make_backend("openvino", model, feats)
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA|torch-tensorrt"):
            make_backend("tensorrt", model, feats)


def test_export_command_writes_onnx(trained, tmp_path, capsys):
    assert main(["export", "--model", str(trained[1]), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "encoder.onnx" in out and "decoder.onnx" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU; none here")
def test_tensorrt_matches_pytorch(model_and_feats, trained):
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt is not installed")
    model, feats = model_and_feats
    trt = make_backend("tensorrt", model, feats, "cuda", beam=4)
    ref = make_backend("torch", model, feats, "cuda")
    images = [np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    a, b = ref.encode(images), trt.encode(images)
    assert torch.allclose(a.cpu(), b.cpu(), rtol=1e-2, atol=1e-2)
    assert torch.equal(ref.search(a, 4, 5).paths.cpu(), trt.search(a, 4, 5).paths.cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU; none here")
def test_tensorrt_fp16_reloads_its_engine_for_a_model_loaded_afresh(trained):
    """The second start finds the engine built: the model it gets was never cast to fp16 by the export."""
    pytest.importorskip("torch_tensorrt", reason="torch-tensorrt is not installed")
    map_dir, model_path, _ = trained
    images = [np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    results = []
    for _ in range(2):
        model, _ = load_checkpoint(model_path)
        trt = make_backend(
            "tensorrt", model, np.asarray(MapDir(map_dir).load_features(model.identity())), "cuda", fp16=True
        )
        results.append(trt.search(trt.encode(images), 4, 5).paths.cpu())
    assert torch.equal(results[0], results[1])


def test_bench_quick_run_writes_a_report(trained, tmp_path):
    map_dir, model, _ = trained
    code = main(
        [
            "bench",
            "--map",
            str(map_dir),
            "--model",
            str(model),
            "--quick",
            "--encoders",
            "tf_efficientnet_lite0",
            "--sizes-km",
            "1,10",
            "--register",
            "--matchers",
            "cfog,sift,encoder",
            "--node",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    # the node on each backend: with an export (onnxruntime) it never imports torch
    nodes = report["nodes"]
    assert set(nodes) == {"torch", "onnxruntime"}
    assert nodes["torch"]["node_imports_torch"] and not nodes["onnxruntime"]["node_imports_torch"]
    assert all(n["node_startup_to_first_fix_s"] > 0 and n["fixes_received"] > 0 for n in nodes.values())
    assert "| onnxruntime |" in (tmp_path / "bench.md").read_text()
    node = report["node"]  # the node in its own process, fed 20 frames with their IMU and height
    assert node["frames_sent"] == 20 and node["sensors"] and 0 < node["fixes_received"] <= 20
    diagnostics = node["node_diagnostics"]  # the drone's IMU and rangefinder reach the node with every frame
    processed = int(diagnostics["frames_processed"])
    assert 2 * int(diagnostics["stale_attitude"]) < processed, diagnostics
    assert 2 * int(diagnostics["stale_height"]) < processed, diagnostics
    assert report["ratios"]["node_cpu_per_inprocess"] == node["node_cpu_per_inprocess"] > 0
    assert set(report["latency"]) == {"torch", "onnxruntime"}
    for lat in report["latency"].values():
        assert lat["total"]["p50"] > 0 and lat["encode"]["p50"] > 0
        # the registration against the map's pyramid is a stage of its own, with its ratio to the encoder
        assert lat["refinement"]["on"] and lat["refine"]["p50"] > 0
        assert lat["refine_per_encode"] == pytest.approx(lat["refine"]["p50"] / lat["encode"]["p50"])
    rows = report["registration"]
    assert {(r["matcher"], r["heading"]) for r in rows} == {
        (m, h) for m in ("cfog", "sift", "encoder") for h in ("imu", "none")
    }
    assert all(r["source"] == "map's own" and 0 <= r["verified_share"] <= 1 for r in rows)
    assert "Registration against the map: matchers compared" in (tmp_path / "bench.md").read_text()
    rows = {r["side_km"]: r for r in report["scaling"]}
    assert rows[10.0]["levels"] == 4 and rows[10.0]["terminal_cells"] == 256**2
    assert rows[10.0]["zoom_views"] == 1 + 16 + 256 + 4096
    assert rows[10.0]["flat_map_mb"] == pytest.approx(256**2 * 1280 * 2 / 2**20)  # one float16 feature per cell
    assert rows[10.0]["zoom_map_mb"] == pytest.approx(4369 * 17 * 128 * 2 / 2**20)  # 17 float16 tokens per view
    assert rows[10.0]["zoom_cls_map_mb"] == pytest.approx(4369 * 128 * 2 / 2**20)  # one per non-terminal cell
    ratios = report["ratios"]
    assert ratios["onnxruntime_per_torch"]["total"] == pytest.approx(
        report["latency"]["onnxruntime"]["total"]["p50"] / report["latency"]["torch"]["total"]["p50"]
    )
    assert ratios["flat_per_zoom"]["side_km"] == 10.0
    assert ratios["flat_per_zoom"]["flat_map_per_zoom_map"] == pytest.approx(256**2 * 1280 / (4369 * 17 * 128))
    assert "## Ratios (the same on any machine)" in (tmp_path / "bench.md").read_text()
    assert report["peak_rss_mb"] > 0
    assert "Zoom search vs flat retrieval" in (tmp_path / "bench.md").read_text()


def test_the_antialiased_resize_without_torch_is_pytorch_s():
    from torch.nn.functional import interpolate

    from jzi_ros.inference.runtime import resize_antialiased

    rng = np.random.default_rng(3)
    for h, w, oh, ow in [(480, 640, 224, 448), (300, 200, 128, 128), (64, 64, 128, 128), (77, 1000, 64, 128)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t = torch.from_numpy(image).permute(2, 0, 1).float()[None]
        ref = interpolate(t, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)
        assert np.abs(resize_antialiased(image, oh, ow) - ref[0].permute(1, 2, 0).numpy()).max() < 0.01


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """`jzi export --format onnx --map`: the folder a robot runs from."""
    from jzi_ros.inference.export import export_for_map

    map_dir, model_path, _ = trained
    return export_for_map(model_path, map_dir, tmp_path_factory.mktemp("export") / "onnx", beam=4)


def test_an_export_whose_step_takes_the_beams_rows_only_still_runs_padded(exported, tmp_path):
    """Exports of layout 3 fixed the step's rows at the beam: fewer rows are padded and give the same logits."""
    import shutil

    import onnx

    from jzi_ros.inference.runtime import ExportedModel, OnnxBackend

    old = shutil.copytree(exported, tmp_path / "layout3")
    graph = onnx.load(str(old / "decoder.onnx"))
    beam = read_meta(old)["beam"]
    for value in [*graph.graph.input, *graph.graph.output]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param == "rows":
                d.dim_value = beam
    onnx.save(graph, str(old / "decoder.onnx"))
    views = np.load(exported / "view_tokens.npy")
    now, before = (OnnxBackend(ExportedModel.load(f), views) for f in (exported, old))
    assert now.step_rows is None and before.step_rows == beam
    meta = read_meta(exported)
    cache = np.zeros((meta["cache"][0], 1, *meta["cache"][1:]), np.float32)
    tokens = np.random.default_rng(0).normal(size=(1, 1 + meta["view_tokens"], meta["dim"])).astype(np.float32)
    a, b = now.step(0, tokens, cache, cache), before.step(0, tokens, cache, cache)
    assert a[0].shape == b[0].shape == (1, meta["actions"])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_the_exported_view_tokens_are_the_checkpoint_s_map_views_projected_level_by_level(trained, exported):
    map_dir, model_path, _ = trained
    model = load_checkpoint(model_path)[0].eval()
    mapdir = MapDir(map_dir)
    feats = torch.from_numpy(np.asarray(mapdir.load_features(model.feature_identity()), np.float32))
    saved = np.load(exported / "view_tokens.npy")
    g, v = mapdir.grid, model.cfg.decoder.view_tokens
    assert saved.shape == (g.num_views, v, model.cfg.decoder.dim)
    with torch.no_grad():
        for level in range(g.levels):  # each level's views carry that level's embeddings
            views = slice(g.level_offset(level), g.level_offset(level + 1))
            want = model.decoder.view_embedding(feats[views, :v], level).numpy()
            np.testing.assert_allclose(saved[views], want, atol=1e-5)


def test_an_export_with_its_map_localizes_without_torch_as_the_checkpoint_does(trained, exported):
    import subprocess
    import sys

    map_dir, model_path, _ = trained
    meta = read_meta(exported)
    assert meta["map"] == MapDir(map_dir).grid.to_dict() and meta["calibration"]["frames"] > 0
    assert (exported / "view_tokens.npy").is_file() and (exported / "tokens.npz").is_file()
    script = f"""
import sys
at_start = set(sys.modules)  # what the interpreter's site hooks imported
import json, numpy as np
from jzi_ros.data.aerial import posed_frames_over_map
from jzi_ros.geo import MapDir
from jzi_ros.geo.camera import body_quaternion
from jzi_ros.localizer import Localizer, LocalizerConfig
from jzi_ros.localizer.refine import Attitude
loc = Localizer({str(map_dir)!r}, {str(exported)!r}, backend="onnxruntime", config=LocalizerConfig(beam=4))
out = []
for frame, pose in posed_frames_over_map(MapDir({str(map_dir)!r}), 64, 4, footprint_cells=1.5, seed=2):
    e = loc.localize(frame, attitude=Attitude.from_body(body_quaternion(pose)), height_m=pose.altitude_m)
    out.append([e.east_m, e.north_m, e.verified, [c.prob for c in e.candidates]])
import importlib.metadata as md
dists = md.packages_distributions()
used = sorted({{d for m in set(sys.modules) - at_start for d in dists.get(m.split(".")[0], [])}})
print(json.dumps({{"torch": "torch" in sys.modules, "timm": "timm" in sys.modules, "out": out, "dists": used}}))
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout.splitlines()[-1])
    assert not got["torch"] and not got["timm"], "an export localizes with NumPy and ONNX Runtime alone"
    # every distribution it imports is in requirements-robot.txt (or comes with those there)
    robot = Path(__file__).resolve().parents[1] / "requirements-robot.txt"
    listed = {line.split("==")[0].lower() for line in robot.read_text().splitlines() if "==" in line}
    from importlib.metadata import requires

    needed = set(listed)
    for name in listed:
        needed |= {re.split(r"[ ;<>=!~\[(]", r)[0].lower() for r in requires(name) or [] if "extra ==" not in r}
    missing = {d for d in got["dists"] if d.lower() not in needed and d.lower().replace("_", "-") not in needed}
    assert missing <= {"jzi_ros", "jzi-ros"}, f"imported but not in requirements-robot.txt: {missing}"
    from jzi_ros.data.aerial import posed_frames_over_map
    from jzi_ros.geo.camera import body_quaternion
    from jzi_ros.localizer.refine import Attitude

    loc = Localizer(map_dir, model_path, config=LocalizerConfig(beam=4))
    posed = posed_frames_over_map(MapDir(map_dir), 64, 4, footprint_cells=1.5, seed=2)
    for (frame, pose), (east, north, verified, probs) in zip(posed, got["out"], strict=True):
        e = loc.localize(frame, attitude=Attitude.from_body(body_quaternion(pose)), height_m=pose.altitude_m)
        assert e.verified == verified and abs(e.east_m - east) < 1e-3 and abs(e.north_m - north) < 1e-3
        assert np.allclose([c.prob for c in e.candidates], probs, atol=1e-4)


def test_an_export_refuses_another_backend_another_map_and_a_missing_map(trained, exported, tmp_path):
    import shutil

    import yaml

    from jzi_ros.errors import JziError
    from jzi_ros.inference.export import export_for_map

    map_dir, model_path, _ = trained
    with pytest.raises(JziError, match="runs on backend onnxruntime"):
        Localizer(map_dir, exported)
    other = shutil.copytree(exported, tmp_path / "other")
    meta = read_meta(other)
    meta["map"]["size_m"] *= 2
    (other / "export.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(JziError, match="view tokens of another map"):
        Localizer(map_dir, other, backend="onnxruntime")
    bare = export_for_map(model_path, None, tmp_path / "bare", beam=4)
    with pytest.raises(JziError, match="no map's view tokens: make it with jzi export --map"):
        Localizer(map_dir, bare, backend="onnxruntime")
    with pytest.raises(JziError, match="not a model export"):
        Localizer(map_dir, tmp_path, backend="onnxruntime")


def test_tensorrt_engines_are_cached_per_gpu_version_and_precision_and_rebuilt_when_their_graph_changes(
    exported, tmp_path
):
    import shutil

    from jzi_ros.inference.tensorrt_runtime import ENGINE_META, device_of, engine_folder, graph_digest, needs_build

    export = shutil.copytree(exported, tmp_path / "export")
    folder = engine_folder(export, "NVIDIA Jetson AGX Orin (64GB)", (8, 7), "10.3.0", True)
    assert folder == export / "engines" / "NVIDIA_Jetson_AGX_Orin_64GB-sm87-trt10.3.0-fp16"
    assert engine_folder(export, "NVIDIA H100", (9, 0), "10.3.0", False).name == "NVIDIA_H100-sm90-trt10.3.0-fp32"
    assert needs_build(folder, export), "no engine yet"
    folder.mkdir(parents=True)
    for graph in ("encoder", "decoder"):
        (folder / f"{graph}.engine").write_bytes(b"engine")
    digests = {g: graph_digest(export / f"{g}.onnx") for g in ("encoder", "decoder")}
    (folder / ENGINE_META).write_text(json.dumps({"graphs": digests}))
    assert not needs_build(folder, export), "built from these graphs: loaded, not rebuilt"
    assert needs_build(folder, export, force=True), "force_engine_update"
    import time

    from jzi_ros.inference.tensorrt_runtime import built_since

    # a forced start that waited for another's rebuild takes those engines: built after it asked
    assert built_since(folder, time.time() - 60) and not built_since(folder, time.time() + 60)
    assert not built_since(tmp_path / "none", 0.0)
    (export / "decoder.onnx").write_bytes((export / "decoder.onnx").read_bytes() + b" ")
    assert needs_build(folder, export), "the graph changed: the engine is stale"
    assert (device_of("cuda"), device_of("cuda:1")) == (0, 1)
    with pytest.raises(BackendError, match="cuda or cuda:N"):
        device_of("cpu")


def test_tensorrt_engines_are_built_from_the_export_s_graphs_with_their_fixed_shapes(exported, tmp_path, monkeypatch):
    """The builder's calls, up to TensorRT's own build (a stand-in for the GPU library, which this machine lacks)."""
    import shutil
    import sys
    import types

    import onnx

    from jzi_ros.inference.tensorrt_runtime import ENGINE_META, build_engines, engine_folder, needs_build

    calls: dict = {"profiles": [], "fp16": [], "networks": []}

    class Tensor:  # TensorRT gives a named (dynamic) axis as -1
        def __init__(self, value_info):
            self.name = value_info.name
            self.shape = tuple(
                d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim
            )

    class Network:
        num_inputs = 0

        def get_input(self, i):
            return self.tensors[i]

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data):
            graph = onnx.load_from_string(data).graph
            self.network.tensors = [Tensor(v) for v in graph.input]
            self.network.num_inputs = len(self.network.tensors)
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}
            calls["profiles"].append(self.shapes)

        def set_shape(self, name, low, opt, high):
            assert low == opt == high
            self.shapes[name] = opt

    class Config:
        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            calls["fp16"].append(flag)

        def add_optimization_profile(self, profile):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["networks"].append(Network())
            return calls["networks"][-1]

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"serialized " + ",".join(t.name for t in network.tensors).encode()

    fake = types.SimpleNamespace(
        __version__="10.0-stand-in",
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=Builder,
        OnnxParser=Parser,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        BuilderFlag=types.SimpleNamespace(FP16="FP16"),
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    export = shutil.copytree(exported, tmp_path / "export")
    meta = read_meta(export)
    folder = build_engines(export, engine_folder(export, "GPU", (8, 7), "10.0", True), fp16=True, rows=meta["beam"])
    cache = [meta["cache"][0], meta["beam"], *meta["cache"][1:]]
    encoder_shapes, decoder_shapes = calls["profiles"]
    assert encoder_shapes == {"crops": (meta["query_crops"], 3, meta["image_px"], meta["image_px"])}
    assert decoder_shapes == {
        "tokens": (meta["beam"], 1 + meta["view_tokens"], meta["dim"]),
        "keys": tuple(cache),
        "values": tuple(cache),
    }, "the level is a scalar: no profile"
    built = {t.name: t.shape for t in calls["networks"][1].tensors}  # the step's rows fixed at the beam
    assert built["tokens"] == decoder_shapes["tokens"] and built["keys"] == tuple(cache)
    assert calls["fp16"] == ["FP16", "FP16"]
    assert (folder / "decoder.engine").read_bytes() == b"serialized level,tokens,keys,values"
    assert not needs_build(folder, export) and (folder / ENGINE_META).is_file()
    assert not folder.with_name(folder.name + ".partial").exists()


def test_the_tensorrt_backend_of_an_export_says_what_is_missing_on_a_machine_without_it(trained, exported):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the GPU tests run instead")
    with pytest.raises(BackendError, match="tensorrt is not installed"):
        Localizer(trained[0], exported, backend="tensorrt")
