"""Street-level frames from the 3D world: training and evaluation samples for ground robots.

A ground robot's camera sees the street, not the map: frames are rendered
by :class:`~jzi_ros.data.render3d.World3D` from a raster of the map's place
(best another season's or year's than the map's, as a real camera sees it)
over its surface model, at random places on the road network (a GeoJSON of
centre lines; the generated scene writes ``NAME_roads.geojson``), looking
along the road or anywhere (panoramas), from 1.4 to 2.2 m above the ground.
Each is labelled by the path of the terminal cell that holds the camera on
the map's grid, and held out by cell as aerial frames are
(:func:`~jzi_ros.data.aerial.heldout_cells`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..geo import MapDir, ZoomGrid
from ..geo.camera import CameraPose, Pinhole
from .aerial import in_heldout, source_ortho
from .augment import photometric
from .drive import LANE_SHARE, RoadNetwork
from .errors import DataError
from .render3d import World3D
from .scene import SceneFiles


@dataclass(frozen=True)
class StreetConfig:
    """How street-level frames are rendered.

    ``image_px``: frame width (a pinhole frame is 3/4 as high, a panorama
    half); ``hfov_deg``: the pinhole's field of view; ``panorama``: 360°
    equirectangular frames instead; ``height_m``: range of the camera's
    height above the ground [m]; ``heading_jitter_deg``: standard deviation
    of the view's heading about the road's direction (pinhole frames; either
    way along the road); ``photometric``: strength of colour changes;
    ``holdout_share``/``holdout_by_area``: the held-out cells, as for aerial frames.
    """

    image_px: int = 224
    hfov_deg: float = 90.0
    panorama: bool = False
    height_m: tuple[float, float] = (1.4, 2.2)
    heading_jitter_deg: float = 15.0
    photometric: float = 1.0
    holdout_share: float = 0.1
    holdout_by_area: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.image_px, int) and self.image_px >= 16):
            raise DataError(f"image_px must be an integer of 16 or more, not {self.image_px}")
        if not 10.0 <= self.hfov_deg < 170.0:
            raise DataError(f"hfov_deg must be 10 to 170, not {self.hfov_deg}")

    @classmethod
    def trained(cls, image_px: int, train_args: dict) -> StreetConfig:
        """How a model's training rendered its street frames (encoder side ``image_px``, options ``train_args``).

        A model of ``query: halves`` encodes a frame's two halves, so its frames are twice as wide.
        """
        return cls(
            image_px=image_px * (2 if train_args.get("query") == "halves" else 1),
            panorama=bool(train_args.get("street_panorama", False)),
            holdout_share=float(train_args.get("holdout", cls.holdout_share)),
            holdout_by_area=bool(train_args.get("holdout_by_area", False)),
        )

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of a frame [px]."""
        return (self.image_px, self.image_px // 2 if self.panorama else round(self.image_px * 3 / 4))

    @property
    def camera(self) -> Pinhole:
        """The pinhole camera of non-panoramic frames."""
        return Pinhole(*self.size_px, self.hfov_deg)

    def to_dict(self) -> dict:
        """The config in plain YAML/JSON types."""
        return asdict(self) | {"height_m": list(self.height_m)}


def street_world(mapdir: MapDir, raster: str | Path | None = None, dsm: str | Path | None = None) -> World3D:
    """The 3D world of the map's region: ``raster`` (default the map's own) over ``dsm`` (default the raster's own).

    A ``raster`` of another date with no surface model beside it lies over the
    one beside the map's own raster: the place's heights.

    Raises:
        DataError: no surface model: street views need one (a flat world shows no street).
        CoverageError: ``raster`` shows too little of the map's region.
    """
    mine = Path(mapdir.sources[0]["path"])
    source = Path(raster) if raster is not None else mine
    files = SceneFiles.beside(source)
    own = dsm is None and files.dsm.is_file()
    places = SceneFiles.beside(mine).dsm  # the heights beside the map's own raster
    dsm = dsm or (files.dsm if own else places if places.is_file() else None)
    if dsm is None:
        raise DataError(f"street-level frames need a surface model: give --dsm (none beside {source})")
    ortho = source_ortho(mapdir, 20.0, raster)
    dtm = files.dtm if own and files.dtm.is_file() else None
    buildings = files.buildings if own and files.buildings.is_file() else None
    return World3D.over(ortho, dsm, dtm, buildings)


def street_roads(mapdir: MapDir, raster: str | Path | None = None, roads: str | Path | None = None) -> RoadNetwork:
    """The road network in the map's frame: ``roads``, or the one beside ``raster`` (default the map's own raster)."""
    source = Path(raster) if raster is not None else Path(mapdir.sources[0]["path"])
    path = Path(roads) if roads is not None else SceneFiles.beside(source).roads
    if not path.is_file():
        raise DataError(f"street-level frames need the roads to stand on: give --roads (none at {path})")
    return RoadNetwork.from_geojson(path, mapdir.grid.frame)


def sample_street_poses(
    grid: ZoomGrid,
    roads: RoadNetwork,
    count: int,
    rng: np.random.Generator,
    cfg: StreetConfig,
    split: str,
    heldout: np.ndarray,
    world: World3D | None = None,
) -> np.ndarray:
    """(count, 4) poses on the roads inside the region: east, north [m], heading [deg], camera height [m].

    ``split``: "train" (outside the held-out cells), "heldout" (inside) or "all";
    with ``world``, places where something stands taller than the camera
    above the ground (a parked car, a crown) are left out.

    Raises:
        DataError: no road of the split lies in the region.
    """
    a, b = roads.segments[:, 0], roads.segments[:, 1]
    lengths = np.hypot(*(b - a).T)
    half = grid.size_m / 2 - 1.0
    out: list[np.ndarray] = []
    tries = 0
    while sum(len(o) for o in out) < count:
        tries += 1
        if tries > 200:
            raise DataError(f"no road of the {split} cells lies in the map's region")
        n = 4 * count
        k = rng.choice(len(lengths), size=n, p=lengths / lengths.sum())
        along = (b[k] - a[k]) / lengths[k, None]
        right = np.stack([along[:, 1], -along[:, 0]], 1)
        lane = rng.uniform(-1, 1, n) * LANE_SHARE * roads.widths_m[k]
        pos = a[k] + rng.random(n)[:, None] * (b[k] - a[k]) + lane[:, None] * right
        inside = (np.abs(pos) < half).all(1)
        if split != "all":
            held = np.zeros(n, bool)
            held[inside] = in_heldout(grid, heldout, pos[inside, 0], pos[inside, 1])
            inside &= held if split == "heldout" else ~held
        road_heading = np.degrees(np.arctan2(along[:, 0], along[:, 1]))
        if cfg.panorama:
            heading = rng.uniform(0, 360, n)
        else:
            heading = road_heading + 180.0 * rng.integers(0, 2, n) + rng.normal(0, cfg.heading_jitter_deg, n)
        height = rng.uniform(*cfg.height_m, n)
        if world is not None:
            inside &= world.surface_at(pos[:, 0], pos[:, 1]) - world.ground_m(pos[:, 0], pos[:, 1]) < height - 0.3
        out.append(np.column_stack([pos, heading % 360.0, height])[inside])
    return np.concatenate(out)[:count]


def render_street(world: World3D, cfg: StreetConfig, pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One street-level frame (H, W, 3) uint8 at a pose of :func:`sample_street_poses`, colours changed."""
    east, north, heading, height = (float(v) for v in pose)
    if cfg.panorama:
        frame = world.panorama(east, north, height, heading, cfg.size_px)
    else:
        frame = world.render(cfg.camera.K, cfg.size_px, CameraPose(east, north, height, heading, 90.0))
    return photometric(frame, rng, cfg.photometric)


def street_frames(
    worlds: Sequence[World3D],
    roads: RoadNetwork,
    grid: ZoomGrid,
    count: int,
    rng: np.random.Generator,
    cfg: StreetConfig,
    split: str,
    heldout: np.ndarray,
    batch: int = 32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of (frames (B, H, W, 3) uint8, their poses (B, 4)), ``count`` frames in all.

    Each frame is rendered from one of ``worlds`` (the place at several dates) drawn at random.
    """
    poses = sample_street_poses(grid, roads, count, rng, cfg, split, heldout, worlds[0])
    sources = rng.integers(len(worlds), size=len(poses))
    for i in range(0, count, batch):
        part = poses[i : i + batch]
        frames = [
            render_street(worlds[k], cfg, pose, rng) for k, pose in zip(sources[i : i + batch], part, strict=True)
        ]
        yield np.stack(frames), part
