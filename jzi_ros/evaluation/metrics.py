"""Localization metrics shared by `jzi evaluate` and `jzi eval-bag` (numpy only).

An error is the geodesic distance [m] between an estimate and the truth. The
recall R@X m is the share of queries within X metres; R@k cell the share
within k terminal cell sides, the scale the zoom resolves. The calibration
table compares the reported confidence with how often the best cell is the
true one.
"""

from __future__ import annotations

import numpy as np
import pyproj
from numpy.typing import ArrayLike

from ..geo import ZoomGrid

GEOD = pyproj.Geod(ellps="WGS84")
RECALL_M = (40, 50, 100)
"""Distances [m] of the recalls R@X m."""
RECALL_CELLS = (1, 2, 4)
"""Multiples of the terminal cell side of the recalls R@k cell."""


def geodesic_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Geodesic distance [m] between WGS84 points [deg], element-wise.

    Args:
        lat1: Latitudes [deg] of the first points.
        lon1: Longitudes [deg] of the first points.
        lat2: Latitudes [deg] of the second points.
        lon2: Longitudes [deg] of the second points.

    Returns:
        The distances [m], broadcast over the inputs.
    """
    _, _, dist = GEOD.inv(
        np.asarray(lon1, float), np.asarray(lat1, float), np.asarray(lon2, float), np.asarray(lat2, float)
    )
    return np.asarray(dist, float)


def error_summary(errors_m: ArrayLike, cell_m: float) -> dict:
    """R@X m, R@k cells, median / mean / p95 error [m] of per-query errors.

    Args:
        errors_m: Per-query errors [m].
        cell_m: Terminal cell side [m], the unit of R@k cell.

    Returns:
        ``count`` and, when there is at least one error, the recalls (shares
        in 0..1) and ``median_m``, ``mean_m``, ``p95_m``.
    """
    e = np.asarray(errors_m, float)
    if e.size == 0:
        return {"count": 0}
    out: dict[str, float] = {"count": int(e.size)}
    out |= {f"R@{x}m": float((e <= x).mean()) for x in RECALL_M}
    out |= {f"R@{k}cell": float((e <= k * cell_m).mean()) for k in RECALL_CELLS}
    out |= {"median_m": float(np.median(e)), "mean_m": float(e.mean()), "p95_m": float(np.percentile(e, 95))}
    return out


def calibration(confidence: ArrayLike, correct: ArrayLike, bins: int = 10) -> dict:
    """Reliability of the reported confidence.

    Args:
        confidence: Reported confidence in 0..1, one per query.
        correct: Whether each query's answer was right.
        bins: Equal-width confidence bins.

    Returns:
        ``ece``, the expected calibration error, and ``bins``: per non-empty
        bin its edges, count, mean confidence and accuracy.
    """
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        conf, acc = float(confidence[sel].mean()), float(correct[sel].mean())
        ece += sel.mean() * abs(conf - acc)
        table.append(
            {
                "bin": [float(edges[b]), float(edges[b + 1])],
                "count": int(sel.sum()),
                "confidence": conf,
                "accuracy": acc,
            }
        )
    return {"ece": float(ece), "bins": table}


def zoom_metrics(
    grid: ZoomGrid, paths: np.ndarray, probs: np.ndarray, true_latlon: np.ndarray, true_paths: np.ndarray
) -> dict:
    """Metrics of a search's output.

    Args:
        grid: The zoom grid searched.
        paths: Terminal paths (N, K, L) of the K candidates, best first.
        probs: Their probabilities (N, K).
        true_latlon: Truth (N, 2) lat/lon [deg].
        true_paths: Truth's terminal paths (N, L).

    Returns:
        :func:`error_summary` of the best cells' centres, ``path_accuracy``,
        ``level_accuracy`` (one per level), ``top_k``, ``topk_recall``,
        ``calibration`` of the best probability, and ``errors_m`` (N,).
    """
    top = paths[:, 0]
    centres = np.array([grid.center_latlon(tuple(p)) for p in top]).reshape(-1, 2)
    errors = geodesic_m(centres[:, 0], centres[:, 1], true_latlon[:, 0], true_latlon[:, 1])
    level_acc = [float((top[:, : k + 1] == true_paths[:, : k + 1]).all(1).mean()) for k in range(grid.levels)]
    exact = (top == true_paths).all(1)
    in_topk = (paths == true_paths[:, None]).all(2).any(1)
    out = error_summary(errors, grid.terminal_size_m)
    out |= {
        "path_accuracy": float(exact.mean()),
        "level_accuracy": level_acc,
        "top_k": int(paths.shape[1]),
        "topk_recall": float(in_topk.mean()),
        "calibration": calibration(probs[:, 0], exact),
    }
    return out | {"errors_m": errors}


def format_table(rows: dict[str, dict], cell_m: float) -> str:
    """A readable table: one column per method (e.g. greedy, beam 4).

    Args:
        rows: Method name -> its metrics (as :func:`zoom_metrics` returns).
        cell_m: Terminal cell side [m], to spell out R@k cell in metres.

    Returns:
        The table's lines joined by newlines; a metric a method lacks is ``-``.
    """
    keys = [f"R@{x}m" for x in RECALL_M] + [f"R@{k}cell" for k in RECALL_CELLS]
    names = list(rows)
    lines = [f"{'metric':<24}" + "".join(f"{n:>14}" for n in names)]

    def line(label: str, values: list[str]) -> None:
        lines.append(f"{label:<24}" + "".join(f"{v:>14}" for v in values))

    line("queries", [str(rows[n].get("count", 0)) for n in names])
    for k in keys:
        label = k if "cell" not in k else f"{k} ({int(k[2]) * cell_m:.1f} m)"
        line(label, [f"{100 * rows[n][k]:.1f} %" if k in rows[n] else "-" for n in names])
    for k, label in (("median_m", "median error"), ("mean_m", "mean error"), ("p95_m", "p95 error")):
        line(label, [f"{rows[n][k]:.1f} m" if k in rows[n] else "-" for n in names])
    for k in ["path_accuracy", "topk_recall", "ellipse95_coverage"]:
        if any(k in r for r in rows.values()):
            line(k.replace("_", " "), [f"{100 * rows[n][k]:.1f} %" if k in rows[n] else "-" for n in names])
    if any("level_accuracy" in r for r in rows.values()):
        levels = max(len(r.get("level_accuracy", [])) for r in rows.values())
        for level in range(levels):
            line(
                f"level {level + 1} accuracy",
                [
                    f"{100 * rows[n]['level_accuracy'][level]:.1f} %" if "level_accuracy" in rows[n] else "-"
                    for n in names
                ],
            )
    if any("calibration" in r for r in rows.values()):
        line(
            "calibration ECE",
            [f"{rows[n]['calibration']['ece']:.3f}" if "calibration" in rows[n] else "-" for n in names],
        )
    return "\n".join(lines)
