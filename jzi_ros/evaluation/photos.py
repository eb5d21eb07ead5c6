"""Real photographs with known poses: the camera model and the registration checked against them.

A *photo set* is what a photogrammetry run (OpenDroneMap, OpenSfM) leaves
behind: ``images/`` (the photos), ``reconstruction.json`` (OpenSfM's camera
calibration, the normalized "brown" model), ``odm_xyz_opk.csv`` (each
photo's centre in a projected CRS and its omega/phi/kappa angles) and
``dsm.tif`` (the surface model). ``../shared/data/dji_oblique`` is one: four
photos taken 30° off nadir in four directions.

Two measurements (``jzi bench --photos DIR``):

- :func:`projection_errors`: each photo's pixels are cast onto the surface
  model through the lens (:meth:`~jzi_ros.geo.surface.Surface.cast`) and
  projected back with OpenCV's ``projectPoints`` and the same calibration:
  the two must agree, and the points must lie on the surface.
- :func:`register_photos`: each photo is orthorectified onto the surface
  model with its known pose; every photo is then registered
  (:class:`~jzi_ros.localizer.refine.Refiner`) against another photo's
  orthophoto, and against the mosaic of all the others', from a start
  offset from its true position, with its true attitude and its height
  above the surface, laid on the flat ground and on the surface model, with
  CFOG and (``--model``) a checkpoint's learned matcher. The error is the
  registered centre against the photo's surveyed (RTK) one.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyproj

from ..errors import JziError
from ..geo import BoundsM, LocalFrame, ZoomGrid
from ..geo.camera import _camera_angles_deg
from ..geo.heights import fill_gaps, read_heights
from ..geo.lens import Lens
from ..geo.ortho import LocalOrtho
from ..geo.surface import Orthophoto, Surface, camera_rt, orthorectify
from ..localizer.matchers import DenseMatcher, Matcher, MatcherConfig
from ..localizer.refine import Attitude, RefineConfig, Refiner


def _axis(axis: int, deg: float) -> np.ndarray:
    """Rotation by ``deg`` about axis 0 (x) or 2 (z) counter-clockwise; about 1 (y) clockwise (-deg: Ry)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def opk_rotation(omega_deg: float, phi_deg: float, kappa_deg: float) -> np.ndarray:
    """World-from-camera rotation (OpenCV's camera: x right, y down, z forward) of omega/phi/kappa angles.

    The photogrammetric convention: ``R = Rx(omega) Ry(phi) Rz(kappa)`` turns
    a camera with x right, y up, z backwards into the projected CRS's axes.
    """
    return _axis(0, omega_deg) @ _axis(1, -phi_deg) @ _axis(2, kappa_deg) @ np.diag([1.0, -1.0, -1.0])


def lens_from_opensfm(camera: dict) -> Lens:
    """The :class:`~jzi_ros.geo.lens.Lens` of an OpenSfM "brown" (or "perspective") camera.

    OpenSfM normalizes by the larger image side, with the image centre at 0.
    """
    w, h = int(camera["width"]), int(camera["height"])
    side = max(w, h)
    fx = float(camera.get("focal_x", camera.get("focal", 0.0))) * side
    fy = float(camera.get("focal_y", camera.get("focal", 0.0))) * side
    cx = (w - 1) / 2 + float(camera.get("c_x", 0.0)) * side
    cy = (h - 1) / 2 + float(camera.get("c_y", 0.0)) * side
    d = [float(camera.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2", "k3")]
    return Lens(w, h, (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0), tuple(d))


@dataclass(frozen=True)
class Photo:
    """One photo: its ``name``, RGB ``image``, world-from-camera ``rotation`` and ``centre`` [m, local frame]."""

    name: str
    image: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray

    def attitude(self) -> Attitude:
        """Its attitude as an IMU would give it (exact)."""
        return Attitude(*_camera_angles_deg(self.rotation))


@dataclass(frozen=True)
class PhotoSet:
    """Photos with one ``lens``, in ``frame`` (centred on them), over ``surface`` (local frame)."""

    photos: list[Photo]
    lens: Lens
    frame: LocalFrame
    surface: Surface

    @classmethod
    def load(cls, folder: str | Path, half_m: float = 200.0, crs: str | None = None) -> PhotoSet:
        """Read an OpenDroneMap folder (the module docstring); the surface ``half_m`` [m] around the photos.

        ``crs``: the CRS of the poses' x, y (default: the surface model's).

        Raises:
            JziError: a file is missing or unreadable.
        """
        folder = Path(folder)
        need = [folder / n for n in ("reconstruction.json", "odm_xyz_opk.csv", "dsm.tif")]
        missing = [str(p) for p in need if not p.is_file()]
        if missing:
            raise JziError(f"not a photo set: {', '.join(missing)} missing")
        recon = json.loads((folder / "reconstruction.json").read_text())[0]
        lens = lens_from_opensfm(next(iter(recon["cameras"].values())))
        rows = _opk_rows(folder / "odm_xyz_opk.csv")
        if crs is None:
            import rasterio

            with rasterio.open(folder / "dsm.tif") as ds:
                crs = ds.crs.to_string()
        to_ll = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        xyz = np.array([r[1:4] for r in rows], float)
        lon0, lat0 = to_ll.transform(xyz[:, 0].mean(), xyz[:, 1].mean())
        frame = LocalFrame(lat0, lon0)
        to_local = pyproj.Transformer.from_crs(crs, frame.crs, always_xy=True)
        photos = []
        for name, x, y, z, omega, phi, kappa in rows:
            east, north = to_local.transform(x, y)
            e2, n2 = to_local.transform(x, y + 100.0)
            convergence = math.degrees(math.atan2(-(e2 - east), n2 - north))  # grid north in the local frame
            image = _read_photo(folder / "images", name)
            if image.shape[:2] != (lens.height_px, lens.width_px):
                image = cv2.resize(image, (lens.width_px, lens.height_px), interpolation=cv2.INTER_AREA)
            rotation = _axis(2, convergence) @ opk_rotation(omega, phi, kappa)
            photos.append(Photo(name, image, rotation, np.array([east, north, z])))
        bounds = BoundsM(-half_m, -half_m, half_m, half_m)
        gsd = 0.5
        surface = Surface(fill_gaps(read_heights(folder / "dsm.tif", frame, bounds, gsd)), bounds, gsd)
        return cls(photos, lens, frame, surface)

    def orthophoto(self, photo: Photo, gsd_m: float) -> Orthophoto:
        """``photo`` orthorectified onto the surface model with its known pose, over the whole surface."""
        return orthorectify(
            photo.image, self.lens, photo.rotation, photo.centre, self.surface, self.surface.bounds, gsd_m
        )


def _opk_rows(path: Path) -> list[tuple]:
    with open(path, newline="") as f:
        text = f.read().replace("'", "")
    rows = []
    for r in csv.reader(text.splitlines()[1:], delimiter=" "):
        r = [v for v in r if v]
        if len(r) >= 7:
            rows.append((r[0], *(float(v) for v in r[1:7])))
    if not rows:
        raise JziError(f"{path} holds no poses (filename x y z omega phi kappa)")
    return rows


def _read_photo(folder: Path, name: str) -> np.ndarray:
    for suffix in ("", ".tif", ".jpg", ".JPG", ".png"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return np.ascontiguousarray(image[:, :, ::-1])
    raise JziError(f"cannot read the photo {name} in {folder}")


def projection_errors(photos: PhotoSet, grid_px: int = 24) -> list[dict]:
    """Per photo: pixels cast onto the surface and projected back by OpenCV (see the module docstring).

    Returns rows with the photo's ``name``, the share of pixels that ``hit``
    the surface, the largest reprojection error ``max_px`` and the largest
    distance ``max_off_surface_m`` of a cast point from the surface.
    """
    lens = photos.lens
    u, v = np.meshgrid(np.linspace(0, lens.width_px - 1, grid_px), np.linspace(0, lens.height_px - 1, grid_px))
    pixels = np.c_[u.ravel(), v.ravel()]
    rows = []
    for p in photos.photos:
        points = photos.surface.cast(p.centre, lens.rays(pixels) @ p.rotation.T)
        hit = np.isfinite(points[:, 0])
        rvec, tvec = camera_rt(p.rotation, p.centre)
        back, _ = cv2.projectPoints(points[hit], rvec, tvec, lens.K, np.asarray(lens.d))
        err = np.abs(back.reshape(-1, 2) - pixels[hit])
        off = np.abs(points[hit, 2] - photos.surface.at(points[hit, 0], points[hit, 1]))
        rows.append(
            {
                "name": p.name,
                "hit": float(hit.mean()),
                "max_px": float(err.max()),
                "max_off_surface_m": float(off.max()),
            }
        )
    return rows


def register_photos(
    photos: PhotoSet,
    start_offset_m: tuple[float, float] = (15.0, -10.0),
    gsd_m: float = 0.4,
    work_px: int = 128,
    patches: int = 8,
    max_tilt_deg: float = 35.0,
    model: Path | None = None,
) -> list[dict]:
    """Each photo registered against each other's orthophoto and against all the others' (the module docstring).

    ``patches``: the dense matcher's grid (a wide oblique view fills little
    of its bounding box: 8 x 8 keeps enough patches on it);
    ``max_tilt_deg``: these photos are 30° off nadir; ``model``: a checkpoint
    whose learned matcher (``jzi train-matcher``, with its own checks)
    registers every photo too, beside CFOG. Returns one row per photo, map,
    projection and matcher: ``photo``, ``map`` (the photos the map was made
    of), ``projection`` ("flat" or "surface"), ``matcher`` ("cfog" or
    "learned"), ``verified``, ``verdict``, ``error_m`` (NaN without a pose),
    ``sigma_m`` (the fix's larger standard deviation), ``height_error_m``,
    ``inliers``, ``matches``.

    Raises:
        EvaluationError: ``model`` has no learned matcher.
        BackendError: ONNX Runtime, which runs the learned matcher, is not installed.
    """
    from .registration import checkpoint_matcher

    dense = MatcherConfig(patches=patches)
    matchers: list[Matcher] = [DenseMatcher(dense)]
    if model is not None:
        matchers.append(checkpoint_matcher(model, dense))
    orthos = {p.name: photos.orthophoto(p, gsd_m) for p in photos.photos}
    grid = ZoomGrid(photos.frame.lat0, photos.frame.lon0, 2 * photos.surface.bounds.east_m, 4, 2)
    ideal = photos.lens.ideal
    # one registration per refiner: a crop described on its own costs less than the map's tiles
    config = RefineConfig(max_tilt_deg=max_tilt_deg, work_px=work_px, reference_cache_mb=0)
    rows = []
    for p in photos.photos:
        others = [q.name for q in photos.photos if q.name != p.name]
        frame = photos.lens.rectify(p.image)
        under = float(photos.surface.at(p.centre[0], p.centre[1]))
        height = float(p.centre[2]) - under
        start = p.centre[:2] + np.asarray(start_offset_m, float)
        for sources in [[o] for o in others] + [others]:
            ortho = _mosaic([orthos[s] for s in sources], photos.frame)
            for (projection, surface), matcher in itertools.product(
                (("flat", None), ("surface", photos.surface)), matchers
            ):
                refiner = Refiner(grid, ortho, config, surface)
                refiner.matcher = matcher
                reg = refiner.refine(frame, ideal, start[None], p.attitude(), height)
                rows.append(
                    {
                        "photo": p.name,
                        "map": "+".join(sources),
                        "projection": projection,
                        "matcher": reg.matcher,  # the one that registered it
                        "verified": reg.verified,
                        "verdict": reg.verdict,
                        "error_m": math.hypot(reg.east_m - p.centre[0], reg.north_m - p.centre[1]),
                        "sigma_m": float(np.sqrt(np.linalg.eigvalsh(reg.covariance_m2).max()))
                        if reg.verified
                        else math.nan,
                        "height_error_m": reg.height_m - height,
                        "inliers": reg.inliers,
                        "matches": reg.matches,
                    }
                )
    return rows


def _mosaic(orthos: list[Orthophoto], frame: LocalFrame) -> LocalOrtho:
    """The mean of orthophotos of the same grid where each is valid."""
    total = np.zeros(orthos[0].image.shape, np.float32)
    count = np.zeros(orthos[0].valid.shape, np.float32)
    for o in orthos:
        total[o.valid] += o.image[o.valid]
        count += o.valid
    image = (total / np.maximum(count, 1)[..., None]).astype(np.uint8)
    return LocalOrtho(image, count > 0, orthos[0].bounds, orthos[0].gsd_m, frame)


def markdown(projection: list[dict], registration: list[dict]) -> str:
    """The report of both measurements."""
    lines = ["## Projection through the lens onto the surface model, against OpenCV's projectPoints", ""]
    lines += ["| photo | pixels on the surface | largest error [px] | largest distance from the surface [m] |"]
    lines += ["|---|---:|---:|---:|"]
    lines += [
        f"| {r['name']} | {100 * r['hit']:.0f} % | {r['max_px']:.2e} | {r['max_off_surface_m']:.3f} |"
        for r in projection
    ]
    lines += ["", "## Each photo registered against others' orthophotos (error against its surveyed centre)", ""]
    for name in dict.fromkeys(r["matcher"] for r in registration):
        mine = [r for r in registration if r["matcher"] == name]
        seen = [r for r in mine if r["matches"] > 0]  # where its patches found the others' imagery to match
        verified = [r for r in mine if r["verified"]]
        worst = f", at most {max(r['error_m'] for r in verified):.2f} m from the surveyed centre" if verified else ""
        lines.append(f"- {name}: {len(verified)} of {len(seen)} registrations with matches verified{worst}")
    head = "| photo | map | projection | matcher | verified | error [m] | sigma [m] | height error [m] |"
    lines += ["", head + " inliers / matches | verdict |"]
    lines += ["|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in registration:
        lines.append(
            f"| {r['photo']} | {r['map']} | {r['projection']} | {r['matcher']} | {'yes' if r['verified'] else 'no'} | "
            f"{r['error_m']:.2f} | {r['sigma_m']:.2f} | {r['height_error_m']:.2f} | {r['inliers']} / {r['matches']} | "
            f"{r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "Photo",
    "PhotoSet",
    "lens_from_opensfm",
    "markdown",
    "opk_rotation",
    "projection_errors",
    "register_photos",
]
