"""What the command-line front ends share: configs from their options, options of two numbers, --dsm."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def config_from(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """A frozen config dataclass from the options of the same names (and ``overrides``)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})


def add_model_argument(
    p: argparse.ArgumentParser, what: str = "checkpoint from jzi train", default: str = "general-aerial"
) -> None:
    """``--model``: a model file or a shipped model's name; without it the shipped model ``default`` says."""
    p.add_argument(
        "--model",
        default=None,
        help=f"{what}, or a shipped model by name: general-aerial (drones), general-street (ground robots) "
        f"(default {default})",
    )


def calibrated_for(map_dir: Path, model: Path | tuple, quiet: bool = False) -> None:
    """Fit a general model's calibration for a map on first use (``jzi calibrate``), saying so.

    ``model``: its checkpoint, or the (model, extra) pair already loaded from it.
    """
    from ..geo import MapDir
    from ..train.calibrate import ensure_calibrated

    done = ensure_calibrated(MapDir(map_dir), model, quiet)
    if done is not None:
        name = model if isinstance(model, Path) else model[0].source
        print(f"calibrated {map_dir} for the general model {name} in {done.seconds:.0f} s: wrote {done.path}")


def number_pair(sep: str, form: str, example: str) -> Callable[[str], tuple[float, float]]:
    """An argparse ``type`` for an option of two numbers joined by ``sep`` (``form`` and ``example`` name it)."""

    def parse(text: str) -> tuple[float, float]:
        try:
            a, b = (float(v) for v in text.split(sep))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {form} (e.g. {example}), not {text!r}") from None
        return a, b

    return parse


def add_dsm_argument(p: argparse.ArgumentParser, purpose: str) -> None:
    """``--dsm``/``--dtm TIF``: an elevation model (DSM or DTM, GeoTIFF in metres, any CRS) for ``purpose``."""
    p.add_argument(
        "--dsm",
        "--dtm",
        type=Path,
        default=None,
        metavar="TIF",
        help=f"elevation model (a DSM, or a DTM; GeoTIFF in metres, any CRS): {purpose}",
    )


def print_flight_report(report, *also: str) -> None:
    """The summary of an evaluated flight (``eval-bag``, ``score``) and every file it wrote, ``also`` among them."""
    from ..evaluation import format_summary

    print(format_summary(report.metrics))
    print(f"wrote {report.metrics_path}, {report.frames_path}, {report.geojson_path}")
    for line in also:
        print(line)
    print(f"wrote {report.metrics_path.parent / 'truth.tum'} and fixes.tum (evo_ape tum truth.tum fixes.tum)")
    for path in report.pictures:
        print(f"wrote {path}")
