"""Aerial self-supervision: camera frames rendered from orthophotos of the map's region.

A drone user can train for their area from nothing but a GeoTIFF: frames of a
downward-looking camera at random positions, headings, altitudes and small
tilts, with photometric changes, each labelled by the path of the cell under
the camera. A share of the terminal cells is held out from training so that
validation measures frames in places the model never saw a frame of.

A real camera never sees the map's pixels, so frames may also come from
other rasters of the same place (another date or sensor: :func:`source_ortho`)
and carry domain changes (:func:`jzi_ros.data.augment.domain`) that stand in
for the gap when no other raster exists.

For a robot that knows its camera's heading and tilt (an IMU), frames may be
turned north up and nadir (``AerialConfig.heading_known``:
:func:`north_up_as_known`), with the attitude error such a robot has, so the
model learns the frames the localizer will give it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..geo import MapDir, ZoomGrid
from ..geo.camera import north_up
from ..geo.ortho import LocalOrtho
from .augment import domain, photometric
from .camera import CameraPose, Pinhole, render_frame
from .errors import CoverageError, DataError


@dataclass(frozen=True)
class AerialConfig:
    """How training frames are rendered.

    ``footprint_cells``: range of the ground width a frame sees, in terminal
    cell sides (altitude follows from it and ``hfov_deg``); ``max_tilt_deg``:
    largest pitch and roll; ``photometric``: strength of colour changes (0 = none);
    ``domain_ops``: domain changes of :func:`~jzi_ros.data.augment.domain`,
    each applied to a frame with probability ``domain_p``;
    ``holdout_share``: share of terminal cells kept out of training;
    ``heading_known``: turn each frame north up and nadir
    (:func:`north_up_as_known`) with an attitude off by ``heading_error_deg``
    (standard deviation of the heading [deg]) and :data:`TILT_ERROR_DEG`.
    """

    image_px: int = 224
    hfov_deg: float = 60.0
    footprint_cells: tuple[float, float] = (3.0, 6.0)
    max_tilt_deg: float = 8.0
    photometric: float = 1.0
    domain_ops: tuple[str, ...] = ()
    domain_p: float = 0.3
    holdout_share: float = 0.1
    holdout_by_area: bool = False
    min_coverage: float = 0.9
    heading_known: bool = False
    heading_error_deg: float = 10.0

    def to_dict(self) -> dict:
        """The config in plain YAML/JSON types (``footprint_cells`` as a list)."""
        return asdict(self) | {"footprint_cells": list(self.footprint_cells), "domain_ops": list(self.domain_ops)}

    @property
    def camera(self) -> Pinhole:
        """The frames' square pinhole camera: ``image_px`` wide and high, ``hfov_deg`` across."""
        return Pinhole(self.image_px, self.image_px, self.hfov_deg)

    def max_footprint_m(self, grid: ZoomGrid) -> float:
        """Widest ground width [m] a frame sees over ``grid``: the upper ``footprint_cells`` bound."""
        return self.footprint_cells[1] * grid.terminal_size_m


TILT_ERROR_DEG = 0.5
"""Standard deviation [deg] of the pitch and roll a heading-known frame is turned by: an IMU's tilt error."""


def north_up_as_known(
    frame: np.ndarray, camera: Pinhole, pose: CameraPose, rng: np.random.Generator, heading_error_deg: float
) -> np.ndarray:
    """A frame turned north up and nadir (:func:`jzi_ros.geo.camera.north_up`) with a noisy attitude.

    The attitude is ``pose``'s plus normal errors: ``heading_error_deg`` on the
    heading, :data:`TILT_ERROR_DEG` on pitch and roll (three draws from ``rng``),
    as the localizer turns a frame with the attitude an IMU reports.
    """
    dyaw, dpitch, droll = rng.normal(0.0, (heading_error_deg, TILT_ERROR_DEG, TILT_ERROR_DEG))
    return north_up(frame, camera, pose.yaw_deg + dyaw, pose.pitch_deg + dpitch, pose.roll_deg + droll)


def heldout_cells(grid: ZoomGrid, share: float, seed: int = 0, by_area: bool = False) -> np.ndarray:
    """(n, n) bool over the terminal cells (row, col), n = g**L: the held-out ones.

    ``by_area`` holds out whole cells of the level above the terminal one
    (g x g terminal cells each), so validation sees unseen areas.
    """
    block = grid.grid if by_area and grid.levels > 1 else 1
    m = grid.grid**grid.levels // block
    rng = np.random.default_rng([seed, 8675309])
    mask = np.zeros(m * m, bool)
    mask[rng.choice(m * m, size=int(round(share * m * m)), replace=False)] = True
    return np.kron(mask.reshape(m, m), np.ones((block, block), bool))


def in_heldout(grid: ZoomGrid, heldout: np.ndarray, east_m, north_m) -> np.ndarray:
    """Whether local points [m] fall in held-out terminal cells (N,) bool."""
    rows, cols, _ = grid.terminal_rows_cols_m(east_m, north_m)
    return heldout[rows, cols]


def sample_poses(
    grid: ZoomGrid, count: int, rng: np.random.Generator, cfg: AerialConfig, split: str, heldout: np.ndarray
) -> list[CameraPose]:
    """Random camera poses over the region.

    ``split``: "train" (outside the held-out cells), "heldout" (inside them) or "all".
    """
    if split not in ("train", "heldout", "all"):
        raise DataError(f"unknown split {split!r}")
    cell = grid.terminal_size_m
    half = grid.size_m / 2
    poses: list[CameraPose] = []
    cells = np.argwhere(heldout)
    if split == "heldout" and len(cells) == 0:
        raise DataError("no terminal cell is held out (holdout_share is 0)")
    while len(poses) < count:
        if split == "heldout":
            row, col = cells[rng.integers(len(cells))]
            east = -half + (col + rng.random()) * cell
            north = half - (row + rng.random()) * cell
        else:
            east, north = rng.uniform(-half, half, size=2)
            if split == "train" and in_heldout(grid, heldout, east, north)[0]:
                continue
        width = rng.uniform(*cfg.footprint_cells) * cell
        tilt = cfg.max_tilt_deg
        poses.append(
            CameraPose(
                float(east),
                float(north),
                cfg.camera.altitude_for_footprint(width),
                float(rng.uniform(0, 360)),
                float(rng.uniform(-tilt, tilt)),
                float(rng.uniform(-tilt, tilt)),
            )
        )
    return poses


MIN_SOURCE_COVERAGE = 0.5
"""Least share of the map's region a raster must cover to render frames from it."""
MAX_EMPTY_BATCHES = 50
"""Batches in a row without one covered frame before :func:`covered_frames` gives up."""


def query_raster_problem(rasters: Sequence[Path], rendered: bool) -> str | None:
    """What is wrong with a run's ``query_rasters`` (other rasters of the map's place), or None.

    They need frames ``rendered`` from them (aerial or street) and must exist.
    """
    if rasters and not rendered:
        return "query_rasters needs aerial or street: they are rendered into frames"
    missing = [str(p) for p in rasters if not Path(p).is_file()]
    return f"query_rasters: no such raster {', '.join(missing)}" if missing else None


def source_ortho(mapdir: MapDir, pad_m: float, raster: str | Path | None = None) -> LocalOrtho:
    """The map's region grown by ``pad_m`` [m] as an orthophoto, from its own rasters or from ``raster``.

    ``raster`` shows the same place at another date or from another sensor.

    Raises:
        CoverageError: ``raster`` covers less than :data:`MIN_SOURCE_COVERAGE` of the map's region.
    """
    if raster is None:
        return LocalOrtho.for_map(mapdir, pad_m=pad_m)
    ortho = LocalOrtho.for_map(mapdir, pad_m=pad_m, rasters=[raster])
    pad_px = int(pad_m / ortho.gsd_m)
    h, w = ortho.valid.shape
    share = float(ortho.valid[pad_px : h - pad_px, pad_px : w - pad_px].mean())
    if not share >= MIN_SOURCE_COVERAGE:
        raise CoverageError(
            f"{raster} covers {100 * np.nan_to_num(share):.0f} % of the map's region (at least "
            f"{100 * MIN_SOURCE_COVERAGE:.0f} % needed): it must show the same place as the map"
        )
    return ortho


def render_samples(
    orthos: Sequence[LocalOrtho],
    poses: list[CameraPose],
    cfg: AerialConfig,
    rng: np.random.Generator,
    sources: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, S, S, 3) uint8 and their covered share (N,).

    Frame i is rendered from ``orthos[sources[i]]``, then changed
    photometrically and by ``cfg.domain_ops``, then, with ``cfg.heading_known``,
    turned north up (:func:`north_up_as_known`). The covered share is that of
    the rendered frame.
    """
    camera = cfg.camera
    frames = np.empty((len(poses), camera.height_px, camera.width_px, 3), np.uint8)
    covered = np.empty(len(poses), np.float32)
    for i, pose in enumerate(poses):
        frame, covered[i] = render_frame(orthos[sources[i]], camera, pose)
        frame = photometric(frame, rng, cfg.photometric)
        frame = domain(frame, rng, cfg.domain_ops, cfg.domain_p) if cfg.domain_ops else frame
        # The photometric and domain changes stand for the camera and the world (sensor, season, haze,
        # resolution, JPEG), so they act on the camera's frame; the north-up turn is software the
        # localizer runs on that frame afterwards. In this order the corners the turn uncovers are pure
        # black, as at inference, and not hazed, tinted or JPEG-smeared.
        frames[i] = north_up_as_known(frame, camera, pose, rng, cfg.heading_error_deg) if cfg.heading_known else frame
    return frames, covered


def covered_frames(
    orthos: Sequence[LocalOrtho],
    grid: ZoomGrid,
    count: int,
    rng: np.random.Generator,
    cfg: AerialConfig,
    split: str,
    heldout: np.ndarray,
    batch: int = 32,
) -> Iterator[tuple[np.ndarray, list[CameraPose], np.ndarray]]:
    """Batches of frames whose footprint the orthophotos cover, ``count`` frames in all.

    Each pose (:func:`sample_poses`) is rendered from one of ``orthos`` drawn
    at random; frames covered less than ``cfg.min_coverage`` are dropped.

    Yields:
        (frames (B, S, S, 3) uint8, their poses, their source indices (B,)).

    Raises:
        DataError: :data:`MAX_EMPTY_BATCHES` batches in a row had no covered frame.
    """
    done = empty = 0
    while done < count:
        poses = sample_poses(grid, min(batch, count - done), rng, cfg, split, heldout)
        sources = rng.integers(len(orthos), size=len(poses))
        frames, covered = render_samples(orthos, poses, cfg, rng, sources)
        keep = covered >= cfg.min_coverage
        empty = 0 if keep.any() else empty + 1
        if empty >= MAX_EMPTY_BATCHES:
            raise DataError(
                f"no frame of {MAX_EMPTY_BATCHES * batch} in the {split} cells was covered by the rasters "
                f"(at least {100 * cfg.min_coverage:.0f} % of its footprint): the rasters miss that part of the map"
            )
        if keep.any():
            done += int(keep.sum())
            yield frames[keep], [p for p, k in zip(poses, keep, strict=True) if k], sources[keep]


def pose_paths(grid: ZoomGrid, poses: list[CameraPose]) -> np.ndarray:
    """(N, L) terminal paths of the ground points under the cameras."""
    east = np.array([p.east_m for p in poses])
    north = np.array([p.north_m for p in poses])
    paths, inside = grid.paths_at_m(east, north)
    if not inside.all():
        raise DataError("a camera pose lies outside the region")
    return paths


def frames_over_map(mapdir, image_px: int, count: int, footprint_cells: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    """``count`` nadir frames at random positions and headings over a map, for benchmarks and checks.

    RGB, ``image_px`` square, 60° field of view; :func:`posed_frames_over_map` gives their poses too.
    """
    return [frame for frame, _ in posed_frames_over_map(mapdir, image_px, count, footprint_cells, seed)]


def posed_frames_over_map(
    mapdir, image_px: int, count: int, footprint_cells: float = 4.0, seed: int = 0
) -> list[tuple[np.ndarray, CameraPose]]:
    """(frame, camera pose) pairs as :func:`frames_over_map` renders them."""
    rng = np.random.default_rng(seed)
    size_m = mapdir.grid.size_m
    places = [(*(rng.uniform(-0.45, 0.45, 2) * size_m), rng.uniform(0, 360)) for _ in range(count)]
    return _render_over_map(mapdir, image_px, places, footprint_cells)


def circuit_frames_over_map(
    mapdir, image_px: int, count: int, footprint_cells: float = 4.0, radius_share: float = 0.3
) -> list[tuple[np.ndarray, CameraPose]]:
    """(frame, camera pose) pairs evenly spaced around a circle about the map's centre, facing along it.

    A closed flight (``radius_share`` of the map's side as its radius) to be flown over and over:
    the last pose leads back to the first. Nadir, ``image_px`` square, 60° field of view.
    """
    radius = radius_share * mapdir.grid.size_m
    angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    # counter-clockwise from east: the direction of travel is the angle + 90° (ENU), a heading of -angle
    places = [(radius * np.cos(a), radius * np.sin(a), float(np.degrees(-a)) % 360.0) for a in angles]
    return _render_over_map(mapdir, image_px, places, footprint_cells)


def _render_over_map(
    mapdir, image_px: int, places: list[tuple[float, float, float]], footprint_cells: float
) -> list[tuple[np.ndarray, CameraPose]]:
    """Nadir frames (RGB, ``image_px`` square, 60°) at (east, north [m], heading [deg]) over a map."""
    grid = mapdir.grid
    ortho = LocalOrtho.for_map(mapdir, pad_m=footprint_cells * grid.terminal_size_m)
    cam = Pinhole(image_px, image_px, 60.0)
    altitude = cam.altitude_for_footprint(footprint_cells * grid.terminal_size_m)
    out = []
    for e, n, heading in places:
        pose = CameraPose(float(e), float(n), altitude, float(heading))
        out.append((render_frame(ortho, cam, pose)[0], pose))
    return out
