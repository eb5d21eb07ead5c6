"""`jzi demo`: the whole chain on an embedded default, with no data from outside.

1. draw a generated orthophoto (a GeoTIFF in UTM, see :mod:`.scene`);
2. build its map (a 1 km region, 4 x 4 grid, 2 levels: 63 m cells);
3. train a model on it with aerial self-supervision (`jzi train`, one token per view:
   the fast decoder for a CPU budget of minutes);
4. fly a simulated camera over it into a rosbag2 (`jzi make-bag`);
5. replay the bag through the localizer (`jzi eval-bag`): metrics and pictures.

Every step is the project's own command, run in-process; finished steps are
reused by the next run (delete the output folder to start over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data.scene import SceneSpec, write_scene


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything it makes")
    p.add_argument("--steps", type=int, default=2500, help="training steps (default 2500; the result is seeded)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/5] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = args.out
    quiet = ["--quiet"] if args.quiet else []
    spec = SceneSpec()
    tif = out / f"scene_seed{spec.seed}.tif"
    map_dir, model, bag = out / "map", out / "model.pt", out / "flight"

    _step(1, f"scene: a {spec.size_px * spec.gsd_m:.0f} m generated orthophoto")
    if tif.exists():
        print(f"reusing {tif}")
    else:
        write_scene(tif, spec)
        print(f"wrote {tif}")

    _step(2, "map: views of every cell of a 2-level zoom grid (16 x 16 terminal cells)")
    if (map_dir / "map.yaml").exists():
        print(f"reusing {map_dir}")
    else:
        _jzi("build-map", "--geotiff", tif, "--levels", 2, "--out", map_dir, *quiet)
    _jzi("show-map", map_dir, "--out", out / "overview.png")

    _step(3, f"model: aerial self-supervised training (10,000 frames, {args.steps} steps)")
    if model.exists():
        print(f"reusing {model}")
    else:
        opts = "--image-px 128 --samples 10000 --val-samples 200 --footprint-cells 1 2 --holdout 0 --tokens cls"
        budget = ["--max-steps", args.steps, "--minutes", 60]  # a fixed amount of work: the same model every time
        _jzi("train", "--map", map_dir, "--aerial", "--out", model, *budget, *opts.split(), *quiet)

    _step(4, "flight: a simulated drone camera over the scene, written as a rosbag2")
    if bag.exists():
        print(f"reusing {bag}")
    else:
        opts = "--trajectory random --duration-s 60 --camera-hz 4 --image-px 128 --altitude-m 80 --speed-mps 10"
        _jzi("make-bag", "--map", map_dir, "--out", bag, *opts.split(), "--compressed", *quiet)

    _step(5, "evaluation: the bag replayed through the localizer")
    topics = "--image-topic /camera/image_raw/compressed --gt-topic /gps/fix"
    _jzi("eval-bag", "--bag", bag, "--map", map_dir, "--model", model, "--out", out / "eval", *topics.split(), *quiet)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {out / 'eval' / 'trajectory.png'}")
    return 0


def _jzi(*args) -> None:
    """Run a `jzi` subcommand in this process; stop the demo if it fails."""
    from .cli import main

    code = main([str(a) for a in args])
    if code != 0:
        raise SystemExit(code)
