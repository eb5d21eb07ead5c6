"""An exported model run without torch: NumPy, OpenCV-free preprocessing and ONNX Runtime.

What the localizer does per frame with an export (``jzi export``): the frame
is resized as the model's training resized it (:func:`resize_antialiased`,
PyTorch's antialiased bilinear, to within float rounding), the encoder graph
gives its feature and the decoder's first token, and the beam search
(:func:`beam_search`, the same algorithm as :func:`jzi_ros.model.search.beam_search`)
runs the one-step decoder graph over the map's view tokens, which the export
holds already projected to the decoder's width. Nothing here imports torch:
a robot's image needs ``onnxruntime`` (or ``tensorrt``) and NumPy.

An export folder holds ``encoder.onnx``, ``decoder.onnx``, ``tokens.npz`` (the
decoder's action tokens per level), ``view_tokens.npy`` (the map's, when made
with ``--map``) and ``export.yaml`` (:class:`ExportedModel`: shapes, the
region, the calibration and the training settings the localizer needs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from ..geo.grid import view_indices
from .errors import BackendError

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "float16", "bfloat16", "int8")
"""How a map's view tokens may be held (bfloat16 only by the PyTorch backends); int8 keeps a scale per token."""
EXPORT_FILE = "export.yaml"
TOKENS_FILE = "tokens.npz"
VIEWS_FILE = "view_tokens.npy"
MIN_DESCRIBED_PX = 5
"""The least side [px] of an image the learned matcher's graph describes (its Gaussian's mirrored border is 4 px)."""
MATCHER_FILE = "matcher.onnx"
"""The learned matcher's network, in an export of a model that has one (``export.yaml`` names it ``matcher``)."""


class Zoomed(NamedTuple):
    """Top-K terminal cells per query, best first, as :class:`~jzi_ros.model.search.SearchResult` but NumPy.

    ``paths`` (Q, K, L) int64; ``probs`` (Q, K) float32; ``log_probs`` (Q, K).
    """

    paths: np.ndarray
    probs: np.ndarray
    log_probs: np.ndarray


def to_numpy(x: Any) -> np.ndarray:
    """A search result's array as NumPy: a torch tensor (any device, floats as float32) or an array."""
    if hasattr(x, "cpu"):  # a torch tensor from the PyTorch or TensorRT backends
        x = x.detach().cpu()
        return x.float().numpy() if x.is_floating_point() else x.numpy()
    return np.asarray(x)


# -- preprocessing -------------------------------------------------------------------------------------------


def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (out, K) of PyTorch's antialiased bilinear resize along one axis.

    The triangle filter widened by the scale when shrinking, each output pixel's weights normalized
    (ATen's ``_compute_indices_min_size_weights_aa``).
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    centre = scale * (np.arange(out_size) + 0.5)
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + support + 0.5).astype(np.int64), in_size)
    j = lo[:, None] + np.arange(int((hi - lo).max()))
    w = np.clip(1.0 - np.abs((j - centre[:, None] + 0.5) * invscale), 0.0, None) * (j < hi[:, None])
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    return np.minimum(j, in_size - 1), w.astype(np.float32)


def resize_antialiased(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W, C) image resized to (height, width, C) float32 as ``F.interpolate(antialias=True)`` does."""
    x = np.asarray(image, np.float32)
    rows, wy = _taps(x.shape[0], height)
    x = np.einsum("ok,okwc->owc", wy, x[rows])
    cols, wx = _taps(x.shape[1], width)
    return np.einsum("pk,opkc->opc", wx, x[:, cols])


def prepare_queries(images: list[np.ndarray], image_px: int, query: str) -> tuple[np.ndarray, int]:
    """Camera frames -> (B * n, 3, S, S) float32 encoder input in [0, 255] and n, the crops per frame.

    As :func:`jzi_ros.model.encoder.prepare_queries`: "single" takes the centre
    square resized to S, "halves" resizes to S x 2S and takes the two halves.
    """
    s, out = image_px, []
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3:
            raise BackendError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
        if query == "single":
            h, w = img.shape[:2]
            side = min(h, w)
            img = img[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
            x = resize_antialiased(img, s, s) if side != s else img.astype(np.float32)
            out.append(x.transpose(2, 0, 1))
        else:
            x = resize_antialiased(img, s, 2 * s).transpose(2, 0, 1)
            out += [x[..., :s], x[..., s:]]
    n = 1 if query == "single" else 2
    return np.clip(np.stack(out), 0, 255).astype(np.float32, copy=False), n


# -- the map's view tokens ------------------------------------------------------------------------------------


class ViewTable:
    """A map's view tokens (N, V, D) held in ``precision`` (float32, float16 or int8 with a scale per token)."""

    def __init__(self, tokens: np.ndarray, precision: str = "float32") -> None:
        if precision not in ("float32", "float16", "int8"):
            raise BackendError(f"an exported model holds view tokens in float32, float16 or int8, not {precision!r}")
        tokens = np.asarray(tokens, np.float32)
        self.precision, self.scale = precision, None
        if precision == "int8":
            self.scale = np.maximum(np.abs(tokens).max(-1, keepdims=True), 1e-12) / 127.0
            self.tokens = np.round(tokens / self.scale).astype(np.int8)
        else:
            self.tokens = tokens.astype(precision)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (...) -> tokens (..., V, D) float32."""
        rows = self.tokens[index].astype(np.float32, copy=False)
        return rows * self.scale[index] if self.scale is not None else rows

    @property
    def nbytes(self) -> int:
        """Memory the table holds [bytes]."""
        return int(self.tokens.nbytes + (0 if self.scale is None else self.scale.nbytes))


# -- the search -----------------------------------------------------------------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _top(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest per row (Q, M), largest first, and their indices (ties: the lower index first)."""
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return x[np.arange(x.shape[0])[:, None], idx], idx


def beam_search(
    model: ExportedModel,
    step,
    first: np.ndarray,
    views: ViewTable,
    beam: int,
    top_k: int,
    prefix: tuple[int, ...] = (),
    greedy_above: float = 1.0,
) -> Zoomed:
    """Zoom from the root (or ``prefix``'s cell) to terminal cells keeping the ``beam`` best paths per level.

    ``step(level, tokens, keys, values) -> (logits, keys, values)`` is one decoder step for any rows;
    ``first`` (Q, D) the queries' first tokens. The algorithm of :func:`jzi_ros.model.search.beam_search`,
    ``greedy_above`` included.
    """
    levels, actions = model.levels, model.actions
    if len(prefix) >= levels:
        raise BackendError(f"prefix {prefix} must be shorter than the {levels} levels")
    q = first.shape[0]
    paths = np.tile(np.asarray(prefix, np.int64), (q, 1))
    keys = np.zeros(model.cache_shape(q), np.float32)
    values = np.zeros_like(keys)
    scores = np.zeros((q, 1), np.float32)
    cand = np.zeros((q, actions), np.float32)
    queries = np.arange(q)[:, None]
    for k in range(levels):
        block = views.take(view_indices(paths[:, :k], actions))  # (rows, V, D)
        tokens = np.empty((block.shape[0], block.shape[1] + 1, block.shape[2]), np.float32)
        tokens[:, 0], tokens[:, 1:] = first, block
        logits, keys, values = step(k, tokens, keys, values)
        if k < len(prefix):  # inside the prior's cell: its logits are not needed
            first = model.action_token(k + 1, paths[:, k])
            continue
        nb = paths.shape[0] // q
        cand = (scores[..., None] + _log_softmax(logits.astype(np.float32)).reshape(q, nb, actions)).reshape(q, -1)
        if k == levels - 1:
            break
        scores, idx = _top(cand, _kept(cand, beam, greedy_above))
        parent = (idx // actions + queries * nb).reshape(-1)
        paths = np.concatenate([paths[parent], (idx % actions).reshape(-1, 1)], axis=1)
        keys, values = keys[:, parent], values[:, parent]
        first = model.action_token(k + 1, paths[:, k])
    shifted = np.exp(cand - cand.max(1, keepdims=True))
    probs = shifted / shifted.sum(1, keepdims=True)
    top, idx = _top(cand, min(top_k, cand.shape[1]))
    nb = paths.shape[0] // q
    parent = idx // actions + queries * nb
    found = np.concatenate([paths[parent], (idx % actions)[..., None]], axis=2)
    return Zoomed(found, probs[queries, idx].astype(np.float32), top)


def _kept(cand: np.ndarray, beam: int, greedy_above: float) -> int:
    """Paths kept at a level: ``beam`` (at most the candidates), or 1 where each query's best holds ``greedy_above``."""
    keep = min(beam, cand.shape[1])
    if keep > 1 and greedy_above < 1.0:
        p = np.exp(cand - cand.max(1, keepdims=True))
        if (p.max(1) / p.sum(1) >= greedy_above).all():
            return 1
    return keep


def fixed_batch(run, rows: int):
    """A step for any number of rows over a graph of ``rows`` rows: chunks, the last padded with its last row."""

    def step(level: int, tokens: np.ndarray, keys: np.ndarray, values: np.ndarray):
        if tokens.shape[0] == rows:  # the beam's rows: the graph's own shape
            return run(level, tokens, keys, values)
        logits, new_keys, new_values = [], [], []
        for i in range(0, tokens.shape[0], rows):
            x, k, v = tokens[i : i + rows], keys[:, i : i + rows], values[:, i : i + rows]
            m = x.shape[0]
            if m < rows:  # the last row repeated
                last = np.minimum(np.arange(rows), m - 1)
                x, k, v = x[last], k[:, last], v[:, last]
            out = run(level, x, k, v)
            logits.append(out[0][:m])
            new_keys.append(out[1][:, :m])
            new_values.append(out[2][:, :m])
        return np.concatenate(logits), np.concatenate(new_keys, axis=1), np.concatenate(new_values, axis=1)

    return step


# -- an export ------------------------------------------------------------------------------------------------


@dataclass
class ExportedModel:
    """What an export folder says about its model (``export.yaml``) and its action tokens (``tokens.npz``)."""

    folder: Path
    meta: dict
    actions_table: np.ndarray  # (L, A, D): row ``level`` the tokens that start step ``level`` (row 0 unused)

    @classmethod
    def load(cls, folder: str | Path) -> ExportedModel:
        """Read an export folder made by ``jzi export --format onnx``.

        Raises:
            BackendError: Not an export folder, or one made before exports were self-contained.
        """
        folder = Path(folder)
        meta_file = folder / EXPORT_FILE
        if not meta_file.is_file():
            raise BackendError(f"{folder} is not a model export (no {EXPORT_FILE}); make one with jzi export")
        meta = yaml.safe_load(meta_file.read_text()) or {}
        if meta.get("format") != "onnx" or not (folder / TOKENS_FILE).is_file() or "region" not in meta:
            raise BackendError(
                f"{folder} is not a self-contained ONNX export (from an older jzi_ros, or not ONNX): "
                "make it again with jzi export --format onnx --map MAP"
            )
        with np.load(folder / TOKENS_FILE) as tokens:
            table = np.asarray(tokens["actions"], np.float32)
        return cls(folder, meta, table)

    @property
    def identity(self) -> dict:
        """The model's identity (:meth:`~jzi_ros.model.ZoomModel.identity`), as the checkpoint's."""
        return dict(self.meta["identity"])

    @property
    def levels(self) -> int:
        """Zoom levels L."""
        return int(self.meta["levels"])

    @property
    def actions(self) -> int:
        """Children per cell, g*g."""
        return int(self.meta["actions"])

    def cache_shape(self, rows: int) -> tuple[int, ...]:
        """Shape of the decoder's key (or value) cache for ``rows`` rows: (depth, rows, heads, T, D / heads)."""
        depth, heads, seq, width = self.meta["cache"]
        return (int(depth), rows, int(heads), int(seq), int(width))

    def action_token(self, level: int, action: np.ndarray) -> np.ndarray:
        """Tokens (B, D) that start step ``level``, from the children (B,) taken at the level before."""
        return self.actions_table[level][np.asarray(action, np.int64)]

    def view_tokens(self) -> np.ndarray:
        """The map's view tokens (N, V, D) float32, memory-mapped.

        Raises:
            BackendError: The export holds none (made without ``--map``).
        """
        path = self.folder / VIEWS_FILE
        if not path.is_file():
            raise BackendError(f"{self.folder} holds no map's view tokens: make it with jzi export --map MAP")
        return np.load(path, mmap_mode="r")


class GraphBackend:
    """An export's two graphs run by some runtime, NumPy between them: the encoding and the beam search.

    A subclass sets ``encode_one(crops) -> (feature (1, F), first token (1, D))`` and ``step`` (one decoder
    step for any rows: the graph's own, or :func:`fixed_batch` over a graph of a fixed number).
    """

    name = "exported"

    def __init__(self, exported: ExportedModel, views: np.ndarray, precision: str = "") -> None:
        self.exported = exported
        self.views = ViewTable(views, precision or "float32")
        self.crops = int(exported.meta["query_crops"])

    def encode_one(self, crops: np.ndarray) -> list[np.ndarray]:
        """One frame's crops (n, 3, S, S) -> its feature (1, F) and first token (1, D)."""
        raise NotImplementedError

    def step(self, level: int, tokens: np.ndarray, keys: np.ndarray, values: np.ndarray):
        """One decoder step for any rows: (logits, keys, values)."""
        raise NotImplementedError

    def encode(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames (H, W, 3) -> features (B, F + D): each frame's global feature and first token."""
        meta = self.exported.meta
        x, n = prepare_queries(images, int(meta["image_px"]), str(meta["query"]))
        return np.concatenate([np.concatenate(self.encode_one(x[i : i + n]), axis=1) for i in range(0, len(x), n)])

    def search(
        self, query: np.ndarray, beam: int, top_k: int, prefix: tuple[int, ...] = (), greedy_above: float = 1.0
    ) -> Zoomed:
        """Beam search for encoded frames (B, F + D) (:meth:`encode`) over the map's view tokens."""
        first = np.asarray(query, np.float32)[:, -int(self.exported.meta["dim"]) :]
        return beam_search(self.exported, self.step, first, self.views, beam, top_k, prefix, greedy_above)


class OnnxBackend(GraphBackend):
    """An exported model on ONNX Runtime (CPU, or its CUDA / TensorRT execution providers)."""

    name = "onnxruntime"

    def __init__(
        self, exported: ExportedModel, views: np.ndarray, device: str = "cpu", threads: int = 0, precision: str = ""
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from None
        super().__init__(exported, views, precision)
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
        # the encoder's threads sleep when it is done instead of spinning: spinning, they took a core from the
        # search that follows (Zurich model on 2 cores: search 13.7 -> 6.5 ms, encoder 10.3 -> 7.7 ms)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        folder = exported.folder
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), opts, providers=providers)
        step_opts = ort.SessionOptions()
        step_opts.intra_op_num_threads = 1  # a step's matrices are a few rows: a second thread costs more than it saves
        decoder = ort.InferenceSession(str(folder / "decoder.onnx"), step_opts, providers=providers)
        names = [i.name for i in decoder.get_inputs()]

        def run(level: int, tokens: np.ndarray, keys: np.ndarray, values: np.ndarray):
            feed = dict(zip(names, (np.asarray(level, np.int64), tokens, keys, values), strict=True))
            return decoder.run(None, feed)

        rows = next(i.shape[0] for i in decoder.get_inputs() if i.name == "tokens")
        if not isinstance(rows, int) and "TensorrtExecutionProvider" in providers:
            rows = int(exported.meta["beam"])  # its engine is built for the shapes it meets: one shape, one engine
        # the rows every step runs (an export of layout 3 fixed them at its beam); None: any number
        self.step_rows: int | None = rows if isinstance(rows, int) else None
        self.step = run if self.step_rows is None else fixed_batch(run, self.step_rows)  # type: ignore[method-assign]

    def encode_one(self, crops: np.ndarray) -> list[np.ndarray]:
        """One frame's crops (n, 3, S, S) -> its feature (1, F) and first token (1, D)."""
        return self.encoder.run(None, {"crops": crops})


def onnx_matcher_runner(source: Path | bytes, threads: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The learned matcher on ONNX Runtime's CPU (for every backend: its inputs are small): grey (H, W) -> (H, W, C).

    ``source``: an export folder (its :data:`MATCHER_FILE`) or the ONNX graph's bytes; ``threads``: 0 for
    ONNX Runtime's choice. A graph of an earlier export (input ``grey_features``) is fed
    :func:`~jzi_ros.localizer.matchers.learned_input` made here.

    Raises:
        BackendError: The folder holds no learned matcher, or onnxruntime is missing.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from None
    graph: str | bytes = source if isinstance(source, bytes) else str(Path(source) / MATCHER_FILE)
    if isinstance(graph, str) and not Path(graph).is_file():
        raise BackendError(f"{graph} does not exist: the export holds no learned matcher")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if name == "grey":

        def run(grey: np.ndarray) -> np.ndarray:
            if min(grey.shape) < MIN_DESCRIBED_PX:  # the graph's mirrored borders need that much image
                raise BackendError(
                    f"the learned matcher describes images of {MIN_DESCRIBED_PX} px or more, not {grey.shape}"
                )
            return session.run(None, {name: np.ascontiguousarray(grey, np.float32)})[0]

        return run

    from ..localizer.matchers import learned_input  # an export of an earlier layout: its input made here

    def run_earlier(grey: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(session.run(None, {name: learned_input(grey)})[0][0].transpose(1, 2, 0))

    return run_earlier
