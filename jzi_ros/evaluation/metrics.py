"""Localization metrics shared by `jzi evaluate` and `jzi eval-bag` (numpy only).

An error is the geodesic distance [m] between an estimate and the truth. The
recall R@X m is the share of queries within X metres; R@k cell the share
within k terminal cell sides, the scale the zoom resolves. What a robot
fusing the fixes feels (:func:`fix_summary`): the share of frames published
as FIX, their errors, the false-fix rate (FIX frames more than two terminal
cells off) and how often their 95 % ellipse holds the truth. The reliability
table compares the reported confidence (the probability of being within two
cells) with how often that is so.
"""

from __future__ import annotations

import numpy as np
import pyproj
from numpy.typing import ArrayLike

from ..geo import ZoomGrid
from ..localizer.calibration import WITHIN_CELLS, Calibration, ellipse_hits

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


def reliability(confidence: ArrayLike, correct: ArrayLike, bins: int = 10) -> dict:
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


def fix_summary(
    errors_m: ArrayLike,
    fix: ArrayLike,
    inside_95: ArrayLike,
    confidence: ArrayLike,
    cell_m: float,
    verified: ArrayLike | None = None,
) -> dict:
    """What the published fixes are worth to a robot.

    Args:
        errors_m: Per-frame errors [m].
        fix: Whether each frame was published as FIX (else NO_FIX).
        inside_95: Whether each frame's truth lies inside its 95 % ellipse.
        confidence: Each frame's confidence (probability of being within
            ``WITHIN_CELLS`` terminal cells).
        cell_m: Terminal cell side [m].
        verified: Whether each frame was verified by registration against the map.

    Returns:
        ``fix_share``, ``fix_count``, ``ellipse95_coverage`` (all frames),
        ``confidence_reliability`` (:func:`reliability` of the confidence
        against "within two cells"; left out when a confidence is NaN) and, when some frame is FIX, ``fix_median_m``,
        ``fix_p95_m``, ``false_fix_rate`` (share of FIX frames more than two
        cells off) and ``fix_ellipse95_coverage``. With ``verified``:
        ``verified_share`` and, when some frame is verified,
        ``verified_median_m``, ``verified_p95_m``, ``false_accept_rate``
        (share of verified frames more than two cells off) and
        ``verified_ellipse95_coverage``.
    """
    e = np.asarray(errors_m, float)
    fix, inside = np.asarray(fix, bool), np.asarray(inside_95, bool)
    if e.size == 0:
        return {"fix_share": 0.0, "fix_count": 0}
    right = e <= WITHIN_CELLS * cell_m
    out: dict = {
        "fix_share": float(fix.mean()),
        "fix_count": int(fix.sum()),
        "ellipse95_coverage": float(inside.mean()),
    }
    conf = np.asarray(confidence, float)
    if np.isfinite(conf).all():  # a recording of the node's fixes holds no confidence
        out["confidence_reliability"] = reliability(conf, right)
    if fix.any():
        out |= {
            "fix_median_m": float(np.median(e[fix])),
            "fix_p95_m": float(np.percentile(e[fix], 95)),
            "false_fix_rate": float((~right[fix]).mean()),
            "fix_ellipse95_coverage": float(inside[fix].mean()),
        }
    if verified is not None:
        ver = np.asarray(verified, bool)
        out["verified_share"] = float(ver.mean())
        if ver.any():
            out |= {
                "verified_median_m": float(np.median(e[ver])),
                "verified_p95_m": float(np.percentile(e[ver], 95)),
                "false_accept_rate": float((~right[ver]).mean()),
                "verified_ellipse95_coverage": float(inside[ver].mean()),
            }
    return out


def heading_summary(error_deg: ArrayLike, sigma_deg: ArrayLike) -> dict:
    """How good the published headings and their uncertainties are.

    Args:
        error_deg: Per-frame heading error [deg] (estimate minus truth, wrapped to ±180; NaN: no heading).
        sigma_deg: Per-frame standard deviation [deg] the estimate gave its heading.

    Returns:
        ``count`` (frames with a heading and a truth) and, when some, ``median_abs_deg``,
        ``p95_abs_deg``, ``median_sigma_deg`` and ``within_2sigma`` (share whose error
        is within twice the given standard deviation; a Gaussian's 95.4 %).
    """
    err, sig = np.asarray(error_deg, float), np.asarray(sigma_deg, float)
    has = np.isfinite(err) & np.isfinite(sig)
    if not has.any():
        return {"count": 0}
    err, sig = np.abs(err[has]), sig[has]
    return {
        "count": int(has.sum()),
        "median_abs_deg": float(np.median(err)),
        "p95_abs_deg": float(np.percentile(err, 95)),
        "median_sigma_deg": float(np.median(sig)),
        "within_2sigma": float((err <= 2 * sig).mean()),
    }


def zoom_metrics(
    grid: ZoomGrid,
    paths: np.ndarray,
    probs: np.ndarray,
    true_latlon: np.ndarray,
    true_paths: np.ndarray,
    calibration: Calibration,
    min_confidence: float,
) -> dict:
    """Metrics of a search's output, with the covariance and status the localizer would publish.

    Args:
        grid: The zoom grid searched.
        paths: Terminal paths (N, K, L) of the K candidates, best first.
        probs: Their probabilities (N, K).
        true_latlon: Truth (N, 2) lat/lon [deg].
        true_paths: Truth's terminal paths (N, L).
        calibration: The model's calibration (covariance and confidence).
        min_confidence: The confidence from which a frame is published as FIX.

    Returns:
        :func:`error_summary` of the best cells' centres, :func:`fix_summary`,
        ``path_accuracy``, ``level_accuracy`` (one per level), ``top_k``,
        ``topk_recall``, and per query ``errors_m``, ``confidence`` and ``fix`` (N,).
    """
    cell_m = grid.terminal_size_m
    top = paths[:, 0]
    centres = np.array([grid.center_latlon(tuple(p)) for p in top]).reshape(-1, 2)
    errors = geodesic_m(centres[:, 0], centres[:, 1], true_latlon[:, 0], true_latlon[:, 1])
    centres_m = grid.centers_m(paths)
    truth_m = np.stack(grid.frame.to_local(true_latlon[:, 0], true_latlon[:, 1]), 1)
    confidence = calibration.confidences(centres_m, probs, cell_m)
    fix = confidence >= min_confidence
    inside = ellipse_hits(calibration, centres_m, probs, truth_m, cell_m)
    level_acc = [float((top[:, : k + 1] == true_paths[:, : k + 1]).all(1).mean()) for k in range(grid.levels)]
    exact = (top == true_paths).all(1)
    in_topk = (paths == true_paths[:, None]).all(2).any(1)
    out = error_summary(errors, cell_m) | fix_summary(errors, fix, inside, confidence, cell_m)
    out |= {
        "path_accuracy": float(exact.mean()),
        "level_accuracy": level_acc,
        "top_k": int(paths.shape[1]),
        "topk_recall": float(in_topk.mean()),
    }
    return out | {"errors_m": errors, "confidence": confidence, "fix": fix}


PER_QUERY = ("errors_m", "confidence", "fix")
"""Per-query arrays of :func:`zoom_metrics`, which ``metrics.json`` leaves out."""


def format_table(rows: dict[str, dict], cell_m: float) -> str:
    """A readable table: one column per method (e.g. greedy, beam 4).

    Args:
        rows: Method name -> its metrics (as :func:`zoom_metrics` returns).
        cell_m: Terminal cell side [m], to spell out R@k cell in metres.

    Returns:
        The table's lines joined by newlines; a metric a method lacks is ``-``.
    """
    names = list(rows)
    lines = [f"{'metric':<26}" + "".join(f"{n:>14}" for n in names)]

    def line(label: str, key: str, fmt) -> None:
        if any(key in r for r in rows.values()):
            values = [fmt(rows[n][key]) if key in rows[n] else "-" for n in names]
            lines.append(f"{label:<26}" + "".join(f"{v:>14}" for v in values))

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    def metres(v: float) -> str:
        return f"{v:.1f} m"

    line("queries", "count", str)
    for x in RECALL_M:
        line(f"R@{x}m", f"R@{x}m", pct)
    for k in RECALL_CELLS:
        line(f"R@{k}cell ({k * cell_m:.1f} m)", f"R@{k}cell", pct)
    for key, label in (("median_m", "median error"), ("mean_m", "mean error"), ("p95_m", "p95 error")):
        line(label, key, metres)
    line("path accuracy", "path_accuracy", pct)
    line("top-k recall", "topk_recall", pct)
    levels = max((len(r.get("level_accuracy", [])) for r in rows.values()), default=0)
    for level in range(levels):
        values = {n: r["level_accuracy"][level] for n, r in rows.items() if "level_accuracy" in r}
        lines.append(
            f"{f'level {level + 1} accuracy':<26}"
            + "".join(f"{pct(values[n]) if n in values else '-':>14}" for n in names)
        )
    line("published as FIX", "fix_share", pct)
    line("FIX median error", "fix_median_m", metres)
    line("FIX p95 error", "fix_p95_m", metres)
    line(f"false fixes (>{WITHIN_CELLS:g} cells)", "false_fix_rate", pct)
    line("FIX in 95 % ellipse", "fix_ellipse95_coverage", pct)
    line("all in 95 % ellipse", "ellipse95_coverage", pct)
    line("confidence ECE", "confidence_reliability", lambda v: f"{v['ece']:.3f}")
    line("verified against the map", "verified_share", pct)
    line("verified median error", "verified_median_m", lambda v: f"{v:.2f} m")
    line("verified p95 error", "verified_p95_m", metres)
    line(f"false accepts (>{WITHIN_CELLS:g} cells)", "false_accept_rate", pct)
    line("verified in 95 % ellipse", "verified_ellipse95_coverage", pct)
    line("registration p50", "refine_ms_p50", lambda v: f"{v:.1f} ms")
    line("search per frame p50", "search_ms", lambda v: f"{v:.2f} ms")
    return "\n".join(lines)
