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
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, NavSatFix

from ..data.aerial import frames_over_map
from ..geo import MapDir

PARAMS = Path(__file__).resolve().parents[2] / "config" / "localize.yaml"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
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

    frames = frames_over_map(MapDir(args.map), args.image_px, min(args.frames, 50))

    messages = []
    for frame in frames:
        if args.transport == "compressed":
            jpeg = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            messages.append(CompressedImage(format="jpeg", data=jpeg))
        else:
            messages.append(
                Image(
                    height=frame.shape[0],
                    width=frame.shape[1],
                    encoding="rgb8",
                    step=frame.shape[1] * 3,
                    data=frame.tobytes(),
                )
            )
    domain = random.randint(100, 200)
    exe = Path(sys.executable).with_name("localizer")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jzi_ros.ros.node"]
    cmd += [
        "--ros-args",
        "--params-file",
        str(PARAMS),
        "-p",
        f"map_path:={args.map}",
        "-p",
        f"model_path:={args.model}",
        "-p",
        f"beam_width:={args.beam}",
        "-p",
        f"backend:={args.backend}",
        "-p",
        "image_topic:=/bench/image",
        "-p",
        f"transport:={args.transport}",
    ]
    proc = subprocess.Popen(
        cmd,
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("jzi_bench", context=context)
    msg_type = CompressedImage if args.transport == "compressed" else Image
    pub = node.create_publisher(msg_type, "/bench/image", qos_profile_sensor_data)
    received: dict[int, float] = {}
    diags: list[dict] = []
    node.create_subscription(
        NavSatFix,
        "/jzi/fix",
        lambda m: received.setdefault(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, time.monotonic()),
        10,
    )
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: diags.extend(
            {kv.key: kv.value for kv in s.values} for s in m.status if s.name.startswith("jzi_localizer")
        ),
        10,
    )
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        end = time.monotonic() + 120
        while pub.get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > end:
                out = proc.stdout.read() if proc.poll() is not None else "(still running)"
                print(f"the node did not start:\n{out}", file=sys.stderr)
                return 1
            executor.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        cpu0 = _cpu_seconds(proc.pid)
        sent: dict[int, float] = {}
        period = 1.0 / args.rate_hz
        t_next = time.monotonic()
        for i in range(args.frames):
            msg = messages[i % len(messages)]
            stamp = 1_700_000_000 * 10**9 + i * int(period * 1e9)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            sent[stamp] = time.monotonic()
            pub.publish(msg)
            t_next += period
            while time.monotonic() < t_next:
                executor.spin_once(timeout_sec=max(0.0, min(0.01, t_next - time.monotonic())))
        end = time.monotonic() + 5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        cpu = _cpu_seconds(proc.pid) - cpu0
        peak_mb = _peak_rss_mb(proc.pid)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        proc.terminate()
        proc.wait(timeout=20)
    latency = np.array([(received[s] - sent[s]) * 1e3 for s in received if s in sent])
    localized = len(latency)
    report = {
        "rate_hz": args.rate_hz,
        "frames_sent": args.frames,
        "fixes_received": localized,
        "frames_dropped": args.frames - localized,
        "image_px": args.image_px,
        "beam": args.beam,
        "backend": args.backend,
        "transport": args.transport,
        "latency_ms": {"p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95))}
        if localized
        else None,
        "cpu_ms_per_fix": 1e3 * cpu / max(localized, 1),
        "node_peak_rss_mb": peak_mb,
        "node_diagnostics": diags[-1] if diags else None,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
