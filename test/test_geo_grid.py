"""The zoom grid: round trips (hypothesis) and known values against pyproj's geodesic."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jzi_ros.geo import GeoError, OutsideRegionError, ZoomGrid

GEOD = pyproj.Geod(ellps="WGS84")

regions = st.builds(
    ZoomGrid,
    center_lat=st.floats(-80, 80),
    center_lon=st.floats(-180, 180),
    size_m=st.floats(100, 100_000),
    grid=st.integers(2, 5),
    levels=st.integers(1, 5),
)
unit = st.floats(0.0, 1.0, exclude_max=True)


def _point_in(grid: ZoomGrid, u: float, v: float) -> tuple[float, float]:
    """(lat, lon) of the point at fractions (u, v) of the region, west->east and south->north."""
    half = grid.size_m / 2
    lat, lon = grid.frame.to_latlon(-half + u * grid.size_m, -half + v * grid.size_m)
    return float(lat), float(lon)


@settings(max_examples=200, deadline=None)
@given(regions, unit, unit)
@example(ZoomGrid(0.0, 0.0, 7939.0, grid=3, levels=3), 1 / 3, 0.0)  # on a border of level-1 cells
def test_latlon_to_path_lands_in_a_cell_that_holds_the_point(grid, u, v):
    lat, lon = _point_in(grid, u, v)
    east, north = grid.frame.to_local(lat, lon)
    for level in range(grid.levels + 1):
        path = grid.path_at(lat, lon, level)
        assert len(path) == level
        b = grid.bounds_m(path)
        tol = 1e-6 * grid.size_m
        assert b.west_m - tol <= east <= b.east_m + tol
        assert b.south_m - tol <= north <= b.north_m + tol
        if level:
            assert grid.parent(path) == grid.path_at(lat, lon, level - 1)


@settings(max_examples=200, deadline=None)
@given(regions, st.data())
def test_cell_centre_maps_back_to_its_own_path(grid, data):
    level = data.draw(st.integers(0, grid.levels))
    path = tuple(data.draw(st.lists(st.integers(0, grid.actions - 1), min_size=level, max_size=level)))
    lat, lon = grid.center_latlon(path)
    assert grid.path_at(lat, lon, level) == path


@settings(max_examples=200, deadline=None)
@given(regions, st.data())
def test_view_index_and_path_are_inverse_and_breadth_first(grid, data):
    index = data.draw(st.integers(0, grid.num_views - 1))
    path = grid.path_of_view(index)
    assert grid.view_index(path) == index
    if len(path) < grid.levels - 1:
        kids = [grid.view_index(c) for c in grid.children(path)]
        assert kids == list(range(kids[0], kids[0] + grid.actions))
        assert kids[0] > index
    if path:
        assert grid.view_index(grid.parent(path)) < index


@settings(max_examples=100, deadline=None)
@given(regions, st.data())
def test_vectorized_view_indices_agree_with_view_index_for_arrays_and_tensors(grid, data):
    import torch

    level = data.draw(st.integers(0, grid.levels - 1))
    cells = st.lists(st.integers(0, grid.actions - 1), min_size=level, max_size=level)
    rows = data.draw(st.lists(cells, min_size=1, max_size=8))
    paths = np.array(rows, np.int64).reshape(len(rows), level)
    expect = [grid.view_index(tuple(p)) for p in paths]
    assert grid.view_indices(paths).tolist() == expect
    assert grid.view_indices(torch.from_numpy(paths)).tolist() == expect
    assert grid.view_indices(paths[None]).shape == (1, len(paths))


def test_terminal_cells_have_no_view_index():
    grid = ZoomGrid(47.0, 8.0, 1000.0, grid=2, levels=2)
    with pytest.raises(GeoError, match="terminal"):
        grid.view_indices(np.zeros((3, 2), np.int64))


@settings(max_examples=100, deadline=None)
@given(regions, st.lists(st.tuples(unit, unit), min_size=1, max_size=20))
def test_vectorised_paths_agree_with_single_lookups(grid, points):
    latlon = np.array([_point_in(grid, u, v) for u, v in points])
    paths, inside = grid.paths_at(latlon[:, 0], latlon[:, 1])
    assert inside.all()
    for (lat, lon), row in zip(latlon, paths, strict=True):
        assert tuple(row) == grid.path_at(lat, lon)


@settings(max_examples=100, deadline=None)
@given(regions, st.floats(-1, 1), st.floats(-1, 1))
def test_local_frame_round_trip_is_sub_millimetre(grid, u, v):
    east, north = u * grid.size_m, v * grid.size_m
    lat, lon = grid.frame.to_latlon(east, north)
    e2, n2 = grid.frame.to_local(lat, lon)
    assert abs(e2 - east) < 1e-3 and abs(n2 - north) < 1e-3


@pytest.mark.parametrize("lat", [-80.0, -45.0, 0.0, 30.0, 47.38, 60.0, 80.0])
@pytest.mark.parametrize("size_m", [100.0, 10_000.0, 100_000.0])
def test_region_sides_match_geodesic_distances_to_under_0p1_percent(lat, size_m):
    grid = ZoomGrid(lat, 13.4, size_m, grid=4, levels=4)
    nw, ne, se, sw = grid.corners_latlon(())
    # edges of the whole region
    for a, b in [(nw, ne), (ne, se), (se, sw), (sw, nw)]:
        _, _, dist = GEOD.inv(a[1], a[0], b[1], b[0])
        assert dist == pytest.approx(size_m, rel=1e-3)
    _, _, diag = GEOD.inv(nw[1], nw[0], se[1], se[0])
    assert diag == pytest.approx(size_m * math.sqrt(2), rel=1e-3)
    # a terminal cell in the far corner, where the projection is least true
    corner = grid.path_of_row_col(0, grid.grid**grid.levels - 1, grid.levels)
    c_nw, c_ne, c_se, _ = grid.corners_latlon(corner)
    _, _, top = GEOD.inv(c_nw[1], c_nw[0], c_ne[1], c_ne[0])
    _, _, side = GEOD.inv(c_ne[1], c_ne[0], c_se[1], c_se[0])
    assert top == pytest.approx(grid.terminal_size_m, rel=1e-3)
    assert side == pytest.approx(grid.terminal_size_m, rel=1e-3)


def test_known_values_of_the_papers_grid():
    grid = ZoomGrid(38.9, -77.03, 10_000.0, grid=4, levels=4)
    assert [round(grid.cell_size_m(k), 4) for k in range(5)] == [10000.0, 2500.0, 625.0, 156.25, 39.0625]
    assert grid.num_views == 1 + 16 + 256 + 4096 == 4369
    assert grid.actions == 16
    # action numbering: row-major from the north-west corner
    assert grid.bounds_m((0,)) == (-5000.0, 2500.0, -2500.0, 5000.0)
    assert grid.bounds_m((3,)) == (2500.0, 2500.0, 5000.0, 5000.0)
    assert grid.bounds_m((12,)) == (-5000.0, -5000.0, -2500.0, -2500.0)
    assert grid.view_index((5, 7)) == 1 + 16 + 5 * 16 + 7
    # the north-west corner cell's centre lies NW of the centre at the right distance
    lat, lon = grid.center_latlon((0, 0, 0, 0))
    azimuth, _, dist = GEOD.inv(grid.center_lon, grid.center_lat, lon, lat)
    expected = math.hypot(5000 - 39.0625 / 2, 5000 - 39.0625 / 2)
    assert dist == pytest.approx(expected, rel=1e-4)
    assert azimuth == pytest.approx(-45.0, abs=0.1)


def test_points_outside_the_region_raise_and_are_flagged():
    grid = ZoomGrid(47.0, 8.0, 1000.0, levels=3)
    lat, lon = grid.frame.to_latlon(600.0, 0.0)
    with pytest.raises(OutsideRegionError, match="outside"):
        grid.path_at(float(lat), float(lon))
    paths, inside = grid.paths_at([float(lat), 47.0], [float(lon), 8.0])
    assert inside.tolist() == [False, True]
    assert (paths[0] == -1).all()


def test_the_east_and_south_borders_belong_to_the_region():
    grid = ZoomGrid(0.0, 0.0, 1000.0, grid=2, levels=2)
    paths, inside = grid.paths_at_m([500.0, -500.0], [-500.0, 500.0])
    assert inside.all()
    assert [tuple(p) for p in paths] == [(3, 3), (0, 0)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(center_lat=91.0, center_lon=0.0, size_m=1000.0), "latitude"),
        (dict(center_lat=0.0, center_lon=200.0, size_m=1000.0), "longitude"),
        (dict(center_lat=0.0, center_lon=0.0, size_m=-5.0), "side"),
        (dict(center_lat=0.0, center_lon=0.0, size_m=1e7), "side"),
        (dict(center_lat=0.0, center_lon=0.0, size_m=1e3, grid=1), "grid"),
        (dict(center_lat=0.0, center_lon=0.0, size_m=1e3, levels=0), "levels"),
    ],
)
def test_bad_grid_definitions_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(GeoError, match=message):
        ZoomGrid(**kwargs)


def test_paths_are_checked():
    grid = ZoomGrid(0.0, 0.0, 1000.0, grid=4, levels=2)
    with pytest.raises(GeoError, match="action"):
        grid.bounds_m((16,))
    with pytest.raises(GeoError, match="deeper"):
        grid.bounds_m((1, 2, 3))
    with pytest.raises(GeoError, match="no view"):
        grid.view_index((1, 2))
    with pytest.raises(GeoError, match="no children"):
        grid.children((1, 2))
    with pytest.raises(GeoError, match="no parent"):
        grid.parent(())


def test_grid_file_round_trip(tmp_path):
    grid = ZoomGrid(-33.8688, 151.2093, 12_345.5, grid=3, levels=5)
    grid.save(tmp_path / "grid.yaml")
    assert ZoomGrid.load(tmp_path / "grid.yaml") == grid
    (tmp_path / "bad.yaml").write_text("center_lat: 1\n")
    with pytest.raises(GeoError, match="not a zoom grid"):
        ZoomGrid.load(tmp_path / "bad.yaml")


def test_bounds_latlon_encloses_all_corners():
    grid = ZoomGrid(70.0, 25.0, 50_000.0, levels=2)
    box = grid.bounds_latlon(())
    corners = grid.corners_latlon(())
    assert (corners[:, 0] >= box.south).all() and (corners[:, 0] <= box.north).all()
    assert (corners[:, 1] >= box.west).all() and (corners[:, 1] <= box.east).all()


def test_centers_of_many_paths_at_once_are_each_paths_center():
    grid = ZoomGrid(center_lat=47.0, center_lon=8.0, size_m=1000.0, grid=3, levels=3)
    paths = np.random.default_rng(0).integers(0, 9, (4, 5, 3))  # N searches x K candidates x L levels
    centres = grid.centers_m(paths)
    assert centres.shape == (4, 5, 2)
    for path, centre in zip(paths.reshape(-1, 3), centres.reshape(-1, 2), strict=True):
        assert centre == pytest.approx(grid.center_m(tuple(int(a) for a in path)), abs=1e-9)
    assert grid.centers_m(np.array([4])) == pytest.approx(grid.center_m((4,)))  # a shorter path: a coarser cell
    with pytest.raises(GeoError, match="actions in 0..8"):
        grid.centers_m(np.array([[0, 9, 1]]))
