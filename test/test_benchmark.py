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
    assert large["zoom_children_map_mb"] == pytest.approx(17 * 17 * 16 * 2 / 2**20)
    for row in rows:
        assert row["zoom_b1_ms"] > 0 and row["zoom_b4_ms"] > 0 and row["flat_cosine_ms"] >= 0


def test_a_run_without_map_reports_memory_and_scaling_and_renders_as_markdown(tmp_path):
    config = BenchConfig(encoders=(), sizes_km=(0.15,), feat_dim=16, quick=True, quiet=True)
    report = run_benchmark(config)
    assert report["latency"] == {} and "throughput" not in report and "encoders" not in report
    assert set(report) == {"machine", "latency", "peak_rss_mb", "scaling", "peak_rss_mb_with_scaling"}
    assert report["peak_rss_mb_with_scaling"] >= report["peak_rss_mb"] > 0
    md = markdown(report)
    assert md.startswith(f"# jzi bench ({report['machine']})")
    assert "Zoom search vs flat retrieval" in md and "| 0.15 km | 16 | 1 |" in md
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
