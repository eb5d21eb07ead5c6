"""The benchmark library: its configuration, the report it builds, and the report's Markdown."""

from __future__ import annotations

import json

import pytest

from jzi_ros.evaluation.benchmark import BenchConfig, markdown, run_benchmark, scaling, write_report
from jzi_ros.evaluation.errors import EvaluationError


@pytest.mark.parametrize(
    "options, message",
    [
        ({"frames": 0}, "frames must be an integer >= 1"),
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"beam": 0}, "beam must be an integer >= 1"),
        ({"threads": 0}, "threads must be 1 or more"),
        ({"sizes_km": (1.0, -2.0)}, "sizes_km must be positive"),
    ],
)
def test_bench_config_names_the_parameter_it_rejects(options, message):
    with pytest.raises(EvaluationError, match=message):
        BenchConfig(**options)


def test_scaling_counts_cells_views_and_map_memory_per_region_side():
    rows = scaling([0.15, 0.6], feat_dim=16, queries=1, block_rows=100)
    small, large = rows
    assert (small["levels"], small["terminal_cells"], small["zoom_views"]) == (1, 16, 1)
    assert (large["levels"], large["terminal_cells"], large["zoom_views"]) == (2, 256, 1 + 16)
    assert large["flat_map_mb"] == pytest.approx(256 * 16 * 2 / 2**20)
    assert large["zoom_map_mb"] == pytest.approx(17 * 17 * 128 * 2 / 2**20)  # 17 views of 17 float16 tokens
    assert large["zoom_map_int8_mb"] == pytest.approx(17 * 17 * (128 + 4) / 2**20)  # a float32 scale per token
    for row in rows:
        assert row["zoom_b1_ms"] > 0 and row["zoom_b4_ms"] > 0 and row["flat_cosine_ms"] >= 0
        assert row["flat_per_zoom_b1"] == pytest.approx(row["flat_cosine_ms"] / row["zoom_b1_ms"])
        assert row["flat_map_per_zoom_map"] == pytest.approx(row["flat_map_mb"] / row["zoom_map_mb"])


def test_a_run_without_map_reports_memory_and_scaling_and_renders_as_markdown(tmp_path):
    config = BenchConfig(encoders=(), sizes_km=(0.15,), feat_dim=16, quick=True, quiet=True)
    report = run_benchmark(config)
    assert report["latency"] == {} and "throughput" not in report and "encoders" not in report
    assert set(report) == {"machine", "latency", "peak_rss_mb", "scaling", "peak_rss_mb_with_scaling", "ratios"}
    assert set(report["ratios"]) == {"flat_per_zoom"}
    assert report["peak_rss_mb_with_scaling"] >= report["peak_rss_mb"] > 0
    md = markdown(report)
    assert md.startswith(f"# jzi bench ({report['machine']})")
    assert "Zoom search vs flat retrieval" in md and "| 0.15 km | 16 | 1 |" in md
    assert "- flat retrieval / zoom at 0.15 km: per query" in md
    assert "Per-frame latency" not in md and "Encoder latency" not in md
    json_path, md_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report and md_path.read_text() == md


def test_markdown_renders_latency_throughput_and_encoder_tables():
    stage = {"p50": 1.5, "p95": 2.5, "mean": 1.75}
    report = {
        "machine": "test machine",
        "latency": {
            "torch": {k: stage for k in ("decode", "encode", "search", "refine", "message", "total")}
            | {"frames": 10, "beam": 4, "jpeg_px": 640, "search_per_encode": 0.25, "refine_per_encode": 0.75}
            | {"refinement": {"on": True, "matcher": "cfog", "candidates": 5}, "verified_share": 0.9}
        },
        "throughput": {"images_per_s": {"1": 12.0, "4": 30.5}, "image_px": 224},
        "peak_rss_mb": 500.0,
        "encoders": {"tf_efficientnet_lite0": stage | {"image_px": 224, "feat_dim": 1280}},
        "peak_rss_mb_with_scaling": 600.0,
    }
    md = markdown(report)
    assert "## Per-frame latency, backend torch (beam 4, 10 frames, 640 px JPEG input)" in md
    assert "| total | 1.5 | 2.5 |" in md and "| refine | 1.5 | 2.5 |" in md
    assert "search / encoder 0.25; refinement / encoder 0.75 (cfog, heading and height known, 90 % of frames" in md
    assert "batch 1: 12.0 img/s, batch 4: 30.5 img/s" in md
    assert "500 MB (with the scaling study's tables: 600 MB)" in md
    assert "| tf_efficientnet_lite0 | 224 px | " in md
    assert "- torch: search / encoder 0.250, refinement / encoder 0.75" in md


def test_markdown_renders_the_node_and_its_ratio_to_the_localizer_in_process():
    node = {
        "rate_hz": 10.0,
        "frames_sent": 200,
        "fixes_received": 150,
        "frames_dropped": 50,
        "image_px": 640,
        "beam": 4,
        "backend": "torch",
        "transport": "compressed",
        "latency_ms": {"p50": 80.0, "p95": 120.0},
        "cpu_ms_per_fix": 55.0,
        "inprocess_cpu_ms_per_frame": 50.0,
        "node_cpu_per_inprocess": 1.1,
        "node_peak_rss_mb": 400.0,
    }
    report = {"machine": "m", "latency": {}, "peak_rss_mb": 1.0, "peak_rss_mb_with_scaling": 1.0, "node": node}
    md = markdown(report)
    assert "- node CPU per fix / in-process CPU per frame: 1.10" in md
    assert "| 150 / 200 | 50 | 80 / 120 ms | 55.0 ms | 50.0 ms | 1.10 | 400 MB |" in md
    none_back = node | {"fixes_received": 0, "latency_ms": None, "node_cpu_per_inprocess": None}
    md = markdown(report | {"node": none_back})  # a node that sent no fix still gets its row, and no ratio
    assert "| 0 / 200 | 50 | nan / nan ms |" in md and "| nan | 400 MB |" in md and "node CPU per fix /" not in md
