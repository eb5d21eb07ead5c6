"""Indexing a map: the encoder features of every view, computed once, offline."""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..geo import MapDir, MapError, ZoomGrid
from ..progress import Progress

if TYPE_CHECKING:
    import torch

    from ..model import ZoomModel

log = logging.getLogger(__name__)


def check_region(mapdir: MapDir, model: ZoomModel | dict, general: bool | None = None) -> None:
    """Refuse a map the model cannot zoom through.

    A map-specific model zooms only through the zoom grid it was trained for
    (``model``'s region, or ``model`` itself as a grid's dict); a general one
    (``general``, default the model's own flag) through any map whose grid has
    its ``grid`` x ``grid`` children and at most its levels (:func:`zoomable`).
    """
    trained = ZoomGrid.from_dict(model if isinstance(model, dict) else model.cfg.region)
    if general is None:
        general = not isinstance(model, dict) and model.cfg.general
    if general:
        if trained.grid != mapdir.grid.grid or mapdir.grid.levels > trained.levels:
            raise MapError(
                f"the general model zooms through {trained.grid} x {trained.grid} grids of at most {trained.levels} "
                f"levels; map {mapdir.path} has {mapdir.grid.grid} x {mapdir.grid.grid} of {mapdir.grid.levels} "
                f"(jzi build-map --grid {trained.grid} --levels {trained.levels})"
            )
        return
    if trained != mapdir.grid:
        raise MapError(
            f"the model was trained for another region ({trained.describe()}) than map {mapdir.path} "
            f"({mapdir.grid.describe()}); use the map it was trained on or train for this map"
        )


def zoomable(mapdir: MapDir, model: ZoomModel) -> ZoomModel:
    """``model``, made to zoom through ``mapdir``: itself, or a copy cut to the map's levels.

    A general model on a map of fewer levels than its own zooms through its
    first levels (:meth:`~jzi_ros.model.ZoomModel.first_levels`); the model
    given is left as it is.

    Raises:
        MapError: the model cannot zoom through the map (:func:`check_region`).
    """
    check_region(mapdir, model)
    if model.cfg.general and mapdir.grid.levels < model.cfg.decoder.levels:
        log.info("the general model zooms through its first %d levels on map %s", mapdir.grid.levels, mapdir.path)
        return copy.deepcopy(model).first_levels(mapdir.grid.levels)
    return model


def terminal_chunks(
    mapdir: MapDir, model: ZoomModel, progress: Progress | None = None, batch: int = 32
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every terminal cell's own view (:meth:`~jzi_ros.geo.MapDir.terminal_views`) encoded, ``batch`` at a time.

    Yields the global features (n, F) and child tokens (n, g*g, F) of the
    next ``batch`` views in the map's order, so a large map's views (or their
    child tokens) are never all in memory.
    """
    views = mapdir.terminal_views(progress)
    while chunk := list(itertools.islice(views, batch)):
        yield model.encode(chunk, batch=batch)


def encode_terminal_views(
    mapdir: MapDir, model: ZoomModel, progress: Progress | None = None, batch: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every terminal cell's own view encoded (:func:`terminal_chunks`): global (T, F), child tokens (T, g*g, F)."""
    import torch

    pooled, children = zip(*terminal_chunks(mapdir, model, progress, batch), strict=True)
    return torch.cat(pooled), torch.cat(children)


def children_from_views(pooled: np.ndarray, terminal: np.ndarray, actions: int) -> np.ndarray:
    """View features (N, 1 + g*g, F) whose child tokens are the children's own views' global features.

    ``pooled`` (N, F): the global feature of every map view in breadth-first
    order; ``terminal`` (g**L, F): every terminal cell's own view's, in the
    map's order, which continues the breadth-first order one level down. So
    child c of view i is row g*g * i + 1 + c of the two stacked.
    """
    every = np.concatenate([pooled, terminal])
    n = len(pooled)
    children = every[actions * np.arange(n)[:, None] + 1 + np.arange(actions)]  # (N, g*g, F)
    return np.concatenate([pooled[:, None], children], axis=1)


def index_map(
    mapdir: MapDir,
    model: ZoomModel,
    batch: int = 16,
    progress: Progress | None = None,
    force: bool = False,
    save: bool = True,
) -> np.ndarray:
    """Features (N, 1 + g*g, F) float16 of every view of ``mapdir`` under the model's encoder.

    Global token, then child tokens: the view's patch tokens pooled over each
    child's area, or (a decoder of ``tokens="views"``) each child's own view's
    global token, the terminal cells' read from the map's pyramid
    (:func:`children_from_views`). Stored in the map beside other encoders'
    under the model's :meth:`~jzi_ros.model.ZoomModel.feature_identity`, and
    reused when already there (``save`` False: only returned, e.g. to
    validate an encoder being trained).
    """
    check_region(mapdir, model)
    identity = model.feature_identity()
    if not force:
        try:
            return mapdir.load_features(identity)
        except MapError:
            pass
    import torch

    n = mapdir.grid.num_views
    out = np.empty((n, 1 + model.cfg.decoder.actions, model.encoder.dim), np.float16)
    iterate = progress or (lambda it, total: it)
    model.eval()
    with torch.inference_mode():
        for start in iterate(range(0, n, batch), (n + batch - 1) // batch):
            views = np.asarray(mapdir.views[start : start + batch])
            pooled, children = model.encode(list(views), batch=batch)
            out[start : start + batch] = torch.cat([pooled[:, None], children], 1).cpu().numpy().astype(np.float16)
        if model.cfg.decoder.tokens == "views":  # the terminal cells' own views: their global features only
            chunks = terminal_chunks(mapdir, model, progress, batch=batch)
            terminal = np.concatenate([p.cpu().numpy().astype(np.float16) for p, _ in chunks])
            out = children_from_views(out[:, 0], terminal, model.cfg.decoder.actions)
    if not save:
        return out
    mapdir.save_features(identity, out)
    return mapdir.load_features(identity)
