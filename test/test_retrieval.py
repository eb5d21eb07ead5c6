"""Flat retrieval, the zoom's baseline: terminal numbering and the trained heads."""

import numpy as np
import pytest
import torch

from jzi_ros.evaluation.errors import EvaluationError
from jzi_ros.evaluation.retrieval import FlatRetrieval, terminal_number, terminal_paths


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
