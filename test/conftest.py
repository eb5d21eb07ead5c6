"""Shared fixtures: the real data folder and tiny GeoTIFFs written in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """Path under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (only CI and development machines have ../shared/data)")
    return path


def write_tif(path: Path, rgb: np.ndarray, crs: str, transform, nodata=None, alpha=None, **extra) -> Path:
    """Write an (H, W, 3) image as a GeoTIFF; ``alpha`` (H, W) adds an alpha band."""
    bands = [rgb[..., i] for i in range(rgb.shape[-1])] + ([alpha] if alpha is not None else [])
    profile = dict(
        driver="GTiff",
        width=rgb.shape[1],
        height=rgb.shape[0],
        count=len(bands),
        dtype=rgb.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **extra,
    )
    if alpha is not None:
        profile.update(photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack(bands))
    return path


def pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 texture with detail at every scale, so shifts show."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), np.float32)
    for scale in (64, 16, 4):
        coarse = rng.random((height // scale + 2, width // scale + 2, 3)).astype(np.float32)
        out += np.kron(coarse, np.ones((scale, scale, 1), np.float32))[:height, :width] * (scale / 84)
    return np.clip(out * 255, 0, 255).astype(np.uint8)


UTM_ORIGIN = (465000.0, 5212000.0)
"""North-west corner of the tiny test rasters in EPSG:32632 (near 47.05 N, 8.54 E)."""


@pytest.fixture
def utm_tif(tmp_path: Path) -> Path:
    """A 400 x 400 px, 1 m/px GeoTIFF in UTM 32N."""
    return write_tif(tmp_path / "utm.tif", pattern(400, 400), "EPSG:32632", from_origin(*UTM_ORIGIN, 1.0, 1.0))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small map of a generated scene and a model trained for it with the
    library's `train` (aerial self-supervision, 400 seeded steps), shared by
    the tests that need a working localizer: (map dir, model checkpoint, scene GeoTIFF)."""
    from jzi_ros.data.scene import SceneSpec, write_scene
    from jzi_ros.geo import build_map
    from jzi_ros.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    tif = write_scene(root / "scene.tif", SceneSpec(size_px=512, seed=11))
    mapdir = build_map([tif], root / "map", grid=2, levels=2, view_px=64)
    config = TrainConfig(
        map=mapdir.path,
        out=root / "model.pt",
        aerial=True,
        image_px=64,
        samples=1200,
        val_samples=100,
        footprint_cells=(1.0, 2.0),
        holdout=0.0,
        max_steps=400,
        batch=64,
        dim=64,
        depth=2,
        quiet=True,
    )
    result = train(config)
    assert result.steps == 400
    return mapdir.path, result.out, tif


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> Path:
    """The package built and installed by a real ``colcon build`` in a workspace of its own: the install prefix."""
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment (make test installs it)")
    ws = tmp_path_factory.mktemp("ws")
    shutil.copytree(
        ROOT,
        ws / "src" / "jzi_ros",
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "install", "log", "demo_out", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    res = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return ws / "install" / "jzi_ros"
