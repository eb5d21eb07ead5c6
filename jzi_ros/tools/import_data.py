"""`jzi import exif|bag|jzi-benchmark`: geotagged images into a training CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.importers import ImportReport, check_csv_path, import_bag, import_benchmark, import_exif, write_csv
from ..geo import MapDir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    kinds = p.add_subparsers(title="sources", metavar="SOURCE", required=True)
    e = kinds.add_parser("exif", help="a folder of photos with EXIF GPS")
    e.add_argument("--images", required=True, type=Path, help="folder of photos (searched recursively)")
    e.add_argument("--out", required=True, type=Path, help="CSV to write")
    e.add_argument("--map", type=Path, help="keep only photos inside this map's region")
    e.set_defaults(run=run_exif)
    b = kinds.add_parser("bag", help="a rosbag2 with a camera and a GPS NavSatFix topic")
    b.add_argument("--bag", required=True, type=Path)
    b.add_argument("--image-topic", required=True)
    b.add_argument("--gps-topic", required=True)
    b.add_argument("--out-dir", required=True, type=Path, help="folder for images/ and train.csv")
    b.add_argument("--max-gap-s", type=float, default=1.0, help="largest GPS gap to interpolate over (default 1 s)")
    b.add_argument("--every", type=int, default=1, help="take every n-th frame (default 1)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(run=run_bag)
    j = kinds.add_parser("jzi-benchmark", help="the published Just Zoom In benchmark layout")
    j.add_argument("--root", required=True, type=Path, help="the downloaded benchmark folder")
    j.add_argument("--out", required=True, type=Path, help="CSV to write")
    j.add_argument("--map", type=Path, help="check paths against the dataset's sequence with this map's grid")
    j.set_defaults(run=run_benchmark)


def _finish(report: ImportReport, out: Path) -> int:
    """Write the rows and say what was taken and skipped; 1 when nothing was."""
    if not report.rows:
        print(f"nothing imported: {report.summary()}")
        return 1
    write_csv(report.rows, out)
    print(report.summary())
    for note in report.notes:
        print(note)
    print(f"wrote {out}")
    return 0


def run_exif(args: argparse.Namespace) -> int:
    """`jzi import exif`."""
    grid = MapDir(args.map).grid if args.map else None
    check_csv_path(args.out)  # before the work
    return _finish(import_exif(args.images, grid), args.out)


def run_bag(args: argparse.Namespace) -> int:
    """`jzi import bag`: frames into ``OUT_DIR/images``, rows into ``OUT_DIR/train.csv``."""
    report = import_bag(
        args.bag, args.image_topic, args.gps_topic, args.out_dir, args.max_gap_s, args.every, args.quiet
    )
    return _finish(report, args.out_dir / "train.csv")


def run_benchmark(args: argparse.Namespace) -> int:
    """`jzi import jzi-benchmark`."""
    grid = MapDir(args.map).grid if args.map else None
    check_csv_path(args.out)
    return _finish(import_benchmark(args.root, grid), args.out)
