"""Flat retrieval, the zoom's baseline: terminal numbering and the trained heads."""

import numpy as np
import pytest
import torch

from jzi_ros.evaluation.errors import EvaluationError
from jzi_ros.evaluation.retrieval import FlatRetrieval
from jzi_ros.geo import terminal_number, terminal_paths


def test_terminal_numbers_and_paths_are_each_others_inverse_in_the_maps_row_major_order():
    paths = terminal_paths(np.arange(64), actions=4, levels=3)
    assert paths[0].tolist() == [0, 0, 0] and paths[5].tolist() == [0, 1, 1] and paths[63].tolist() == [3, 3, 3]
    assert terminal_number(paths, 4).tolist() == list(range(64))


def test_the_heads_learn_to_place_frames_whose_features_are_a_view_seen_through_another_sensor():
    rng = np.random.default_rng(0)
    views = rng.standard_normal((32, 24)).astype(np.float32)
    sensor = rng.standard_normal((24, 24)).astype(np.float32) * 0.6 + np.eye(24, dtype=np.float32)

    def frames(n):  # each frame: its view under a fixed linear "sensor" change, plus noise
        labels = rng.integers(0, 32, n)
        feats = views[labels] @ sensor + 0.3 * rng.standard_normal((n, 24)).astype(np.float32)
        return torch.from_numpy(feats), labels

    train_x, train_y = frames(800)
    flat = FlatRetrieval.fit(train_x, train_y, torch.from_numpy(views), epochs=40)
    test_x, test_y = frames(200)
    idx, probs = flat.search(flat.embed(test_x), top_k=3)
    assert idx.shape == probs.shape == (200, 3)
    assert (np.diff(probs, axis=1) <= 0).all()  # best first
    assert (idx[:, 0] == test_y).mean() > 0.9
    shuffled = FlatRetrieval.fit(train_x, rng.permutation(train_y), torch.from_numpy(views), epochs=40)
    assert (shuffled.search(shuffled.embed(test_x), 1)[0][:, 0] == test_y).mean() < 0.3  # labels are what it learns


def test_labels_outside_the_maps_terminal_views_are_refused():
    with pytest.raises(EvaluationError, match="terminal view labels must be 0 to 7"):
        FlatRetrieval.fit(torch.zeros(4, 3), np.array([0, 1, 8, 2]), torch.zeros(8, 3))


def test_a_place_in_a_cell_is_its_sub_cell_and_offset_and_back(tmp_path):
    from jzi_ros.evaluation.fine_stage import _sub_cells, _sub_centres
    from jzi_ros.geo import ZoomGrid

    class Map:  # what the two functions read of a map
        grid = ZoomGrid(47.0, 8.0, 640.0, grid=4, levels=2)

    rng = np.random.default_rng(1)
    east_north = rng.uniform(-319.0, 319.0, (200, 2))
    paths, inside = Map.grid.paths_at_m(east_north[:, 0], east_north[:, 1])
    assert inside.all()
    cells = terminal_number(paths, Map.grid.actions)
    sub, offset, centres = _sub_cells(Map, np.c_[east_north, np.zeros((200, 2))], cells)
    assert ((sub >= 0) & (sub < 16)).all() and (np.abs(offset) <= 0.5 + 1e-9).all()
    assert np.allclose(_sub_centres(Map, centres, sub, offset), east_north)
    # the north-west sub-cell is number 0: a point just inside the cell's north-west corner
    corner = centres[0] + [-Map.grid.terminal_size_m / 2 + 0.1, Map.grid.terminal_size_m / 2 - 0.1]
    assert _sub_cells(Map, np.r_[corner, 0, 0][None], cells[:1])[0][0] == 0
