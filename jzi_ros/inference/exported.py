"""Backends that run exported models: ONNX Runtime and TensorRT (torch-tensorrt).

Both run the encoder as exported and the decoder with a fixed batch (the
beam width); the beam search itself is the same code as in PyTorch. The
export is made next to the checkpoint on first use (``MODEL.onnx-bB`` or
``MODEL.trt-bB/<gpu>-sm<capability>-trt<version>-<precision>``) and rebuilt when it belongs to
another model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..model import SearchResult, ZoomModel, beam_search
from ..model.encoder import pool_queries, prepare_queries
from ..model.search import as_features
from .errors import BackendError
from .export import export_onnx, export_tensorrt, read_meta, tensorrt_key

log = logging.getLogger(__name__)


class FixedBatchDecoder:
    """Calls a fixed-batch decoder for any number of rows, padding the last chunk."""

    def __init__(self, cfg, beam: int, run) -> None:
        self.cfg, self.beam, self.run = cfg, beam, run

    def __call__(self, query: torch.Tensor, views: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, g*g) for any B rows, run ``beam`` rows at a time; the last chunk repeats its last row."""
        out = []
        for i in range(0, query.shape[0], self.beam):
            g, v, a = query[i : i + self.beam], views[i : i + self.beam], actions[i : i + self.beam]
            m = g.shape[0]
            if m < self.beam:
                pad = self.beam - m
                g, v, a = (torch.cat([x, x[-1:].expand(pad, *x.shape[1:])]) for x in (g, v, a))
            out.append(self.run(g, v, a)[:m])
        return torch.cat(out)


def is_stale(folder: Path, model: ZoomModel, beam: int) -> bool:
    """True when ``folder`` holds no export of this model (identity) for this beam width."""
    meta = read_meta(folder)
    return meta is None or meta.get("identity") != model.identity() or meta.get("beam") != beam


def _artifacts(model: ZoomModel, suffix: str) -> Path:
    source = getattr(model, "source", None)
    if source is None:
        raise BackendError("exported backends need a model loaded from a checkpoint file")
    return Path(source).with_name(Path(source).name + suffix)


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU (or its CUDA / TensorRT execution providers)."""

    name = "onnxruntime"

    def __init__(
        self,
        model: ZoomModel,
        view_feats: np.ndarray,
        device: str = "cpu",
        beam: int = 4,
        threads: int = 0,
        folder: Path | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from None
        self.model = model
        folder = folder or _artifacts(model, f".onnx-b{beam}")
        if is_stale(folder, model, beam):
            log.info("exporting %s to ONNX in %s", getattr(model, "source", "the model"), folder)
            export_onnx(model, folder, beam=beam)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            have = ort.get_available_providers()
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]
            if not wanted:
                raise BackendError(f"onnxruntime here has no GPU execution provider (has {', '.join(have)})")
            providers = wanted + providers
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), opts, providers=providers)
        decoder = ort.InferenceSession(str(folder / "decoder.onnx"), opts, providers=providers)

        def run(g, v, a):
            out = decoder.run(None, {"query": g.numpy(), "views": v.numpy(), "actions": a.numpy()})[0]
            return torch.from_numpy(out)

        self.decoder = FixedBatchDecoder(model.cfg.decoder, beam, run)
        self.feats = as_features(view_feats)

    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H, W, 3) -> global features (B, F) float32 on the CPU, one encoder run per crop."""
        x, n = prepare_queries(images, self.model.cfg.encoder)
        rows = [self.encoder.run(["pooled"], {"images": x[i : i + 1].numpy()})[0] for i in range(len(x))]
        return pool_queries(torch.from_numpy(np.concatenate(rows)), n)

    def search(self, query: torch.Tensor, beam: int, top_k: int, prefix: tuple[int, ...] = ()) -> SearchResult:
        """Beam search for query features (B, F) with the ONNX decoder, in float32."""
        return beam_search(self.decoder, query.float(), self.feats, beam, top_k, prefix)


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
            log.info("building TensorRT engines in %s (minutes, once per GPU and precision)", engine)
            export_tensorrt(model, root, beam=beam, fp16=fp16)
        self.dtype = torch.float16 if fp16 else torch.float32
        self.encoder = torch.export.load(str(engine / "encoder.ep")).module()
        decoder = torch.export.load(str(engine / "decoder.ep")).module()
        self.decoder = FixedBatchDecoder(
            model.cfg.decoder,
            beam,
            lambda g, v, a: decoder(g.cuda().to(self.dtype), v.cuda().to(self.dtype), a.cuda()).float(),
        )
        self.feats = as_features(view_feats, "cuda", self.dtype)

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames (H, W, 3) -> global features (B, F) float32 on the CPU, one engine run per crop."""
        x, n = prepare_queries(images, self.model.cfg.encoder)
        x = x.cuda().to(self.dtype)
        return pool_queries(torch.cat([self.encoder(x[i : i + 1])[0].float() for i in range(len(x))]), n).cpu()

    @torch.inference_mode()
    def search(self, query: torch.Tensor, beam: int, top_k: int, prefix: tuple[int, ...] = ()) -> SearchResult:
        """Beam search for query features (B, F) with the TensorRT decoder engine, on the GPU."""
        return beam_search(self.decoder, query.cuda().to(self.dtype), self.feats, beam, top_k, prefix)
