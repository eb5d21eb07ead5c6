"""How fast and how big: latency, throughput, memory and scaling, measured.

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

:func:`run_benchmark` returns the report (a JSON-ready dict), :func:`markdown`
renders it and :func:`write_report` writes both. Times are in milliseconds
(keys and columns ending in ``ms``), memory in MiB (``mb``).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..data import bags
from ..data.aerial import posed_frames_over_map
from ..geo import CameraPose, MapDir
from ..images import decode_compressed
from ..localizer import Localizer, LocalizerConfig
from ..localizer.refine import Attitude
from ..model import DecoderConfig, Encoder, EncoderConfig, ZoomDecoder, beam_search, load_checkpoint
from ..model.search import ViewTokens
from .errors import EvaluationError
from .registration import MODEL_STUDIED, RegistrationStudyConfig, registration_study
from .registration import markdown_table as registration_table

log = logging.getLogger(__name__)

CELL_M = 39.0625
"""Terminal cell side of the scaling study [m] (the paper's)."""
JPEG_PX = 640
"""Side of the JPEG frames fed to the localizer [px]."""
LATENCY_STAGES = ("decode", "encode", "search", "refine", "message", "total")


@dataclass(frozen=True)
class BenchConfig:
    """What `jzi bench` measures.

    ``map`` and ``model`` (together): time the localizer per frame for each
    of ``backends`` over ``frames`` frames after ``warmup`` ones, searching
    with ``beam``, and the model's encoder throughput. ``encoders``: backbones
    (timm names) to time alone. ``sizes_km``: region sides [km] of the
    scaling study, with features ``feat_dim`` wide (the default encoder's,
    EfficientNet-Lite0) and ``queries`` queries per measurement.
    ``threads``: torch CPU threads (None: torch's choice).
    ``register``: compare ``matchers`` on ``register_frames`` frames per
    raster, rendered from the map's own raster and ``register_rasters``
    (:mod:`jzi_ros.evaluation.registration`; ``encoder`` needs ``model``).
    ``quick``: a reduced run of seconds (CI). ``quiet``: no progress bar.
    """

    map: Path | None = None
    model: Path | None = None
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    frames: int = 300
    warmup: int = 20
    beam: int = 4
    greedy_above: float = 1.0
    encoders: tuple[str, ...] = ("vit_small_patch14_dinov2", "tf_efficientnet_lite0")
    sizes_km: tuple[float, ...] = (1.0, 10.0, 30.0, 100.0)
    feat_dim: int = 1280
    queries: int = 20
    threads: int | None = None
    register: bool = False
    register_rasters: tuple[Path, ...] = ()
    matchers: tuple[str, ...] = ("cfog", "learned", "sift", "sift-grad", "akaze", "orb", "encoder")
    register_frames: int = 40
    quick: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "register_rasters", tuple(Path(r) for r in self.register_rasters))
        object.__setattr__(self, "matchers", tuple(self.matchers))
        if self.register and self.map is None:
            raise EvaluationError("the matcher comparison (register) needs a map")
        object.__setattr__(self, "encoders", tuple(self.encoders))
        object.__setattr__(self, "sizes_km", tuple(float(s) for s in self.sizes_km))
        for name, least in (("frames", 1), ("warmup", 0), ("beam", 1), ("feat_dim", 1), ("queries", 1)):
            value = getattr(self, name)
            if int(value) != value or value < least:
                raise EvaluationError(f"{name} must be an integer >= {least}, not {value}")
        if self.threads is not None and self.threads < 1:
            raise EvaluationError(f"threads must be 1 or more, not {self.threads}")
        if not all(math.isfinite(s) and s > 0 for s in self.sizes_km):
            raise EvaluationError(f"sizes_km must be positive, not {list(self.sizes_km)}")


def _pct(values: list[float]) -> dict:
    """p50, p95 and mean of a list of times."""
    v = np.asarray(values, float)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def _jpeg_frames(mapdir: MapDir, image_px: int, count: int, seed: int = 0) -> list[tuple[bytes, CameraPose]]:
    """``count`` JPEG payloads of frames over the map with their poses (at most 64 distinct ones, repeated)."""
    frames = posed_frames_over_map(mapdir, image_px, min(count, 64), seed=seed)
    out = [(cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), p) for f, p in frames]
    return [out[i % len(out)] for i in range(count)]


def frame_latency(
    map_dir: Path,
    model: Path,
    backend: str,
    frames: int,
    warmup: int,
    beam: int,
    quiet: bool = False,
    greedy_above: float = 1.0,
) -> dict:
    """Per-stage latency [ms] of localizing JPEG frames, from bytes to a serialized NavSatFix.

    The robot's attitude (heading and level) and height are given, as an IMU
    and a rangefinder would, so the registration against the map (where the
    map has its pyramid) runs as it does on a drone.

    Returns:
        For each of :data:`LATENCY_STAGES`, ``{"p50", "p95", "mean"}`` [ms] over
        the ``frames`` frames after ``warmup``; ``frames``, ``beam``, ``greedy_above``,
        ``jpeg_px``, ``verified_share`` and the ratios ``search_per_encode`` and
        ``refine_per_encode`` of the p50s.
    """
    loc = Localizer(map_dir, model, backend=backend, config=LocalizerConfig(beam=beam, greedy_above=greedy_above))
    jpegs = _jpeg_frames(loc.map, JPEG_PX, frames + warmup)
    stages: dict[str, list[float]] = {k: [] for k in LATENCY_STAGES}
    verified = []
    for i, (jpeg, pose) in enumerate(tqdm(jpegs, desc=f"frames ({backend})", unit="frame", disable=quiet)):
        t0 = time.perf_counter()
        array, order = decode_compressed(jpeg, "jpeg")
        t1 = time.perf_counter()
        est = loc.localize(array, order, attitude=Attitude(pose.yaw_deg, 0.0, 0.0), height_m=pose.altitude_m)
        t2 = time.perf_counter()
        msg = bags.navsatfix(i, "camera", est.lat, est.lon, 0.0, est.fix_covariance_m2())
        bags.TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
        t3 = time.perf_counter()
        if i < warmup:
            continue
        stages["decode"].append((t1 - t0 + est.timings_ms["decode"] / 1e3) * 1e3)
        stages["encode"].append(est.timings_ms["encode"])
        stages["search"].append(est.timings_ms["search"])
        stages["refine"].append(est.timings_ms["refine"])
        stages["message"].append((t3 - t2) * 1e3)
        stages["total"].append((t3 - t0) * 1e3)
        verified.append(est.verified)
    out = {k: _pct(v) for k, v in stages.items()}
    encode = out["encode"]["p50"]
    return out | {
        "frames": frames,
        "beam": beam,
        "greedy_above": greedy_above,
        "jpeg_px": JPEG_PX,
        "refinement": loc.refine_summary(),
        "verified_share": float(np.mean(verified)),
        "search_per_encode": out["search"]["p50"] / encode,
        "refine_per_encode": out["refine"]["p50"] / encode,
    }


def encoder_throughput(model_path: Path, batches: tuple[int, ...], repeats: int) -> dict:
    """Images per second of a checkpoint's encoder for each batch size (after one warm-up batch).

    Returns:
        ``{"images_per_s": {str(batch): images/s}, "image_px": input side [px]}``.
    """
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


def encoder_latency(names: list[str] | tuple[str, ...], repeats: int) -> dict:
    """Batch-1 latency [ms] of named backbones with random weights, after 3 warm-up passes.

    Returns:
        Per name: ``{"p50", "p95", "mean"}`` [ms], ``image_px`` and ``feat_dim``.
    """
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


def _zoom_views(side_m: float, levels: int, cell_m: float = CELL_M, grid: int = 4) -> int:
    """Overhead views of a zoom grid (``grid`` x ``grid`` children a cell) whose cells intersect a side_m square."""
    return sum(math.ceil(side_m / (cell_m * grid ** (levels - k))) ** 2 for k in range(levels))


class _WrappedTokens(ViewTokens):
    """View tokens that answer any view index from a smaller random table.

    Indices wrap modulo its size: the search's cost does not depend on the
    table size, and a full table of a 100 km grid would not fit in memory.
    """

    def take(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``index % rows`` in ``dtype``."""
        return super().take(index % self.tokens.shape[0], dtype)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median time [ms] of ``repeats`` calls of ``fn`` after ``warmup`` ones."""
    times = []
    for i in range(repeats + warmup):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def scaling(
    sizes_km: list[float] | tuple[float, ...],
    feat_dim: int,
    queries: int,
    block_rows: int,
    decoder: DecoderConfig | None = None,
    cell_m: float = CELL_M,
) -> list[dict]:
    """Zoom vs flat retrieval per region side, one row per side (see the module docstring).

    The zoom runs ``decoder``'s shape (default: :class:`DecoderConfig`'s, with
    its levels set per side) on random view tokens; flat search runs over N rows
    by reusing one random block of ``block_rows`` normalized features ``feat_dim`` wide;
    terminal cells are ``cell_m`` wide.
    """
    rng = np.random.default_rng(0)
    block = rng.standard_normal((block_rows, feat_dim)).astype(np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    query = rng.standard_normal((1, feat_dim)).astype(np.float32)
    decoder = decoder or DecoderConfig(feat_dim=feat_dim)
    return [_scaling_row(km, block, query, queries, decoder, cell_m) for km in sizes_km]


def _map_mb(tokens: int, width: int, precision: str) -> float:
    """Memory [MiB] of ``tokens`` rows ``width`` wide in a :data:`~jzi_ros.model.search.PRECISIONS` storage."""
    per_token = width + 4 if precision == "int8" else width * (4 if precision == "float32" else 2)
    return tokens * per_token / 2**20


def _scaling_row(
    km: float, block: np.ndarray, query: np.ndarray, queries: int, decoder: DecoderConfig, cell_m: float
) -> dict:
    """Sizes, map memory and search times of zoom and flat retrieval over a ``km`` square."""
    feat_dim, dim, per_view, g = block.shape[1], decoder.dim, decoder.view_tokens, decoder.grid
    side = km * 1000.0
    levels = max(1, math.ceil(math.log(side / cell_m, g) - 1e-9))
    cells = math.ceil(side / cell_m) ** 2
    views = _zoom_views(side, levels, cell_m, g)
    row = {
        "side_km": km,
        "terminal_m": cell_m,
        "levels": levels,
        "terminal_cells": cells,
        "zoom_views": views,
        "feat_dim": feat_dim,
        "decoder_dim": dim,
        "decoder_tokens": decoder.tokens,
        "decoder_depth": decoder.depth,
        "zoom_map_mb": _map_mb(views * per_view, dim, "float16"),
        "zoom_map_int8_mb": _map_mb(views * per_view, dim, "int8"),
        "zoom_cls_map_mb": _map_mb(views, dim, "float16"),
        "flat_views": cells,
        "flat_map_mb": _map_mb(cells, feat_dim, "float16"),
    }
    dec = ZoomDecoder(replace(decoder, feat_dim=feat_dim, levels=levels)).eval()
    table = _WrappedTokens(torch.randn(4096, per_view, dim).half(), "float16")
    query_t = torch.from_numpy(query)
    with torch.inference_mode():
        for beam in (1, 4):
            row[f"zoom_b{beam}_ms"] = median_ms(partial(beam_search, dec, query_t, table, beam, 1), queries)
    full, rest = divmod(cells, len(block))

    def cosine() -> None:
        for _ in range(full):
            (block @ query[0]).argmax()
        if rest:
            (block[:rest] @ query[0]).argmax()

    row["flat_cosine_ms"] = median_ms(cosine, max(1, queries // 4), warmup=1)
    row["flat_per_zoom_b1"] = row["flat_cosine_ms"] / row["zoom_b1_ms"]
    row["flat_per_zoom_b4"] = row["flat_cosine_ms"] / row["zoom_b4_ms"]
    row["flat_map_per_zoom_map"] = row["flat_map_mb"] / row["zoom_map_mb"]
    row["flat_map_per_zoom_int8_map"] = row["flat_map_mb"] / row["zoom_map_int8_mb"]
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
            whole.search(query, 1)
        if rest:
            part.search(query, 1)

    row["flat_faiss_ms"] = median_ms(flat_faiss, max(1, queries // 4), warmup=1)
    return row


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far [MiB] (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _machine() -> str:
    """CPU architecture, torch threads, processor and software versions, in one line."""
    parts = [platform.machine(), f"{torch.get_num_threads()} torch threads", platform.processor()]
    parts += [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    return ", ".join(p for p in parts if p)


def run_benchmark(config: BenchConfig) -> dict:
    """Run the measurements asked for; sets torch's thread count when ``config.threads`` is given.

    Returns:
        The report: ``machine``; ``latency`` (backend -> :func:`frame_latency`,
        empty without map and model); ``throughput`` (with map and model);
        ``peak_rss_mb`` (before the scaling study); ``encoders`` (when any);
        ``scaling`` (when any size); ``peak_rss_mb_with_scaling``;
        ``registration`` (the matcher comparison's rows, when asked).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.quick:
        config = replace(
            config, frames=min(config.frames, 10), warmup=min(config.warmup, 2), queries=min(config.queries, 3)
        )
    report: dict = {"machine": _machine(), "latency": {}}
    if config.map and config.model:
        for backend in config.backends:
            log.info("timing backend %s over %d frames ...", backend, config.frames)
            report["latency"][backend] = frame_latency(
                config.map,
                config.model,
                backend,
                config.frames,
                config.warmup,
                config.beam,
                config.quiet,
                config.greedy_above,
            )
        report["throughput"] = encoder_throughput(
            config.model, (1, 4, 16) if not config.quick else (1, 4), 5 if not config.quick else 1
        )
    # the localizer's peak memory, before the scaling study allocates its large random tables
    report["peak_rss_mb"] = _peak_rss_mb()
    if config.encoders:
        log.info("timing encoders %s ...", ", ".join(config.encoders))
        report["encoders"] = encoder_latency(config.encoders, 20 if not config.quick else 2)
    if config.sizes_km:
        log.info("scaling study for %s ...", ", ".join(f"{s:g} km" for s in config.sizes_km))
        block_rows = 250_000_000 // config.feat_dim if not config.quick else 20_000  # 1 GB of float32
        report["scaling"] = scaling(config.sizes_km, config.feat_dim, config.queries, block_rows)
    report["peak_rss_mb_with_scaling"] = _peak_rss_mb()
    if config.register and config.map is not None:
        matchers = tuple(m for m in config.matchers if m not in MODEL_STUDIED or _model_has(config.model, m))
        log.info("comparing matchers %s ...", ", ".join(matchers))
        study = RegistrationStudyConfig(
            map=config.map,
            rasters=config.register_rasters,
            matchers=matchers,
            frames=config.register_frames if not config.quick else 3,
            model=config.model,
            quiet=config.quiet,
        )
        report["registration"] = registration_study(study)
    report["ratios"] = ratios(report)
    return report


def ratios(report: dict) -> dict:
    """The report's ratios that hold on any machine, from what it measured.

    Per backend ``search_per_encode`` and ``refine_per_encode`` (p50s);
    ``onnxruntime_per_torch`` (total, encode, search p50s) when both ran;
    ``node_cpu_per_inprocess`` when the node was measured (``report["node"]``);
    at the largest side of the scaling study, flat retrieval against the
    zoom per query (greedy, beam 4) and per byte of map (float16, int8).
    """
    out: dict = {}
    lat = report.get("latency", {})
    for name, backend in lat.items():
        out[name] = {k: backend[k] for k in ("search_per_encode", "refine_per_encode")}
    if "torch" in lat and "onnxruntime" in lat:
        out["onnxruntime_per_torch"] = {
            k: lat["onnxruntime"][k]["p50"] / lat["torch"][k]["p50"] for k in ("total", "encode", "search")
        }
    if report.get("node") and report["node"]["node_cpu_per_inprocess"] is not None:  # None: no fix came back
        out["node_cpu_per_inprocess"] = report["node"]["node_cpu_per_inprocess"]
    if report.get("scaling"):
        r = max(report["scaling"], key=lambda row: row["side_km"])
        out["flat_per_zoom"] = {"side_km": r["side_km"]} | {
            k: r[k]
            for k in ("flat_per_zoom_b1", "flat_per_zoom_b4", "flat_map_per_zoom_map", "flat_map_per_zoom_int8_map")
        }
    return out


def _ratio_lines(r: dict) -> list[str]:
    """The Markdown list of :func:`ratios`."""
    lines = []
    for name in ("torch", "onnxruntime", "tensorrt"):
        if name in r:
            lines.append(
                f"- {name}: search / encoder {r[name]['search_per_encode']:.3f}, "
                f"refinement / encoder {r[name]['refine_per_encode']:.2f}"
            )
    if "onnxruntime_per_torch" in r:
        o = r["onnxruntime_per_torch"]
        lines.append(
            f"- ONNX Runtime / PyTorch: total {o['total']:.2f}, encode {o['encode']:.2f}, search {o['search']:.2f}"
        )
    if "node_cpu_per_inprocess" in r:
        lines.append(f"- node CPU per fix / in-process CPU per frame: {r['node_cpu_per_inprocess']:.2f}")
    if "flat_per_zoom" in r:
        f = r["flat_per_zoom"]
        lines.append(
            f"- flat retrieval / zoom at {f['side_km']:g} km: per query {f['flat_per_zoom_b1']:.0f}x (greedy), "
            f"{f['flat_per_zoom_b4']:.0f}x (beam 4); per byte of map {f['flat_map_per_zoom_map']:.1f}x (float16), "
            f"{f['flat_map_per_zoom_int8_map']:.1f}x (int8)"
        )
    return lines


def markdown(report: dict) -> str:
    """The report as a Markdown document: the ratios, then one section or table per measurement."""
    lines = [f"# jzi bench ({report['machine']})", ""]
    summary = _ratio_lines(ratios(report))
    if summary:
        lines += ["## Ratios (the same on any machine)", "", *summary, ""]
    for backend, lat in report.get("latency", {}).items():
        lines += [
            f"## Per-frame latency, backend {backend} (beam {lat['beam']}, {lat['frames']} frames, "
            f"{lat['jpeg_px']} px JPEG input)",
            "",
            "| stage | p50 ms | p95 ms |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {lat[k]['p50']:.1f} | {lat[k]['p95']:.1f} |" for k in LATENCY_STAGES]
        ref = lat["refinement"]
        lines += [
            "",
            f"search / encoder {lat['search_per_encode']:.2f}; refinement / encoder {lat['refine_per_encode']:.2f} "
            + (
                f"({ref['matcher']}, heading and height known, {100 * lat['verified_share']:.0f} % of frames verified)"
                if ref["on"]
                else f"(refinement off: {ref['why']})"
            ),
        ]
        lines.append("")
    if report.get("node"):
        n = report["node"]
        lat_ms = n["latency_ms"] or {"p50": float("nan"), "p95": float("nan")}  # None: no fix came back
        ratio = n["node_cpu_per_inprocess"] if n["node_cpu_per_inprocess"] is not None else float("nan")
        lines += [
            f"## The node over DDS ({n['transport']} {n['image_px']} px frames at {n['rate_hz']:g} Hz from another "
            f"process, backend {n['backend']}, beam {n['beam']})",
            "",
            "| fixes / frames | dropped | latency p50 / p95 | node CPU per fix | in-process CPU per frame | "
            "node / in-process | node peak memory |",
            "|---|---|---|---|---|---|---|",
            f"| {n['fixes_received']} / {n['frames_sent']} | {n['frames_dropped']} | {lat_ms['p50']:.0f} / "
            f"{lat_ms['p95']:.0f} ms | {n['cpu_ms_per_fix']:.1f} ms | {n['inprocess_cpu_ms_per_frame']:.1f} ms | "
            f"{ratio:.2f} | {n['node_peak_rss_mb']:.0f} MB |",
            "",
        ]
    if report.get("nodes"):
        lines += [
            "Per backend (onnxruntime from an export with the map's view tokens):",
            "",
            "| backend | start-up to first fix | peak memory | imports torch | latency p50 / p95 | CPU per fix |",
            "|---|---|---|---|---|---|",
        ]
        for name, n in report["nodes"].items():
            lat_ms = n["latency_ms"] or {"p50": float("nan"), "p95": float("nan")}
            lines.append(
                f"| {name} | {n['node_startup_to_first_fix_s']:.1f} s | {n['node_peak_rss_mb']:.0f} MB | "
                f"{'yes' if n['node_imports_torch'] else 'no'} | {lat_ms['p50']:.0f} / {lat_ms['p95']:.0f} ms | "
                f"{n['cpu_ms_per_fix']:.1f} ms |"
            )
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
        r0 = report["scaling"][0]
        lines += [
            f"## Zoom search vs flat retrieval (random values, terminal cell {CELL_M:.2f} m)",
            "",
            f"The zoom runs the default decoder ({r0['decoder_depth']} layers, {r0['decoder_dim']} wide, "
            f"{'a token per child' if r0['decoder_tokens'] == 'children' else 'one token per view'}) on its map's view "
            f"tokens; flat retrieval is an exhaustive cosine search over one {r0['feat_dim']}-wide encoder feature "
            "per terminal cell. Map memory: zoom in float16 / int8 (and the one-token CLS decoder's in "
            "float16), flat in float16.",
            "",
            "| side | terminal cells | zoom L | zoom b1 / b4 ms | flat cosine ms | flat FAISS ms | "
            "flat / zoom per query (b1 / b4) | zoom map MB (fp16 / int8 / CLS) | flat map MB | flat / zoom per byte "
            "(fp16 / int8) | views to encode: zoom / flat |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["scaling"]:
            faiss_ms = f"{r['flat_faiss_ms']:.1f}" if "flat_faiss_ms" in r else "-"
            lines.append(
                f"| {r['side_km']:g} km | {r['terminal_cells']:,} | {r['levels']} | {r['zoom_b1_ms']:.2f} / "
                f"{r['zoom_b4_ms']:.2f} | {r['flat_cosine_ms']:.1f} | {faiss_ms} | {r['flat_per_zoom_b1']:.1f}x / "
                f"{r['flat_per_zoom_b4']:.1f}x | {r['zoom_map_mb']:.1f} / {r['zoom_map_int8_mb']:.1f} / "
                f"{r['zoom_cls_map_mb']:.1f} | {r['flat_map_mb']:.1f} | {r['flat_map_per_zoom_map']:.1f}x / "
                f"{r['flat_map_per_zoom_int8_map']:.1f}x | {r['zoom_views']:,} / {r['flat_views']:,} |"
            )
        lines.append("")
    if report.get("registration"):
        lines += [
            "## Registration against the map: matchers compared",
            "",
            "Right candidate: up to half a footprint from the truth; wrong place: 1.5 to 3 footprints away. "
            "Heading imu: known to ±3° (tilt ±0.5°); none: searched.",
            "",
            registration_table(report["registration"]),
            "",
        ]
    return "\n".join(lines)


def _model_has(model: Path | None, matcher: str) -> bool:
    """Whether checkpoint ``model`` gives the study ``matcher`` (any its encoder, few a learned matcher)."""
    if model is None or not Path(model).is_file():
        return False
    if matcher == "encoder":
        return True
    from ..model.zoom import read_checkpoint

    return bool(read_checkpoint(model).get("extra", {}).get("matcher"))


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``bench.json`` (the report) and ``bench.md`` (:func:`markdown`) into ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(report, indent=2))
    md_path.write_text(markdown(report))
    return json_path, md_path
