"""`jzi evaluate`: how well a model localizes frames it never saw.

Queries are aerial frames rendered in the held-out cells of training (other
positions, headings, altitudes and colours than any training frame), from
the map's own raster and from each ``--query-rasters`` raster (the same place
at another date or from another sensor, the gap a real camera has), and/or
geotagged images from a CSV. Each is zoomed greedily and with a beam; the
metrics, with the fixes the localizer would publish, go to ``metrics.json``
and one table per query source. A heading-known model (``jzi train
--heading-known``) is given its aerial queries turned north up with an IMU's
noisy attitude, as the localizer would; it takes no geotagged queries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation import EvalConfig, evaluate_zoom, format_table
from ..evaluation.fine_stage import fine_table
from ..evaluation.zoom import FLAT_SAMPLES_GENERAL
from ..localizer import DEFAULT_MIN_CONFIDENCE
from ..localizer.refine import IMU_SIGMAS_DEG
from ..share import resolve_model
from .common import add_model_argument, calibrated_for, config_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory (jzi build-map)")
    add_model_argument(p)
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json")
    p.add_argument("--aerial", action="store_true", help="render aerial query frames from the map's orthophoto")
    p.add_argument(
        "--street",
        action="store_true",
        help="render street-level query frames from the 3D world (as the model was trained with --street)",
    )
    p.add_argument("--dsm", type=Path, help="surface model for --street (default: the raster's own)")
    p.add_argument("--roads", type=Path, help="road network GeoJSON for --street (default: the raster's own)")
    p.add_argument("--data", type=Path, help="CSV of geotagged query images: image, latitude, longitude")
    p.add_argument(
        "--query-rasters",
        type=Path,
        nargs="+",
        default=(),
        metavar="TIF",
        help="other rasters of the map's region (other dates or sensors): aerial queries from each, reported apart",
    )
    p.add_argument("--samples", type=int, default=500, help="aerial query frames (default 500)")
    p.add_argument(
        "--split", choices=["heldout", "all"], default="heldout", help="aerial queries in held-out cells or anywhere"
    )
    p.add_argument("--beam", type=int, default=4, help="beam width compared with greedy (default 4)")
    p.add_argument("--top-k", type=int, default=5, help="candidates kept per query (default 5)")
    p.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help=f"confidence from which a fix is published as FIX (default {DEFAULT_MIN_CONFIDENCE})",
    )
    p.add_argument(
        "--no-refine",
        dest="refine",
        action="store_false",
        help="skip registering the beam's candidates of aerial queries against the map's pyramid",
    )
    p.add_argument(
        "--flat",
        action="store_true",
        help="also place aerial and street queries by flat retrieval (the same encoder, nearest terminal view)",
    )
    p.add_argument(
        "--flat-samples",
        type=int,
        help="frames of the map's raster that train flat retrieval's heads (default: as many as the model's "
        f"training; {FLAT_SAMPLES_GENERAL} beside a general model)",
    )
    p.add_argument(
        "--flat-scale-km",
        type=float,
        default=100.0,
        help="region side at which the search's cost is compared with flat retrieval's (default 100)",
    )
    p.add_argument(
        "--fine-study",
        action="store_true",
        help="with --street: a ground robot's fine stage, geometric against a learned cross-view head, on the same "
        "frames of the first --query-rasters raster",
    )
    p.add_argument(
        "--fine-frames",
        type=int,
        default=200,
        help="frames of the fine-stage study (default 200; its learned head trains on 10x as many)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the query frames (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and where the metrics went."""
    config = config_from(EvalConfig, args, model=resolve_model(args.model))  # its options checked first
    calibrated_for(config.map, config.model, args.quiet)  # a general model: the map's own calibration, on first use
    report = evaluate_zoom(config)
    if report.heading_known:
        print(
            "the model is heading-known: aerial queries turned north up with an IMU's attitude "
            f"(heading ±{IMU_SIGMAS_DEG[0]:g}°, tilt ±{IMU_SIGMAS_DEG[1]:g}°, standard deviations)"
        )
    for source, results in report.results.items():
        label = "the map's own raster" if source == "map" else source
        print(f"\nqueries from {label}:")
        print(format_table(results, report.terminal_size_m))
    if report.flat_scaling:
        f = report.flat_scaling
        print(
            f"\nsearch per frame over a {f['side_km']:g} km region ({f['terminal_cells']:,} terminal cells of "
            f"{f['terminal_m']:.1f} m, {f['levels']} levels): zoom {f['zoom_b1_ms']:.2f} ms greedy, "
            f"{f['zoom_b4_ms']:.2f} ms beam 4; flat retrieval {f['flat_cosine_ms']:.1f} ms "
            f"({f['flat_per_zoom_b4']:.0f}x beam 4's)"
        )
    if report.fine_stage:
        print(fine_table(report.fine_stage))
    cal = report.calibration
    print(
        f"\ncalibration of the model for this map: fit on {cal.frames} frames (temperature {cal.temperature:g}, "
        f"covariance x {cal.covariance_scale:.2f})"
        if cal.fitted
        else "\nthe model holds no calibration: covariance and confidence are the search's own"
    )
    print(f"wrote {report.metrics_path}")
    return 0
