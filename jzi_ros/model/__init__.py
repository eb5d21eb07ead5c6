"""The zoom model: encoder (timm), causal decoder, beam search, checkpoints (no rasterio here)."""

from .decoder import TOKENS, DecoderConfig, ZoomDecoder
from .encoder import PACKAGED_WEIGHTS, RANDOM_WEIGHTS, Encoder, EncoderConfig, load_backbone_weights
from .errors import CheckpointError, ModelError, WeightsError
from .search import SearchResult, StepDecoder, beam_search, path_log_probs, search_features, teacher_inputs
from .zoom import ModelConfig, ZoomModel, load_checkpoint, save_checkpoint

__all__ = [
    "PACKAGED_WEIGHTS",
    "RANDOM_WEIGHTS",
    "TOKENS",
    "CheckpointError",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "ModelConfig",
    "ModelError",
    "SearchResult",
    "StepDecoder",
    "WeightsError",
    "ZoomDecoder",
    "ZoomModel",
    "beam_search",
    "load_backbone_weights",
    "load_checkpoint",
    "path_log_probs",
    "save_checkpoint",
    "search_features",
    "teacher_inputs",
]
