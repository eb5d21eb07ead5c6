"""Benchmark of the running node over real DDS: latency, CPU time per frame, drops.

    python -m jzi_ros.ros.bench --map maps/site --model site.pt --rate-hz 10 --frames 200

Starts the installed ``localizer`` executable as its own process (as
launch_ros does), publishes camera frames rendered from the map at a fixed
rate, and measures frame published -> fix received, the node's CPU time per
localized frame (from /proc), and the frames it dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from ..data.aerial import frames_over_map
from ..geo import MapDir
from .harness import Client, compressed_msg, image_msg, stamp_ns_of, start_node


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_node(
    map_dir: Path,
    model: Path,
    rate_hz: float = 10.0,
    frames: int = 200,
    image_px: int = 640,
    beam: int = 4,
    backend: str = "torch",
    transport: str = "raw",
) -> dict:
    """Publish ``frames`` camera frames at ``rate_hz`` to the node in its own process and measure it.

    Measured: latency [ms], CPU per fix [ms], drops, peak memory [MB].
    """
    build = compressed_msg if transport == "compressed" else image_msg
    messages = [build(frame, 0) for frame in frames_over_map(MapDir(map_dir), image_px, min(frames, 50))]
    domain = random.randint(100, 200)
    params = dict(map_path=map_dir, model_path=model, beam_width=beam, backend=backend, transport=transport)
    proc = start_node(domain, image_topic="/bench/image", **params)
    client = Client(domain, "/bench/image", compressed=transport == "compressed")
    try:
        client.wait_for_node(proc, timeout_s=120)
        client.spin(2.0)
        cpu0 = _cpu_seconds(proc.pid)
        sent: dict[int, float] = {}
        period_s = 1.0 / rate_hz
        t_next = time.monotonic()
        for i in range(frames):
            stamp_ns = 1_700_000_000 * 10**9 + i * int(period_s * 1e9)
            msg = messages[i % len(messages)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
            sent[stamp_ns] = time.monotonic()
            client.pub.publish(msg)
            t_next += period_s
            client.spin(max(0.0, t_next - time.monotonic()))
        client.spin(5.0)
        cpu_s = _cpu_seconds(proc.pid) - cpu0
        peak_mb = _peak_rss_mb(proc.pid)
        diagnostics = client.diagnostic_values()
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)
    received = {stamp_ns_of(f): t for f, t in client.fixes}
    latency = np.array([(received[s] - sent[s]) * 1e3 for s in received if s in sent])
    localized = len(latency)
    return {
        "rate_hz": rate_hz,
        "frames_sent": frames,
        "fixes_received": localized,
        "frames_dropped": frames - localized,
        "image_px": image_px,
        "beam": beam,
        "backend": backend,
        "transport": transport,
        "latency_ms": {"p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95))}
        if localized
        else None,
        "cpu_ms_per_fix": 1e3 * cpu_s / max(localized, 1),
        "node_peak_rss_mb": peak_mb,
        "node_diagnostics": diagnostics or None,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m jzi_ros.ros.bench``: run :func:`bench_node` and print (and write) its report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--map", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--rate-hz", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--image-px", type=int, default=640)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--backend", default="torch")
    p.add_argument("--transport", choices=["raw", "compressed"], default="raw")
    p.add_argument("--out", type=Path, default=None, help="JSON report")
    args = p.parse_args(argv)
    try:
        report = bench_node(
            args.map, args.model, args.rate_hz, args.frames, args.image_px, args.beam, args.backend, args.transport
        )
    except RuntimeError as exc:
        print(f"jzi_ros.ros.bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
