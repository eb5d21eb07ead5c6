"""Real street photos zoomed through maps of real orthophotos (`jzi bench --street-photos DIR`).

A *sample folder* is the layout of the Just Zoom In benchmark's published
samples (``../shared/data/jzi_samples``): ``demo_samples/<id>_ground_query.jpg``,
a street view, and ``demo_samples/<id>_sat_step_<n>.jpg``, the orthophoto
around where it was taken at three widths (:data:`CONTEXTS`), marked there
with a red dot. The samples carry no coordinates, so each is measured on maps cut from
its own context:

- the dot is painted out (OpenCV's inpainting, :func:`mask_marker`) and its
  centre is the truth;
- the context is written as a GeoTIFF in a transverse Mercator centred on
  the National Mall (:data:`CRS`: north up, as the tiles are, with no grid
  convergence) with the truth at its origin (:func:`context_geotiff`):
  distances inside a context are real, its place on the Earth is not; the
  painted-out dot leaves a smooth smear about 12, 40 and 120 m wide (3 km, 1 km
  and 300 m contexts: its size in pixels is fixed) at the truth, which a model
  that found it would have to be checked against;
- ``windows`` square regions of ``window_m`` (default half the context's
  side, the most that lets the truth lie anywhere) are cut from it, each placed at
  random (seeded) so that the truth lies anywhere in it rather than at its
  centre; each becomes a map (:func:`~jzi_ros.geo.build.build_map`) of
  ``grid`` x ``grid`` cells at ``levels`` levels;
- the photo, cut to the 4:3 of the street model's camera, is zoomed through
  each map greedily and with a beam.

Reported per search: the share of (photo, map) pairs right at each level and
in the right terminal cell, the truth among the ``top_k`` candidates, the
best cell's distance from the truth, each beside chance (a cell drawn at
random). No flat retrieval is measured: its heads are trained on rendered
frames of the map, and a real orthophoto without heights cannot give street
frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pyproj
import rasterio
import torch
from rasterio.transform import from_origin

from ..data.geotagged import read_image
from ..geo import terminal_paths
from ..geo.build import build_map
from ..localizer.index import index_map, zoomable
from ..model import beam_search, load_checkpoint
from ..model.search import ViewTokens
from ..progress import bar
from .errors import EvaluationError

CONTEXTS = {"sat_step_1": 3000.0, "sat_step_2": 1000.0, "sat_step_3": 300.0}
"""The overhead contexts of a sample and their sides [m], as the samples' source gives them ("about")."""
CONTEXT = "sat_step_2"
"""The context the maps are cut from by default."""
MALL_LATLON = (38.8895, -77.0230)
"""Where each sample's truth is placed [deg]: on the National Mall (the samples have no coordinates)."""
CRS = f"+proj=tmerc +lat_0={MALL_LATLON[0]} +lon_0={MALL_LATLON[1]} +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
"""The contexts' CRS: a transverse Mercator whose origin, the truth, is :data:`MALL_LATLON`."""
QUERY_ASPECT = 4 / 3
"""The street model's camera (width / height): photos are cut to it about their centre."""
WINDOWS = 3
"""Maps per sample, each with the truth at another place."""


@dataclass(frozen=True)
class StreetSample:
    """One street photo and its overhead context, centred on where the photo was taken."""

    name: str
    query: Path
    context: Path

    @classmethod
    def find(cls, root: str | Path, context: str = CONTEXT) -> list[StreetSample]:
        """The samples under ``root`` (or ``root/demo_samples``) with their ``context``, in name order.

        Raises:
            EvaluationError: no sample (a street view with its context) is there.
        """
        root = Path(root)
        folder = root / "demo_samples" if (root / "demo_samples").is_dir() else root
        if not folder.is_dir():
            raise EvaluationError(f"{root} is not a folder of street samples")
        found = []
        for query in sorted(folder.glob("*_ground_query.jpg")):
            name = query.name.removesuffix("_ground_query.jpg")
            overhead = folder / f"{name}_{context}.jpg"
            if overhead.is_file():
                found.append(cls(name, query, overhead))
        if not found:
            raise EvaluationError(
                f"no street samples in {folder}: expected <id>_ground_query.jpg beside <id>_{context}.jpg "
                "(the Just Zoom In samples' layout, e.g. ../shared/data/jzi_samples)"
            )
        return found


def mask_marker(image: np.ndarray, search_px: int = 60) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` with the red dot near its centre (and its white ring) painted out, and the dot's centre (x, y) [px].

    Raises:
        EvaluationError: no red dot within ``search_px`` of the centre.
    """
    h, w = image.shape[:2]
    rgb = image.astype(np.int16)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
    near = np.zeros_like(red)
    near[max(0, h // 2 - search_px) : h // 2 + search_px, max(0, w // 2 - search_px) : w // 2 + search_px] = True
    count, labels, stats, _ = cv2.connectedComponentsWithStats((red & near).astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 0
    if not largest or stats[largest, cv2.CC_STAT_AREA] < 30:  # red roofs and cars are left alone: the largest blob
        raise EvaluationError("the context has no red dot near its centre to mark the truth")
    bw, bh, area = (int(stats[largest, k]) for k in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    if not (0.8 <= bw / bh <= 1.25 and 0.65 <= area / (bw * bh) <= 0.9):  # a disc fills pi/4 of its box
        raise EvaluationError(f"the red mark near the context's centre is not a round dot ({bw} x {bh} px, {area} px)")
    ys, xs = np.nonzero(labels == largest)
    x, y = float(xs.mean()), float(ys.mean())
    radius = math.sqrt(len(xs) / math.pi)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (round(x), round(y)), math.ceil(1.6 * radius + 3), 255, -1)  # the dot and its white ring
    painted = cv2.inpaint(np.ascontiguousarray(image[..., ::-1]), mask, 7, cv2.INPAINT_TELEA)[..., ::-1]
    return np.ascontiguousarray(painted), (x, y)


def context_geotiff(sample: StreetSample, out: Path, context_m: float) -> Path:
    """The sample's context, its dot painted out, as a GeoTIFF with the dot's centre at the origin of :data:`CRS`."""
    image, (x, y) = mask_marker(read_image(sample.context))
    gsd = context_m / image.shape[1]
    transform = from_origin(-(x + 0.5) * gsd, (y + 0.5) * gsd, gsd, gsd)  # the dot's pixel centre at (0, 0)
    profile = dict(driver="GTiff", width=image.shape[1], height=image.shape[0], count=3, dtype="uint8")
    with rasterio.open(out, "w", crs=CRS, transform=transform, photometric="RGB", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    return out


def query_photo(sample: StreetSample, aspect: float = QUERY_ASPECT) -> np.ndarray:
    """The street view cut about its centre to ``aspect`` (width / height)."""
    image = read_image(sample.query)
    h, w = image.shape[:2]
    if w / h > aspect:
        keep = round(h * aspect)
        return image[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    keep = round(w / aspect)
    return image[(h - keep) // 2 : (h - keep) // 2 + keep]


@dataclass(frozen=True)
class StreetPhotoConfig:
    """What `jzi bench --street-photos` measures (see the module docstring)."""

    root: Path
    model: Path
    out: Path
    context: str = CONTEXT
    windows: int = WINDOWS
    window_m: float | None = None
    grid: int = 4
    levels: int = 2
    beam: int = 4
    top_k: int = 5
    seed: int = 0
    limit: int | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.windows < 1 or self.beam < 1 or self.top_k < 1 or self.levels < 1 or self.grid < 2:
            raise EvaluationError(
                f"windows, beam, top_k and levels must be 1 or more and grid 2 or more "
                f"(got {self.windows}, {self.beam}, {self.top_k}, {self.levels}, {self.grid})"
            )
        if self.context not in CONTEXTS:
            raise EvaluationError(f"context must be one of {', '.join(CONTEXTS)}, not {self.context!r}")
        if self.window_m is None:
            object.__setattr__(self, "window_m", self.context_m / 2)
        elif not 0 < self.window_m <= self.context_m / 2:
            raise EvaluationError(
                f"window_m must be positive and at most half the context's {self.context_m:g} m, so that the truth "
                f"can lie anywhere in it (got {self.window_m:g})"
            )

    @property
    def context_m(self) -> float:
        """The context's side [m]."""
        return CONTEXTS[self.context]

    @property
    def side_m(self) -> float:
        """A map's side [m]."""
        assert self.window_m is not None  # set in __post_init__
        return self.window_m


def evaluate_street_photos(config: StreetPhotoConfig) -> dict:
    """Zoom every sample's photo through ``windows`` maps of its context; the report (also ``street_photos.json``)."""
    samples = StreetSample.find(config.root, config.context)[: config.limit]
    model, _ = load_checkpoint(config.model)
    to_latlon = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    lat0, lon0 = MALL_LATLON
    rng = np.random.default_rng([config.seed, 2718])
    searches = {"greedy": 1, f"beam {config.beam}": config.beam}
    rows = []
    config.out.mkdir(parents=True, exist_ok=True)
    pairs = [(s, k) for s in samples for k in range(config.windows)]
    tifs: dict[str, Path] = {}
    queries: dict[str, torch.Tensor] = {}  # each photo encoded once, for all its maps
    for sample, k in bar("street photos", config.quiet, unit="map")(pairs, len(pairs)):
        if sample.name not in tifs:
            tif = config.out / f"{sample.name}_{config.context}.tif"
            tifs[sample.name] = context_geotiff(sample, tif, config.context_m)
            queries[sample.name] = model.encode_queries([query_photo(sample)])
        u, v = rng.uniform(0.02, 0.98, 2)  # the truth's place in the window, from its west and south sides
        centre_e, centre_n = (0.5 - u) * config.side_m, (0.5 - v) * config.side_m
        lon, lat = to_latlon.transform(centre_e, centre_n)
        mapdir = build_map(
            [tifs[sample.name]],
            config.out / "maps" / f"{sample.name}_{k}",
            center=(lat, lon),
            size_m=config.side_m,
            grid=config.grid,
            levels=config.levels,
            overwrite=True,
        )
        zoom = zoomable(mapdir, model)
        views = ViewTokens.project(zoom.decoder, index_map(mapdir, zoom))
        grid = mapdir.grid
        truth = np.array(grid.frame.to_local(lat0, lon0)).reshape(1, 2)
        true_path = grid.paths_at_m(truth[:, 0], truth[:, 1])[0][0]
        query = queries[sample.name]
        every = grid.centers_m(terminal_paths(np.arange(grid.actions**grid.levels), grid.actions, grid.levels))
        row = {
            "sample": sample.name,
            "window": k,
            "truth_m": [round(float(t), 1) for t in truth[0]],  # from the window's centre (east, north)
            "true_path": [int(c) for c in true_path],
            "random_cell_m": float(np.median(np.hypot(*(every - truth).T))),
        }
        for name, beam in searches.items():
            found = beam_search(zoom.decoder, query, views, beam=beam, top_k=config.top_k)
            paths = found.paths[0].cpu().numpy()
            best = grid.centers_m(paths[:1])[0]
            row[name] = {
                "path": [int(c) for c in paths[0]],
                "levels_right": int(np.cumprod(paths[0] == true_path).sum()),
                "in_top_k": bool((paths == true_path).all(1).any()),
                "error_m": float(np.hypot(*(best - truth[0]))),
                "probability": float(found.probs[0, 0]),
            }
        rows.append(row)
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "context_m": config.context_m,
        "terminal_size_m": config.side_m / config.grid**config.levels,
        "samples": len(samples),
        "rows": rows,
        "summary": summarize(rows, list(searches), config),
    }
    (config.out / "street_photos.json").write_text(json.dumps(report, indent=2))
    (config.out / "street_photos.md").write_text(markdown(report))
    return report


def summarize(rows: list[dict], searches: list[str], config: StreetPhotoConfig) -> dict:
    """Per search: the share right at each level, in the top k, and the median error; with chance beside."""
    children = config.grid * config.grid
    out = {
        "chance": {
            "level_right": [children**-level for level in range(1, config.levels + 1)],
            "in_top_k": min(1.0, config.top_k / children**config.levels),
            "median_error_m": float(np.median([r["random_cell_m"] for r in rows])),
        }
    }
    for name in searches:
        right = np.array([r[name]["levels_right"] for r in rows])
        out[name] = {
            "level_right": [float((right >= level).mean()) for level in range(1, config.levels + 1)],
            "in_top_k": float(np.mean([r[name]["in_top_k"] for r in rows])),
            "median_error_m": float(np.median([r[name]["error_m"] for r in rows])),
        }
    return out


def markdown(report: dict) -> str:
    """The report's table: each search beside chance."""
    cfg, summary = report["config"], report["summary"]
    levels = len(summary["chance"]["level_right"])
    pairs = len(report["rows"])
    lines = [
        f"## Street photos zoomed through maps of their overhead context ({report['samples']} photos, {pairs} maps)",
        "",
        f"Model {cfg['model']}; each map {cfg['window_m']:g} m, {cfg['grid']} x {cfg['grid']} cells at "
        f"{levels} levels (terminal cells of {report['terminal_size_m']:g} m), cut from the {report['context_m']:g} m "
        f"context ({cfg['context']}) with the truth at a random place.",
        "",
        "| search | " + " | ".join(f"level {lv + 1} right" for lv in range(levels)) + f" | in top {cfg['top_k']} |"
        " best cell's median error |",
        "|---|" + "---:|" * (levels + 2),
    ]
    for name, s in summary.items():
        cells = [f"{100 * v:.1f} %" for v in s["level_right"]]
        tail = f" | {100 * s['in_top_k']:.1f} % | {s['median_error_m']:.0f} m |"
        lines.append(f"| {name} | " + " | ".join(cells) + tail)
    return "\n".join(lines) + "\n"


__all__ = [
    "StreetPhotoConfig",
    "StreetSample",
    "context_geotiff",
    "evaluate_street_photos",
    "mask_marker",
    "markdown",
    "query_photo",
]
