"""`jzi train`: teach the decoder (and optionally the encoder's last blocks) to zoom.

Three kinds of training data, alone or together:

* ``--aerial``: frames of a downward camera rendered from the map's own
  orthophoto (aerial self-supervision), labelled by the cell under the camera,
  and from ``--query-rasters`` (other dates or sensors of the same place),
  with domain changes (``--domain-ops``) for the gap a real camera has;
* ``--street``: street-level frames (a ground robot's camera, ``--street-panorama``
  for a 360° one) rendered from the 3D world of the place: the
  ``--query-rasters`` (best another season's) or the map's own raster over its
  surface model, at random places on its roads, labelled by the cell that holds
  the camera (:mod:`jzi_ros.data.street`);
* ``--data CSV``: geotagged images (columns image, latitude, longitude).

``--heading-known`` trains a model for robots that know their camera's
heading and tilt (an IMU): aerial frames are turned north up and nadir with
an attitude off by ``--heading-error-deg`` (heading) and half a degree (tilt),
and the localizer turns every frame the same way with the IMU's attitude.

With a frozen encoder (the default; ``--fine-tune-blocks 0``) every frame and
every view is encoded once and the decoder trains on cached features: fast,
and the CPU default. At the end a calibration of the covariance and the
confidence is fit on the validation frames and stored in the checkpoint.
``--fine-tune-blocks N`` trains the encoder's last N blocks too, encoding
frames and views at every step (a GPU job).
Multi-GPU: ``torchrun --nproc_per_node K -m jzi_ros.tools.cli train ...``.

The training itself is :func:`jzi_ros.train.train`; this module parses the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.augment import DOMAIN_OPS
from ..model import PACKAGED_WEIGHTS, RANDOM_WEIGHTS, TOKENS
from ..train import DEFAULT_DOMAIN_OPS, DEFAULT_ENCODER, DEFAULT_WEIGHTS, TrainConfig, TrainResult, train
from .common import config_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", type=Path, help="map directory (jzi build-map); not with --general")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. model.pt")
    p.add_argument("--aerial", action="store_true", help="train on frames rendered from the map's orthophoto")
    p.add_argument(
        "--street",
        action="store_true",
        help="train on street-level frames rendered from the 3D world (the raster's surface model, on its roads)",
    )
    p.add_argument("--street-panorama", action="store_true", help="street frames as 360° panoramas (2:1)")
    p.add_argument("--dsm", type=Path, help="surface model under the rasters for --street (default: the raster's own)")
    p.add_argument("--roads", type=Path, help="road network GeoJSON for --street (default: the raster's own)")
    p.add_argument("--data", type=Path, help="CSV of geotagged images: image, latitude, longitude")
    p.add_argument(
        "--query-rasters",
        type=Path,
        nargs="+",
        default=(),
        metavar="TIF",
        help="other rasters of the map's region (other dates or sensors) to render aerial frames from as well "
        "(street frames only from them)",
    )
    p.add_argument(
        "--domain-ops",
        nargs="*",
        default=DEFAULT_DOMAIN_OPS,
        choices=list(DOMAIN_OPS),
        metavar="OP",
        help=f"domain changes of aerial frames (default: {' '.join(DEFAULT_DOMAIN_OPS)}; add lens for a real "
        "lens's rectified frames; none: give the flag alone)",
    )
    p.add_argument(
        "--heading-known",
        action="store_true",
        help="a model for robots with an IMU: every aerial frame is turned north up and nadir with a noisy "
        "attitude, as the localizer then turns each frame with the IMU's (frames without a heading are "
        "refused); aerial frames only, not with --data",
    )
    p.add_argument(
        "--heading-error-deg",
        type=float,
        default=10.0,
        help="standard deviation [deg] of the heading error a --heading-known run trains with, 0-90 (default 10)",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="wall-time budget of the whole run (default 10)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps instead of the budget")
    p.add_argument("--samples", type=int, default=12000, help="aerial training frames (default 12000)")
    p.add_argument("--val-samples", type=int, default=500, help="aerial validation frames in held-out cells")
    p.add_argument(
        "--footprint-cells",
        type=float,
        nargs=2,
        default=(4.0, 8.0),
        metavar=("MIN", "MAX"),
        help="ground width an aerial frame sees, in terminal cells (default 4 8)",
    )
    p.add_argument("--augment", type=int, default=2, help="augmented copies of each geotagged image (default 2)")
    p.add_argument("--holdout", type=float, default=0.1, help="share of terminal cells held out (default 0.1)")
    p.add_argument("--holdout-by-area", action="store_true", help="hold out whole cells of the level above")
    p.add_argument("--preset", help="defaults from config/presets/NAME.yaml (e.g. jzi_paper, robot) or a YAML path")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"timm backbone (default {DEFAULT_ENCODER})")
    p.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help=f"backbone weights: .pth/.safetensors, {PACKAGED_WEIGHTS} or {RANDOM_WEIGHTS}",
    )
    p.add_argument("--image-px", type=int, default=224, help="encoder input size (default 224)")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls", help="global feature (ViT CLS or mean)")
    p.add_argument(
        "--query",
        choices=["single", "halves"],
        default="single",
        help="frame encoding: centre square (default) or the paper's two halves of an S x 2S resize",
    )
    p.add_argument(
        "--tokens",
        choices=TOKENS,
        default=TOKENS[0],
        help="decoder tokens per view: one per child pooled from the view's patches (default), the paper's one "
        "CLS token, one per child from the child's own view (the map is indexed with its terminal cells' views), "
        "or one CLS token whose final state is matched with each child's pooled token (a CLS step's cost)",
    )
    p.add_argument(
        "--fine-tune-blocks",
        type=int,
        default=0,
        help="also train the encoder's last N blocks (a GPU job; default 0)",
    )
    p.add_argument(
        "--learned-matcher",
        action="store_true",
        help="also train the registration's learned matcher (jzi train-matcher) in the same --minutes (aerial only)",
    )
    p.add_argument("--workers", type=int, default=2, help="data loader workers when fine-tuning (default 2)")
    p.add_argument("--dim", type=int, default=128, help="decoder width (default 128; the paper: 768)")
    p.add_argument("--depth", type=int, default=3, help="decoder layers (default 3; the paper: 6)")
    p.add_argument("--heads", type=int, default=4, help="decoder heads (default 4; the paper: 8)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--eval-every-s", type=float, default=60.0, help="validate and save this often [s]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the run saved at --out")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this model's decoder (e.g. the shipped general model) and fine-tune it for --map",
    )
    p.add_argument(
        "--general",
        type=Path,
        default=None,
        metavar="RECIPE",
        help="train a general model across the places of a recipe (models/general-aerial.yaml) instead of one map; "
        "its train options and these given on the line (--minutes, --max-steps, --seed, --device, --threads)",
    )
    p.add_argument("--work", type=Path, default=Path("general_work"), help="--general: where the places' maps go")
    p.add_argument("--data-dir", type=Path, default=None, help="--general: the folder of the recipe's rasters")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run, preset_section="train")


def summary(result: TrainResult) -> str:
    """What a run did, in a few lines: steps, frames, their rates, validation and calibration."""
    model, val = result.model, result.validation
    nan = float("nan")
    done = f"trained {result.steps} steps in {result.elapsed_s / 60:.1f} min"
    if result.fine_tuned:
        return (
            f"{done}, the last {model.cfg.encoder.name} blocks with the decoder; map re-indexed for the "
            f"fine-tuned encoder; validation: median error {val.get('median_m', nan):.1f} m"
        )
    if result.heading_known:
        done += " (heading known: frames north up)"
    median = (
        f"median error {val['median_cells']:.2f} cells over its places"
        if "median_cells" in val  # a general model's places have cells of many sizes
        else f"median error {val.get('median_m', nan):.1f} m"
    )
    lines = [f"{done}; validation: path accuracy {val.get('path_acc', nan):.3f}, {median}"]
    if result.encode_s > 1:
        train_min = max(result.elapsed_s - result.encode_s, 1e-9) / 60
        lines.append(
            f"{result.frames} frames rendered and encoded in {result.encode_s / 60:.1f} min "
            f"({result.frames / (result.encode_s / 60):.0f} frames/min); about {result.steps / train_min:.0f} steps/min"
        )
    cal = result.calibration
    if cal is not None:
        lines.append(
            f"calibration on {cal.frames} validation frames: temperature {cal.temperature:g}, "
            f"covariance x {cal.covariance_scale:.2f}, confidence curve {cal.confidence_weight:.2f} "
            f"logit + {cal.confidence_bias:.2f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Train as the options say; print what was done and where it was written."""
    if args.general is not None:
        from ..train.general import Recipe, train_general

        given = {k: getattr(args, k) for k in ("seed", "device", "threads", "quiet")}
        if args.max_steps is not None:
            given["max_steps"] = args.max_steps
        if args.minutes != 10.0:
            given["minutes"] = args.minutes
        result = train_general(Recipe.read(args.general, args.data_dir), args.out, args.work, given)
    elif args.map is None:
        raise SystemExit("jzi train: give --map (or --general RECIPE)")
    else:
        result = train(config_from(TrainConfig, args))
    if result.rank == 0:
        print(summary(result))
        print(f"wrote {result.out}")
    return 0
