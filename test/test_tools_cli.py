"""The `jzi` command as a user runs it: output, files, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from jzi_ros.geo import MapDir


def jzi(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("jzi")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "jzi_ros.tools.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_build_map_and_show_map_from_the_command_line(utm_tif, tmp_path):
    out = tmp_path / "maps" / "tiny"
    res = jzi("build-map", "--geotiff", str(utm_tif), "--levels", "2", "--view-px", "48", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "built" in res.stdout and "17 views of 48 px" in res.stdout and f"wrote {out}" in res.stdout
    assert "rendering views" in res.stderr  # the progress bar
    mapdir = MapDir(out)
    assert mapdir.views.shape == (17, 48, 48, 3)
    assert "build-map" in mapdir.meta["build"]["command"]

    png = tmp_path / "overview.png"
    res = jzi("show-map", str(out), "--out", str(png))
    assert res.returncode == 0, res.stderr
    assert f"wrote {png}" in res.stdout
    picture = imread(png)
    assert picture.shape[0] > 500 and picture.shape[1] > 500
    assert picture[..., :3].std() > 0.05  # the map is drawn, not a blank canvas

    # the static transform from a robot's map frame with its origin at the map's centre: none
    centre = f"{mapdir.grid.center_lat},{mapdir.grid.center_lon}"
    res = jzi("map-frame", str(out), "--datum", centre)
    assert res.returncode == 0, res.stderr
    assert "jzi_map in map: x 0.00 m, y 0.00 m, yaw 0.0000 deg" in res.stdout
    assert "ros2 run tf2_ros static_transform_publisher --x 0.0000 --y 0.0000" in res.stdout
    res = jzi("map-frame", str(out), "--datum", "91,8")
    assert res.returncode != 0 and "within ±90" in res.stderr and "Traceback" not in res.stderr


def test_explicit_center_and_size(utm_tif, tmp_path):
    res = jzi(
        "build-map",
        "--geotiff",
        str(utm_tif),
        "--center",
        "47.0588,8.5418",
        "--size-m",
        "150",
        "--grid",
        "3",
        "--levels",
        "2",
        "--view-px",
        "32",
        "--out",
        str(tmp_path / "m"),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    grid = MapDir(tmp_path / "m").grid
    assert (grid.center_lat, grid.center_lon, grid.size_m, grid.grid) == (47.0588, 8.5418, 150.0, 3)
    assert "rendering views" not in res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["build-map", "--geotiff", "missing.tif", "--out", "m"], "no such file: missing.tif"),
        (
            ["build-map", "--geotiff", "{tif}", "--center", "10,10", "--size-m", "100", "--out", "m"],
            "outside the rasters",
        ),
        (["build-map", "--geotiff", "{tif}", "--levels", "12", "--out", "m"], "TB on disk"),
        (["show-map", "nowhere"], "not a jzi map"),
    ],
)
def test_bad_input_fails_with_one_clear_line(utm_tif, tmp_path, args, message):
    res = jzi(*[a.format(tif=utm_tif) for a in args], cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("jzi: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "m").exists()


def test_bad_center_is_an_argument_error(utm_tif, tmp_path):
    res = jzi("build-map", "--geotiff", str(utm_tif), "--center", "north", "--out", "m", cwd=tmp_path)
    assert res.returncode == 2 and "expected LAT,LON" in res.stderr


def test_scene_is_deterministic_and_georeferenced(tmp_path):
    import rasterio

    from jzi_ros.data.scene import SceneSpec, write_scene

    spec = SceneSpec(size_px=512)
    a = write_scene(tmp_path / "a.tif", spec)
    b = write_scene(tmp_path / "b.tif", spec)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        assert da.crs.to_epsg() == 32632
        assert da.res == (0.5, 0.5)
        pa, pb = da.read(), db.read()
    assert np.array_equal(pa, pb)
    other = write_scene(tmp_path / "c.tif", SceneSpec(size_px=512, seed=8))
    with rasterio.open(other) as dc:
        assert not np.array_equal(pa, dc.read())
    assert pa.std() > 20  # texture, not a flat field


def test_the_command_line_module_imports_no_torch_and_help_lists_every_command():
    code = "import sys, jzi_ros.tools.cli; print('torch' in sys.modules, 'rasterio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    from jzi_ros.tools.cli import COMMANDS

    shown = jzi("--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())  # argparse wraps lines at the terminal's width
    for name, (_, help_line) in COMMANDS.items():
        assert name in text and help_line in text


def test_each_command_loads_its_own_options_only_when_it_runs():
    from jzi_ros.tools.cli import COMMANDS, make_parser

    assert make_parser(None)[1] is None
    for name in COMMANDS:
        chosen = make_parser(name)[1]
        assert chosen is not None and chosen.prog.endswith(name)
        assert callable(chosen.get_default("run")) or name == "import"  # import's sources set their own run


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["train", "--map", "m", "--out", "o.pt"], "jzi: error: --aerial or --street or --data must be given"),
        (
            ["evaluate", "--map", "m", "--model", "m.pt", "--out", "o"],
            "jzi: error: --aerial or --street or --data must be given",
        ),
        (["train", "--map", "m", "--out", "o.pt", "--aerial", "--batch", "0"], "jzi: error: --batch must be"),
        (
            ["train", "--map", "m", "--out", "o.pt", "--data", "d.csv", "--query-rasters", "b.tif"],
            "jzi: error: --query-rasters needs --aerial or --street",
        ),
    ],
)
def test_library_errors_reach_the_command_line_in_its_flags(argv, expect, capsys):
    from jzi_ros.tools.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expect) and err.count("\n") == 1
