"""`jzi bench`: how fast and how big, measured, with a report.

Per-frame latency per backend (with the registration against the map as a
stage), encoder throughput and latency, memory, zoom against flat retrieval
from 1 to 100 km, and the registration matchers compared
(see :mod:`jzi_ros.evaluation.benchmark`); ``--node`` adds the node over DDS
(:mod:`jzi_ros.ros.bench`, needs ROS 2's rclpy). The report opens with the
ratios that hold on any machine. ``--render`` times the 3D world's renderer
alone (:mod:`jzi_ros.evaluation.render_bench`); ``--photos DIR`` measures the
camera model and the registration (CFOG, and ``--model``'s learned matcher)
on real photos with known poses (:mod:`jzi_ros.evaluation.photos`);
``--street-photos DIR`` zooms real street photos through maps of their
overhead context (:mod:`jzi_ros.evaluation.street_photos`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluation import street_photos
from ..evaluation.benchmark import BenchConfig, markdown, ratios, run_benchmark, write_report
from ..inference.export import export_for_map
from ..share import resolve_model
from .common import add_model_argument, calibrated_for, config_from


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list; '' for none."""
    return tuple(n for n in text.split(",") if n)


def _sizes(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes in km, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", type=Path, help="map for the per-frame latency and the node (with --model)")
    add_model_argument(
        p,
        "checkpoint for the per-frame latency and the node (with --map), the street photos, or whose learned "
        "matcher registers the --photos beside CFOG",
        "general-aerial with --map, general-street with --street-photos",
    )
    p.add_argument(
        "--backends", type=_names, default="torch,onnxruntime", help="comma-separated (default torch,onnxruntime)"
    )
    p.add_argument("--frames", type=int, default=300, help="frames timed per backend (default 300)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument(
        "--greedy-above",
        type=float,
        default=1.0,
        help="greedy until unsure: where the best cell holds this share, only it goes on (default 1: the beam)",
    )
    p.add_argument(
        "--encoders",
        type=_names,
        default="vit_small_patch14_dinov2,tf_efficientnet_lite0",
        help="backbones to time alone ('' for none)",
    )
    p.add_argument("--sizes-km", type=_sizes, default="1,10,30,100", help="region sides, scaling study ('' for none)")
    p.add_argument(
        "--feat-dim",
        type=int,
        default=1280,
        help="feature width of the scaling study's flat retrieval (default 1280: EfficientNet-Lite0; ViT-S: 384)",
    )
    p.add_argument("--queries", type=int, default=20, help="queries per scaling measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--register", action="store_true", help="compare the registration matchers on frames over --map")
    p.add_argument(
        "--register-rasters",
        nargs="+",
        type=Path,
        default=(),
        metavar="TIF",
        help="other rasters of the map's place to render the compared frames from (another sensor or year)",
    )
    p.add_argument(
        "--matchers",
        type=_names,
        default="cfog,learned,sift,sift-grad,akaze,orb,encoder",
        help="matchers to compare (learned: the model's learned matcher, where it has one; encoder: the model's "
        "own patch features)",
    )
    p.add_argument("--register-frames", type=int, default=40, help="frames per raster in the comparison")
    p.add_argument(
        "--node",
        action="store_true",
        help="also run the node as its own process over DDS (compressed frames with IMU and height at --node-rate-hz) "
        "on each of --backends: its start-up to the first fix, peak memory, whether it imports torch, latency; "
        "onnxruntime runs from an export with the map's view tokens (OUT/export), as a robot would; needs rclpy",
    )
    p.add_argument("--node-rate-hz", type=float, default=10.0, help="camera rate fed to the node (default 10)")
    p.add_argument("--node-frames", type=int, default=200, help="frames sent to the node (default 200)")
    p.add_argument(
        "--render",
        action="store_true",
        help="only time the 3D world's renderer (street, drone, panorama and training views; 1 and 2 processes)",
    )
    p.add_argument("--render-frames", type=int, default=40, help="frames per view with --render (default 40)")
    p.add_argument(
        "--photos",
        type=Path,
        metavar="DIR",
        help="real photos with known poses (an OpenDroneMap folder, e.g. ../shared/data/dji_oblique): the lens's "
        "projection onto their surface model against OpenCV's, and each registered against the others' orthophotos "
        "(with CFOG, and --model's learned matcher)",
    )
    p.add_argument(
        "--street-photos",
        type=Path,
        metavar="DIR",
        help="real street photos with their overhead context (the Just Zoom In samples' layout, e.g. "
        "../shared/data/jzi_samples): each zoomed through maps cut from its context, beside chance "
        "(--model, default general-street)",
    )
    p.add_argument(
        "--street-context",
        choices=sorted(street_photos.CONTEXTS),
        default=street_photos.CONTEXT,
        help=f"the context the maps are cut from (default {street_photos.CONTEXT}, about 1 km; maps of half its side)",
    )
    p.add_argument(
        "--street-windows",
        type=int,
        default=street_photos.WINDOWS,
        help=f"maps per photo, each with the truth at another place (default {street_photos.WINDOWS})",
    )
    p.add_argument("--quick", action="store_true", help="a reduced run of seconds (CI)")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Measure, print the report, and write it as JSON and Markdown."""
    if args.render:
        from ..evaluation.render_bench import bench_render, render_markdown

        report = bench_render(frames=3 if args.quick else args.render_frames)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "render.json").write_text(json.dumps(report, indent=2))
        (args.out / "render.md").write_text(render_markdown(report))
        print(render_markdown(report))
        print(f"wrote {args.out / 'render.json'} and {args.out / 'render.md'}")
        return 0
    if args.photos:
        from ..evaluation import photos

        found = photos.PhotoSet.load(args.photos)
        learned = None if args.model is None else resolve_model(args.model)  # its learned matcher beside CFOG
        text = photos.markdown(photos.projection_errors(found), photos.register_photos(found, model=learned))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "photos.md").write_text(text)
        print(text)
        print(f"wrote {args.out / 'photos.md'}")
        return 0
    if args.street_photos:
        config = street_photos.StreetPhotoConfig(
            args.street_photos,
            resolve_model(args.model or "general-street"),
            args.out,
            context=args.street_context,
            windows=1 if args.quick else args.street_windows,
            beam=args.beam,
            limit=2 if args.quick else None,
            quiet=args.quiet,
        )
        text = street_photos.markdown(street_photos.evaluate_street_photos(config))
        print(text)
        print(f"wrote {args.out / 'street_photos.md'} and {args.out / 'street_photos.json'}")
        return 0
    if args.node and not args.map:
        raise SystemExit("jzi bench: --node needs --map")
    given = None if args.model is None and not args.map else resolve_model(args.model)
    if args.map:  # timed with the shipped general model unless one is given, calibrated for the map
        calibrated_for(args.map, resolve_model(args.model), args.quiet)
    report = run_benchmark(config_from(BenchConfig, args, model=given))
    if args.node:
        try:
            from ..ros.bench import bench_node
        except ImportError as exc:
            raise SystemExit(f"jzi bench: --node needs ROS 2's rclpy ({exc}); source your ROS 2 setup") from None
        frames = min(args.node_frames, 20) if args.quick else args.node_frames
        nodes = {}
        for backend in args.backends or ["torch"]:
            model = resolve_model(args.model)
            if backend == "onnxruntime":  # the robot's way: an export with the map's view tokens, no torch
                model = export_for_map(model, args.map, args.out / "export", beam=args.beam)
            nodes[backend] = bench_node(
                args.map,
                model,
                rate_hz=args.node_rate_hz,
                frames=frames,
                beam=args.beam,
                backend=backend,
                transport="compressed",
                sensors=True,  # attitude and height, as the per-frame latency gives them
            )
        report["node"] = next(iter(nodes.values()))
        report["nodes"] = nodes
        report["ratios"] = ratios(report)
    json_path, md_path = write_report(report, args.out)
    print(markdown(report))
    print(f"wrote {json_path} and {md_path}")
    return 0
