"""Evaluation: queries, metrics, ellipse tests, replayed bags, reports and pictures.

:func:`evaluate_zoom` measures how well a model zooms in on queries it never
saw (`jzi evaluate`); :func:`evaluate_bag` replays a rosbag2 through the
localizer against its ground truth (`jzi eval-bag`). Both take a frozen
config, write their files and return the numbers; printing is the caller's.

Submodules load on first use, so that ``jzi show-map`` (pictures only) starts
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .bag import (
        BagEvalConfig,
        BagReport,
        evaluate_bag,
        format_summary,
        frame_row,
        frame_statistics,
        select_realtime,
        write_frames_csv,
    )
    from .errors import EvaluationError
    from .flight_outputs import write_geojson, write_replay_bag
    from .metrics import error_summary, fix_summary, format_table, geodesic_m, reliability, zoom_metrics
    from .plots import draw_frame_on_map, draw_overview, plot_eval
    from .queries import Queries, aerial_queries, geotagged_queries, training_aerial_config
    from .zoom import EvalConfig, ZoomReport, encode_queries, evaluate_zoom, load_queries

_LAZY = {
    "BagEvalConfig": "bag",
    "BagReport": "bag",
    "EvalConfig": "zoom",
    "EvaluationError": "errors",
    "Queries": "queries",
    "ZoomReport": "zoom",
    "aerial_queries": "queries",
    "draw_frame_on_map": "plots",
    "draw_overview": "plots",
    "encode_queries": "zoom",
    "error_summary": "metrics",
    "evaluate_bag": "bag",
    "evaluate_zoom": "zoom",
    "fix_summary": "metrics",
    "format_summary": "bag",
    "format_table": "metrics",
    "frame_row": "bag",
    "frame_statistics": "bag",
    "geodesic_m": "metrics",
    "geotagged_queries": "queries",
    "load_queries": "zoom",
    "plot_eval": "plots",
    "reliability": "metrics",
    "select_realtime": "bag",
    "training_aerial_config": "queries",
    "write_geojson": "flight_outputs",
    "write_replay_bag": "flight_outputs",
    "write_frames_csv": "bag",
    "zoom_metrics": "metrics",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "BagEvalConfig",
    "BagReport",
    "EvalConfig",
    "EvaluationError",
    "Queries",
    "ZoomReport",
    "aerial_queries",
    "draw_frame_on_map",
    "draw_overview",
    "encode_queries",
    "error_summary",
    "evaluate_bag",
    "evaluate_zoom",
    "fix_summary",
    "format_summary",
    "format_table",
    "frame_row",
    "frame_statistics",
    "geodesic_m",
    "geotagged_queries",
    "load_queries",
    "plot_eval",
    "reliability",
    "select_realtime",
    "training_aerial_config",
    "write_geojson",
    "write_replay_bag",
    "write_frames_csv",
    "zoom_metrics",
]
