"""The backend interface the localizer runs on, and its PyTorch implementation."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from ..model import SearchResult, ZoomModel, beam_search
from ..model.encoder import pool_queries, prepare_queries
from ..model.search import ViewTokens
from .errors import BackendError


class Backend(Protocol):
    """Runs the two halves of a zoom model: the encoder and the search."""

    name: str

    def encode(self, images: list[np.ndarray]) -> Any:
        """RGB uint8 images (H, W, 3) -> what :meth:`search` takes of each (a tensor or an array, B rows)."""

    def search(self, query: Any, beam: int, top_k: int, prefix: tuple[int, ...] = (), greedy_above: float = 1.0) -> Any:
        """Zoom for encoded frames over the map given at construction: ``paths`` (B, K, L) and ``probs`` (B, K).

        ``greedy_above``: at a level where the best path holds at least this share, keep it alone.
        """


class TorchBackend:
    """PyTorch on the CPU or a CUDA device, fp32 or fp16."""

    name = "torch"

    def __init__(
        self,
        model: ZoomModel,
        view_feats: np.ndarray,
        device: str = "cpu",
        fp16: bool = False,
        precision: str | None = None,
    ) -> None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device} was asked for but torch sees no CUDA device")
        if fp16 and dev.type != "cuda":
            raise BackendError("fp16 needs a CUDA device")
        self.device, self.dtype = dev, torch.float16 if fp16 else torch.float32
        self.model = model.to(dev).eval()
        if fp16:
            self.model.half()
        self.views = ViewTokens.project(
            self.model.decoder, view_feats, precision or ("float16" if fp16 else "float32"), dev
        )

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H, W, 3) -> global features (B, F) float32 on the CPU, per the query encoding."""
        x, n = prepare_queries(images, self.model.cfg.encoder)
        return pool_queries(self.model.encoder(x.to(self.device, self.dtype))[0].float(), n).cpu()

    @torch.inference_mode()
    def search(
        self, query: torch.Tensor, beam: int, top_k: int, prefix: tuple[int, ...] = (), greedy_above: float = 1.0
    ) -> SearchResult:
        """Beam search for query features (B, F) over the map's view tokens, on this backend's device and dtype."""
        x = query.to(self.device, self.dtype)
        return beam_search(self.model.decoder, x, self.views, beam, top_k, prefix, greedy_above)


BACKENDS = ("torch", "onnxruntime", "tensorrt")


def make_backend(
    name: str,
    model: ZoomModel,
    view_feats: np.ndarray,
    device: str = "cpu",
    beam: int = 4,
    fp16: bool = False,
    precision: str | None = None,
    threads: int = 0,
) -> Backend:
    """The backend called ``name``, chosen explicitly (no probing of accelerators).

    ``beam``: the beam width exported backends are built for (TensorRT's decoder batch); ``precision``: how
    the map's view tokens are stored (:data:`~jzi_ros.model.search.PRECISIONS`;
    None: in the precision the decoder computes in, float32 or float16);
    ``threads``: CPU threads (0: the library's default).
    """
    if name == "torch":
        if threads > 0:
            torch.set_num_threads(threads)
        return TorchBackend(model, view_feats, device, fp16, precision)
    if name == "onnxruntime":
        from .exported import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, view_feats, device, beam, threads, precision=precision)
    if name == "tensorrt":
        from .exported import TensorRTBackend

        dev = "cuda" if device == "cpu" else device
        return TensorRTBackend(model, view_feats, dev, beam, fp16, precision=precision)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
