"""Importers of geotagged images into the training CSV (image, latitude, longitude).

* a folder of photos with EXIF GPS (phones, action cameras);
* a rosbag2 with a camera and a GPS ``NavSatFix`` topic (each frame with
  the fix interpolated to its stamp, saved as JPEG);
* the published Just Zoom In benchmark layout (metadata CSV with
  ``image_id, latitude, longitude, sequence``; street views named
  ``<image_id>_undistorted.jpg``).

Every importer reports what it took and what it skipped, and why;
:func:`write_csv` writes the rows.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..geo import ZoomGrid
from ..images import decode_message, to_rgb
from ..outputs import OutputError, check_writable
from . import bags
from .errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
GPS_IFD = 0x8825


@dataclass
class ImportReport:
    """Rows taken, rows skipped by reason, and notes (e.g. label agreement)."""

    rows: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many rows were taken, and how many were skipped for each reason."""
        parts = [f"took {len(self.rows)}"]
        parts += [f"skipped {n} ({why})" for why, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def check_csv_path(out: str | Path) -> Path:
    """``out`` as a CSV to write, checked before any work: not a folder, in a folder that can be written.

    Raises:
        DataError: naming the problem.
    """
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out} is a folder; --out names the CSV file to write")
    try:
        check_writable(out.parent)
    except OutputError as exc:
        raise DataError(str(exc)) from None
    return out


def write_csv(rows: list[dict], out: Path, columns: tuple[str, ...] = ("image", "latitude", "longitude")) -> Path:
    """Write rows with image paths relative to the CSV's folder.

    Raises:
        DataError: ``out`` is a folder, or its folder cannot be written.
    """
    out = check_csv_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in (rows[0] if rows else {}) if c not in columns]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, *extra])
        writer.writeheader()
        for row in rows:
            image = Path(row["image"]).resolve()
            try:
                image = image.relative_to(out.parent.resolve())
            except ValueError:
                pass
            writer.writerow(row | {"image": str(image)})
    return out


def _dms(value, ref: str) -> float:
    deg, minutes, seconds = (float(v) for v in value)
    sign = -1.0 if str(ref).upper() in ("S", "W") else 1.0
    return sign * (deg + minutes / 60 + seconds / 3600)


def exif_position(path: Path) -> tuple[float, float] | None:
    """(lat, lon) [deg] from a photo's EXIF GPS block, or None without one.

    Raises:
        DataError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gps = img.getexif().get_ifd(GPS_IFD)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    try:
        lat = _dms(gps[2], gps.get(1, "N"))
        lon = _dms(gps[4], gps.get(3, "E"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return (lat, lon) if abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0) else None


def import_exif(folder: str | Path, grid: ZoomGrid | None = None) -> ImportReport:
    """Photos in ``folder`` (recursively) with their EXIF GPS positions."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder}")
    report = ImportReport()
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for path in files:
        try:
            pos = exif_position(path)
        except DataError:
            report.skipped["unreadable image"] += 1
            continue
        if pos is None:
            report.skipped["no GPS in EXIF"] += 1
            continue
        if grid is not None and not grid.paths_at(*pos)[1][0]:
            report.skipped["outside the region"] += 1
            continue
        report.rows.append({"image": str(path), "latitude": pos[0], "longitude": pos[1]})
    return report


def import_bag(
    bag: str | Path,
    image_topic: str,
    gps_topic: str,
    out_dir: str | Path,
    max_gap_s: float = 1.0,
    every: int = 1,
    quiet: bool = False,
) -> ImportReport:
    """Camera frames of a rosbag2, each with the GPS fix interpolated to its stamp.

    Frames are saved as JPEG under ``out_dir/images``, named by their stamp;
    each row carries ``stamp_ns``. A tqdm bar shows progress unless ``quiet``.

    Args:
        bag: the rosbag2 (sqlite3 or MCAP) to read.
        image_topic: its ``Image`` or ``CompressedImage`` topic.
        gps_topic: its ``NavSatFix`` topic.
        out_dir: the folder for ``images/``.
        max_gap_s: largest gap between fixes to interpolate over [s].
        every: take every n-th frame.
        quiet: no progress bar.

    Raises:
        DataError: ``max_gap_s`` or ``every`` out of range;
            :class:`~jzi_ros.data.errors.BagError` when the bag cannot be read,
            lacks a topic or holds no valid fix.
    """
    if not (np.isfinite(max_gap_s) and max_gap_s >= 0):
        raise DataError(f"max_gap_s must be zero or positive, not {max_gap_s}")
    if int(every) != every or every < 1:
        raise DataError(f"every must be an integer >= 1, not {every}")
    report = ImportReport()
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    with bags.BagReader(bag) as reader:
        reader.check(image_topic, (bags.IMAGE, bags.COMPRESSED), "camera")
        track = bags.read_fix_track(reader, gps_topic)
        total = reader.count(image_topic)
        for i, m in enumerate(
            tqdm(reader.messages([image_topic]), total=total, desc="frames", unit="frame", disable=quiet)
        ):
            if i % every:
                report.skipped["not every n-th frame"] += 1
                continue
            stamp_ns = bags.stamp_of(m.msg, m.bag_ns)
            pos = track.at(stamp_ns, max_gap_s)
            if pos is None:
                report.skipped[f"no GPS fix within {max_gap_s} s"] += 1
                continue
            try:
                rgb = to_rgb(*decode_message(m.msg))
            except InputError:
                report.skipped["undecodable frame"] += 1
                continue
            path = images / f"{stamp_ns}.jpg"
            cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
            report.rows.append({"image": str(path), "latitude": pos[0], "longitude": pos[1], "stamp_ns": stamp_ns})
    return report


BENCHMARK_GRID = {"size_m": 10_000.0, "grid": 4, "levels": 4}


def parse_sequence(text: str) -> tuple[int, ...] | None:
    """The benchmark's ``sequence`` column as actions.

    Any list of integers is read: "3 7 1 12", "[3, 7, 1, 12]", "3-7-1-12".
    """
    numbers = re.findall(r"\d+", str(text))
    return tuple(int(n) for n in numbers) if numbers else None


def import_benchmark(root: str | Path, grid: ZoomGrid | None = None) -> ImportReport:
    """The Just Zoom In benchmark layout under ``root``: its metadata CSV and street views.

    With ``grid``, rows outside its region are skipped, and our paths are
    checked against the dataset's ``sequence`` column when the grid is the
    benchmark's (10 km, 4 x 4, 4 levels).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    metas = [p for p in sorted(root.rglob("*.csv")) if _has_columns(p, {"image_id", "latitude", "longitude"})]
    if not metas:
        raise DataError(f"{root} has no metadata CSV with columns image_id, latitude, longitude")
    images = {p.name[: -len("_undistorted.jpg")]: p for p in root.rglob("*_undistorted.jpg")}
    report = ImportReport()
    same_grid = grid is not None and all(abs(getattr(grid, k) - v) < 1e-6 for k, v in BENCHMARK_GRID.items())
    agree = compared = 0
    for meta in metas:
        with meta.open(newline="") as f:
            for row in csv.DictReader(f):
                image = images.get(str(row["image_id"]).strip())
                if image is None:
                    report.skipped["street view missing"] += 1
                    continue
                try:
                    lat, lon = float(row["latitude"]), float(row["longitude"])
                except ValueError:
                    report.skipped["bad coordinates"] += 1
                    continue
                if grid is not None:
                    paths, inside = grid.paths_at(lat, lon)
                    if not inside[0]:
                        report.skipped["outside the region"] += 1
                        continue
                    seq = parse_sequence(row.get("sequence", ""))
                    if same_grid and seq is not None and len(seq) == grid.levels:
                        compared += 1
                        agree += tuple(int(a) for a in paths[0]) == seq
                out = {"image": str(image), "latitude": lat, "longitude": lon}
                if row.get("sequence"):
                    out["sequence"] = row["sequence"]
                report.rows.append(out)
    if compared:
        report.notes.append(
            f"paths from latitude/longitude agree with the dataset's sequence for {agree} of "
            f"{compared} images ({100 * agree / compared:.1f} %)"
        )
    elif grid is not None and not same_grid:
        report.notes.append("the map's grid is not the benchmark's (10 km, 4 x 4, 4 levels): sequences not compared")
    return report


def _has_columns(path: Path, needed: set[str]) -> bool:
    try:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return needed <= {h.strip().lower() for h in header}
