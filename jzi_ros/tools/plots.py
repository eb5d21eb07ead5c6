"""Pictures of an evaluation (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geo import MapDir


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_eval(rows: list[dict], mapdir: MapDir, out: Path) -> list[Path]:
    """trajectory.png (truth vs estimates with 95 % ellipses on the map),
    error_cdf.png and error_time.png."""
    plt = _plt()
    from matplotlib.patches import Ellipse

    grid = mapdir.grid
    half = grid.size_m / 2
    true = np.array([grid.frame.to_local(r["true_lat"], r["true_lon"]) for r in rows], float)
    est = np.array([grid.frame.to_local(r["est_lat"], r["est_lon"]) for r in rows], float)
    err = np.array([r["error_m"] for r in rows])
    t = np.array([r["t_s"] for r in rows])
    paths = []

    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    ax.imshow(mapdir.mosaic(min(1, grid.levels - 1)), extent=(-half, half, -half, half))
    ax.plot(true[:, 0], true[:, 1], "-", color="white", lw=2.0, label="ground truth")
    sc = ax.scatter(
        est[:, 0],
        est[:, 1],
        c=err,
        cmap="plasma",
        s=14,
        zorder=3,
        vmin=0,
        vmax=max(4 * grid.terminal_size_m, np.percentile(err, 95)),
        label="estimates",
    )
    step = max(1, len(rows) // 40)
    for r, (e, n) in list(zip(rows, est, strict=True))[::step]:
        cov = np.array([[r["cov_ee_m2"], r["cov_en_m2"]], [r["cov_en_m2"], r["cov_nn_m2"]]])
        vals, vecs = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        w, h = 2 * np.sqrt(5.991 * np.maximum(vals[::-1], 0))
        ax.add_patch(Ellipse((e, n), w, h, angle=angle, fill=False, color="cyan", lw=0.8, alpha=0.8))
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    fig.colorbar(sc, ax=ax, fraction=0.04, label="error [m]")
    ax.set_title(f"{mapdir.name}: truth (white), estimates (by error), 95 % ellipses (cyan)", fontsize=9)
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
    ax.plot(t, err, ".-", lw=0.8, ms=3, label="error [m]")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("error [m]")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(t, [r["confidence"] for r in rows], color="tab:orange", lw=0.8, alpha=0.7, label="confidence")
    ax2.set_ylabel("confidence")
    ax2.set_ylim(0, 1)
    ax.set_title("error and confidence over time")
    fig.tight_layout()
    paths.append(out / "error_time.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths
