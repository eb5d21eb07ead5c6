"""`jzi_ros.train` without training: its config, schedule, sampler and errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

from jzi_ros.errors import JziError
from jzi_ros.tools.cli import parse_args
from jzi_ros.tools.common import config_from
from jzi_ros.train import EpochSampler, TrainConfig, TrainError, lr_at, trainable_blocks


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"map": "maps/m", "out": "model.pt", "aerial": True, **changes})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"aerial": False}, "aerial or street or data must be given"),
        ({"minutes": 0}, "minutes"),
        ({"max_steps": 0}, "max_steps"),
        ({"samples": 0}, "samples"),
        ({"val_samples": -1}, "val_samples"),
        ({"footprint_cells": (8.0, 4.0)}, "footprint_cells"),
        ({"footprint_cells": (0.0, 4.0)}, "footprint_cells"),
        ({"footprint_cells": (1.0, 2.0, 3.0)}, "footprint_cells"),
        ({"footprint_cells": "wide"}, "footprint_cells"),
        ({"augment": -1}, "augment"),
        ({"holdout": 1.0}, "holdout"),
        ({"image_px": 0}, "image_px"),
        ({"pooling": "max"}, "pooling"),
        ({"query": "thirds"}, "query"),
        ({"tokens": "patches"}, "tokens"),
        ({"fine_tune_blocks": -1}, "fine_tune_blocks"),
        ({"workers": -1}, "workers"),
        ({"dim": 0}, "dim"),
        ({"depth": 0}, "depth"),
        ({"heads": 0}, "heads"),
        ({"dim": 30, "heads": 4}, "dim 30 must be divisible by heads 4"),
        ({"dropout": 1.0}, "dropout"),
        ({"batch": 0}, "batch"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"eval_every_s": 0}, "eval_every_s"),
        ({"threads": 0}, "threads"),
        ({"learned_matcher": True, "aerial": False, "data": "x.csv"}, "learned_matcher needs aerial"),
    ],
)
def test_a_bad_train_config_is_refused_with_a_message_naming_the_parameter(changes, named):
    with pytest.raises(TrainError, match=named):
        config(**changes)


def test_train_error_is_a_jzi_error_so_the_command_line_prints_it_in_one_line():
    assert issubclass(TrainError, JziError)


def test_train_config_normalizes_paths_and_the_footprint():
    c = config(data="train.csv", footprint_cells=[1, 2])
    assert c.map == Path("maps/m") and c.out == Path("model.pt") and c.data == Path("train.csv")
    assert c.footprint_cells == (1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.batch = 3  # type: ignore[misc]


def test_train_config_round_trips_through_json():
    c = config(data="train.csv", max_steps=10, footprint_cells=(1, 2), threads=1, weights="w.pth")
    d = json.loads(json.dumps(c.to_dict()))
    assert d["map"] == "maps/m" and d["footprint_cells"] == [1.0, 2.0] and d["data"] == "train.csv"
    assert TrainConfig.from_dict(d) == c
    assert TrainConfig.from_dict(config().to_dict()) == config()


def test_train_config_from_a_dict_with_an_unknown_option_is_refused():
    with pytest.raises(TrainError, match="no_such_option"):
        TrainConfig.from_dict({**config().to_dict(), "no_such_option": 1})
    with pytest.raises(TrainError, match="out"):
        TrainConfig.from_dict({"map": "m", "aerial": True})


def test_the_command_line_defaults_are_the_configs_defaults():
    args = parse_args(["train", "--map", "maps/m", "--out", "model.pt", "--aerial"])
    assert config_from(TrainConfig, args) == config()


def test_every_option_of_the_command_is_a_field_of_the_config():
    args = parse_args(["train", "--map", "m", "--out", "o", "--aerial"])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run_only = {"run", "preset", "preset_section", "verbose", "command_parser"}
    general = {"general", "work", "data_dir"}  # a general model's run: the recipe, not a config of one map
    assert set(vars(args)) - fields == run_only | general


def test_lr_warms_up_linearly_then_decays_by_a_cosine_to_five_percent():
    total, warmup = 100, 10
    lrs = [lr_at(s, total, 1.0, warmup) for s in range(total + 5)]
    assert lrs[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert lrs[warmup] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[warmup:-1], lrs[warmup + 1 :], strict=True))  # never rises after the warm-up
    assert lr_at((warmup + total) // 2, total, 1.0, warmup) == pytest.approx(0.05 + 0.95 * 0.5)  # half way
    assert lrs[total] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.05)
    assert lr_at(50, total, 3e-4, warmup) == pytest.approx(3e-4 * lr_at(50, total, 1.0, warmup))


def test_two_ranks_of_the_epoch_sampler_split_the_batches_of_one():
    one = list(EpochSampler(10, 4, seed=3))
    assert len(one) == 8 and len({i for _, i in one}) == 8 and {e for e, _ in one} == {0}
    r0, r1 = (list(EpochSampler(10, 4, seed=3, rank=r, world=2)) for r in (0, 1))
    assert r0 + r1 != one and [*r0[:2], *r1[:2], *r0[2:], *r1[2:]] == one
    sampler = EpochSampler(10, 4, seed=3)
    sampler.set_epoch(1)
    assert list(sampler) != [(1, i) for _, i in one] and {e for e, _ in sampler} == {1}
    assert list(sampler) == list(sampler)  # seeded, not drawn anew
    assert len(sampler) == 8


def test_fine_tuning_an_encoder_without_blocks_raises_the_packages_error():
    model = SimpleNamespace(
        encoder=SimpleNamespace(backbone=nn.Linear(2, 2)), cfg=SimpleNamespace(encoder=SimpleNamespace(name="linear"))
    )
    with pytest.raises(TrainError, match="fine_tune_blocks"):
        trainable_blocks(model, 1)
    with pytest.raises(TrainError, match="fine_tune_blocks must be positive"):
        trainable_blocks(model, 0)
