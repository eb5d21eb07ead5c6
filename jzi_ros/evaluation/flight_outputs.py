"""A replayed flight as files people open in their own tools: a GeoJSON map, a replay bag, TUM trajectories.

:func:`write_geojson` writes the frame rows of `jzi eval-bag`
(:func:`.bag.frame_row`) as an RFC 7946 FeatureCollection: WGS84, every
position (lon, lat) [deg], for QGIS, geojson.io or any web map. Each feature
says what it is in its ``kind`` property:

- ``truth``: the ground truth at the frames, in time order, as a LineString
  (a Point when there is one frame);
- ``estimate``: one Point per frame with its stamp, status, verification,
  search mode, error, confidence and the semi-axes [m] of its 1-sigma and
  95 % ellipses with the major axis' azimuth [deg, clockwise from north];
- ``error``: one LineString per frame from the truth to the estimate, as long
  as its ``error_m``;
- ``ellipse95``: one Polygon per frame, the estimate's 95 % ellipse (drawn
  along geodesics from the estimate, 36 vertices).

Per-frame features share ``frame`` (the row's index), ``stamp_ns``, ``t_s``
and ``status``, so a map filters or animates them together. Colours follow the
simplestyle convention (``marker-color``, ``stroke``, ``fill``) that
geojson.io and GitHub render: green for a verified fix, orange for a fix that
was not verified, red for NO_FIX, blue for the truth.

:func:`write_replay_bag` writes a rosbag2 to scrub through a flight in
Foxglove or to play with `ros2 bag play`: for each localized frame, the
camera message as it was read (same topic, same type, same bytes), the
estimate as ``sensor_msgs/NavSatFix`` on ``/jzi/fix`` as the node publishes it
(status NO_FIX when not trusted, ENU covariance [m²]) and the candidate cells
as ``geometry_msgs/PoseArray`` on ``/jzi/candidates`` in the node's convention
(:func:`jzi_ros.ros.convert.candidates_to_poses`: x east, y north [m] in the
map's local frame, z the candidate's probability, best first; the fix's
header). Every record's bag time is the frame's stamp.

:func:`write_tum` writes the truth and the fixes as TUM trajectories in the
map's local frame, for trajectory tools such as evo.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from ..data import bags
from ..data.errors import BagError
from ..geo import ZoomGrid
from ..localizer.estimate import CHI2_95_2DOF, Estimate, ellipse_95
from ..outputs import check_replaceable
from .metrics import GEOD

FIX_TOPIC = "/jzi/fix"
"""Topic of the estimates (the node's default ``fix_topic``)."""
FIX_FRAME_ID = "jzi_camera"
"""``frame_id`` of the estimates and candidates (the node's default ``frame_id``)."""
CANDIDATES_TOPIC = "/jzi/candidates"
"""Topic of the candidates (the node's default ``candidates_topic``)."""
IMAGE_TOPIC = "/camera/image_raw"
"""Camera topic when none is given (the node's default ``image_topic``)."""
ELLIPSE_VERTICES = 36
"""Vertices of a 95 % ellipse polygon (the first repeated to close the ring)."""

_COLOURS = {"verified": "#1a9850", "fix": "#f46d43", "no_fix": "#d73027", "truth": "#2c7bb6"}


def _number(value) -> float | None:
    """A float for JSON, None when it is not finite (JSON has no NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


def _feature(geometry: dict, properties: dict) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _covariance(row: dict) -> np.ndarray:
    """A row's (2, 2) east/north covariance [m²]."""
    return np.array([[row["cov_ee_m2"], row["cov_en_m2"]], [row["cov_en_m2"], row["cov_nn_m2"]]], float)


def _axes(row: dict) -> tuple[float, float, float]:
    """A row's 95 % semi-axes [m] (major, minor) and the major axis' azimuth [deg, clockwise from north, 0..180)."""
    cov = _covariance(row)
    if not np.isfinite(cov).all():
        return math.nan, math.nan, math.nan
    width, height, angle_deg = ellipse_95(cov)
    return width / 2, height / 2, (90.0 - angle_deg) % 180.0


def _ellipse_ring(lat: float, lon: float, row: dict) -> list[list[float]] | None:
    """The 95 % ellipse of a row around (lat, lon) [deg] as a closed, counter-clockwise ring of [lon, lat]."""
    cov = _covariance(row)
    if not np.isfinite(cov).all():
        return None
    vals, vecs = np.linalg.eigh(cov)  # ascending
    if vals[-1] <= 0:
        return None
    if np.linalg.det(vecs) < 0:  # a rotation, so that increasing angles run counter-clockwise
        vecs[:, 0] = -vecs[:, 0]
    theta = np.linspace(0.0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)
    unit = np.stack([np.cos(theta), np.sin(theta)])  # (2, V)
    east, north = vecs @ (np.sqrt(CHI2_95_2DOF * np.maximum(vals, 0.0))[:, None] * unit)  # (2, V) [m]
    n = len(theta)
    lons, lats, _ = GEOD.fwd(
        np.full(n, lon), np.full(n, lat), np.degrees(np.arctan2(east, north)), np.hypot(east, north)
    )
    ring = [[float(x), float(y)] for x, y in zip(lons, lats, strict=True)]
    return [*ring, ring[0]]


def _colour(row: dict) -> str:
    if row["status"] != "FIX":
        return _COLOURS["no_fix"]
    return _COLOURS["verified"] if row["verified"] else _COLOURS["fix"]


def geojson_features(rows: list[dict]) -> list[dict]:
    """The GeoJSON features of frame rows (see the module docstring), truth first, then per frame.

    Args:
        rows: Frame rows (:func:`.bag.frame_row`), in any order.

    Returns:
        The truth feature (none without rows), then per row in time order its
        ``estimate``, ``error`` and ``ellipse95`` features (no ellipse when
        the covariance is zero or not finite).
    """
    rows = sorted(rows, key=lambda r: r["stamp_ns"])
    features: list[dict] = []
    truth = [[float(r["true_lon"]), float(r["true_lat"])] for r in rows]
    if truth:
        geometry = (
            {"type": "LineString", "coordinates": truth}
            if len(truth) > 1
            else {"type": "Point", "coordinates": truth[0]}
        )
        style = {"stroke": _COLOURS["truth"], "stroke-width": 3, "marker-color": _COLOURS["truth"]}
        features.append(_feature(geometry, {"kind": "truth", "frames": len(truth), **style}))
    for i, r in enumerate(rows):
        lat, lon = float(r["est_lat"]), float(r["est_lon"])
        colour = _colour(r)
        common = {"frame": i, "stamp_ns": int(r["stamp_ns"]), "t_s": _number(r["t_s"]), "status": r["status"]}
        major, minor, azimuth = _axes(r)
        scale = math.sqrt(CHI2_95_2DOF)
        estimate = {
            "kind": "estimate",
            **common,
            "verified": bool(r["verified"]),
            "verdict": str(r["verdict"]),
            "inliers": int(r["inliers"]),
            "mode": r.get("mode"),
            "error_m": _number(r["error_m"]),
            "confidence": _number(r["confidence"]),
            "inside_95": bool(r["inside_95"]),
            "sigma_major_m": _number(major / scale),
            "sigma_minor_m": _number(minor / scale),
            "ellipse95_major_m": _number(major),
            "ellipse95_minor_m": _number(minor),
            "ellipse_azimuth_deg": _number(azimuth),
            "path": str(r["path"]),
            "marker-color": colour,
        }
        features.append(_feature({"type": "Point", "coordinates": [lon, lat]}, estimate))
        error_line = {"type": "LineString", "coordinates": [truth[i], [lon, lat]]}
        error = {"kind": "error", **common, "error_m": _number(r["error_m"]), "stroke": colour, "stroke-width": 1}
        features.append(_feature(error_line, error))
        ring = _ellipse_ring(lat, lon, r)
        if ring is not None:
            style = {"stroke": colour, "stroke-width": 1, "fill": colour, "fill-opacity": 0.1}
            features.append(
                _feature({"type": "Polygon", "coordinates": [ring]}, {"kind": "ellipse95", **common, **style})
            )
    return features


def write_geojson(rows: list[dict], path: str | Path) -> Path:
    """Write frame rows as a GeoJSON FeatureCollection (RFC 7946; see the module docstring).

    Args:
        rows: Frame rows (:func:`.bag.frame_row`).
        path: The file to write (``*.geojson``); its folder must exist.

    Returns:
        ``path``.
    """
    path = Path(path)
    collection = {"type": "FeatureCollection", "features": geojson_features(rows)}
    path.write_text(json.dumps(collection, allow_nan=False))
    return path


TUM_HEADER = "# timestamp[s] x[m east] y[m north] z[m] qx qy qz qw (the map's local ENU frame, jzi_map)\n"


def write_tum(grid: ZoomGrid, rows: list[dict], out: str | Path) -> tuple[Path, Path]:
    """The truth and the published fixes as TUM trajectories, for evo (``evo_ape tum truth.tum fixes.tum``).

    ``truth.tum``: the ground truth at every row's stamp; ``fixes.tum``: the
    rows published as FIX, at the same stamps (so evo associates them
    exactly), in the map's local frame (x east, y north [m] from its centre,
    z 0), the orientation the body's yaw where the fix has one (identity otherwise).

    Returns:
        The paths of ``truth.tum`` and ``fixes.tum`` in ``out``.
    """
    out = Path(out)
    rows = sorted(rows, key=lambda r: r["stamp_ns"])

    def line(row: dict, lat_key: str, lon_key: str, yaw_deg: float) -> str:
        east, north = (float(v) for v in grid.frame.to_local(row[lat_key], row[lon_key]))
        half = math.radians(yaw_deg) / 2 if math.isfinite(yaw_deg) else 0.0
        return f"{row['stamp_ns'] / 1e9:.9f} {east:.4f} {north:.4f} 0 0 0 {math.sin(half):.9f} {math.cos(half):.9f}\n"

    truth, fixes = out / "truth.tum", out / "fixes.tum"
    truth.write_text(TUM_HEADER + "".join(line(r, "true_lat", "true_lon", math.nan) for r in rows))
    published = [r for r in rows if r["status"] == "FIX"]
    fixes.write_text(TUM_HEADER + "".join(line(r, "est_lat", "est_lon", float(r["yaw_deg"])) for r in published))
    return truth, fixes


def write_replay_bag(
    estimates: list[tuple[int, Estimate]],
    frames: list[tuple[int, object]],
    path: str | Path,
    storage: str = "mcap",
    image_topic: str = IMAGE_TOPIC,
    candidates: bool = True,
) -> Path:
    """Write a flight's frames, estimates and candidates as a rosbag2, replacing an older bag there.

    Args:
        estimates: (stamp [ns], estimate) pairs; the stamp is the fix's header
            stamp and every record's bag time.
        frames: (stamp [ns], message) of the camera frames as read from the
            input bag (rosbags-deserialized ``sensor_msgs/Image`` or
            ``CompressedImage``); only those whose stamp has an estimate are
            written, each once, on ``image_topic`` with their own type.
        path: The bag directory; an existing one is replaced only when it is a
            bag (it holds ``metadata.yaml``) or empty.
        storage: ``"mcap"`` or ``"sqlite3"``.
        image_topic: Topic of the frames (the input bag's camera topic).
        candidates: Also write the candidates as ``PoseArray`` on ``/jzi/candidates``.

    Returns:
        ``path``.

    Raises:
        BagError: An unknown storage, or a frame that is no camera message.
        OutputError: ``path`` is a folder this project did not write.
    """
    path = Path(path)
    if storage not in bags.STORAGES:
        raise BagError(f"storage must be one of {', '.join(bags.STORAGES)}, not {storage!r}")
    by_stamp: dict[int, object] = {}
    for stamp_ns, msg in frames:
        msgtype = getattr(msg, "__msgtype__", type(msg).__name__)
        if msgtype not in (bags.IMAGE, bags.COMPRESSED):
            raise BagError(f"the frame at {stamp_ns} ns is a {msgtype}, expected {bags.IMAGE} or {bags.COMPRESSED}")
        by_stamp.setdefault(int(stamp_ns), msg)
    if path.exists():
        check_replaceable(path, "metadata.yaml", "rosbag2 bag")
        shutil.rmtree(path)
    with bags.BagWriter(path, storage) as bag:
        for stamp_ns, est in sorted(estimates, key=lambda e: e[0]):
            frame = by_stamp.pop(int(stamp_ns), None)
            if frame is not None:
                bag.add(image_topic, frame, stamp_ns)
            fix = bags.navsatfix(stamp_ns, FIX_FRAME_ID, est.lat, est.lon, 0.0, est.fix_covariance_m2(), est.trusted)
            bag.add(FIX_TOPIC, fix, stamp_ns)
            if candidates:
                xyz = np.array([(c.east_m, c.north_m, c.prob) for c in est.candidates], float)
                bag.add(CANDIDATES_TOPIC, bags.pose_array(stamp_ns, FIX_FRAME_ID, xyz), stamp_ns)
    return path
