"""Training and evaluation of zoom models: the library behind ``jzi train``.

:class:`TrainConfig` holds every option of a run and :func:`train` runs it.
The pieces are usable on their own: sample sources (:func:`aerial_samples`,
:func:`geotagged_samples`), the decoder loop on cached features
(:func:`train_decoder`), the end-to-end fine-tuning loop
(:func:`train_end_to_end`), validation (:func:`evaluate_features`), the
localizer's calibration (:func:`calibrate`) and the learning-rate schedule
(:func:`lr_at`). No argparse here.
"""

from .calibrate import calibrate
from .config import DEFAULT_DOMAIN_OPS, DEFAULT_ENCODER, DEFAULT_WEIGHTS, TrainConfig
from .decoder_loop import build_model, evaluate_features, lr_at, train_decoder
from .distributed import Dist
from .errors import TrainError
from .finetune import EpochSampler, TrainItems, train_end_to_end, trainable_blocks
from .samples import (
    Samples,
    aerial_config,
    aerial_samples,
    cache_path,
    encoded_samples,
    geotagged_samples,
    samples_key,
)
from .trainer import TrainResult, train

__all__ = [
    "DEFAULT_DOMAIN_OPS",
    "DEFAULT_ENCODER",
    "DEFAULT_WEIGHTS",
    "Dist",
    "EpochSampler",
    "Samples",
    "TrainConfig",
    "TrainError",
    "TrainItems",
    "TrainResult",
    "aerial_config",
    "aerial_samples",
    "build_model",
    "calibrate",
    "cache_path",
    "encoded_samples",
    "evaluate_features",
    "geotagged_samples",
    "lr_at",
    "samples_key",
    "train",
    "train_decoder",
    "train_end_to_end",
    "trainable_blocks",
]
