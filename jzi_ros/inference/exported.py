"""Backends that run exported models from a checkpoint: ONNX Runtime and TensorRT (torch-tensorrt).

Both run the query encoder as exported (one frame's crops at a time) and the
one-step decoder (ONNX Runtime: for any number of rows; torch-tensorrt: a fixed
batch, the beam width) with its key/value cache as inputs and outputs, on the
map's view tokens projected to the decoder's width. ONNX Runtime runs as an
export folder alone does (:mod:`.runtime`, no torch per frame); TensorRT runs
the PyTorch beam search. The export is made next to the checkpoint on first use
(``MODEL.onnx-bB`` or ``MODEL.trt-bB/<gpu>-sm<capability>-trt<version>-<precision>``)
and rebuilt when it belongs to another model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..model import SearchResult, ZoomModel, beam_search
from ..model.encoder import prepare_queries
from ..model.search import ViewTokens
from ..outputs import build_lock
from .errors import BackendError
from .export import export_onnx, export_tensorrt, layout, map_view_tokens, query_crops, read_meta, tensorrt_key
from .runtime import ExportedModel, OnnxBackend

log = logging.getLogger(__name__)


class FixedBatchDecoder:
    """A :class:`~jzi_ros.model.search.StepDecoder` over a fixed-batch step graph, for any number of rows.

    ``run(level, tokens, keys, values) -> (logits, keys, values)`` takes and
    returns ``beam`` rows (the cache's second axis); the last chunk repeats
    its last row. The step's first tokens come from the PyTorch ``decoder``.
    """

    def __init__(self, decoder, beam: int, run) -> None:
        self.cfg, self.beam, self.run = decoder.cfg, beam, run
        self.query_token, self.action_token = decoder.query_token, decoder.action_token

    def step(self, level, tokens, keys, values):
        """:meth:`~jzi_ros.model.decoder.ZoomDecoder.step` for any B rows, ``beam`` rows per run."""
        logits, new_keys, new_values = [], [], []
        for i in range(0, tokens.shape[0], self.beam):
            x, k, v = tokens[i : i + self.beam], keys[:, i : i + self.beam], values[:, i : i + self.beam]
            m = x.shape[0]
            if m < self.beam:
                pad = self.beam - m
                x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
                k, v = (torch.cat([c, c[:, -1:].expand(-1, pad, *c.shape[2:])], dim=1) for c in (k, v))
            out = self.run(level, x, k, v)
            logits.append(out[0][:m])
            new_keys.append(out[1][:, :m])
            new_values.append(out[2][:, :m])
        return torch.cat(logits), torch.cat(new_keys, dim=1), torch.cat(new_values, dim=1)


def is_stale(folder: Path, model: ZoomModel, beam: int) -> bool:
    """True when ``folder`` holds no export of this model (identity) for this beam width and this export layout."""
    meta = read_meta(folder)
    return (
        meta is None
        or meta.get("identity") != model.identity()
        or meta.get("beam") != beam
        or meta.get("decoder") != "step"
        or meta.get("query_crops") != query_crops(model)
        or meta.get("layout") != layout(meta.get("format", ""))
    )


def _artifacts(model: ZoomModel, suffix: str) -> Path:
    source = getattr(model, "source", None)
    if source is None:
        raise BackendError("exported backends need a model loaded from a checkpoint file")
    return Path(source).with_name(Path(source).name + suffix)


class OnnxRuntimeBackend(OnnxBackend):
    """ONNX Runtime from a checkpoint: exported next to it on first use, then run as an export is.

    No torch per frame (:class:`~jzi_ros.inference.runtime.OnnxBackend`); the map's view tokens are projected here.
    """

    def __init__(
        self,
        model: ZoomModel,
        view_feats: np.ndarray,
        device: str = "cpu",
        beam: int = 4,
        threads: int = 0,
        folder: Path | None = None,
        precision: str | None = None,
    ) -> None:
        self.model = model
        folder = folder or _artifacts(model, f".onnx-b{beam}")
        if is_stale(folder, model, beam):
            with build_lock(folder):  # another process may be exporting it now: once it has, it is not stale
                if is_stale(folder, model, beam):
                    log.info("exporting %s to ONNX in %s", getattr(model, "source", "the model"), folder)
                    export_onnx(model, folder, beam=beam)
        super().__init__(
            ExportedModel.load(folder), map_view_tokens(model, view_feats), device, threads, precision or ""
        )


class TensorRTBackend:
    """TensorRT engines built by torch-tensorrt for this GPU (fp32 or fp16)."""

    name = "tensorrt"

    def __init__(
        self,
        model: ZoomModel,
        view_feats: np.ndarray,
        device: str = "cuda",
        beam: int = 4,
        fp16: bool = False,
        folder: Path | None = None,
        precision: str | None = None,
    ) -> None:
        try:
            import torch_tensorrt  # noqa: F401 - registers the TensorRT runtime ops
        except ImportError:
            raise BackendError(
                "torch-tensorrt is not installed (pip install torch-tensorrt matching your torch)"
            ) from None
        if not torch.cuda.is_available():
            raise BackendError("the tensorrt backend needs a CUDA GPU")
        self.model = model
        root = folder or _artifacts(model, f".trt-b{beam}")
        engine = root / tensorrt_key(fp16)
        if is_stale(engine, model, beam):
            with build_lock(engine):  # another process may be building them now: once it has, they are current
                if is_stale(engine, model, beam):
                    log.info("building TensorRT engines in %s (minutes, once per GPU and precision)", engine)
                    export_tensorrt(model, root, beam=beam, fp16=fp16)
        self.dtype = torch.float16 if fp16 else torch.float32
        self.encoder = torch.export.load(str(engine / "encoder.ep")).module()
        decoder = torch.export.load(str(engine / "decoder.ep")).module()
        embeddings = model.decoder.cuda().to(self.dtype)  # the step's first tokens, in the engine's precision
        self.decoder = FixedBatchDecoder(embeddings, beam, decoder)
        tokens = precision or ("float16" if fp16 else "float32")
        self.views = ViewTokens.project(embeddings, view_feats, tokens, "cuda")

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H, W, 3) -> global features (B, F) float32 on the CPU, one engine run per frame."""
        x, n = prepare_queries(images, self.model.cfg.encoder)
        x = x.cuda().to(self.dtype)
        return torch.cat([self.encoder(x[i : i + n])[0].float() for i in range(0, len(x), n)]).cpu()

    @torch.inference_mode()
    def search(
        self, query: torch.Tensor, beam: int, top_k: int, prefix: tuple[int, ...] = (), greedy_above: float = 1.0
    ) -> SearchResult:
        """Beam search for query features (B, F) with the TensorRT decoder step engine, on the GPU."""
        x = query.cuda().to(self.dtype)
        return beam_search(self.decoder, x, self.views, beam, top_k, prefix, greedy_above)
