"""`jzi demo`: the whole chain on an embedded default, with no data from outside.

A real camera never sees the map's pixels: the orthophoto is of another date.
So the demo draws one generated place on two dates and keeps them apart: the
map and the training see only the summer, the camera flies over the autumn.

1. draw a generated orthophoto of the same place in summer and in autumn
   (two GeoTIFFs in UTM on one georeference, see :mod:`jzi_ros.data.scene`);
2. build the map from the summer one (a 1 km region, 4 x 4 grid, 2 levels: 63 m cells),
   with the scene's surface model, onto which the registration lays each frame;
3. take the shipped general model (trained across other places; this one
   it never saw), calibrate it for the map from the map's own frames, and
   fine-tune a copy of it on the map for a few hundred steps (aerial self-supervision);
4. fly a simulated camera over the autumn one, inside the map's region, into
   a rosbag2, with the drone's IMU attitude and rangefinder height;
5. replay the bag through the localizer with the general model, which
   registers each frame against the map's orthophoto pyramid to verify and
   refine the zoom's fix (metrics and pictures), then with the fine-tuned one:
   what the short fine-tune adds;
6. drive a ground robot through the autumn world's streets (camera ahead,
   IMU, wheel odometry) and replay it with the shipped street-level model
   (``general-street``, calibrated for the map from its own street frames)
   from where it started: the road ahead registered on the ground plane, the
   odometry carrying it between fixes; with a picture of one street frame
   beside the map and its estimate.

The scene has heights (:mod:`jzi_ros.data.scene` writes its surface model),
so the drone's frames show relief and the street frames facades
(:mod:`jzi_ros.data.render3d`).

Each step is one call of the library, as a Python program would make it;
finished steps are reused by the next run (delete the output folder to start over).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from ..data.bags import BagReader, stamp_of
from ..data.drive import write_drive
from ..data.flight import CAMERA_INFO_TOPIC, FlightConfig, write_flight
from ..data.scene import SceneFiles, SceneSpec, write_scene
from ..errors import JziError
from ..evaluation import BagEvalConfig, draw_frame_on_map, draw_overview, evaluate_bag, format_summary
from ..geo import MapDir, add_pyramid, build_map
from ..geo.surface import add_surface
from ..images import decode_message, to_rgb
from ..progress import bar
from ..share import shipped_model
from ..train import TrainConfig, train
from ..train.calibrate import ensure_calibrated
from .train import summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything it makes")
    p.add_argument(
        "--steps", type=int, default=600, help="fine-tuning steps from the general model (default 600; seeded)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _has_topic(bag: Path, topic: str) -> bool:
    """Whether a rosbag2 has ``topic`` (False when it cannot be read)."""
    try:
        with BagReader(bag) as reader:
            return topic in reader.topics
    except JziError:
        return False


def _calibrate(map_dir: Path, model: Path, quiet: bool) -> None:
    """Calibrate a shipped general model for the map (once), saying so."""
    calibrated = ensure_calibrated(MapDir(map_dir), model, quiet)
    if calibrated is None:
        print(f"reusing the calibration of {model.name} in {map_dir}")
    else:
        print(f"calibrated {model.name} for the map in {calibrated.seconds:.0f} s: wrote {calibrated.path}")


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/6] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the five steps, reusing what an earlier run finished."""
    started = time.perf_counter()
    out, quiet = args.out, args.quiet
    summer, autumn = SceneSpec(season="summer"), SceneSpec(season="autumn")
    tifs = {spec.season: out / f"scene_seed{spec.seed}_{spec.season}.tif" for spec in (summer, autumn)}
    map_dir, tuned, bag = out / "map", out / "model_finetuned.pt", out / "flight_autumn"

    side_m = summer.size_px * summer.gsd_m
    _step(1, f"scene: a {side_m:.0f} m generated orthophoto in two seasons (map: summer, flight: autumn)")
    for spec in (summer, autumn):
        tif = tifs[spec.season]
        if tif.exists():
            print(f"reusing {tif}")
        else:
            print(f"wrote {write_scene(tif, spec)}")

    _step(
        2,
        "map: views of every cell of a 2-level zoom grid (16 x 16 terminal cells), from the summer orthophoto, "
        "with its surface model",
    )
    dsm = SceneFiles.beside(tifs["summer"]).dsm
    if (map_dir / "map.yaml").exists():
        sources = ", ".join(Path(source["path"]).name for source in MapDir(map_dir).sources)
        print(f"reusing {map_dir} (built from {sources})")
        if not MapDir(map_dir).has_pyramid:  # a map of an older demo
            add_pyramid(MapDir(map_dir), progress=bar("orthophoto pyramid", quiet))
            print(f"added the orthophoto pyramid to {map_dir}")
        if not MapDir(map_dir).has_surface:  # a map of an older demo
            add_surface(MapDir(map_dir), dsm)
            print(f"added the surface model to {map_dir}")
    else:
        built = build_map([tifs["summer"]], map_dir, levels=2, progress=bar("rendering views", quiet), dsm=dsm)
        print(f"built {built.grid.describe()}, with the surface model {dsm.name}")
    print(f"wrote {draw_overview(MapDir(map_dir), out / 'overview.png')}")

    _step(3, f"model: the shipped general model, calibrated for this map; then a {args.steps}-step fine-tune of it")
    general = shipped_model()
    _calibrate(map_dir, general, quiet)
    if tuned.exists():
        print(f"reusing {tuned}")
    else:
        config = TrainConfig(
            map=map_dir,
            out=tuned,
            aerial=True,
            init=general,  # the general model's decoder, trained on for this map
            max_steps=args.steps,  # a fixed amount of work: the same model every time
            minutes=60,
            image_px=128,
            samples=4000,
            val_samples=200,
            footprint_cells=(1.0, 2.0),
            holdout=0.0,
            quiet=quiet,
        )
        print(summary(train(config)))

    _step(4, "flight: a simulated drone over the autumn orthophoto of the map's region (camera, IMU, rangefinder)")
    region = MapDir(map_dir).grid
    flight_config = FlightConfig(
        out=bag,
        geotiff=(tifs["autumn"],),
        center=(region.center_lat, region.center_lon),
        size_m=region.size_m,
        trajectory="random",
        duration_s=60,
        camera_hz=4,
        image_px=128,
        altitude_m=80,
        speed_mps=10,
        compressed=True,
        quiet=quiet,
    )
    if bag.exists() and _has_topic(bag, flight_config.gt_imu_topic):
        print(f"reusing {bag}")
    else:
        shutil.rmtree(bag, ignore_errors=True)  # none, or an older demo's flight without the true attitude
        flight = write_flight(flight_config)
        print(f"wrote {flight.path}: {flight.frames} frames on {flight.image_topic}, {flight.fixes} fixes")

    _step(5, "evaluation: the bag replayed through the localizer (zoom, then registration against the map)")
    reports = {}
    for name, model, folder in (("general", general, "eval"), ("fine-tuned", tuned, "eval_finetuned")):
        print(f"\n{name} model ({model.name}):")
        report = evaluate_bag(
            BagEvalConfig(
                bag=bag,
                map=map_dir,
                model=model,
                image_topic=flight_config.frame_topic,
                gt_topic=flight_config.gt_topic,
                out=out / folder,
                quiet=quiet,
                imu_topic=flight_config.imu_topic,
                height_topic=flight_config.height_topic,
                camera_info_topic=CAMERA_INFO_TOPIC,
                gt_imu_topic=flight_config.gt_imu_topic,
            )
        )
        print(format_summary(report.metrics))
        for path in (report.metrics_path, report.frames_path, report.geojson_path, *report.pictures):
            print(f"wrote {path}")
        reports[name] = report.metrics
    g, f = reports["general"], reports["fine-tuned"]
    print(
        f"\nthe {args.steps}-step fine-tune: FIX {100 * g['fix_share']:.1f} % -> {100 * f['fix_share']:.1f} % "
        f"of frames, estimate within a cell {100 * g['R@1cell']:.1f} % -> {100 * f['R@1cell']:.1f} %, "
        f"false fixes {100 * g['false_fix_rate']:.1f} % -> {100 * f['false_fix_rate']:.1f} %"
    )

    _step(6, "ground robot: a drive through the autumn streets, replayed with the shipped street-level model")
    street = _ground_robot(out, tifs["autumn"], map_dir, quiet)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; look at {out / 'eval' / 'trajectory.png'}")
    print(f"and at {street}")
    return 0


def _ground_robot(out: Path, autumn: Path, map_dir: Path, quiet: bool) -> Path:
    """Drive a robot through the autumn world, replay the drive with the shipped street-level model.

    Returns the picture of a street frame beside the map with its estimate.
    """
    model = shipped_model("general-street")
    _calibrate(map_dir, model, quiet)  # from the map's own street frames
    region = MapDir(map_dir).grid
    bag = out / "drive_autumn"
    config = FlightConfig(
        out=bag,
        geotiff=(autumn,),
        center=(region.center_lat, region.center_lon),
        size_m=region.size_m,
        platform="ground",
        duration_s=30,
        camera_hz=2,
        speed_mps=8,
        image_px=480,
        compressed=True,
        quiet=quiet,
    )
    if bag.exists() and _has_topic(bag, config.gt_imu_topic):
        print(f"reusing {bag}")
    else:
        shutil.rmtree(bag, ignore_errors=True)
        drive = write_drive(config)
        print(f"wrote {drive.path}: {drive.frames} street frames on {drive.image_topic}, {drive.odometry} odometry")
    # What a ground robot has: its IMU, wheel odometry, the camera's height and mount, and where it started (the
    # last GPS fix before it was lost); the road ahead is registered on the ground plane, the odometry carries it
    report = evaluate_bag(
        BagEvalConfig(
            bag=bag,
            map=map_dir,
            model=model,
            image_topic=config.frame_topic,
            gt_topic=config.gt_topic,
            out=out / "eval_ground",
            quiet=quiet,
            camera_info_topic=CAMERA_INFO_TOPIC,
            imu_topic=config.imu_topic,
            odom_topic=config.odom_topic,
            height_m=config.camera_height_m,
            mount_pitch_deg=90.0,
            initial_pose_m=2.0,
            gt_imu_topic=config.gt_imu_topic,
        )
    )
    print(format_summary(report.metrics))
    typical = sorted(report.rows, key=lambda r: r["error_m"])[len(report.rows) // 2]  # the median error's frame
    with BagReader(bag) as reader:
        msg = next(
            m.msg for m in reader.messages([config.frame_topic]) if stamp_of(m.msg, m.bag_ns) == typical["stamp_ns"]
        )
    picture = out / "eval_ground" / "street_frame.png"
    return draw_frame_on_map(to_rgb(*decode_message(msg)), typical, MapDir(map_dir), picture)
