"""Pictures of maps and evaluations (matplotlib, written as PNG).

:func:`draw_overview` draws a map's region with the cell borders of its first
levels; :func:`plot_eval` draws a replayed flight: the trajectory with the
95 % ellipses of the estimates on the map, the error CDF, and error and
confidence over time. matplotlib is imported when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geo import MapDir
from ..localizer import ellipse_95

ELLIPSES_DRAWN = 40
"""About how many 95 % ellipses the trajectory shows (every n-th frame's)."""


def _plt():
    """The pyplot module of matplotlib, on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_overview(mapdir: MapDir, out: str | Path, levels: int = 2) -> Path:
    """Save a PNG of a map's region with its grid.

    Args:
        mapdir: The map.
        out: The PNG to write (its folder is made).
        levels: Draw the cell borders of levels 1..``levels`` (at most 2).

    Returns:
        ``out``. The picture is the finest mosaic up to level 1, with the
        actions of level 1 written in each cell (red where the map's rasters
        do not cover the cell).
    """
    plt = _plt()

    grid = mapdir.grid
    image = mapdir.mosaic(min(1, grid.levels - 1))
    half = grid.size_m / 2
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.imshow(image, extent=(-half, half, -half, half), interpolation="lanczos")
    uncovered: np.ndarray | list[int] = (
        np.where(mapdir.coverage_fraction[grid.level_offset(1) : grid.level_offset(2)] < 0.999)[0]
        if grid.levels > 1
        else []
    )
    styles = [("yellow", 1.6), ("white", 0.5)]
    for level in range(1, min(levels, grid.levels, len(styles)) + 1):
        colour, width = styles[level - 1]
        n = grid.grid**level
        for k in range(n + 1):
            t = -half + k * grid.size_m / n
            ax.plot([t, t], [-half, half], color=colour, lw=width, alpha=0.9)
            ax.plot([-half, half], [t, t], color=colour, lw=width, alpha=0.9)
    if grid.levels > 1:
        for action in range(grid.actions):
            east, north = grid.center_m((action,))
            low = action in uncovered
            ax.text(
                east,
                north,
                str(action),
                color="red" if low else "yellow",
                ha="center",
                va="center",
                fontsize=13,
                weight="bold",
                alpha=0.85,
            )
    nw = grid.corners_latlon(())[0]
    se = grid.corners_latlon(())[2]
    ax.set_title(
        f"{mapdir.name}: {grid.describe()}\nNW ({nw[0]:.6f}, {nw[1]:.6f})  SE ({se[0]:.6f}, {se[1]:.6f})", fontsize=9
    )
    ax.set_xlabel("east [m] (local transverse Mercator)")
    ax.set_ylabel("north [m]")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")  # the titles whole
    plt.close(fig)
    return out


def plot_eval(rows: list[dict], mapdir: MapDir, out: str | Path) -> list[Path]:
    """Save the pictures of a replayed flight.

    Args:
        rows: The frames with ground truth, as :func:`.bag.frame_row` makes them.
        mapdir: The map they were localized on.
        out: The folder to write into (it exists).

    Returns:
        The paths of ``trajectory.png`` (truth vs estimates with 95 %
        ellipses on the map, verified fixes marked), ``error_cdf.png`` and
        ``error_time.png``.
    """
    plt = _plt()
    from matplotlib.patches import Ellipse

    out = Path(out)
    grid = mapdir.grid
    half = grid.size_m / 2
    true = np.array([grid.frame.to_local(r["true_lat"], r["true_lon"]) for r in rows], float)
    est = np.array([grid.frame.to_local(r["est_lat"], r["est_lon"]) for r in rows], float)
    err = np.array([r["error_m"] for r in rows])
    t_s = np.array([r["t_s"] for r in rows])
    paths = []

    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.imshow(mapdir.mosaic(min(1, grid.levels - 1)), extent=(-half, half, -half, half))
    ax.plot(true[:, 0], true[:, 1], "-", color="white", lw=2.0, label="ground truth")
    verified = np.array([bool(r.get("verified", False)) for r in rows])
    style = {"c": err, "cmap": "plasma", "zorder": 3, "vmin": 0}
    style["vmax"] = max(4 * grid.terminal_size_m, np.percentile(err, 95))
    sc = ax.scatter(
        est[~verified, 0], est[~verified, 1], s=14, marker="x", label="zoom only", **style | {"c": err[~verified]}
    )
    ax.scatter(
        est[verified, 0],
        est[verified, 1],
        s=16,
        edgecolors="lime",
        linewidths=0.8,
        label=f"verified against the map ({verified.sum()} of {len(rows)})",
        **style | {"c": err[verified], "zorder": 4},
    )
    step = max(1, len(rows) // ELLIPSES_DRAWN)
    for r, (e, n) in list(zip(rows, est, strict=True))[::step]:
        cov = np.array([[r["cov_ee_m2"], r["cov_en_m2"]], [r["cov_en_m2"], r["cov_nn_m2"]]])
        width_m, height_m, angle_deg = ellipse_95(cov)
        ax.add_patch(Ellipse((e, n), width_m, height_m, angle=angle_deg, fill=False, color="cyan", lw=0.8, alpha=0.8))
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    fig.colorbar(sc, ax=ax, fraction=0.04, label="error [m]")
    ax.set_title(
        f"{mapdir.name}: truth (white), estimates coloured by error (verified: green rim), 95 % ellipses (cyan)",
        fontsize=9,
    )
    ax.set_xlabel("east [m]")
    ax.set_ylabel("north [m]")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "trajectory.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = np.sort(err)
    ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), lw=2)
    for x in (40, 50, 100):
        ax.axvline(x, color="grey", ls=":", lw=1)
    ax.axvline(
        grid.terminal_size_m, color="tab:red", ls="--", lw=1, label=f"terminal cell {grid.terminal_size_m:.1f} m"
    )
    ax.set_xscale("symlog", linthresh=max(1.0, grid.terminal_size_m / 4))
    ax.set_xlim(left=0)  # errors are never negative: no empty negative half of the symlog axis
    ax.set_xlabel("error [m]")
    ax.set_ylabel("share of frames")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"error CDF ({len(err)} frames, median {np.median(err):.1f} m)")
    fig.tight_layout()
    paths.append(out / "error_cdf.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    ax.plot(t_s, err, ".-", lw=0.8, ms=3, label="error [m]")
    ax.plot(t_s[verified], err[verified], "o", color="tab:green", ms=3, label="verified")
    ax.set_yscale("symlog", linthresh=max(1.0, grid.terminal_size_m / 4))
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("error [m]")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(t_s, [r["confidence"] for r in rows], color="tab:orange", lw=0.8, alpha=0.7, label="confidence")
    ax2.set_ylabel("confidence")
    ax2.set_ylim(0, 1)
    ax.set_title("error (verified frames in green) and confidence over time")
    fig.tight_layout()
    paths.append(out / "error_time.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def map_window(true_m: np.ndarray, est_m: np.ndarray, half_m: float, radius_m: float) -> tuple[np.ndarray, float]:
    """The centre [m] and half side [m] of a square window holding the truth and the estimate with room.

    At least ``radius_m``; moved inside the map (of half side ``half_m``) where it fits, so that it does
    not show the blank beyond the map's edge; the whole map where it does not fit.
    """
    radius_m = max(radius_m, 0.6 * float(np.hypot(*(est_m - true_m))) + 30.0)
    if radius_m >= half_m:
        return np.zeros(2), radius_m
    return np.clip((true_m + est_m) / 2, -half_m + radius_m, half_m - radius_m), radius_m


def draw_frame_on_map(
    frame_rgb: np.ndarray, row: dict, mapdir: MapDir, out: str | Path, radius_m: float = 150.0
) -> Path:
    """One camera frame beside the map around it: the truth (white), the estimate (coloured) and its 95 % ellipse.

    Args:
        frame_rgb: The camera frame (H, W, 3) uint8.
        row: Its line of ``frames.csv`` (:func:`.bag.frame_row`).
        mapdir: The map it was localized on.
        out: The PNG to write.
        radius_m: Least half side of the map's window [m]; it grows to hold the truth and the estimate.
    """
    plt = _plt()
    from matplotlib.patches import Ellipse

    grid = mapdir.grid
    half = grid.size_m / 2
    true = np.array(grid.frame.to_local(row["true_lat"], row["true_lon"]), float)
    est = np.array(grid.frame.to_local(row["est_lat"], row["est_lon"]), float)
    ratios = [frame_rgb.shape[1] / frame_rgb.shape[0], 1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), dpi=110, gridspec_kw={"width_ratios": ratios})
    left.imshow(frame_rgb)
    left.set_axis_off()
    left.set_title(f"camera frame at t = {row['t_s']:.1f} s", fontsize=9)
    right.imshow(mapdir.mosaic(grid.levels - 1), extent=(-half, half, -half, half))
    cov = np.array([[row["cov_ee_m2"], row["cov_en_m2"]], [row["cov_en_m2"], row["cov_nn_m2"]]])
    width_m, height_m, angle_deg = ellipse_95(cov)
    colour = "lime" if row.get("verified") else ("orange" if row["status"] == "FIX" else "red")
    right.add_patch(Ellipse(tuple(est), width_m, height_m, angle=angle_deg, fill=False, color=colour, lw=1.2))
    right.plot(*true, "o", color="white", mec="black", ms=8, label="truth")
    right.plot(*est, "x", color=colour, ms=10, mew=2.5, label=f"estimate ({row['status']}, {row['error_m']:.0f} m off)")
    centre, radius_m = map_window(true, est, half, radius_m)
    right.set_xlim(centre[0] - radius_m, centre[0] + radius_m)
    right.set_ylim(centre[1] - radius_m, centre[1] + radius_m)
    right.set_xlabel("east [m]")
    right.set_ylabel("north [m]")
    right.legend(loc="lower right", fontsize=8)
    right.set_title(f"{mapdir.name}: the estimate and its 95 % ellipse", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, bbox_inches="tight")  # the titles whole
    plt.close(fig)
    return Path(out)
