"""The evaluation library: metrics, ellipse tests, frame selection, ground truth, reports and pictures."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from jzi_ros.data import bags
from jzi_ros.data.errors import BagError
from jzi_ros.evaluation import (
    BagEvalConfig,
    EvalConfig,
    EvaluationError,
    Queries,
    draw_overview,
    error_summary,
    fix_summary,
    format_summary,
    format_table,
    frame_row,
    frame_statistics,
    geodesic_m,
    plot_eval,
    reliability,
    select_realtime,
    write_frames_csv,
    zoom_metrics,
)
from jzi_ros.geo import ZoomGrid, build_map
from jzi_ros.localizer import Calibration, Estimate

GRID = ZoomGrid(center_lat=47.05, center_lon=8.54, size_m=400.0, grid=2, levels=2)
"""Terminal cells of 100 m."""


def estimate_at(path: tuple[int, ...], sigma_m: float = 10.0, trusted: bool = True) -> Estimate:
    """An estimate at the centre of a terminal cell with an isotropic covariance."""
    east, north = GRID.center_m(path)
    lat, lon = GRID.center_latlon(path)
    timings = {"decode": 1.0, "encode": 2.0, "search": 3.0, "total": 6.0}
    return Estimate(
        lat, lon, east, north, np.eye(2) * sigma_m**2, 0.8, trusted, path, [], GRID.terminal_size_m, timings
    )


# metrics


def test_geodesic_distance_of_a_thousandth_degree_of_latitude_is_about_111_m():
    assert geodesic_m(47.0, 8.0, 47.001, 8.0) == pytest.approx(111.2, abs=0.2)
    assert geodesic_m([47.0, 47.0], [8.0, 8.0], [47.0, 47.0], [8.0, 8.0]).tolist() == [0.0, 0.0]


def test_error_summary_counts_recalls_in_metres_and_in_cells():
    summary = error_summary([10.0, 45.0, 90.0, 300.0], cell_m=50.0)
    assert summary["count"] == 4
    assert (summary["R@40m"], summary["R@50m"], summary["R@100m"]) == (0.25, 0.5, 0.75)
    assert (summary["R@1cell"], summary["R@2cell"], summary["R@4cell"]) == (0.5, 0.75, 0.75)
    assert summary["median_m"] == 67.5 and summary["mean_m"] == pytest.approx(111.25)


def test_error_summary_of_no_errors_only_counts_them():
    assert error_summary([], cell_m=50.0) == {"count": 0}


def test_reliability_of_confidence_that_matches_accuracy_has_no_error():
    confidence = np.array([0.25] * 4 + [0.75] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0], bool)
    result = reliability(confidence, correct)
    assert result["ece"] == pytest.approx(0.0)
    assert [b["count"] for b in result["bins"]] == [4, 4]
    overconfident = reliability(np.full(4, 0.95), np.zeros(4, bool))
    assert overconfident["ece"] == pytest.approx(0.95)


def test_zoom_metrics_of_a_search_that_finds_every_cell_are_perfect():
    true_paths = np.array([[0, 1], [3, 2], [2, 0]])
    true_latlon = np.array([GRID.center_latlon(tuple(p)) for p in true_paths])
    paths = np.stack([true_paths, np.roll(true_paths, 1, 0)], 1)  # (N, K=2, L)
    probs = np.tile([0.9, 0.1], (3, 1))
    m = zoom_metrics(GRID, paths, probs, true_latlon, true_paths, Calibration(), 0.5)
    assert m["count"] == 3 and m["path_accuracy"] == 1.0 and m["topk_recall"] == 1.0
    assert m["level_accuracy"] == [1.0, 1.0] and m["top_k"] == 2
    assert m["errors_m"] == pytest.approx([0, 0, 0], abs=1e-6)
    assert m["fix_share"] == 1.0 and m["false_fix_rate"] == 0.0 and m["fix_ellipse95_coverage"] == 1.0
    wrong = zoom_metrics(GRID, paths[:, ::-1], probs, true_latlon, true_paths, Calibration(), 0.5)
    assert wrong["path_accuracy"] == 0.0 and wrong["topk_recall"] == 1.0
    assert min(wrong["errors_m"]) >= GRID.terminal_size_m - 1e-6


def test_format_table_has_one_column_per_method_and_dashes_for_what_a_method_lacks():
    rows = {"greedy": error_summary([10.0, 60.0], 50.0), "beam 4": {"count": 0}}
    rows["greedy"] |= fix_summary([10.0, 60.0], [True, False], [True, False], [0.95, 0.5], 50.0)
    table = format_table(rows, 50.0)
    lines = table.splitlines()
    assert "greedy" in lines[0] and "beam 4" in lines[0]
    assert "R@1cell (50.0 m)" in table and "all in 95 % ellipse" in table
    assert next(line for line in lines if line.startswith("published as FIX")).split()[3:5] == ["50.0", "%"]
    r40 = next(line for line in lines if line.startswith("R@40m"))
    assert "50.0 %" in r40 and r40.rstrip().endswith("-")


# ellipses


def test_ellipse_coverage_uses_the_covariance_the_localizer_would_report():
    """One sure candidate: the ellipse is one cell's (sigma = 100 m / sqrt 12,
    95 % radius about 71 m); truth at the cell centre is inside, 2 cells off is not."""
    paths = np.array([[[0, 0], [1, 1]], [[0, 0], [1, 1]]])  # (N=2, K=2, L)
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    truth = np.array([GRID.center_latlon((0, 0)), GRID.center_latlon((1, 1))])  # (1, 1): 300 m east of (0, 0)
    true_paths = np.array([[0, 0], [1, 1]])

    def coverage(probs: np.ndarray, cal: Calibration = Calibration()) -> float:
        return zoom_metrics(GRID, paths, probs, truth, true_paths, cal, 0.5)["ellipse95_coverage"]

    assert coverage(probs) == 0.5
    # an unsure search spreads the ellipse over its candidates and covers the far truth too
    assert coverage(np.array([[0.5, 0.5], [0.5, 0.5]])) == 1.0
    # so does a calibration that scales the covariance up enough (300 m at 2.45 sigma: a scale of 18 or more)
    assert coverage(probs, Calibration(covariance_scale=20.0)) == 1.0


def test_fix_summary_counts_false_fixes_among_fix_frames_only():
    errors = [10.0, 20.0, 250.0, 500.0, 30.0]  # 100 m cells: 250 and 500 m are more than 2 cells off
    fix = [True, True, True, False, False]
    inside = [True, True, False, False, True]
    m = fix_summary(errors, fix, inside, [0.99, 0.95, 0.9, 0.2, 0.5], cell_m=100.0)
    assert m["fix_share"] == pytest.approx(0.6) and m["fix_count"] == 3
    assert m["false_fix_rate"] == pytest.approx(1 / 3)
    assert m["fix_median_m"] == 20.0 and m["fix_ellipse95_coverage"] == pytest.approx(2 / 3)
    assert m["ellipse95_coverage"] == pytest.approx(0.6)
    assert m["confidence_reliability"]["ece"] > 0
    none = fix_summary(errors, [False] * 5, inside, [0.1] * 5, cell_m=100.0)
    assert none["fix_share"] == 0.0 and "false_fix_rate" not in none


def test_frame_row_holds_the_error_and_whether_the_truth_is_inside_the_95_percent_ellipse():
    est = estimate_at((0, 0), sigma_m=10.0)
    near = GRID.frame.to_latlon(est.east_m + 20.0, est.north_m)  # 2 sigma: inside (2.45 sigma)
    far = GRID.frame.to_latlon(est.east_m + 30.0, est.north_m)  # 3 sigma: outside
    row = frame_row(GRID, 3 * 10**9, 10**9, est, tuple(float(v) for v in near))
    assert row["stamp_ns"] == 3 * 10**9 and row["t_s"] == 2.0
    assert row["error_m"] == pytest.approx(20.0, abs=0.1) and row["inside_95"] is True
    assert (row["cov_ee_m2"], row["cov_en_m2"], row["cov_nn_m2"]) == (100.0, 0.0, 100.0)
    assert row["path"] == "00" and row["total_ms"] == 6.0
    assert frame_row(GRID, 3 * 10**9, 10**9, est, tuple(float(v) for v in far))["inside_95"] is False


def test_frame_statistics_give_coverage_trust_and_latency_percentiles():
    est = estimate_at((1, 2))
    truth = GRID.center_latlon((1, 2))
    rows = [frame_row(GRID, i, 0, est, truth) for i in range(4)]
    rows[0]["error_m"], rows[0]["trusted"] = 500.0, True  # a false fix: more than 2 cells of 100 m off
    rows[1]["trusted"] = False
    stats = frame_statistics(rows, GRID.terminal_size_m)
    assert stats["ellipse95_coverage"] == 1.0
    assert stats["fix_share"] == 0.75 and stats["false_fix_rate"] == pytest.approx(1 / 3)
    assert stats["latency_ms"]["total"] == {"p50": 6.0, "p95": 6.0}
    assert set(stats["latency_ms"]) == {"decode", "encode", "search", "total"}


# frame selection and ground truth


def test_realtime_replay_of_no_frames_takes_none_and_of_a_free_node_takes_all():
    assert select_realtime(np.array([], np.int64), 0.1).tolist() == []
    stamps = np.array([0, 10, 20], np.int64) * 10**6
    assert select_realtime(stamps, 0.0).tolist() == [0, 1, 2]
    assert select_realtime(stamps, 1.0).tolist() == [0, 2]  # busy: the newest frame when free


def write_fixes(path: Path, fixes: list[tuple[int, float, float, bool]]) -> Path:
    """A bag of NavSatFix messages (stamp [ns], lat, lon, valid) on /gps/fix."""
    with bags.BagWriter(path, "mcap") as bag:
        for stamp, lat, lon, valid in fixes:
            bag.add("/gps/fix", bags.navsatfix(stamp, "gps", lat, lon, 0.0, np.eye(3), fix=valid), stamp)
    return path


def test_ground_truth_skips_invalid_fixes_and_sorts_them_by_stamp(tmp_path):
    bag = write_fixes(
        tmp_path / "truth",
        [(2 * 10**9, 47.2, 8.2, True), (10**9, 47.1, 8.1, True), (3 * 10**9, 47.3, 8.3, False)]
        + [(4 * 10**9, math.nan, 8.4, True)],
    )
    with bags.BagReader(bag) as reader:
        track = bags.read_fix_track(reader, "/gps/fix")
    assert track.t_ns.tolist() == [10**9, 2 * 10**9]
    assert track.lat.tolist() == [47.1, 47.2] and track.lon.tolist() == [8.1, 8.2]


def test_ground_truth_without_a_valid_fix_is_a_bag_error(tmp_path):
    bag = write_fixes(tmp_path / "truth", [(10**9, 47.1, 8.1, False)])
    with bags.BagReader(bag) as reader, pytest.raises(BagError, match="no valid ground-truth fix on /gps/fix"):
        bags.read_fix_track(reader, "/gps/fix")


# reports


def test_frames_csv_has_a_header_and_one_line_per_frame(tmp_path):
    truth = GRID.center_latlon((0, 0))
    rows = [frame_row(GRID, 10**9 * i, 0, estimate_at((0, 0)), truth) for i in range(3)]
    path = write_frames_csv(rows, tmp_path / "frames.csv")
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == 3 and list(read[0])[:2] == ["stamp_ns", "t_s"]
    assert [r["status"] for r in read] == ["FIX"] * 3
    assert [int(r["stamp_ns"]) for r in read] == [0, 10**9, 2 * 10**9] and read[2]["t_s"] == "2.0"


def test_summary_names_frame_counts_recalls_and_latency():
    rows = [frame_row(GRID, i, 0, estimate_at((0, 0)), GRID.center_latlon((0, 0))) for i in range(2)]
    metrics = error_summary([r["error_m"] for r in rows], GRID.terminal_size_m)
    metrics |= frame_statistics(rows, GRID.terminal_size_m)
    metrics |= {"frames_in_bag": 5, "frames_localized": 2, "frames_dropped": 3, "frames_without_truth": 0}
    text = format_summary(metrics | {"frames_rejected": 0})
    assert text.splitlines()[0] == "frames: 5 in bag, 2 localized, 3 dropped, 0 without ground truth, 0 rejected"
    assert "R@40m" in text and "100.0%" in text and "total 6.0/6.0" in text
    assert "published as FIX: 100.0 % of frames" in text and "false fixes (>2 cells) 0.0 %" in text
    assert "holds no calibration" in text


# configs and queries


def test_eval_config_needs_a_query_source_and_names_the_parameters():
    with pytest.raises(EvaluationError, match="aerial or street or data must be given"):
        EvalConfig(map=Path("m"), model=Path("m.pt"), out=Path("o"))
    with pytest.raises(EvaluationError, match="split"):
        EvalConfig(map=Path("m"), model=Path("m.pt"), out=Path("o"), aerial=True, split="train")
    cfg = EvalConfig(map=Path("m"), model=Path("m.pt"), out=Path("o"), aerial=True)
    assert (cfg.samples, cfg.split, cfg.beam, cfg.top_k, cfg.seed, cfg.device) == (500, "heldout", 4, 5, 1, "cpu")


def test_bag_eval_config_refuses_what_cannot_work_before_loading_anything():
    base = dict(bag=Path("b"), map=Path("m"), model=Path("m.pt"), image_topic="/img", gt_topic="/gps")
    with pytest.raises(EvaluationError, match="every must be 1 or more"):
        BagEvalConfig(**base, every=0)
    with pytest.raises(EvaluationError, match="max_gap_s"):
        BagEvalConfig(**base, max_gap_s=-1.0)
    with pytest.raises(EvaluationError, match="storage must be one of"):
        BagEvalConfig(**base, storage="zip")
    assert BagEvalConfig(**base).out == Path("eval_out")


def test_queries_concatenate_in_order():
    a = Queries([np.zeros((4, 4, 3), np.uint8)], np.array([[1.0, 2.0]]), np.array([[0, 1]]))
    b = Queries([np.ones((4, 4, 3), np.uint8)] * 2, np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([[2, 3], [3, 0]]))
    both = Queries.concat([a, b])
    assert len(both.images) == 3 and both.images[1].max() == 1
    assert both.latlon[:, 0].tolist() == [1.0, 3.0, 5.0] and both.paths.shape == (3, 2)


# pictures


def test_the_frame_pictures_window_holds_truth_and_estimate_inside_the_map():
    from jzi_ros.evaluation.plots import map_window

    truth, est = np.array([360.0, 470.0]), np.array([361.0, 470.0])  # near the north edge of a 1,010 m map
    centre, half = map_window(truth, est, 505.0, 150.0)
    assert half == 150.0 and centre[1] + half == 505.0  # moved south to the edge: no blank beyond it
    assert all(abs(p - centre).max() <= half for p in (truth, est))
    centre, half = map_window(np.array([-100.0, 0.0]), np.array([300.0, 0.0]), 505.0, 150.0)
    assert half == 0.6 * 400 + 30 and tuple(centre) == (100.0, 0.0)  # far apart: it grows to hold both
    centre, half = map_window(np.array([-500.0, 0.0]), np.array([500.0, 0.0]), 505.0, 150.0)
    assert half > 505.0 and (centre == 0).all()  # wider than the map: the whole map


def test_overview_and_evaluation_pictures_are_drawn_on_the_map(utm_tif, tmp_path):
    mapdir = build_map([utm_tif], tmp_path / "map", grid=2, levels=2, view_px=32)
    overview = draw_overview(mapdir, tmp_path / "pics" / "overview.png")
    assert imread(overview)[..., :3].std() > 0.05
    grid = mapdir.grid
    rows = []
    for i, path in enumerate([(0, 0), (0, 1), (1, 2), (3, 3)]):
        east, north = grid.center_m(path)
        lat, lon = grid.center_latlon(path)
        truth = tuple(float(v) for v in grid.frame.to_latlon(east + 5.0, north))
        est = Estimate(lat, lon, east, north, np.diag([40.0, 10.0]), 0.7, True, path, [], grid.terminal_size_m)
        rows.append(frame_row(grid, i * 10**9, 0, est, truth))
    pictures = plot_eval(rows, mapdir, tmp_path)
    assert [p.name for p in pictures] == ["trajectory.png", "error_cdf.png", "error_time.png"]
    assert all(p.stat().st_size > 10_000 for p in pictures)
