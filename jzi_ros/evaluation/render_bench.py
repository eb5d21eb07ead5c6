"""How fast the 3D world renders (`jzi bench --render`): frames per second by kind of view, one and two processes.

The world is the demo's generated scene (1 km, its surface model, terrain and
buildings). Each kind of view is rendered at random places on its roads
(street views, panoramas) or above them (drone views): the pinhole frames
and panoramas a ground drive writes, the tilted drone frames of a 3D flight,
and the small square frames training renders. Two processes, each with its
own world, measure what training-data generation gets from both cores.
"""

from __future__ import annotations

import multiprocessing
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..data.drive import RoadNetwork
from ..data.render3d import World3D
from ..data.scene import SceneFiles, SceneSpec, write_scene
from ..geo import BoundsM, LocalFrame
from ..geo.camera import CameraPose, Pinhole

VIEWS = {
    "street 640x480": ("street", (640, 480)),
    "drone 640x480, 30 deg tilt": ("drone", (640, 480)),
    "panorama 1024x512": ("panorama", (1024, 512)),
    "training 224x224 (drone)": ("drone", (224, 224)),
    "training 224x168 (street)": ("street", (224, 168)),
}
"""The views timed: name -> (kind, (width, height) [px])."""


def _world(ortho: Path) -> tuple[World3D, np.ndarray]:
    """The scene's world and its roads' segments (N, 2, 2) [m]."""
    spec = SceneSpec()
    frame = LocalFrame(spec.center_lat, spec.center_lon)
    files = SceneFiles.beside(ortho)
    half = 0.5 * spec.size_px * spec.gsd_m - 10
    world = World3D.from_rasters(
        [ortho], frame, BoundsM(-half, -half, half, half), spec.gsd_m, files.dsm, files.dtm, files.buildings
    )
    return world, RoadNetwork.from_geojson(files.roads, frame).segments


def _render(world: World3D, roads: np.ndarray, kind: str, size: tuple[int, int], rng: np.random.Generator):
    """One view of ``kind`` at a random place on a road."""
    a, b = roads[rng.integers(len(roads))]
    e, n = a + rng.random() * (b - a)
    heading = float(rng.uniform(0, 360))
    if kind == "panorama":
        return world.panorama(e, n, 1.6, heading, size)
    camera = Pinhole(size[0], size[1], 90.0 if kind == "street" else 60.0)
    pose = CameraPose(e, n, 1.6, heading, 90.0) if kind == "street" else CameraPose(e, n, 120.0, heading, 30.0)
    return world.render(camera.K, size, pose)


def _time_views(ortho: str, frames: int, seed: int, start_at: float = 0.0) -> dict[str, float]:
    """Seconds to render ``frames`` views of each kind (after one warm-up view each), in this process.

    The timing starts at ``start_at`` (``time.time()`` [s]) or once the world is built, whichever is later,
    so that processes started together render together.
    """
    world, roads = _world(Path(ortho))
    rng = np.random.default_rng(seed)
    time.sleep(max(0.0, start_at - time.time()))
    out = {}
    for name, (kind, size) in VIEWS.items():
        _render(world, roads, kind, size, rng)
        started = time.perf_counter()
        for _ in range(frames):
            _render(world, roads, kind, size, rng)
        out[name] = time.perf_counter() - started
    return out


def bench_render(frames: int = 40, workers: int = 2) -> dict:
    """Frames per second of each view (:data:`VIEWS`) in one process and in ``workers`` processes at once."""
    with tempfile.TemporaryDirectory() as tmp:
        ortho = write_scene(Path(tmp) / "scene.tif", SceneSpec())
        started = time.perf_counter()
        world, _ = _world(ortho)
        setup_s = time.perf_counter() - started
        triangles = 2 * (world.surface_m.shape[0] - 1) * (world.surface_m.shape[1] - 1)
        del world
        single = _time_views(str(ortho), frames, 0)
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 2 * setup_s + 20.0  # every process has built its world by then
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            runs = [pool.submit(_time_views, str(ortho), frames, seed, start_at) for seed in range(1, workers + 1)]
            parallel = [run.result() for run in runs]
    return {
        "machine": f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} cores",
        "world": f"the demo scene, 1 km, {triangles / 1e6:.1f} M triangles, built in {setup_s:.1f} s",
        "frames_per_view": frames,
        "fps": {name: frames / seconds for name, seconds in single.items()},
        f"fps_{workers}_processes": {name: workers * frames / max(run[name] for run in parallel) for name in single},
    }


def render_markdown(report: dict) -> str:
    """The report as a Markdown table."""
    key = next(k for k in report if k.startswith("fps_") and k.endswith("_processes"))
    workers = key.split("_")[1]
    lines = [
        f"# 3D rendering ({report['machine']})",
        "",
        f"{report['world']}; {report['frames_per_view']} frames per view.",
        "",
        f"| view | frames/s, 1 process | frames/s, {workers} processes |",
        "|---|---:|---:|",
    ]
    for name, fps in report["fps"].items():
        lines.append(f"| {name} | {fps:.1f} | {report[key][name]:.1f} |")
    return "\n".join(lines) + "\n"
