"""`jzi demo`: the whole chain on an embedded default, with no data from outside.

1. draw a generated orthophoto (a GeoTIFF in UTM, see :mod:`jzi_ros.data.scene`);
2. build its map (a 1 km region, 4 x 4 grid, 2 levels: 63 m cells);
3. train a model on it with aerial self-supervision (one token per view:
   the fast decoder for a CPU budget of minutes);
4. fly a simulated camera over it into a rosbag2;
5. replay the bag through the localizer: metrics and pictures.

Each step is one call of the library, as a Python program would make it;
finished steps are reused by the next run (delete the output folder to start over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..data.flight import FlightConfig, write_flight
from ..data.scene import SceneSpec, write_scene
from ..evaluation import BagEvalConfig, draw_overview, evaluate_bag, format_summary
from ..geo import MapDir, build_map
from ..progress import bar
from ..train import TrainConfig, train
from .train import summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything it makes")
    p.add_argument("--steps", type=int, default=2500, help="training steps (default 2500; the result is seeded)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/5] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the five steps, reusing what an earlier run finished."""
    started = time.perf_counter()
    out, quiet = args.out, args.quiet
    spec = SceneSpec()
    tif = out / f"scene_seed{spec.seed}.tif"
    map_dir, model, bag = out / "map", out / "model.pt", out / "flight"

    _step(1, f"scene: a {spec.size_px * spec.gsd_m:.0f} m generated orthophoto")
    if tif.exists():
        print(f"reusing {tif}")
    else:
        print(f"wrote {write_scene(tif, spec)}")

    _step(2, "map: views of every cell of a 2-level zoom grid (16 x 16 terminal cells)")
    if (map_dir / "map.yaml").exists():
        print(f"reusing {map_dir}")
    else:
        built = build_map([tif], map_dir, levels=2, progress=bar("rendering views", quiet))
        print(f"built {built.grid.describe()}")
    print(f"wrote {draw_overview(MapDir(map_dir), out / 'overview.png')}")

    _step(3, f"model: aerial self-supervised training (10,000 frames, {args.steps} steps)")
    if model.exists():
        print(f"reusing {model}")
    else:
        config = TrainConfig(
            map=map_dir,
            out=model,
            aerial=True,
            max_steps=args.steps,  # a fixed amount of work: the same model every time
            minutes=60,
            image_px=128,
            samples=10000,
            val_samples=200,
            footprint_cells=(1.0, 2.0),
            holdout=0.0,
            tokens="cls",
            quiet=quiet,
        )
        print(summary(train(config)))

    _step(4, "flight: a simulated drone camera over the scene, written as a rosbag2")
    flight_config = FlightConfig(
        out=bag,
        map=map_dir,
        trajectory="random",
        duration_s=60,
        camera_hz=4,
        image_px=128,
        altitude_m=80,
        speed_mps=10,
        compressed=True,
        quiet=quiet,
    )
    if bag.exists():
        print(f"reusing {bag}")
    else:
        flight = write_flight(flight_config)
        print(f"wrote {flight.path}: {flight.frames} frames on {flight.image_topic}, {flight.fixes} fixes")

    _step(5, "evaluation: the bag replayed through the localizer")
    report = evaluate_bag(
        BagEvalConfig(
            bag=bag,
            map=map_dir,
            model=model,
            image_topic=flight_config.frame_topic,
            gt_topic=flight_config.gt_topic,
            out=out / "eval",
            quiet=quiet,
        )
    )
    print(format_summary(report.metrics))
    for path in (report.metrics_path, report.frames_path, report.estimates_path, *report.pictures):
        print(f"wrote {path}")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {out / 'eval' / 'trajectory.png'}")
    return 0
