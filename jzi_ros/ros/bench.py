"""Benchmark of the running node over real DDS: latency, CPU time per frame, drops; or a soak.

    python -m jzi_ros.ros.bench --map maps/site --model site.pt --rate-hz 10 --frames 200
    python -m jzi_ros.ros.bench --map maps/site --model site.pt --soak-minutes 60 --rate-hz 30 --out-dir soak

The soak (``--soak-minutes``, :mod:`jzi_ros.ros.soak`) runs the node for an
hour or more with corrupt frames, sensor gaps, camera blackouts and
``--faults``, and reports memory, latency and fixes against time.

Starts the installed ``localizer`` executable as its own process (as
launch_ros does), publishes camera frames rendered from the map at a fixed
rate, and measures frame published -> fix received, the node's CPU time per
localized frame (from /proc), and the frames it dropped. Then, with the node
gone, the same :class:`~jzi_ros.localizer.Localizer` (same map, model and
settings) decodes and localizes the frames the node localized, in the same
order and with the same stamps, in this process: the node's CPU per fix over
that CPU per frame is what running as a node costs.

With ``--sensors`` every frame comes with the IMU attitude and rangefinder
height of a drone (as ``jzi bench`` gives them to the localizer), so the
registration does not search the heading; without, the node has the camera alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sensor_msgs.msg import Imu, Range

from ..data.aerial import posed_frames_over_map
from ..errors import JziError
from ..geo import MapDir
from .convert import frame_to_array, imu_orientation, range_height
from .harness import Client, compressed_msg, image_msg, proc_status, sensor_msgs_at, stamp_ns_of, start_node
from .params import NodeParams
from .soak import FAULTS, SoakPlan, soak, summary

SENSOR_TOPICS = {"imu_topic": "/bench/imu", "height_topic": "/bench/range"}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    return proc_status(pid).get("VmHWM", math.nan) / 1024


def torch_loaded(pid: int) -> bool:
    """Whether the process has torch's library mapped (``/proc/PID/maps``): it imported torch."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def known_from(params: NodeParams, imu: Any, rng: Any) -> dict[str, Any]:
    """The attitude and height the node derives from fresh IMU and rangefinder messages (``knowledge``)."""
    attitude, height = params.knowledge(imu_orientation(imu), range_height(rng))
    return {"attitude": attitude, "height_m": height}


def inprocess_cpu_ms_per_frame(
    map_dir: Path, model: Path, params: NodeParams, frames: list[tuple[Any, int, dict]], warmup: int = 3
) -> float:
    """CPU time [ms] per frame of decoding and localizing ``frames`` in this process, after ``warmup`` frames.

    ``frames``: (camera message, stamp [ns], what else the robot knows: the
    ``attitude`` and ``height_m`` arguments of ``localize``, or nothing) in
    the order to localize them; the :class:`~jzi_ros.localizer.Localizer`
    has the node's settings (``params``). CPU time is this process's (every
    thread: torch's too).
    """
    from ..localizer import Localizer

    loc = Localizer(map_dir, model, backend=params.backend, config=params.localizer_config(), device=params.device)
    for msg, _, known in frames[:warmup]:
        loc.localize(*frame_to_array(msg), **known)
    loc.reset()  # the warm-up frames leave no track behind
    cpu_s = 0.0
    for msg, stamp_ns, known in frames:
        t0 = time.process_time()
        array, order = frame_to_array(msg)
        loc.localize(array, order, stamp_s=stamp_ns * 1e-9, **known)
        cpu_s += time.process_time() - t0
    return 1e3 * cpu_s / max(len(frames), 1)


def bench_node(
    map_dir: Path,
    model: Path,
    rate_hz: float = 10.0,
    frames: int = 200,
    image_px: int = 640,
    beam: int = 4,
    backend: str = "torch",
    transport: str = "raw",
    sensors: bool = False,
) -> dict:
    """Publish ``frames`` camera frames at ``rate_hz`` to the node in its own process and measure it.

    Measured: the start-up (process start to the first fix, the first frame sent every 50 ms), whether
    the node imported torch, latency [ms], CPU per fix [ms], drops, peak memory [MB]; then
    :func:`inprocess_cpu_ms_per_frame` on the frames the node localized
    (``inprocess_cpu_ms_per_frame``) and the node's CPU per fix over it
    (``node_cpu_per_inprocess``). ``sensors``: each frame comes with the
    drone's IMU attitude and rangefinder height, stamped as the frame.
    """
    build = compressed_msg if transport == "compressed" else image_msg
    posed = posed_frames_over_map(MapDir(map_dir), image_px, min(frames, 50))
    messages = [build(frame, 0) for frame, _ in posed]
    domain = random.randint(100, 200)
    settings: dict[str, Any] = dict(beam_width=beam, backend=backend, transport=transport)
    settings |= SENSOR_TOPICS if sensors else {}
    node_params = NodeParams(**settings)  # as the node reads them (the rest: defaults, as in localize.yaml)
    client = Client(domain, "/bench/image", compressed=transport == "compressed")
    if sensors:
        imu_pub = client.node.create_publisher(Imu, SENSOR_TOPICS["imu_topic"], 10)
        range_pub = client.node.create_publisher(Range, SENSOR_TOPICS["height_topic"], 10)
    known: dict[int, dict] = {}  # stamp [ns] -> what the node knows besides the frame
    started = time.monotonic()
    proc = start_node(domain, image_topic="/bench/image", map_path=map_dir, model_path=model, **settings)
    try:
        first = messages[0]
        first.header.stamp.sec, first.header.stamp.nanosec = 1_600_000_000, 0
        while not client.has_fix(stamp_ns_of(first)):  # start-up: the first frame, sent every 50 ms until its fix
            if proc.poll() is not None or time.monotonic() - started > 120:
                raise JziError(f"the node gave no fix within {time.monotonic() - started:.0f} s of its start")
            client.pub.publish(first)
            client.spin(0.05)
        startup_s = time.monotonic() - started
        torch_in_node = torch_loaded(proc.pid)
        client.fixes.clear()
        client.spin(2.0)
        cpu0 = _cpu_seconds(proc.pid)
        sent: dict[int, float] = {}
        index: dict[int, int] = {}  # stamp [ns] -> message
        period_s = 1.0 / rate_hz
        t_next = time.monotonic()
        for i in range(frames):
            stamp_ns = 1_700_000_000 * 10**9 + i * int(period_s * 1e9)
            msg = messages[i % len(messages)]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
            known[stamp_ns] = {}
            if sensors:
                imu, rng = sensor_msgs_at(posed[i % len(posed)][1], stamp_ns)
                imu_pub.publish(imu)
                range_pub.publish(rng)
                known[stamp_ns] = known_from(node_params, imu, rng)
                client.spin(0.01)  # ahead of the frame, as a 100 Hz IMU's message is
            sent[stamp_ns] = time.monotonic()
            index[stamp_ns] = i % len(messages)
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
    # the node's frames, in its order (none localized: the first of each message sent)
    replay = sorted(s for s in received if s in sent) or sorted(sent)[: len(messages)]
    inprocess_ms = inprocess_cpu_ms_per_frame(
        map_dir, model, node_params, [(messages[index[s]], s, known[s]) for s in replay]
    )
    cpu_ms_per_fix = 1e3 * cpu_s / max(localized, 1)
    return {
        "rate_hz": rate_hz,
        "frames_sent": frames,
        "fixes_received": localized,
        "frames_dropped": frames - localized,
        "image_px": image_px,
        "beam": beam,
        "backend": backend,
        "transport": transport,
        "sensors": sensors,
        "latency_ms": {"p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95))}
        if localized
        else None,
        "cpu_ms_per_fix": cpu_ms_per_fix,
        "inprocess_cpu_ms_per_frame": inprocess_ms,
        "node_cpu_per_inprocess": cpu_ms_per_fix / inprocess_ms if localized else None,
        "node_peak_rss_mb": peak_mb,
        "node_startup_to_first_fix_s": startup_s,
        "node_imports_torch": torch_in_node,
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
    p.add_argument("--sensors", action="store_true", help="each frame with the drone's IMU attitude and height")
    p.add_argument("--out", type=Path, default=None, help="JSON report")
    soak_args = p.add_argument_group("soak (--soak-minutes): the node for N minutes with bad input and faults")
    soak_args.add_argument("--soak-minutes", type=float, default=0.0, help="run a soak of this many minutes instead")
    soak_args.add_argument("--corrupt-share", type=float, default=SoakPlan.corrupt_share)
    soak_args.add_argument(
        "--faults", default="", help=f"comma-separated, each in a window of its own: {', '.join(FAULTS)}"
    )
    soak_args.add_argument("--sensor-gap-every-s", type=float, default=SoakPlan.sensor_gap_every_s)
    soak_args.add_argument("--blackout-every-s", type=float, default=SoakPlan.blackout_every_s)
    soak_args.add_argument("--out-dir", type=Path, default=Path("soak"), help="soak.json and soak.png go here")
    args = p.parse_args(argv)
    if args.soak_minutes > 0:
        return _soak_main(args)
    try:
        report = bench_node(
            args.map,
            args.model,
            args.rate_hz,
            args.frames,
            args.image_px,
            args.beam,
            args.backend,
            args.transport,
            args.sensors,
        )
    except RuntimeError as exc:
        print(f"jzi_ros.ros.bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _soak_main(args: argparse.Namespace) -> int:
    try:
        plan = SoakPlan(
            args.soak_minutes,
            args.rate_hz,
            args.image_px,
            args.corrupt_share,
            sensor_gap_every_s=args.sensor_gap_every_s,
            blackout_every_s=args.blackout_every_s,
            faults=tuple(f for f in args.faults.split(",") if f),
        )
        report = soak(
            args.map, args.model, plan, args.out_dir, node_params={"beam_width": args.beam, "backend": args.backend}
        )
    except (JziError, RuntimeError) as exc:
        print(f"jzi_ros.ros.bench: {exc}", file=sys.stderr)
        return 1
    print(summary(report))
    print(f"report: {args.out_dir / 'soak.json'}, picture: {args.out_dir / 'soak.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
