"""Geotagged images: a CSV of image path, latitude, longitude (more columns ignored)."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..geo import ZoomGrid
from .errors import DataError

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "path", "image_path", "file")
LAT_COLUMNS = ("latitude", "lat")
LON_COLUMNS = ("longitude", "lon", "lng")


@dataclass
class Geotagged:
    """Images inside a region with their position and terminal path.

    ``skipped`` counts the rows left out, by reason.
    """

    images: list[Path]
    latlon: np.ndarray  # (N, 2) [deg]
    east_north: np.ndarray  # (N, 2) [m] in the region's frame
    paths: np.ndarray  # (N, L)
    skipped: Counter = field(default_factory=Counter)


def _column(header: list[str], names: tuple[str, ...], what: str, csv_path: Path) -> int:
    lower = [h.strip().lower() for h in header]
    for name in names:
        if name in lower:
            return lower.index(name)
    raise DataError(f"{csv_path} has no {what} column (one of {', '.join(names)}); its columns: {', '.join(header)}")


def load_geotagged(csv_path: str | Path, grid: ZoomGrid) -> Geotagged:
    """Read the CSV of geotagged images in ``grid``'s region; image paths are relative to the CSV's folder.

    Rows with a missing image, bad coordinates or a position outside the
    region are skipped and counted.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"no such CSV file: {csv_path}")
    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise DataError(f"{csv_path} holds no rows")
    header, rows = rows[0], rows[1:]
    ci = _column(header, IMAGE_COLUMNS, "image", csv_path)
    la = _column(header, LAT_COLUMNS, "latitude", csv_path)
    lo = _column(header, LON_COLUMNS, "longitude", csv_path)
    images: list[Path] = []
    rows_latlon: list[tuple[float, float]] = []
    skipped: Counter[str] = Counter()
    for row in rows:
        try:
            lat, lon = float(row[la]), float(row[lo])
        except (ValueError, IndexError):
            skipped["bad coordinates"] += 1
            continue
        if not (np.isfinite(lat) and np.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            skipped["bad coordinates"] += 1
            continue
        path = Path(row[ci])
        path = path if path.is_absolute() else csv_path.parent / path
        if not path.is_file():
            skipped["missing image"] += 1
            continue
        images.append(path)
        rows_latlon.append((lat, lon))
    latlon = np.array(rows_latlon, float).reshape(-1, 2)
    paths, inside = grid.paths_at(latlon[:, 0], latlon[:, 1]) if len(latlon) else (np.zeros((0, grid.levels)), [])
    skipped["outside the region"] += int((~np.asarray(inside, bool)).sum())
    keep = np.asarray(inside, bool)
    images = [p for p, k in zip(images, keep, strict=True) if k]
    latlon = latlon[keep]
    east, north = grid.frame.to_local(latlon[:, 0], latlon[:, 1])
    data = Geotagged(images, latlon, np.stack([east, north], 1).reshape(-1, 2), paths[keep], +skipped)
    log.info(
        "%s: %d images taken, %s",
        csv_path,
        len(images),
        ", ".join(f"{n} skipped ({why})" for why, n in data.skipped.items()) or "none skipped",
    )
    if not images:
        raise DataError(f"{csv_path}: no usable image inside the region ({dict(data.skipped)})")
    return data


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); a clear error when it is unreadable."""
    data = np.fromfile(str(path), np.uint8) if Path(path).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise DataError(f"cannot read image {path} (missing, empty or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_images(paths: list[Path]) -> list[np.ndarray]:
    """Image files as RGB uint8 arrays (H, W, 3), in order; a clear error at the first unreadable one."""
    return [read_image(p) for p in paths]
