"""`jzi bench`: how fast and how big, measured, with a report.

1. Per-frame latency of the localizer for each backend asked (image decode,
   encode, search, message), p50/p95 after warm-up, on JPEG frames rendered
   from the map; encoder throughput with batching; peak resident memory.
2. Encoder latency of named backbones at their input size (random weights:
   speed does not depend on them).
3. Scaling: regions of growing side at a fixed terminal cell (39.0625 m, as in
   the paper), zoom search (beam 1 and 4) against flat retrieval over every
   terminal cell (exhaustive cosine similarity as Sample4Geo does it, and
   FAISS's exact inner-product index when faiss is installed): per-query
   search time, map memory, overhead views to encode to build the map.
   Feature values are random there: it measures cost, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data import bags
from ..data.aerial import frames_over_map
from ..geo import MapDir
from ..localizer import Localizer, LocalizerConfig
from ..localizer.frames import decode_compressed
from ..model import DecoderConfig, Encoder, EncoderConfig, ZoomDecoder, beam_search

CELL_M = 39.0625


def _pct(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def _jpeg_frames(mapdir: MapDir, image_px: int, count: int, seed: int = 0) -> list[bytes]:
    frames = frames_over_map(mapdir, image_px, min(count, 64), seed=seed)
    out = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]
    return [out[i % len(out)] for i in range(count)]


def frame_latency(map_dir: Path, model: Path, backend: str, frames: int, warmup: int, beam: int) -> dict:
    loc = Localizer(map_dir, model, backend=backend, config=LocalizerConfig(beam=beam))
    jpegs = _jpeg_frames(loc.map, 640, frames + warmup)
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "encode", "search", "message", "total")}
    for i, jpeg in enumerate(jpegs):
        t0 = time.perf_counter()
        array, order = decode_compressed(jpeg, "jpeg")
        t1 = time.perf_counter()
        est = loc.localize(array, order)
        t2 = time.perf_counter()
        cov = np.zeros((3, 3))
        cov[:2, :2] = est.covariance_m2
        msg = bags.navsatfix(i, "camera", est.lat, est.lon, 0.0, cov)
        bags.TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        stages["decode"].append((t1 - t0 + est.timings_ms["decode"] / 1e3) * 1e3)
        stages["encode"].append(est.timings_ms["encode"])
        stages["search"].append(est.timings_ms["search"])
        stages["message"].append((t3 - t2) * 1e3)
        stages["total"].append((t3 - t0) * 1e3)
    return {k: _pct(v) for k, v in stages.items()} | {"frames": frames, "beam": beam, "jpeg_px": 640}


def encoder_throughput(model_path: Path, batches: tuple[int, ...], repeats: int) -> dict:
    from ..model import load_checkpoint

    model, _ = load_checkpoint(model_path)
    s = model.cfg.encoder.image_px
    out = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.rand(b, 3, s, s) * 255
            model.encoder(x)
            t = time.perf_counter()
            for _ in range(repeats):
                model.encoder(x)
            out[str(b)] = b * repeats / (time.perf_counter() - t)
    return {"images_per_s": out, "image_px": s}


def encoder_latency(names: list[str], repeats: int) -> dict:
    out = {}
    for name in names:
        enc = Encoder(EncoderConfig(name=name, pooling="cls" if "vit" in name else "mean")).eval()
        x = torch.rand(1, 3, enc.cfg.image_px, enc.cfg.image_px) * 255
        times = []
        with torch.inference_mode():
            for i in range(repeats + 3):
                t = time.perf_counter()
                enc(x)
                if i >= 3:
                    times.append((time.perf_counter() - t) * 1e3)
        out[name] = _pct(times) | {"image_px": enc.cfg.image_px, "feat_dim": enc.dim}
    return out


def _zoom_views(side_m: float, levels: int) -> int:
    """Overhead views of a zoom grid whose cells intersect a side_m square."""
    return sum(math.ceil(side_m / (CELL_M * 4 ** (levels - k))) ** 2 for k in range(levels))


class _WrappedTable:
    """A feature table that answers any view index from a smaller random one
    (index modulo its size): the search's cost does not depend on the table
    size, and a full table of a 100 km grid would not fit in memory."""

    def __init__(self, feats: torch.Tensor) -> None:
        self.feats = feats

    def __getitem__(self, idx):
        if isinstance(idx, tuple):
            return _WrappedTable(self.feats[idx])
        return self.feats[idx % self.feats.shape[0]]

    def to(self, dtype) -> _WrappedTable:
        return _WrappedTable(self.feats.to(dtype))


def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
    times = []
    for i in range(repeats + warmup):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def scaling(sizes_km: list[float], feat_dim: int, queries: int, block_rows: int) -> list[dict]:
    """Zoom vs flat retrieval per region side; flat search runs over N rows by
    reusing one random block of ``block_rows`` normalized features."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((block_rows, feat_dim)).astype(np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    q = rng.standard_normal((1, feat_dim)).astype(np.float32)
    return [_scaling_row(km, block, q, queries) for km in sizes_km]


def _scaling_row(km: float, block: np.ndarray, q: np.ndarray, queries: int) -> dict:
    feat_dim = block.shape[1]
    side = km * 1000.0
    levels = max(1, math.ceil(math.log(side / CELL_M, 4) - 1e-9))
    cells = math.ceil(side / CELL_M) ** 2
    views = _zoom_views(side, levels)
    row = {
        "side_km": km,
        "terminal_m": CELL_M,
        "levels": levels,
        "terminal_cells": cells,
        "zoom_views": views,
        "zoom_cls_map_mb": views * feat_dim * 2 / 2**20,
        "zoom_children_map_mb": views * 17 * feat_dim * 2 / 2**20,
        "flat_views": cells,
        "flat_map_mb": cells * feat_dim * 2 / 2**20,
    }
    dec = ZoomDecoder(DecoderConfig(feat_dim=feat_dim, grid=4, levels=levels)).eval()
    table = _WrappedTable(torch.randn(4096, 17, feat_dim))
    query = torch.from_numpy(q)
    with torch.inference_mode():
        for beam in (1, 4):
            row[f"zoom_b{beam}_ms"] = _median_ms(lambda b=beam: beam_search(dec, query, table, b, 1), queries)
    full, rest = divmod(cells, len(block))

    def cosine() -> None:
        for _ in range(full):
            (block @ q[0]).argmax()
        if rest:
            (block[:rest] @ q[0]).argmax()

    row["flat_cosine_ms"] = _median_ms(cosine, max(1, queries // 4), warmup=1)
    try:
        import faiss
    except ImportError:
        return row
    whole, part = faiss.IndexFlatIP(feat_dim), faiss.IndexFlatIP(feat_dim)
    if full:
        whole.add(block)
    if rest:
        part.add(block[:rest])

    def flat_faiss() -> None:
        for _ in range(full):
            whole.search(q, 1)
        if rest:
            part.search(q, 1)

    row["flat_faiss_ms"] = _median_ms(flat_faiss, max(1, queries // 4), warmup=1)
    return row


def markdown(report: dict) -> str:
    lines = [f"# jzi bench ({report['machine']})", ""]
    for backend, lat in report.get("latency", {}).items():
        lines += [
            f"## Per-frame latency, backend {backend} (beam {lat['beam']}, {lat['frames']} frames, "
            f"{lat['jpeg_px']} px JPEG input)",
            "",
            "| stage | p50 ms | p95 ms |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {lat[k]['p50']:.1f} | {lat[k]['p95']:.1f} |"
            for k in ("decode", "encode", "search", "message", "total")
        ]
        lines.append("")
    if "throughput" in report:
        tp = report["throughput"]
        lines += [
            f"Encoder throughput at {tp['image_px']} px: "
            + ", ".join(f"batch {b}: {v:.1f} img/s" for b, v in tp["images_per_s"].items()),
            "",
        ]
    lines += [
        f"Peak resident memory of the localizing process: {report['peak_rss_mb']:.0f} MB "
        f"(with the scaling study's tables: {report['peak_rss_mb_with_scaling']:.0f} MB)",
        "",
    ]
    if report.get("encoders"):
        lines += [
            "## Encoder latency (batch 1, CPU)",
            "",
            "| backbone | input | p50 ms | p95 ms |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {e['image_px']} px | {e['p50']:.1f} | {e['p95']:.1f} |" for n, e in report["encoders"].items()
        ]
        lines.append("")
    if report.get("scaling"):
        lines += [
            "## Zoom search vs flat retrieval (random features, terminal cell 39.06 m)",
            "",
            "Map memory in float16: the CLS decoder needs one token per view, the children decoder 17 (g=4).",
            "",
            "| side | terminal cells | zoom L | zoom b1 ms | zoom b4 ms | flat cosine ms | flat FAISS ms | "
            "zoom map MB (CLS / children) | flat map MB | zoom views | flat views |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["scaling"]:
            faiss_ms = f"{r['flat_faiss_ms']:.1f}" if "flat_faiss_ms" in r else "-"
            lines.append(
                f"| {r['side_km']:g} km | {r['terminal_cells']:,} | {r['levels']} | {r['zoom_b1_ms']:.1f} | "
                f"{r['zoom_b4_ms']:.1f} | {r['flat_cosine_ms']:.1f} | {faiss_ms} | "
                f"{r['zoom_cls_map_mb']:.1f} / {r['zoom_children_map_mb']:.1f} | "
                f"{r['flat_map_mb']:.1f} | {r['zoom_views']:,} | {r['flat_views']:,} |"
            )
        lines.append("")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    p.add_argument("--map", type=Path, help="map for the per-frame latency (with --model)")
    p.add_argument("--model", type=Path, help="checkpoint for the per-frame latency (with --map)")
    p.add_argument("--backends", default="torch,onnxruntime", help="comma-separated (default torch,onnxruntime)")
    p.add_argument("--frames", type=int, default=300, help="frames timed per backend (default 300)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument(
        "--encoders",
        default="vit_small_patch14_dinov2,tf_efficientnet_lite0",
        help="backbones to time alone ('' for none)",
    )
    p.add_argument("--sizes-km", default="1,10,30,100", help="region sides for the scaling study ('' for none)")
    p.add_argument("--feat-dim", type=int, default=384, help="feature width for the scaling study (ViT-S: 384)")
    p.add_argument("--queries", type=int, default=20, help="queries per scaling measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="a reduced run of seconds (CI)")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.frames, args.warmup, args.queries = min(args.frames, 10), min(args.warmup, 2), min(args.queries, 3)
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or ''}"
        f" python {platform.python_version()}, torch {torch.__version__}".replace(" ,", ","),
        "latency": {},
    }
    if args.map and args.model:
        for backend in [b for b in args.backends.split(",") if b]:
            print(f"timing backend {backend} over {args.frames} frames ...", flush=True)
            report["latency"][backend] = frame_latency(
                args.map, args.model, backend, args.frames, args.warmup, args.beam
            )
        report["throughput"] = encoder_throughput(
            args.model, (1, 4, 16) if not args.quick else (1, 4), 5 if not args.quick else 1
        )
    # the localizer's peak memory, before the scaling study allocates its large random tables
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    names = [n for n in args.encoders.split(",") if n]
    if names:
        print(f"timing encoders {', '.join(names)} ...", flush=True)
        report["encoders"] = encoder_latency(names, 20 if not args.quick else 2)
    sizes = [float(s) for s in args.sizes_km.split(",") if s]
    if sizes:
        print(f"scaling study for {', '.join(f'{s:g} km' for s in sizes)} ...", flush=True)
        report["scaling"] = scaling(sizes, args.feat_dim, args.queries, 1_000_000 if not args.quick else 20_000)
    report["peak_rss_mb_with_scaling"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (args.out / "bench.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0
