"""`jzi import exif|bag|jzi-benchmark`: geotagged images into a training CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data import bags
from ..data.fixes import FixTrack
from ..data.importers import ImportReport, import_benchmark, import_exif, write_csv
from ..geo import MapDir
from ..localizer import InputError, to_rgb
from ..localizer.frames import decode_message
from .eval_bag import read_truth


def import_bag(
    bag: Path, image_topic: str, gps_topic: str, out_dir: Path, max_gap_s: float, every: int, quiet: bool = False
) -> ImportReport:
    """Camera frames of a bag, each with the GPS fix interpolated to its stamp
    (fixes at most ``max_gap_s`` apart), saved as JPEG under ``out_dir/images``."""
    report = ImportReport()
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    with bags.BagReader(bag) as reader:
        reader.check(image_topic, (bags.IMAGE, bags.COMPRESSED), "camera")
        track: FixTrack = read_truth(reader, gps_topic)
        total = reader.count(image_topic)
        for i, m in enumerate(
            tqdm(reader.messages([image_topic]), total=total, desc="frames", unit="frame", disable=quiet)
        ):
            if i % every:
                report.skipped["not every n-th frame"] += 1
                continue
            stamp = bags.stamp_of(m.msg, m.bag_ns)
            pos = track.at(stamp, max_gap_s)
            if pos is None:
                report.skipped[f"no GPS fix within {max_gap_s} s"] += 1
                continue
            try:
                rgb = to_rgb(*decode_message(m.msg))
            except InputError:
                report.skipped["undecodable frame"] += 1
                continue
            path = images / f"{stamp}.jpg"
            cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
            report.rows.append({"image": str(path), "latitude": pos[0], "longitude": pos[1], "stamp_ns": stamp})
    return report


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
    grid = MapDir(args.map).grid if args.map else None
    return _finish(import_exif(args.images, grid), args.out)


def run_bag(args: argparse.Namespace) -> int:
    report = import_bag(
        args.bag, args.image_topic, args.gps_topic, args.out_dir, args.max_gap_s, args.every, args.quiet
    )
    return _finish(report, args.out_dir / "train.csv")


def run_benchmark(args: argparse.Namespace) -> int:
    grid = MapDir(args.map).grid if args.map else None
    return _finish(import_benchmark(args.root, grid), args.out)
