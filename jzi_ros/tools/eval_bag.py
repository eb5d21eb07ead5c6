"""`jzi eval-bag`: replay a rosbag2 through the localizer and measure it.

Every camera frame (or every n-th, or those a real-time node would have
taken) is localized; ground truth (``NavSatFix``) is interpolated to the
frame's stamp. Writes metrics.json, frames.csv, pictures, and a bag of the
estimates on /jzi/fix to play beside the input.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import bags
from ..data.fixes import FixTrack
from ..errors import JziError
from ..localizer import Estimate, InputError, Localizer, LocalizerConfig
from ..localizer.frames import decode_message
from .metrics import CHI2_95_2DOF, error_summary, geodesic_m


def read_truth(reader: bags.BagReader, topic: str) -> FixTrack:
    reader.check(topic, (bags.NAVSATFIX,), "ground truth")
    rows = []
    for m in reader.messages([topic]):
        fix = m.msg
        if fix.status.status >= 0 and np.isfinite(fix.latitude) and np.isfinite(fix.longitude):
            rows.append((bags.stamp_of(fix, m.bag_ns), fix.latitude, fix.longitude))
    if not rows:
        raise bags.BagError(f"{reader.path} has no valid ground-truth fix on {topic}")
    rows.sort()
    t, lat, lon = (np.array(c) for c in zip(*rows, strict=True))
    return FixTrack(t.astype(np.int64), lat, lon)


def select_realtime(stamps_ns: np.ndarray, cost_s: float) -> np.ndarray:
    """Indices of the frames a node localizes when each takes ``cost_s``:
    whenever it is free it takes the newest frame that has arrived; the
    frames replaced in between are dropped."""
    t = np.asarray(stamps_ns, np.int64) / 1e9
    picked, i, free_at = [], 0, -np.inf
    while i < len(t):
        j = max(i, int(np.searchsorted(t, free_at, side="right")) - 1)
        picked.append(j)
        free_at = max(free_at, t[j]) + cost_s
        i = j + 1
    return np.array(picked, int)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--bag", required=True, type=Path, help="rosbag2 directory (sqlite3 or MCAP)")
    p.add_argument("--map", required=True, type=Path, help="map directory, indexed for the model")
    p.add_argument("--model", required=True, type=Path, help="checkpoint from jzi train")
    p.add_argument("--image-topic", required=True, help="camera topic (Image or CompressedImage)")
    p.add_argument("--gt-topic", required=True, help="ground-truth NavSatFix topic")
    p.add_argument("--out", type=Path, default=Path("eval_out"), help="folder for the results (default eval_out)")
    p.add_argument("--every", type=int, default=1, help="localize every n-th frame (default 1)")
    p.add_argument(
        "--realtime", action="store_true", help="drop frames like the node would at the measured processing speed"
    )
    p.add_argument("--max-gap-s", type=float, default=1.0, help="largest ground-truth gap to interpolate over")
    p.add_argument("--beam", type=int, default=4, help="beam width (default 4)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--min-confidence", type=float, default=LocalizerConfig.min_confidence)
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--storage", choices=sorted(bags.STORAGES), default="mcap", help="format of the output bag")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.every < 1:
        raise JziError("--every must be 1 or more")
    loc = Localizer(
        args.map,
        args.model,
        backend=args.backend,
        device=args.device,
        config=LocalizerConfig(beam=args.beam, top_k=args.top_k, min_confidence=args.min_confidence),
    )
    with bags.BagReader(args.bag) as reader:
        reader.check(args.image_topic, (bags.IMAGE, bags.COMPRESSED), "camera")
        truth = read_truth(reader, args.gt_topic)
        frames = [(bags.stamp_of(m.msg, m.bag_ns), m.msg) for m in reader.messages([args.image_topic])]
    if not frames:
        raise bags.BagError(f"{args.bag} has no message on {args.image_topic}")
    frames.sort(key=lambda f: f[0])
    stamps = np.array([f[0] for f in frames], np.int64)
    chosen = np.arange(0, len(frames), args.every)
    warm = None
    if args.realtime:  # measure the per-frame cost on a few frames, then replay as the node would
        warm = [loc.localize(*decode_message(frames[i][1])).timings_ms["total"] for i in chosen[:5]]
        chosen = chosen[np.isin(chosen, chosen[select_realtime(stamps[chosen], np.median(warm) / 1e3)])]
    dropped = int(len(frames) - len(chosen))
    rows: list[dict] = []
    estimates: list[tuple[int, Estimate]] = []
    no_truth = rejected = 0
    for i in tqdm(chosen, desc="localizing frames", unit="frame", disable=args.quiet):
        stamp, msg = frames[i]
        gt = truth.at(stamp, args.max_gap_s)
        try:
            est = loc.localize(*decode_message(msg))
        except InputError as exc:
            rejected += 1
            print(f"frame at {stamp} ns skipped: {exc}")
            continue
        estimates.append((stamp, est))
        if gt is None:
            no_truth += 1
            continue
        err = float(geodesic_m(est.lat, est.lon, gt[0], gt[1]))
        de, dn = (v - w for v, w in zip(loc.grid.frame.to_local(gt[0], gt[1]), (est.east_m, est.north_m), strict=True))
        d = np.array([float(de), float(dn)])
        rows.append(
            {
                "stamp_ns": stamp,
                "t_s": (stamp - stamps[0]) / 1e9,
                "true_lat": gt[0],
                "true_lon": gt[1],
                "est_lat": est.lat,
                "est_lon": est.lon,
                "error_m": err,
                "confidence": est.confidence,
                "trusted": est.trusted,
                "inside_95": bool(d @ np.linalg.solve(est.covariance_m2, d) <= CHI2_95_2DOF),
                "cov_ee_m2": est.covariance_m2[0, 0],
                "cov_en_m2": est.covariance_m2[0, 1],
                "cov_nn_m2": est.covariance_m2[1, 1],
                "path": "".join(f"{a:x}" for a in est.path),
                **{f"{k}_ms": v for k, v in est.timings_ms.items()},
            }
        )
    if not rows:
        raise bags.BagError(f"no frame of {args.bag} has ground truth within {args.max_gap_s} s on {args.gt_topic}")
    args.out.mkdir(parents=True, exist_ok=True)
    errors = np.array([r["error_m"] for r in rows])
    metrics = error_summary(errors, loc.grid.terminal_size_m)
    metrics |= {
        "frames_in_bag": len(frames),
        "frames_localized": len(estimates),
        "frames_dropped": dropped,
        "frames_without_truth": no_truth,
        "frames_rejected": rejected,
        "ellipse95_coverage": float(np.mean([r["inside_95"] for r in rows])),
        "trusted_share": float(np.mean([r["trusted"] for r in rows])),
        "latency_ms": {
            k: {
                "p50": float(np.percentile([r[f"{k}_ms"] for r in rows], 50)),
                "p95": float(np.percentile([r[f"{k}_ms"] for r in rows], 95)),
            }
            for k in ("decode", "encode", "search", "total")
        },
        "terminal_size_m": loc.grid.terminal_size_m,
        "bag": str(args.bag),
        "model": str(args.model),
        "map": str(args.map),
        "mode": "realtime" if args.realtime else f"every {args.every}",
        "seconds": round(time.monotonic() - started, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with (args.out / "frames.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out_bag = args.out / "estimates"
    if out_bag.exists():
        import shutil

        shutil.rmtree(out_bag)
    with bags.BagWriter(out_bag, args.storage) as bag:
        for stamp, est in estimates:
            cov = np.zeros((3, 3))
            cov[:2, :2] = est.covariance_m2
            cov[2, 2] = 1e4
            bag.add("/jzi/fix", bags.navsatfix(stamp, "jzi_camera", est.lat, est.lon, 0.0, cov, fix=est.trusted), stamp)
    from .plots import plot_eval

    pictures = plot_eval(rows, loc.map, args.out)
    print(format_summary(metrics))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'frames.csv'}, {out_bag} (/jzi/fix)")
    for p in pictures:
        print(f"wrote {p}")
    return 0


def format_summary(m: dict) -> str:
    lines = [
        f"frames: {m['frames_in_bag']} in bag, {m['frames_localized']} localized, {m['frames_dropped']} dropped, "
        f"{m['frames_without_truth']} without ground truth, {m['frames_rejected']} rejected",
        f"{'R@40m':>8}{'R@50m':>8}{'R@100m':>8}{'R@1cell':>9}{'R@2cell':>9}{'R@4cell':>9}"
        f"{'median':>9}{'mean':>9}{'p95':>9}{'in 95%':>9}",
        f"{100 * m['R@40m']:>7.1f}%{100 * m['R@50m']:>7.1f}%{100 * m['R@100m']:>7.1f}%{100 * m['R@1cell']:>8.1f}%"
        f"{100 * m['R@2cell']:>8.1f}%{100 * m['R@4cell']:>8.1f}%{m['median_m']:>7.1f} m{m['mean_m']:>7.1f} m"
        f"{m['p95_m']:>7.1f} m{100 * m['ellipse95_coverage']:>8.1f}%",
        "latency p50/p95 [ms]: " + ", ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in m["latency_ms"].items()),
    ]
    return "\n".join(lines)
