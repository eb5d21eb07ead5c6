"""`jzi train-matcher`: give a checkpoint a learned matcher for the registration.

A small convolutional descriptor is trained so that a frame projected onto
the ground and the map's crop where it truly lies agree, and shifted crops do
not, across the map's raster and every ``--query-rasters`` raster (by default
those the checkpoint was trained with) with the training's domain changes.
It goes into the checkpoint (``--out``, default the checkpoint itself) with
the registration's covariance scale refitted for it; the node, ``eval-bag``
and ``jzi export`` then use it (``matcher: auto``). ``--matcher-from`` takes
another checkpoint's matcher instead of training one. The training is
:func:`jzi_ros.train.matcher.train_matcher`; this module parses the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model.descriptor import MAX_WINDOW, DescriptorConfig
from ..train.matcher import MatcherResult, MatcherTrainConfig, train_matcher
from .common import config_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--model", required=True, type=Path, help="checkpoint (jzi train) to give a learned matcher")
    p.add_argument("--out", type=Path, help="checkpoint to write (default: --model itself)")
    p.add_argument("--map", type=Path, help="map directory (default: the one the checkpoint was trained for)")
    p.add_argument(
        "--query-rasters",
        type=Path,
        nargs="*",
        default=None,
        metavar="TIF",
        help="other rasters of the map's region to pair with the map (default: the checkpoint's; none: the flag alone)",
    )
    p.add_argument("--pairs", type=int, default=3000, help="training pairs (a tenth more are held out; default 3000)")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget after the pairs are made (default 6)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps instead of the budget")
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="fit neither its checks nor the registration's scale (the settings' checks then apply)",
    )
    p.add_argument(
        "--checks-only",
        action="store_true",
        help="keep the checkpoint's learned matcher and only refit its checks and the registration's scale",
    )
    p.add_argument(
        "--matcher-from",
        type=Path,
        metavar="CKPT",
        help="take the learned matcher of this other checkpoint (trained on another place, sensor or years) instead "
        "of training one, and fit its checks and the registration's scale on this map (the training's options, "
        "--pairs, --minutes, --max-steps, --window and --channels, then do not apply)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=DescriptorConfig.window,
        help=f"normalize the descriptor by the statistics of a square of this side around each pixel [px, odd, 3 "
        f"to {MAX_WINDOW}; 0: the whole image's] (default {DescriptorConfig.window}: the map's descriptors are then "
        "computed once and reused, see the node's reference_cache_mb)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=DescriptorConfig.channels,
        help=f"descriptor channels per pixel (default {DescriptorConfig.channels}; the registration's correlation "
        "costs about in proportion)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def summary(result: MatcherResult) -> str:
    """What the training did and how the learned descriptor compares with CFOG on held-out pairs."""
    r = result.report
    lines = []
    if "taken_from" in r:
        others = ", ".join(Path(p).name for p in r["rasters"])
        lines.append(
            f"took the learned matcher of {r['taken_from']} (trained on its map's raster"
            + (f" and {others})" if others else " alone)")
        )
    if "held_out" in r:
        held = r["held_out"]
        learned, cfog = held["learned"], held["cfog"]
        lines += [
            f"trained the learned matcher {r['steps']} steps in {r['train_s'] / 60:.1f} min on {r['pairs']} pairs",
            f"held-out pairs ({held['pairs']}, cross-source {held['cross_share']:.0%}), learned (CFOG):",
            f"  whole frame's peak within a pixel of the truth {learned['peak_within_1px']:.1%} "
            f"({cfog['peak_within_1px']:.1%}), median distinctiveness {learned['distinctiveness']:.2f} "
            f"({cfog['distinctiveness']:.2f})",
            f"  patches whose peak is within a pixel of the truth {learned['patches_within_1px']:.1%} "
            f"({cfog['patches_within_1px']:.1%})",
        ]
    if result.checks is None:
        lines.append("no checks fitted (--no-calibrate): the settings' apply, and the registration's factors stay")
    else:
        c = result.checks
        kept = c["right_kept"]
        lines.append(
            f"checks on {c['frames']} frames: the best match at least {c['min_distinctiveness']:.2f}x the runner-up "
            f"with the heading known ({kept['known']:.0%} of right places keep it), "
            f"{c['min_distinctiveness_searched']:.2f}x searched ({kept['searched']:.0%})"
        )
        verified = c["right_verified"]
        lines.append(
            f"right places verified with the heading known: learned {verified['learned']['known']:.0%}, "
            f"CFOG {verified['cfog']['known']:.0%}; searched: {verified['learned']['searched']:.0%}, "
            f"{verified['cfog']['searched']:.0%}; matcher auto uses "
            + ("the learned one" if c["better_than_cfog"] else "CFOG (it verifies more here)")
        )
    if result.registration_scale is not None:
        lines.append(
            f"registration covariance x {result.registration_scale:.2f} on {result.registration_frames} verified frames"
        )
    elif result.checks is not None:
        lines.append("the registration's covariance factor was not fitted (no calibration, or too few frames verified)")
    if result.fallback is not None:
        lines.append(
            f"CFOG, registering again where it verifies nothing: covariance x {result.fallback.scale:.2f} on "
            f"{result.fallback.frames} verified frames"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Train the matcher as the options say; print the comparison and where it was written."""
    if args.query_rasters is not None:
        args.query_rasters = tuple(args.query_rasters)
    result = train_matcher(
        config_from(MatcherTrainConfig, args, descriptor=DescriptorConfig(window=args.window, channels=args.channels))
    )
    print(summary(result))
    print(f"wrote {result.out}")
    return 0
