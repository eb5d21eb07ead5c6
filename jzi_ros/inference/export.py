"""Export of a zoom model: encoder and decoder separately; static shapes but for the decoder step's rows.

* ONNX (opset >= 17, TorchScript exporter): ``encoder.onnx`` takes one
  frame's n crops of the query encoding (n, 3, S, S) float in [0, 255] and
  returns its global feature (1, F) and the decoder's first token (1, D);
  ``decoder.onnx`` is one zoom step
  (:meth:`~jzi_ros.model.decoder.ZoomDecoder.step`) for any B rows (exports
  before it took ``beam`` rows at a time):
  level () int64, the step's tokens (B, 1 + V, D) and the key/value
  cache (depth, B, heads, T, D/heads) in, logits (B, g*g) and the updated
  cache out. The same graph serves every level. ``tokens.npz`` holds the
  tokens that start each later step (a table per level), and with a map
  (``--map``) ``view_tokens.npy`` its views projected to the decoder's width:
  with ``export.yaml`` (the region, the calibration, the training settings)
  the folder is all :mod:`.runtime` needs to localize without torch.
* TensorRT through torch-tensorrt: the same two modules compiled for this
  GPU, saved with torch-tensorrt's own serialization in a folder named by the
  GPU, the TensorRT version and the precision, so a stale engine is rebuilt
  rather than loaded.

Each export folder holds ``export.yaml``: the model's identity, the shapes,
and what built it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from ..model import ZoomModel
from ..outputs import PARTIAL_MARKER, check_replaceable, start_partial
from .errors import BackendError
from .runtime import MATCHER_FILE

OPSET = 17


EXPORT_LAYOUT = 4
"""ONNX exports of an older layout are rebuilt beside a checkpoint (3: the decoder step for the
beam's rows only, run padded; 2: the learned matcher's input made outside its graph; 1: no first
token, no action tokens). An export folder of layout 3 still runs on its own."""

TENSORRT_LAYOUT = 3
"""The layout of torch-tensorrt exports (a fixed batch of the beam's rows), rebuilt beside a checkpoint when older."""


def layout(fmt: str) -> int:
    """The current layout of an export of format ``fmt`` (onnx or tensorrt)."""
    return TENSORRT_LAYOUT if fmt == "tensorrt" else EXPORT_LAYOUT


def query_crops(model: ZoomModel) -> int:
    """Crops n per frame of the model's query encoding: the exported encoder's batch."""
    return 1 if model.cfg.encoder.query == "single" else 2


class QueryEncoderExport(nn.Module):
    """The encoder as exported: one frame's n crops -> its global feature (their mean) and first token.

    Build it with ``.eval()``: exporters restore the wrapper's own training
    mode afterwards, recursively, which would leave the encoder's batch norm
    in training mode.
    """

    def __init__(self, model: ZoomModel) -> None:
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops (n, 3, S, S) float in [0, 255] -> global feature (1, F) and the decoder's first token (1, D)."""
        query = self.encoder(images)[0].mean(0, keepdim=True)  # as pool_queries, for one frame
        return query, self.decoder.query_token(query)


class DecoderStepExport(nn.Module):
    """The decoder as exported: one zoom step (:meth:`~jzi_ros.model.decoder.ZoomDecoder.step`)."""

    def __init__(self, model: ZoomModel) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, level, tokens, keys, values):
        """(level, tokens, keys, values) -> (logits, keys, values)."""
        return self.decoder.step(level, tokens, keys, values)


DECODER_INPUTS = ("level", "tokens", "keys", "values")
DECODER_OUTPUTS = ("logits", "new_keys", "new_values")
DECODER_ROWS = {"tokens": {0: "rows"}, "keys": {1: "rows"}, "values": {1: "rows"}}
DECODER_ROWS |= {"logits": {0: "rows"}, "new_keys": {1: "rows"}, "new_values": {1: "rows"}}
"""The step graph's axis of rows (beam paths), any length: a level with fewer paths (the root's one, or
greedy-until-unsure's) costs less. TensorRT builds it at ``beam`` rows."""


def example_inputs(model: ZoomModel, beam: int, device: str = "cpu", dtype=torch.float32):
    """Inputs of the exported shapes, to trace with: ``(crops, (level, tokens, keys, values))``.

    Crops (n, 3, S, S) in [0, 255]; the last level (int64 scalar; any level
    traces the same graph), tokens (beam, 1 + V, D) and a random key/value
    cache, all but the level in ``dtype``.
    """
    cfg = model.cfg.decoder
    s = model.cfg.encoder.image_px
    crops = torch.rand(query_crops(model), 3, s, s, device=device, dtype=dtype) * 255
    level = torch.tensor(cfg.levels - 1, device=device)
    tokens = torch.randn(beam, cfg.step_len, cfg.dim, device=device, dtype=dtype)
    keys = torch.randn(cfg.cache_shape(beam), device=device, dtype=dtype)
    return crops, (level, tokens, keys, torch.randn_like(keys))


def export_meta(model: ZoomModel, fmt: str, beam: int, **extra) -> dict:
    """Contents of ``export.yaml``: format, model identity, beam, shapes, region, torch version and ``extra``."""
    cfg = model.cfg.decoder
    return {
        "format": fmt,
        "layout": layout(fmt),
        "identity": model.identity(),
        "beam": beam,
        "image_px": model.cfg.encoder.image_px,
        "query": model.cfg.encoder.query,
        "feat_dim": cfg.feat_dim,
        "dim": cfg.dim,
        "levels": cfg.levels,
        "view_tokens": cfg.view_tokens,
        "actions": cfg.actions,
        "cache": [int(v) for i, v in enumerate(cfg.cache_shape(1)) if i != 1],
        "decoder": "step",
        "query_crops": query_crops(model),
        "region": dict(model.cfg.region),
        "general": model.cfg.general,
        "digest": model.digest(),
        "torch": str(torch.__version__),
        **extra,
    }


@torch.no_grad()
def action_tokens(model: ZoomModel) -> np.ndarray:
    """(L, A, D) float32: row ``level`` the tokens that start zoom step ``level`` after each child (row 0 zeros)."""
    cfg = model.cfg.decoder
    table = np.zeros((cfg.levels, cfg.actions, cfg.dim), np.float32)
    for level in range(1, cfg.levels):
        table[level] = model.decoder.action_token(level, torch.arange(cfg.actions)).float().numpy()
    return table


@torch.no_grad()
def map_view_tokens(model: ZoomModel, view_feats: np.ndarray) -> np.ndarray:
    """A map's view tokens (N, V, D) float32 for this model (:class:`~jzi_ros.model.search.ViewTokens`)."""
    from ..model.search import ViewTokens

    return ViewTokens.project(model.decoder, view_feats, "float32").tokens.numpy()


def read_meta(folder: Path) -> dict | None:
    """The ``export.yaml`` of an export folder; None when the folder holds none."""
    path = folder / "export.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _finish(tmp: Path, out: Path, meta: dict) -> Path:
    (tmp / "export.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (tmp / PARTIAL_MARKER).unlink()
    if out.exists():
        check_replaceable(out, "export.yaml", "model export")
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def export_onnx(
    model: ZoomModel,
    out: str | Path,
    beam: int = 4,
    opset: int = OPSET,
    extra: dict | None = None,
    view_feats: np.ndarray | None = None,
    map_grid: dict | None = None,
) -> Path:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``tokens.npz`` and ``export.yaml`` into ``out``.

    ``extra``: the checkpoint's calibration and training settings (``calibration``,
    ``train_config``), kept so the export localizes on its own; ``view_feats``: a map's
    features (N, 1 + g*g, F) for this model, whose view tokens are written too, with
    ``map_grid`` (the map's grid) named in ``export.yaml``.
    """
    import onnx

    out = Path(out)
    tmp = start_partial(out.with_name(out.name + ".partial"))
    model = model.cpu().float().eval()
    images, dec_inputs = example_inputs(model, max(beam, 2))  # traced at 2 rows or more: none taken for a constant
    with torch.no_grad():
        torch.onnx.export(
            QueryEncoderExport(model).eval(),
            (images,),
            tmp / "encoder.onnx",
            opset_version=opset,
            input_names=["crops"],
            output_names=["query", "first_token"],
            dynamo=False,
        )
        torch.onnx.export(
            DecoderStepExport(model).eval(),
            dec_inputs,
            tmp / "decoder.onnx",
            opset_version=opset,
            input_names=list(DECODER_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            dynamic_axes=DECODER_ROWS,
            dynamo=False,
        )
    for name in ("encoder.onnx", "decoder.onnx"):
        onnx.checker.check_model(str(tmp / name))
    np.savez(tmp / "tokens.npz", actions=action_tokens(model))
    kept = {k: v for k, v in (extra or {}).items() if k in ("calibration", "train_config")}
    if (extra or {}).get("matcher"):  # the learned matcher's network, run by ONNX Runtime whatever the backend
        from ..model.descriptor import export_descriptor

        export_descriptor(extra["matcher"], tmp / MATCHER_FILE, opset)  # type: ignore[index]
        onnx.checker.check_model(str(tmp / MATCHER_FILE))
        stored = extra["matcher"]  # type: ignore[index]
        kept["matcher"] = {"file": MATCHER_FILE, "config": dict(stored["config"]), "checks": stored.get("checks")}
    if view_feats is not None:
        np.save(tmp / "view_tokens.npy", map_view_tokens(model, view_feats))
        kept["map"] = dict(map_grid or {})
    return _finish(tmp, out, export_meta(model, "onnx", beam, opset=opset, onnx=onnx.__version__, **kept))


def export_for_map(checkpoint: str | Path, map_dir: str | Path | None, out: str | Path, beam: int = 4) -> Path:
    """``jzi export --format onnx [--map]``: a checkpoint exported with its calibration and a map's view tokens.

    The folder localizes on that map without torch (:mod:`.runtime`); ``map_dir`` None: no view tokens.
    The map's own calibration for the model (``jzi calibrate``), when it has one, replaces the checkpoint's.
    """
    from ..geo import MapDir
    from ..localizer.calibration import map_calibration
    from ..localizer.index import zoomable
    from ..model import load_checkpoint

    model, extra = load_checkpoint(checkpoint)
    feats, grid = None, None
    if map_dir is not None:
        mapdir = MapDir(map_dir)
        model = zoomable(mapdir, model)
        feats, grid = mapdir.load_features(model.feature_identity()), mapdir.grid.to_dict()
        calibration = map_calibration(mapdir, extra, model.digest(), model.cfg.general)  # the map's own, if any
        extra = {**extra, "calibration": calibration.to_dict()}
    return export_onnx(model, out, beam=beam, extra=extra, view_feats=feats, map_grid=grid)


def tensorrt_key(fp16: bool) -> str:
    """Folder name of an engine: GPU, compute capability, TensorRT version, precision."""
    import tensorrt

    gpu = torch.cuda.get_device_name().replace(" ", "_")
    cap = "".join(str(v) for v in torch.cuda.get_device_capability())
    return f"{gpu}-sm{cap}-trt{tensorrt.__version__}-{'fp16' if fp16 else 'fp32'}"


def export_tensorrt(model: ZoomModel, out: str | Path, beam: int = 4, fp16: bool = False) -> Path:
    """Compile encoder and decoder with torch-tensorrt for this GPU and save them.

    Saved with torch-tensorrt's ``save`` (exported-program format) under
    ``out/<gpu>-sm<capability>-trt<version>-<precision>/`` (:func:`tensorrt_key`).
    """
    try:
        import torch_tensorrt
    except ImportError:
        raise BackendError("torch-tensorrt is not installed (pip install torch-tensorrt matching your torch)") from None
    if not torch.cuda.is_available():
        raise BackendError("TensorRT export needs a CUDA GPU")
    folder = Path(out) / tensorrt_key(fp16)
    tmp = folder.with_name(folder.name + ".partial")
    start_partial(tmp)
    dtype = torch.float16 if fp16 else torch.float32
    model = model.cuda().eval().to(dtype)
    images, dec_inputs = example_inputs(model, beam, "cuda", dtype)
    precisions = {torch.float16, torch.float32} if fp16 else {torch.float32}
    with torch.no_grad():
        enc = torch_tensorrt.compile(
            QueryEncoderExport(model).eval(),
            ir="dynamo",
            inputs=[images],
            enabled_precisions=precisions,
            use_explicit_typing=False,
        )
        torch_tensorrt.save(enc, str(tmp / "encoder.ep"), inputs=[images])
        dec = torch_tensorrt.compile(
            DecoderStepExport(model).eval(),
            ir="dynamo",
            inputs=list(dec_inputs),
            enabled_precisions=precisions,
            use_explicit_typing=False,
        )
        torch_tensorrt.save(dec, str(tmp / "decoder.ep"), inputs=list(dec_inputs))
    import tensorrt

    meta = export_meta(
        model,
        "tensorrt",
        beam,
        fp16=fp16,
        gpu=torch.cuda.get_device_name(),
        tensorrt=tensorrt.__version__,
        torch_tensorrt=torch_tensorrt.__version__,
    )
    return _finish(tmp, folder, meta)
