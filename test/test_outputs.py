"""Never delete what the project did not write: the guard of every replaced output folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import UTM_ORIGIN, pattern, write_tif
from rasterio.transform import from_origin

from jzi_ros.geo import build_map
from jzi_ros.outputs import PARTIAL_MARKER, OutputError, build_lock, check_replaceable, start_partial
from jzi_ros.tools.cli import main


def test_only_the_projects_own_outputs_are_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(OutputError, match="no map this project wrote"):
        check_replaceable(photos, "map.yaml", "map")
    for protected in (Path("."), Path(".."), Path("/"), Path.home()):
        with pytest.raises(OutputError, match="working directory|home|/"):
            check_replaceable(protected, "map.yaml", "map")
    mine = tmp_path / "maps" / "site"
    mine.mkdir(parents=True)
    (mine / "map.yaml").write_text("format: jzi-map\n")
    check_replaceable(mine, "map.yaml", "map")  # ours: may go
    check_replaceable(mine, "map.yaml", "map", inputs=[mine / "ortho_source.tif"])  # an input that is not there
    (mine / "ortho_source.tif").write_bytes(b"raster")
    with pytest.raises(OutputError, match="holds the input"):
        check_replaceable(mine, "map.yaml", "map", inputs=[mine / "ortho_source.tif"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_replaceable(tmp_path / "afile", "map.yaml", "map")
    check_replaceable(tmp_path / "absent", "map.yaml", "map")  # nothing there: nothing to lose
    assert (photos / "holiday.jpg").read_bytes() == b"precious"


def test_a_leftover_partial_is_removed_only_when_the_project_wrote_it(tmp_path):
    partial = start_partial(tmp_path / "site.partial")
    assert (partial / PARTIAL_MARKER).is_file()
    (partial / "views.npy").write_bytes(b"half")
    start_partial(partial)  # a leftover of an earlier run: replaced
    assert not (partial / "views.npy").exists()
    foreign = tmp_path / "notes.partial"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="no partial output this project wrote"):
        start_partial(foreign)
    assert (foreign / "thesis.tex").exists()


@pytest.mark.parametrize("case", ["foreign", "parent", "input_inside"])
def test_build_map_overwrite_refuses_what_is_not_a_map_and_loses_nothing(tmp_path, monkeypatch, capsys, case):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    tif = write_tif(work / "ortho.tif", pattern(64, 64), "EPSG:32632", from_origin(*UTM_ORIGIN, 4.0, 4.0))
    out = {"foreign": work / "photos", "parent": Path(".."), "input_inside": work}[case]
    if case == "foreign":
        out.mkdir()
        (out / "holiday.jpg").write_bytes(b"precious")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["build-map", "--geotiff", str(tif), "--out", str(out), "--overwrite", "--levels", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "refusing to replace" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_build_map_overwrite_replaces_a_map(tmp_path):
    tif = write_tif(tmp_path / "ortho.tif", pattern(64, 64), "EPSG:32632", from_origin(*UTM_ORIGIN, 4.0, 4.0))
    first = build_map([tif], tmp_path / "site", levels=1, view_px=16)
    stamp = (first.path / "map.yaml").stat().st_mtime_ns
    second = build_map([tif], tmp_path / "site", levels=1, view_px=16, overwrite=True)
    assert (second.path / "map.yaml").stat().st_mtime_ns >= stamp and not (tmp_path / "site.partial").exists()
    assert not (second.path / PARTIAL_MARKER).exists()
    assert np.array_equal(first.views, second.views)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: the permission check cannot fail")
def test_an_unwritable_out_is_refused_before_the_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    tif = write_tif(tmp_path / "ortho.tif", pattern(64, 64), "EPSG:32632", from_origin(*UTM_ORIGIN, 4.0, 4.0))
    try:
        code = main(["build-map", "--geotiff", str(tif), "--out", str(locked / "site"), "--levels", "1", "--quiet"])
    finally:
        locked.chmod(0o700)
    assert code != 0 and "cannot write" in capsys.readouterr().err


def test_an_out_below_a_file_is_refused_before_the_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    tif = write_tif(tmp_path / "ortho.tif", pattern(64, 64), "EPSG:32632", from_origin(*UTM_ORIGIN, 4.0, 4.0))
    code = main(["build-map", "--geotiff", str(tif), "--out", str(tmp_path / "afile" / "site"), "--levels", "1"])
    assert code != 0 and "cannot write" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x"


def test_a_cache_is_built_by_one_process_at_a_time(tmp_path):
    import subprocess
    import sys
    import time

    cache = tmp_path / "model.pt.onnx-b4"
    held = tmp_path / "held"
    code = (
        "import sys, time, pathlib; from jzi_ros.outputs import build_lock\n"
        "with build_lock(sys.argv[1]):\n"
        "    pathlib.Path(sys.argv[2]).touch(); time.sleep(1.5)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code, str(cache), str(held)])
    try:
        while not held.exists():
            assert other.poll() is None, "the other process ended before it held the lock"
            time.sleep(0.02)
        seen = time.monotonic()
        with build_lock(cache):
            waited = time.monotonic() - seen
    finally:
        other.wait(timeout=30)
    assert waited > 1.0, "the lock was taken while the other process held it (1.5 s)"
    assert (tmp_path / "model.pt.onnx-b4.lock").is_file() and not cache.exists()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        with build_lock(tmp_path / "a-file" / "cache"):
            pass


def test_a_cache_on_a_file_system_without_locks_is_built_without_one(tmp_path, monkeypatch, caplog):
    import fcntl

    def no_locks(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    built = False
    with build_lock(tmp_path / "engines"):
        built = True
    assert built and "without a lock" in caplog.text
