"""A general model: one zoom model trained across many places, for maps it never saw (``jzi train --general``).

A model trained on one map learns that map; trained across many places,
sources and scales, the decoder learns to compare a frame with whatever
views a map gives it. The places come from a *recipe* (YAML, the shipped
one is ``models/general-aerial.yaml``)::

    grid: 4                     # every place's map: grid x grid children,
    levels: 2                   # this many levels,
    view_px: 224                # views of this many pixels
    train: {image_px: 128, footprint_cells: [1, 8]}   # TrainConfig options (street: true for a street-level model)
    places:
      - name: world-1
        scene: {seed: 1, gsd_m: 0.5, size_px: 2048}  # a generated world: map of its summer, frames of its autumn too
        size_m: 1000
      - name: world-1-east
        scene: {seed: 1}
        size_m: 300
        offset_m: [300, 0]           # another map of the same world: its centre 300 m east of the raster's
      - name: zurich
        raster: zurich/zurich_altstetten_0p5m.tif   # relative to the data folder
        dsm: null                                   # optional surface model, same folder
        query_rasters: []                           # other dates or sensors of the place
        size_m: 256
        samples: 3000

:func:`prepare_places` builds what is missing under a work folder (the
generated worlds, each place's map with its pyramid); :func:`train_general`
encodes every place's aerial frames once (cached as any run's are), stacks
the places' view features, and trains the decoder on batches that mix the
places (each sample's paths index its own map's views). The checkpoint says
``general`` (:class:`~jzi_ros.model.ModelConfig`), holds no calibration (a
map's own is fitted for it, :func:`~.calibrate.calibrate_map`) and, when the
encoder is the packaged one, only the decoder's weights.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from ..geo import LocalFrame, MapDir
from ..geo.build import build_map
from ..geo.raster import read_info
from ..localizer.index import index_map
from ..model import PACKAGED_WEIGHTS, save_checkpoint
from ..model.search import as_features
from ..progress import bar
from .config import TrainConfig
from .decoder_loop import build_model, evaluate_features, train_decoder
from .distributed import Dist
from .errors import TrainError
from .samples import Samples, encoded_samples
from .trainer import TrainResult

log = logging.getLogger(__name__)

DATA_ENV = "JZI_DATA"
"""Environment variable naming the folder a recipe's rasters are relative to (else the recipe's ``data``)."""
_PLACE_KEYS = {"name", "scene", "raster", "dsm", "query_rasters", "size_m", "offset_m", "samples", "val_samples"}
_RESERVED = {"map", "out", "aerial", "query_rasters", "samples", "val_samples", "resume", "learned_matcher"}
"""TrainConfig options a recipe's ``train`` may not set: each place sets them, or a general run has no use for them."""


@dataclass(frozen=True)
class Place:
    """One place of a recipe: a generated world (``scene_seed``) or a raster of the data folder.

    Attributes:
        name: its folder under the work folder's ``maps/``.
        size_m: side of its map's region [m] (its terminal cells: ``size_m / grid**levels``).
        offset_m: (east, north) [m] of the region's centre from the raster's
            (several places of one raster: other maps of the same ground); none:
            the centre of the largest square the raster covers.
        scene_seed: the generated world's seed (None: ``raster``).
        scene_gsd_m: the generated world's ground sample distance [m/px].
        scene_px: the generated world's side [px].
        raster: the map's GeoTIFF (absolute once read).
        dsm: its surface model, or None.
        query_rasters: other rasters of the place that frames are also rendered from.
        samples: training frames of the place.
        val_samples: its validation frames (as many for the calibration part).
    """

    name: str
    size_m: float
    offset_m: tuple[float, float] = (0.0, 0.0)
    scene_seed: int | None = None
    scene_gsd_m: float = 0.5
    scene_px: int = 2048
    raster: Path | None = None
    dsm: Path | None = None
    query_rasters: tuple[Path, ...] = ()
    samples: int = 3000
    val_samples: int = 100


@dataclass(frozen=True)
class Recipe:
    """Where a general model learns: its grid, training options and places (see the module docstring)."""

    path: Path
    grid: int
    levels: int
    train: dict
    places: tuple[Place, ...]
    view_px: int = 224

    @classmethod
    def read(cls, path: str | Path, data_dir: str | Path | None = None) -> Recipe:
        """Read and check a recipe; rasters are found under ``data_dir`` (default ``$JZI_DATA``, else its ``data``).

        Raises:
            TrainError: the file is missing or malformed, or names a raster that is not there.
        """
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"no such recipe: {path}")
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict) or not doc.get("places"):
            raise TrainError(f"{path}: a recipe needs places (a list); see jzi_ros.train.general")
        data = Path(data_dir or os.environ.get(DATA_ENV) or (path.parent / str(doc.get("data", "."))))
        train = dict(doc.get("train") or {})
        bad = sorted(set(train) & _RESERVED)
        if bad:
            raise TrainError(f"{path}: train may not set {', '.join(bad)} (each place sets them)")
        places, names = [], set()
        for i, d in enumerate(doc["places"]):
            unknown = sorted(set(d) - _PLACE_KEYS)
            if unknown or "name" not in d or "size_m" not in d or ("scene" in d) == ("raster" in d):
                raise TrainError(
                    f"{path}: place {i + 1} needs name, size_m and one of scene or raster"
                    + (f" (unknown: {', '.join(unknown)})" if unknown else "")
                )
            if d["name"] in names:
                raise TrainError(f"{path}: two places are named {d['name']}")
            names.add(d["name"])
            scene = d.get("scene") or {}
            place = Place(
                name=str(d["name"]),
                size_m=float(d["size_m"]),
                offset_m=tuple(float(v) for v in d.get("offset_m", (0.0, 0.0))),  # type: ignore[arg-type]
                scene_seed=None if "raster" in d else int(scene.get("seed", 0)),
                scene_gsd_m=float(scene.get("gsd_m", 0.5)),
                scene_px=int(scene.get("size_px", 2048)),
                raster=data / d["raster"] if "raster" in d else None,
                dsm=data / d["dsm"] if d.get("dsm") else None,
                query_rasters=tuple(data / q for q in d.get("query_rasters") or ()),
                samples=int(d.get("samples", 3000)),
                val_samples=int(d.get("val_samples", 100)),
            )
            missing = [str(p) for p in (place.raster, place.dsm, *place.query_rasters) if p and not p.is_file()]
            if missing:
                raise TrainError(
                    f"{path}: place {place.name} needs {', '.join(missing)}; give the data folder "
                    f"(--data-dir or ${DATA_ENV}) that holds them"
                )
            places.append(place)
        if train.get("street"):
            flat = [p.name for p in places if p.scene_seed is None and p.dsm is None]
            if flat:
                raise TrainError(f"{path}: a street recipe's places need heights: {', '.join(flat)} has no dsm")
        grid, levels, view_px = (int(doc.get(k, d)) for k, d in (("grid", 4), ("levels", 2), ("view_px", 224)))
        return cls(path, grid, levels, train, tuple(places), view_px)

    def to_dict(self) -> dict:
        """The recipe as JSON types, rasters by file name (a checkpoint's record of where it learned)."""
        places = []
        for p in self.places:
            d = dataclasses.asdict(p)
            for key in ("raster", "dsm"):
                d[key] = None if d[key] is None else Path(d[key]).name
            d["query_rasters"] = [Path(q).name for q in p.query_rasters]
            places.append(d)
        return {
            "grid": self.grid,
            "levels": self.levels,
            "view_px": self.view_px,
            "train": dict(self.train),
            "places": places,
        }


def prepare_places(recipe: Recipe, work: str | Path, quiet: bool = False) -> list[tuple[Place, MapDir]]:
    """Each place with its map, built under ``work/maps/NAME`` when missing (generated worlds under ``work/scenes``).

    A generated world's map is drawn from its summer orthophoto over its
    surface model; its autumn orthophoto is a query raster.
    """
    from ..data.scene import SceneFiles, SceneSpec, write_scene

    work = Path(work)
    out = []
    for place in recipe.places:
        rasters, query, dsm = [place.raster], place.query_rasters, place.dsm
        if place.scene_seed is not None:
            seasons = {}
            for season in ("summer", "autumn"):
                spec = SceneSpec(place.scene_px, place.scene_gsd_m, seed=place.scene_seed, season=season)
                tif = work / "scenes" / f"seed{spec.seed}_{spec.size_px}px_{spec.gsd_m:g}m_{season}.tif"
                if not tif.exists():
                    write_scene(tif, spec)
                seasons[season] = tif
            rasters, query, dsm = [seasons["summer"]], (seasons["autumn"],), SceneFiles.beside(seasons["summer"]).dsm
        map_dir = work / "maps" / place.name
        if not (map_dir / "map.yaml").exists():
            sources: list[str | Path] = [r for r in rasters if r is not None]
            center = None  # no offset: build_map's own choice, the centre of the largest square the rasters cover
            if any(place.offset_m):
                b = read_info(sources[0]).bounds_latlon
                lat, lon = LocalFrame((b.south + b.north) / 2, (b.west + b.east) / 2).to_latlon(*place.offset_m)
                center = (float(lat), float(lon))
            build_map(
                sources,
                map_dir,
                center=center,
                size_m=place.size_m,
                grid=recipe.grid,
                levels=recipe.levels,
                view_px=recipe.view_px,
                dsm=dsm,
                overwrite=map_dir.exists(),
                progress=bar(f"map {place.name}", quiet),
            )
        out.append((replace(place, query_rasters=tuple(query)), MapDir(map_dir)))
    return out


def train_general(
    recipe: Recipe,
    out: str | Path,
    work: str | Path,
    overrides: dict | None = None,
) -> TrainResult:
    """Train a general zoom model across ``recipe``'s places and write it to ``out``.

    Args:
        recipe: the places and the training options.
        out: checkpoint to write.
        work: folder of the places' maps and generated worlds (built when missing).
        overrides: TrainConfig options over the recipe's ``train`` (``minutes``,
            ``max_steps``, ``seed``, ``device``, ``threads``, ``quiet``, ...).

    Returns:
        The run, as :func:`~.trainer.train` returns one (no calibration: each
        map gets its own, :func:`~.calibrate.calibrate_map`).
    """
    started_s = time.monotonic()
    options = {**recipe.train, **(overrides or {})}
    quiet = bool(options.get("quiet", False))
    places = prepare_places(recipe, work, quiet)
    street = bool(options.get("street", False))  # street-level frames only; otherwise downward ones
    base = TrainConfig(map=places[0][1].path, out=Path(out), aerial=not street, **options)
    if base.threads:
        torch.set_num_threads(base.threads)
    dist = Dist.start(torch.device(base.device))
    try:
        torch.manual_seed(base.seed)
        np.random.seed(base.seed)
        model = build_model(base, places[0][1])
        model.cfg = replace(model.cfg, general=True)
        model.to(dist.device)
        model.encoder.eval().requires_grad_(False)
        feats, parts, vals, start = [], [], [], 0
        for place, mapdir in places:
            if dist.main:
                log.info("place %s: %s", place.name, mapdir.grid.describe())
                index_map(mapdir, model, progress=bar(f"indexing {place.name}", quiet, unit="batch"))
            dist.barrier()
            f = as_features(index_map(mapdir, model), dist.device)
            cfg = replace(
                base,
                map=mapdir.path,
                query_rasters=place.query_rasters,
                samples=place.samples,
                val_samples=place.val_samples,
                dsm=place.dsm if street else None,  # a raster place's heights, which street frames stand in
            )
            samples = encoded_samples(cfg, mapdir, model, dist, None)
            samples.view_offset = np.full(len(samples.x), start, np.int64)
            feats.append(f)
            parts.append(samples)
            vals.append((f, samples.part("val"), mapdir.grid))
            start += len(f)
        stacked = torch.cat(feats)
        samples = Samples.concat(parts)
        if dist.main:
            log.info(
                "general model: %d places, %d views, %d training frames",
                len(places),
                len(stacked),
                samples.count("train"),
            )

        def validate() -> dict:
            """Mean exact-cell share over the places, and the median error in terminal cells."""
            accs, cells = [], []
            for f, val, grid in vals:
                m = evaluate_features(model, f, val, grid=grid)
                accs.append(m["path_acc"])
                cells.append(m["errors_m"] / grid.terminal_size_m)
            return {"path_acc": float(np.mean(accs)), "median_cells": float(np.median(np.concatenate(cells)))}

        deadline_s = started_s + base.budget_s
        steps, history = train_decoder(model, stacked, samples, base, dist, deadline_s, None, validate)
        if dist.main:
            weights = PACKAGED_WEIGHTS if base.weights == PACKAGED_WEIGHTS else None
            elapsed_s = time.monotonic() - started_s
            record = {
                "recipe": recipe.to_dict(),
                "steps": steps,
                "minutes": round(elapsed_s / 60, 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {base.device}",
                "validation": history[-1] if history else {},
            }
            # no map and no paths of this machine: the places are in the record, by name
            options = base.to_dict() | {"map": "", "out": base.out.name}
            save_checkpoint(base.out, model, {"train_config": options, "general": record}, weights)
    finally:
        dist.stop()
    last = history[-1] if history else {}
    return TrainResult(
        model=model,
        history=history,
        steps=steps,
        out=base.out,
        elapsed_s=time.monotonic() - started_s,
        fine_tuned=False,
        rank=dist.rank,
        validation={k: v for k, v in last.items() if k not in ("step", "loss")},
        calibration=None,
        frames=len(samples.x),
        encode_s=0.0,
        heading_known=base.heading_known,
    )
