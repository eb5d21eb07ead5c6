"""`jzi calibrate`: fit a model's calibration for one map, from the map's own rendered frames, into the map.

A general model (the shipped one by default) has no calibration of its own:
its probabilities, covariances and confidences are made honest per map
(temperature, covariance scale, confidence curve, the registration's scales),
once, in under a minute on two cores. ``jzi eval-bag``, ``jzi export`` and
``jzi index-map`` do it on first use; the node reads what this wrote.

``--from-replay`` fits the registration's scales instead on flights the robot
made with ground truth, replayed by ``jzi eval-bag``
(:mod:`jzi_ros.evaluation.replay_calibration`), for a drone model's checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.errors import EvaluationError
from ..evaluation.replay_calibration import calibrate_model_from_replays, check_drone_model
from ..geo import MapDir
from ..model import load_checkpoint
from ..share import resolve_model
from ..train.calibrate import MAP_FRAMES, calibrate_map
from .common import add_model_argument, calibrated_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", required=True, type=Path, help="map directory (jzi build-map)")
    add_model_argument(p)
    p.add_argument("--frames", type=int, default=MAP_FRAMES, help=f"frames to fit on (default {MAP_FRAMES})")
    p.add_argument(
        "--query-rasters",
        nargs="+",
        type=Path,
        default=[],
        metavar="TIF",
        help="the map's place at another date or from another sensor: calibration frames are drawn from them too, "
        "so covariances and confidence fit that gap (default: the map's own raster only)",
    )
    p.add_argument(
        "--from-replay",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="instead of rendered frames, fit the verified fixes' covariance and heading scales on these replays of "
        "real flights with ground truth (jzi eval-bag --out folders of this model on this map); the zoom's "
        "calibration stays",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, then print what was fit and where it went."""
    if args.from_replay and args.query_rasters:
        raise EvaluationError("--query-rasters draws rendered frames, --from-replay fits on replays: give one")
    path = resolve_model(args.model)
    model, extra = load_checkpoint(path)
    if args.from_replay:
        return _from_replay(args, path, model, extra)
    done = calibrate_map(
        MapDir(args.map), model, extra.get("train_config") or {}, args.frames, args.seed, args.quiet, args.query_rasters
    )
    cal = done.calibration
    across = f" (the map's raster and {', '.join(str(r) for r in args.query_rasters)})" if args.query_rasters else ""
    print(
        f"calibrated on {cal.frames} frames{across} in {done.seconds:.0f} s: temperature {cal.temperature:g}, "
        f"covariance x {cal.covariance_scale:.2f}, confidence {cal.confidence_weight:.2f} logit + "
        f"{cal.confidence_bias:.2f}, registration x {cal.registration_scale:.2f} "
        f"({cal.registration_frames} verified frames)"
    )
    print(f"wrote {done.path}")
    return 0


def _from_replay(args: argparse.Namespace, path: Path, model, extra: dict) -> int:
    """The registration's scales fitted on replays (a general model's zoom calibrated first); print what changed."""
    check_drone_model(extra, str(path))
    calibrated_for(args.map, (model, extra), args.quiet)
    fit = calibrate_model_from_replays(MapDir(args.map), args.from_replay, model, extra, str(path))
    cal = fit.calibration
    ran = "/".join(f"{v:.2f}" for v in fit.replay_scales)
    print(
        f"fitted on {fit.frames} verified fixes of {len(args.from_replay)} replay(s): registration covariance "
        f"x {ran} (as replayed) -> x {cal.registration_scale:.2f}; truth inside the 95 % ellipse of "
        f"{100 * fit.before:.1f} % of them as replayed, {100 * fit.after:.1f} % with the new factor (in-sample); "
        f"heading variance x {cal.heading_scale:.2f}"
        + ("" if fit.heading_fitted else f" (kept: {fit.headings} fixes with a true heading)")
        + f"; for the {fit.matcher} matcher the replays registered with"
    )
    print(f"wrote {fit.path}")
    return 0
