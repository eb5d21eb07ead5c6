"""The whole model: encoder + decoder + the grid it was trained for, and its checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .decoder import DecoderConfig, ZoomDecoder
from .encoder import (
    Encoder,
    EncoderConfig,
    encoder_identity,
    load_backbone_weights,
    pool_queries,
    prepare_images,
    prepare_queries,
    state_digest,
)
from .errors import CheckpointError

FORMAT = "jzi-model"
VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model.

    ``region`` is the zoom grid (``ZoomGrid.to_dict()``) of the map it was
    trained for (for a general model: the first of its places). ``general``:
    trained across many places to compare a frame with any map's views
    (``jzi train --general``), so it localizes on every map of its grid
    (``grid`` x ``grid``, ``levels`` levels), not only on ``region``.
    """

    encoder: EncoderConfig
    decoder: DecoderConfig
    region: dict
    general: bool = False

    def to_dict(self) -> dict:
        """The config as plain dicts, as a checkpoint's ``config`` stores it."""
        return {
            "encoder": self.encoder.to_dict(),
            "decoder": self.decoder.to_dict(),
            "region": dict(self.region),
            "general": self.general,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict` (the encoder's mean and std back to tuples)."""
        enc = dict(d["encoder"])
        enc["mean"], enc["std"] = tuple(enc["mean"]), tuple(enc["std"])
        return cls(EncoderConfig(**enc), DecoderConfig(**d["decoder"]), dict(d["region"]), bool(d.get("general")))


class ZoomModel(nn.Module):
    """Encoder + decoder for the zoom grid ``cfg.region``; ``source``: the checkpoint it was loaded from, if any."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder, grid=cfg.decoder.grid)
        self.decoder = ZoomDecoder(cfg.decoder)
        self._identity: dict | None = None
        self.source: Path | None = None

    def identity(self) -> dict:
        """The encoder identity a map's features must have been computed with."""
        if self._identity is None:
            self._identity = encoder_identity(self.encoder)
        return self._identity

    def feature_identity(self) -> dict:
        """What a map's view features depend on: the encoder's identity and, for ``tokens="views"``, that source.

        The map stores features under it (:func:`~jzi_ros.geo.feature_key`), so a
        model whose child tokens come from the children's own views never reads
        features pooled from the view's patches under the same encoder.
        """
        if self.cfg.decoder.tokens == "views":
            return {**self.identity(), "children": "views"}
        return self.identity()

    def digest(self) -> str:
        """sha256 (16 hex) of the encoder's identity and the decoder's weights: the model a map's calibration is for."""
        h = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode())
        h.update(state_digest(self.decoder).encode())
        return h.hexdigest()[:16]

    def first_levels(self, levels: int) -> ZoomModel:
        """Cut to its first ``levels`` levels, in place (a general model on a map of fewer levels); returns itself.

        Its digest changes with the decoder, so a map's calibration is for the cut model.
        """
        if levels != self.cfg.decoder.levels:
            self.decoder = self.decoder.first_levels(levels)
            self.cfg = replace(self.cfg, decoder=self.decoder.cfg, region={**self.cfg.region, "levels": levels})
        return self

    def forget_identity(self) -> None:
        """Call after changing encoder weights (fine-tuning)."""
        self._identity = None

    @torch.no_grad()
    def encode(self, images: list[np.ndarray] | np.ndarray, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB uint8 images -> (global (B, F), child tokens (B, g*g, F)), float32 on the model's device."""
        dev = next(self.parameters()).device
        pooled, children = [], []
        for i in range(0, len(images), batch):
            x = prepare_images(list(images[i : i + batch]), self.cfg.encoder.image_px).to(dev)
            p, c = self.encoder(x)
            pooled.append(p.float())
            children.append(c.float())
        return torch.cat(pooled), torch.cat(children)

    @torch.no_grad()
    def encode_queries(self, images: list[np.ndarray] | np.ndarray, batch: int = 16) -> torch.Tensor:
        """Camera frames -> global features (B, F), with the config's query encoding."""
        dev = next(self.parameters()).device
        out = []
        for i in range(0, len(images), batch):
            x, n = prepare_queries(list(images[i : i + batch]), self.cfg.encoder)
            out.append(pool_queries(self.encoder(x.to(dev))[0].float(), n))
        return torch.cat(out)


def save_checkpoint(
    path: str | Path, model: ZoomModel, extra: dict | None = None, encoder_weights: str | None = None
) -> Path:
    """Write config, weights and ``extra`` (training state, metrics) atomically.

    ``encoder_weights``: where the (frozen) encoder's weights come from
    (:data:`~.encoder.PACKAGED_WEIGHTS`) instead of the file: the checkpoint
    holds the decoder alone, and loading checks that those weights give the
    encoder identity it was trained with (a small checkpoint to ship).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "decoder": model.decoder.state_dict(),
        "identity": model.identity(),
        "extra": extra or {},
    }
    if encoder_weights is None:
        state["encoder"] = model.encoder.state_dict()
    else:
        state["encoder_weights"] = str(encoder_weights)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw contents of a checkpoint file, format and version checked; CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such model file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        # an unpickling error's text is torch's advice on loading code, not for this user; others say what broke
        why = "" if isinstance(exc, pickle.UnpicklingError) else (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"not a jzi checkpoint: {path} cannot be read as a PyTorch file ({type(exc).__name__}"
            f"{': ' + why if why else ''}); give a model written by `jzi train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jzi_ros model checkpoint (train one with `jzi train`)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, this jzi_ros reads {VERSION}")
    return state


_RENAMED = {"ground_in": "query_in"}
"""Decoder modules renamed since checkpoints of this version were first written: old -> new."""


def _current_name(key: str) -> str:
    """A state-dict key under the module's current name."""
    head, dot, rest = key.partition(".")
    return _RENAMED.get(head, head) + dot + rest


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ZoomModel, dict]:
    """Rebuild a model from its checkpoint; weights are loaded strictly."""
    state = read_checkpoint(path)
    try:
        model = ZoomModel(ModelConfig.from_dict(state["config"]))
        if "encoder" in state:
            model.encoder.load_state_dict(state["encoder"], strict=True)
        else:
            load_backbone_weights(model.encoder, state["encoder_weights"])
        decoder = {_current_name(k): v for k, v in state["decoder"].items()}
        model.decoder.load_state_dict(decoder, strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not rebuild into a model: {exc}") from None
    if "encoder" not in state and encoder_identity(model.encoder) != state.get("identity"):
        raise CheckpointError(
            f"{path} was trained with other {state['encoder_weights']} encoder weights than this installation's "
            f"(their identities differ): reinstall the version it names or retrain it"
        )
    model._identity = state.get("identity")
    model.source = Path(path)  # where exported backends keep their files
    return model.to(device).eval(), state.get("extra", {})
