"""`jzi demo`: the whole chain on an embedded default, with no data from outside.

1. draw a generated orthophoto (a GeoTIFF in UTM, see :mod:`.scene`);
2. build its map;
3. train a model on it with aerial self-supervision (`jzi train`);
4. fly a simulated camera over it into a rosbag2 (`jzi make-bag`);
5. replay the bag through the localizer (`jzi eval-bag`): metrics and pictures.

Every step is the project's own command, run in-process; finished steps are
reused by the next run (delete the output folder to start over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .scene import SceneSpec, write_scene


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a generated scene", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything it makes")
    p.add_argument("--minutes", type=float, default=2.5, help="training budget in minutes (default 2.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/5] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from .cli import main

    started = time.perf_counter()
    out = args.out
    quiet = ["--quiet"] if args.quiet else []
    spec = SceneSpec()
    tif = out / f"scene_seed{spec.seed}.tif"
    _step(1, f"scene: a {spec.size_px * spec.gsd_m:.0f} m generated orthophoto")
    if tif.exists():
        print(f"reusing {tif}")
    else:
        write_scene(tif, spec)
        print(f"wrote {tif}")

    _step(2, "map: views of every cell of a 3-level zoom grid")
    map_dir = out / "map"
    if not (map_dir / "map.yaml").exists():
        _check(main(["build-map", "--geotiff", str(tif), "--levels", "3", "--out", str(map_dir), *quiet]))
    else:
        print(f"reusing {map_dir}")
    _check(main(["show-map", str(map_dir), "--out", str(out / "overview.png")]))

    _step(3, f"model: aerial self-supervised training ({args.minutes:g} min budget)")
    model = out / "model.pt"
    if not model.exists():
        _check(
            main(
                [
                    "train",
                    "--map",
                    str(map_dir),
                    "--aerial",
                    "--out",
                    str(model),
                    "--minutes",
                    str(args.minutes),
                    "--image-px",
                    "128",
                    "--samples",
                    "4000",
                    "--val-samples",
                    "200",
                    "--footprint-cells",
                    "3",
                    "5",
                    "--holdout",
                    "0",
                    *quiet,
                ]
            )
        )
    else:
        print(f"reusing {model}")

    _step(4, "flight: a simulated drone camera over the scene, written as a rosbag2")
    bag = out / "flight"
    if not bag.exists():
        _check(
            main(
                [
                    "make-bag",
                    "--map",
                    str(map_dir),
                    "--out",
                    str(bag),
                    "--trajectory",
                    "random",
                    "--duration-s",
                    "60",
                    "--camera-hz",
                    "4",
                    "--image-px",
                    "128",
                    "--altitude-m",
                    "55",
                    "--speed-mps",
                    "10",
                    "--compressed",
                    *quiet,
                ]
            )
        )
    else:
        print(f"reusing {bag}")

    _step(5, "evaluation: the bag replayed through the localizer")
    _check(
        main(
            [
                "eval-bag",
                "--bag",
                str(bag),
                "--map",
                str(map_dir),
                "--model",
                str(model),
                "--image-topic",
                "/camera/image_raw/compressed",
                "--gt-topic",
                "/gps/fix",
                "--out",
                str(out / "eval"),
                *quiet,
            ]
        )
    )
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {out / 'eval' / 'trajectory.png'}")
    return 0


def _check(code: int) -> None:
    if code != 0:
        raise SystemExit(code)
