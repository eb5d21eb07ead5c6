"""The node run for a long time at camera rate, with bad input and faults, over real DDS.

    python -m jzi_ros.ros.bench --map maps/site --model site.pt --soak-minutes 60 --rate-hz 30 --out-dir soak

Starts the installed ``localizer`` executable as its own process and, for
``minutes``, publishes JPEG frames of a drone flying a closed circuit over the
map at ``rate_hz``, each with its IMU attitude and rangefinder height, and the
camera info once a second. A share of the frames is corrupt; the IMU and the
rangefinder fall silent for a while every few minutes (sensor gaps), and the
camera too (blackouts). Faults (:data:`FAULTS`) can be added, each for a
window of its own. Every second it reads the node's resident memory, threads
and open file descriptors from ``/proc`` and its diagnostics; every fix's
latency is the time from the frame's publication to the fix's arrival.

The report (:func:`soak`) has a row per minute (fixes per second, FIX share,
latency p50/p95, memory, threads, descriptors, frames dropped and rejected),
every frame sent that got no fix counted by reason, the longest stretch
without a fix while the camera was on, and a picture of memory, latency and
fix rate against time (``soak.png``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Imu, NavSatFix
from tqdm import tqdm

from ..data.aerial import circuit_frames_over_map
from ..data.camera import Pinhole
from ..errors import JziError
from ..geo import MapDir
from ..geo.mapdir import PYRAMID_FILE
from .harness import Client, compressed_msg, proc_status, sensor_msgs_at, stamp_ns_of, start_node

FAULTS = ("ortho", "imu-flood", "clock-jump", "resolution", "stalled-subscriber")
"""Faults a soak can inject, one window each (:func:`fault_windows`):

- ``ortho``: the map's ``ortho.tif`` is truncated in place (the soak runs on a copy of the map) and
  restored at the window's end. A map small enough to be held in memory (see
  :data:`jzi_ros.geo.pyramid.MEMORY_PIXELS`) and already read is not affected.
- ``imu-flood``: the IMU publishes at 1 kHz.
- ``clock-jump``: the stamps jump back by :data:`CLOCK_JUMP_S` and go on from there (a replay looping,
  a sim clock reset).
- ``resolution``: the camera's frames are 3/4 the size (the camera info stays as it was).
- ``stalled-subscriber``: a second process subscribed to the fixes stops (SIGSTOP) and never reads them.
"""
CLOCK_JUMP_S = 60.0
COUNTERS = ("frames_received", "frames_processed", "frames_dropped", "frames_rejected", "frames_failed")
"""The node's diagnostics counters sampled each second."""
TOPICS = {"image": "/soak/image", "imu": "/soak/imu", "range": "/soak/range", "info": "/soak/camera_info"}
CIRCUIT_FRAMES = 600
"""Frames rendered around the circuit (each published for several camera ticks)."""
CIRCUIT_S = 120.0
"""Time [s] to fly the circuit once."""


@dataclass(frozen=True)
class SoakPlan:
    """What a soak publishes, for how long, and which faults it injects."""

    minutes: float
    rate_hz: float = 30.0
    image_px: int = 640
    corrupt_share: float = 0.02
    sensor_gap_every_s: float = 300.0
    sensor_gap_s: float = 10.0
    blackout_every_s: float = 600.0
    blackout_s: float = 15.0
    faults: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise JziError(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
        if not (self.minutes > 0 and self.rate_hz > 0 and self.image_px >= 32):
            raise JziError("a soak needs minutes > 0, rate_hz > 0 and image_px >= 32")
        if not 0 <= self.corrupt_share < 1:
            raise JziError(f"corrupt_share must be in [0, 1), not {self.corrupt_share}")

    @property
    def duration_s(self) -> float:
        """The soak's length [s]."""
        return 60.0 * self.minutes


def _periodic(t_s: float, every_s: float, length_s: float) -> bool:
    """Whether ``t_s`` falls in a window of ``length_s`` that starts halfway through each period ``every_s``."""
    return every_s > 0 and (t_s % every_s) >= every_s / 2 and (t_s % every_s) < every_s / 2 + length_s


def fault_windows(plan: SoakPlan) -> dict[str, tuple[float, float]]:
    """(start, end) [s from the soak's start] of each fault: spread over the run, one after the other."""
    n = len(plan.faults)
    width = min(60.0, plan.duration_s / (2 * (n + 1)))
    return {
        f: ((i + 1) * plan.duration_s / (n + 1) - width / 2, (i + 1) * plan.duration_s / (n + 1) + width / 2)
        for i, f in enumerate(plan.faults)
    }


def _proc_status(pid: int) -> tuple[float, int, int]:
    """Resident memory [MB], threads and open file descriptors of a process."""
    status = proc_status(pid)
    return status.get("VmRSS", math.nan) / 1024, status.get("Threads", 0), len(os.listdir(f"/proc/{pid}/fd"))


def _camera_info(width: int, stamp_ns: int) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    info.header.frame_id = "camera"
    info.width = info.height = width
    info.k = [float(v) for v in Pinhole(width, width, 60.0).K.ravel()]
    return info


def _stalled_subscriber(domain_id: int) -> subprocess.Popen:
    """A process subscribed to /jzi/fix (reliable, depth 10) that reads; the soak stops it with SIGSTOP."""
    code = (
        "import rclpy; from sensor_msgs.msg import NavSatFix; rclpy.init(); "
        "n = rclpy.create_node('jzi_stalled_reader'); "
        "n.create_subscription(NavSatFix, '/jzi/fix', lambda m: None, 10); "
        "rclpy.spin(n)"
    )
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _int(values: dict[str, str], key: str) -> int:
    try:
        return int(values.get(key, 0))
    except ValueError:
        return 0


def _kinds(text: str) -> dict[str, int]:
    """``failures_by_kind`` of the diagnostics ("kind n, kind n") as a dict."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(", "))):
        kind, _, n = part.rpartition(" ")
        if n.isdigit():
            out[kind] = int(n)
    return out


def soak(
    map_dir: Path,
    model: Path,
    plan: SoakPlan,
    out_dir: Path | None = None,
    node_params: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> dict:
    """Run the node for ``plan.minutes`` and report how it held up (see the module's description).

    ``node_params``: further node parameters (``beam_width``, ``backend``, ``threads``, ...).
    With ``out_dir`` the report is written there as ``soak.json`` with its picture ``soak.png``.
    """
    map_dir = Path(map_dir)
    MapDir(map_dir)  # a clear error for a wrong map before anything starts
    windows = fault_windows(plan)
    work_map = map_dir
    scratch = None
    if "ortho" in plan.faults:  # the fault truncates the map's file: on a copy, never on the user's map
        scratch = Path(tempfile.mkdtemp(prefix="jzi_soak_"))
        work_map = Path(shutil.copytree(map_dir, scratch / map_dir.name))
    rng = random.Random(plan.seed)
    posed = circuit_frames_over_map(MapDir(work_map), plan.image_px, CIRCUIT_FRAMES)
    small_px = 3 * plan.image_px // 4
    messages = [compressed_msg(frame, 0) for frame, _ in posed]
    small = [
        compressed_msg(cv2.resize(frame, (small_px, small_px), interpolation=cv2.INTER_AREA), 0) for frame, _ in posed
    ]
    domain = random.randint(100, 230)
    params = dict(
        image_topic=TOPICS["image"],
        transport="compressed",
        imu_topic=TOPICS["imu"],
        height_topic=TOPICS["range"],
        camera_info_topic=TOPICS["info"],
    ) | (node_params or {})
    proc = start_node(domain, map_path=work_map, model_path=model, **params)
    client = Client(domain, TOPICS["image"], compressed=True)
    imu_pub = client.node.create_publisher(Imu, TOPICS["imu"], 100)
    range_pub = client.node.create_publisher(type(sensor_msgs_at(posed[0][1], 0)[1]), TOPICS["range"], 10)
    info_pub = client.node.create_publisher(CameraInfo, TOPICS["info"], 10)
    reader = _stalled_subscriber(domain) if "stalled-subscriber" in plan.faults else None
    sent_at: dict[int, float] = {}  # stamp [ns] -> when it was published [s, monotonic]
    fixes: list[tuple[float, float, bool]] = []  # (arrival [s from the start], latency [ms], FIX)
    samples: list[dict] = []  # once a second: the node's process and its diagnostics' counters
    counts = {"frames_sent": 0, "corrupt_sent": 0}
    fault_log: dict[str, dict] = {f: {"window_s": list(w), "diagnostics": []} for f, w in windows.items()}
    ortho_bytes: bytes | None = None
    node_log: list[str] = []

    def collect() -> None:
        """Move the fixes that came from the client into ``fixes``."""
        for fix, arrived in client.fixes:
            sent = sent_at.pop(stamp_ns_of(fix), None)
            latency = math.nan if sent is None else 1e3 * (arrived - sent)
            fixes.append((arrived - t0, latency, fix.status.status == NavSatFix().status.STATUS_FIX))
        client.fixes.clear()

    try:
        client.wait_for_node(proc, timeout_s=180)
        stamp0 = 1_700_000_000 * 10**9
        offset_ns = 0
        period = 1.0 / plan.rate_hz
        t0 = time.monotonic()
        tick, next_sample = 0, 1.0
        bar = tqdm(total=int(plan.duration_s), desc="soak", unit="s", disable=not show_progress, dynamic_ncols=True)
        jumped = stopped = truncated = False
        values: dict[str, str] = {}
        while (t := time.monotonic() - t0) < plan.duration_s:
            active = {f for f, (a, b) in windows.items() if a <= t < b}
            # faults that switch at their window's edges
            if "clock-jump" in active and not jumped:
                offset_ns -= int(CLOCK_JUMP_S * 1e9)
                jumped = True
                fault_log["clock-jump"]["diagnostics_before"] = client.diagnostic_values()
            if reader is not None:
                if "stalled-subscriber" in active and not stopped:
                    reader.send_signal(signal.SIGSTOP)
                    stopped = True
                elif stopped and "stalled-subscriber" not in active:
                    reader.send_signal(signal.SIGCONT)
                    stopped = False
            if "ortho" in plan.faults:
                ortho = work_map / PYRAMID_FILE
                if "ortho" in active and not truncated:
                    ortho_bytes = ortho.read_bytes()
                    with open(ortho, "r+b") as fh:  # in place: the node's open file sees it
                        fh.truncate(len(ortho_bytes) // 3)
                    truncated = True
                elif truncated and "ortho" not in active and ortho_bytes is not None:
                    with open(ortho, "r+b") as fh:
                        fh.write(ortho_bytes)
                    truncated, ortho_bytes = False, None
            stamp_ns = stamp0 + int(t * 1e9) + offset_ns
            i = int(t / CIRCUIT_S * CIRCUIT_FRAMES) % CIRCUIT_FRAMES
            pose = posed[i][1]
            gap = _periodic(t, plan.sensor_gap_every_s, plan.sensor_gap_s)
            if not gap:
                imu, rng_msg = sensor_msgs_at(pose, stamp_ns)
                if "imu-flood" in active:  # the ticks between frames at 1 kHz, then the frame's own
                    for k in range(int(1000 * period), 0, -1):
                        extra, _ = sensor_msgs_at(pose, stamp_ns - k * 1_000_000)
                        imu_pub.publish(extra)
                imu_pub.publish(imu)
                range_pub.publish(rng_msg)
            if tick % max(1, round(plan.rate_hz)) == 0:
                info_pub.publish(_camera_info(plan.image_px, stamp_ns))
            blackout = _periodic(t, plan.blackout_every_s, plan.blackout_s)
            if not blackout:
                msg = (small if "resolution" in active else messages)[i]
                if rng.random() < plan.corrupt_share:
                    msg = CompressedImage(format="jpeg", data=rng.randbytes(2000))
                    counts["corrupt_sent"] += 1
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
                sent_at[stamp_ns] = time.monotonic()
                client.pub.publish(msg)
                counts["frames_sent"] += 1
            tick += 1
            client.spin(max(0.0, t0 + tick * period - time.monotonic()))
            collect()
            if t >= next_sample:
                next_sample += 1.0
                bar.update(1)
                if proc.poll() is not None:
                    raise RuntimeError(f"the node exited during the soak (code {proc.returncode})")
                rss, threads, fds = _proc_status(proc.pid)
                values = client.diagnostic_values() or values  # none came this second: the last ones stand
                client.diagnostics.clear()
                samples.append(
                    {"t": t, "camera_on": not blackout, "rss_mb": rss, "threads": threads, "open_fds": fds}
                    | {"load_1min": os.getloadavg()[0]}
                    | {k: _int(values, k) for k in COUNTERS}
                )
                for f, (a, b) in windows.items():
                    if values and a <= t < b + 5:
                        fault_log[f]["diagnostics"].append(values)
                # frames sent over 10 s ago that never got a fix: forget them (they are counted at the end)
                old = time.monotonic() - 10.0
                for s in [s for s, at in sent_at.items() if at < old]:
                    del sent_at[s]
        bar.close()
        client.spin(3.0)
        collect()
        final = client.diagnostic_values()
        rss_end, threads_end, fds_end = _proc_status(proc.pid)
        proc.send_signal(signal.SIGINT)
        t_stop = time.monotonic()
        out = proc.communicate(timeout=20)[0]
        exit_s = time.monotonic() - t_stop
        node_log = out.splitlines()
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.send_signal(signal.SIGCONT)
            reader.terminate()
            reader.wait(timeout=10)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    report = _report(plan, counts, final, fixes, samples, fault_log)
    report |= {
        "node_params": {k: str(v) for k, v in params.items()},
        "end": {"rss_mb": rss_end, "threads": threads_end, "open_fds": fds_end},
        "exit": {"signal": "SIGINT", "code": proc.returncode, "seconds": exit_s},
        "node_errors": [line for line in node_log if "ERROR" in line or "Traceback" in line][:20],
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "soak.json").write_text(json.dumps(report, indent=2))
        draw_soak(report, out_dir / "soak.png")
    return report


def _stats(fixes: list[tuple[float, float, bool]], seconds_on: float) -> dict:
    """Fixes per second of camera, FIX share and latency percentiles of some fixes."""
    lat = np.array([f[1] for f in fixes if not math.isnan(f[1])]) if fixes else np.array([])
    return {
        "fixes_per_s": len(fixes) / seconds_on if seconds_on > 0 else math.nan,
        "fix_share": float(np.mean([f[2] for f in fixes])) if fixes else 0.0,
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
        "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else math.nan,
    }


def _report(plan: SoakPlan, counts: dict, final: dict, fixes: list, samples: list[dict], fault_log: dict) -> dict:
    """The soak's report from its fixes and its samples of the node, once a second."""
    rows = []
    last: dict = {k: 0 for k in COUNTERS}
    for minute in range(math.ceil(plan.duration_s / 60)):
        inside = [s for s in samples if minute * 60 <= s["t"] < (minute + 1) * 60]
        if not inside:
            continue
        end = inside[-1]
        row = {"minute": minute}
        row |= _stats(
            [f for f in fixes if minute * 60 <= f[0] < (minute + 1) * 60], sum(s["camera_on"] for s in inside)
        )
        row |= {k: end[k] for k in ("rss_mb", "threads", "open_fds", "load_1min")}
        row |= {k.replace("frames_", "") + "_in_minute": end[k] - last[k] for k in COUNTERS if k != "frames_received"}
        rows.append(row)
        last = end
    received = _int(final, "frames_received")
    not_localized = {
        "lost before the node (DDS, best effort)": counts["frames_sent"] - received,
        "dropped: a newer frame replaced it while the worker was busy": _int(final, "frames_dropped"),
        **{f"not localized: {kind}": n for kind, n in _kinds(final.get("failures_by_kind", "")).items()},
    }
    accounted = _int(final, "frames_processed") + sum(n for k, n in not_localized.items() if not k.startswith("lost"))
    if received != accounted:
        not_localized["unaccounted (in flight at the end)"] = received - accounted
    # the longest stretch without a fix while the camera was on: dark seconds (and the one after) do not count
    dark = {int(s["t"]) for s in samples if not s["camera_on"]}
    dark |= {t + 1 for t in dark}
    times = [0.0, *(f[0] for f in fixes), plan.duration_s]
    longest = max(
        (b - a - sum(1.0 for sec in range(int(a), int(b)) if sec in dark) for a, b in itertools.pairwise(times)),
        default=math.nan,
    )
    windows = {f: tuple(v["window_s"]) for f, v in fault_log.items()}

    def outside_faults(t: float) -> bool:
        return not any(a <= t < b for a, b in windows.values())

    baseline = _stats(
        [f for f in fixes if outside_faults(f[0])],
        sum(s["camera_on"] for s in samples if outside_faults(s["t"])),
    )
    for name, (a, b) in windows.items():
        fault_log[name] |= _stats(
            [f for f in fixes if a <= f[0] < b], sum(s["camera_on"] for s in samples if a <= s["t"] < b)
        )
    rss = [s["rss_mb"] for s in samples]
    # memory is compared with its value after 5 min (a shorter soak: after a quarter of it)
    reference_s = min(300.0, plan.duration_s / 4)
    reference = next((s["rss_mb"] for s in samples if s["t"] >= reference_s), math.nan)
    # latency: the first and the last 10 min (a shorter soak: its halves), outside the faults
    span = min(600.0, plan.duration_s / 2)
    head = [f for f in fixes if f[0] < span and outside_faults(f[0])]
    tail = [f for f in fixes if f[0] >= plan.duration_s - span and outside_faults(f[0])]
    return {
        "plan": asdict(plan),
        "frames_sent": counts["frames_sent"],
        "corrupt_sent": counts["corrupt_sent"],
        "frames_received_by_node": received,
        "fixes": len(fixes),
        "fix_share": float(np.mean([f[2] for f in fixes])) if fixes else 0.0,
        "not_localized_by_reason": not_localized,
        "longest_without_fix_camera_on_s": float(longest),
        "rss_reference_s": reference_s,
        "rss_mb_reference": reference,
        "rss_mb_end": rss[-1] if rss else math.nan,
        "rss_change_share": (rss[-1] - reference) / reference if rss else math.nan,
        "latency_window_s": span,
        "latency_p95_ms_first": _stats(head, 1.0)["latency_p95_ms"],
        "latency_p95_ms_last": _stats(tail, 1.0)["latency_p95_ms"],
        "outside_faults": baseline,
        "faults": fault_log,
        "minutes": rows,
        "series": {  # every 10 s, for the picture
            k: [s[k] for s in samples[::10]] for k in ("t", "rss_mb", "camera_on", "threads", "open_fds", "load_1min")
        },
        "node_diagnostics": final,
    }


def summary(report: dict) -> str:
    """The soak's outcome in a few lines, for the terminal."""
    plan = report["plan"]
    lines = [
        f"soak: {plan['minutes']:g} min at {plan['rate_hz']:g} Hz, {report['frames_sent']} frames sent "
        f"({report['corrupt_sent']} corrupt), {report['fixes']} fixes ({100 * report['fix_share']:.1f} % FIX)",
        f"  longest without a fix while the camera was on: {report['longest_without_fix_camera_on_s']:.1f} s",
        f"  resident memory: {report['rss_mb_reference']:.1f} MB after {report['rss_reference_s']:.0f} s, "
        f"{report['rss_mb_end']:.1f} MB at the end ({100 * report['rss_change_share']:+.2f} %)",
        f"  latency p95 outside the faults: {report['latency_p95_ms_first']:.0f} ms in the first "
        f"{report['latency_window_s'] / 60:g} min, {report['latency_p95_ms_last']:.0f} ms in the last",
        "  frames without a fix, by reason:",
        *(f"    {n:7d}  {reason}" for reason, n in report["not_localized_by_reason"].items()),
    ]
    base = report["outside_faults"]
    if report["faults"]:
        lines.append(
            f"  outside the faults: {base['fixes_per_s']:.1f} fixes/s, p95 {base['latency_p95_ms']:.0f} ms; in them:"
        )
    for name, f in report["faults"].items():
        lines.append(
            f"    {name:20s} {f['fixes_per_s']:5.1f} fixes/s, FIX {100 * f['fix_share']:5.1f} %, "
            f"p95 {f['latency_p95_ms']:.0f} ms"
        )
    exit_ = report["exit"]
    lines.append(f"  SIGINT at the end: exit code {exit_['code']} after {exit_['seconds']:.2f} s")
    return "\n".join(lines)


def draw_soak(report: dict, path: Path) -> None:
    """Memory (every 10 s), latency and fix rate (per minute) against time; blackouts and faults shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, series = report["minutes"], report["series"]
    x = [r["minute"] + 0.5 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    axes[0].plot(np.array(series["t"]) / 60, series["rss_mb"], "-", lw=1.2)
    axes[0].set_ylabel("resident memory [MB]")
    axes[0].ticklabel_format(axis="y", useOffset=False)
    axes[1].plot(x, [r["latency_p50_ms"] for r in rows], "o-", ms=3, label="p50")
    axes[1].plot(x, [r["latency_p95_ms"] for r in rows], "o-", ms=3, label="p95")
    axes[1].set_ylabel("frame to fix [ms]")
    axes[1].legend(loc="upper right")
    axes[2].plot(x, [r["fixes_per_s"] for r in rows], "o-", ms=3, label="fixes / s of camera")
    axes[2].plot(x, [r["fixes_per_s"] * r["fix_share"] for r in rows], "o-", ms=3, label="of them FIX")
    axes[2].set_ylabel("per second")
    axes[2].set_xlabel("minute")
    axes[2].legend(loc="lower right")
    load = axes[2].twinx()  # what else ran on the machine: it explains a slow minute
    load.plot(np.array(series["t"]) / 60, series["load_1min"], color="0.5", lw=0.8, ls=":")
    load.set_ylabel("machine load (1 min, dotted)", color="0.4")
    dark = [t / 60 for t, on in zip(series["t"], series["camera_on"], strict=True) if not on]
    for ax in axes:
        for t in dark:
            ax.axvspan(t, t + 10 / 60, color="0.85", lw=0)
        for name, f in report["faults"].items():
            a, b = f["window_s"]
            ax.axvspan(a / 60, b / 60, color="tab:red", alpha=0.15, lw=0)
            if ax is axes[0]:
                ax.text((a + b) / 120, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", size=7)
        ax.grid(alpha=0.3)
    plan = report["plan"]
    fig.suptitle(
        f"node soak: {plan['minutes']:g} min at {plan['rate_hz']:g} Hz, "
        f"{100 * plan['corrupt_share']:g} % corrupt frames (grey: camera blackouts, red: faults)",
        fontsize=10,
        y=0.995,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
