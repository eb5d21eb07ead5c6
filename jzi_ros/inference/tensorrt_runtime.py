"""TensorRT engines built from an export's ONNX graphs and run without torch (``tensorrt`` and ``cuda-python``).

As Isaac ROS serves TensorRT: an engine is built once per device from the
export's ONNX graphs with TensorRT's own builder (fp16 when asked, an
optimization profile of the graphs' fixed shapes, the decoder's rows fixed at
the export's beam), written to an engine cache
inside the export (:func:`engine_folder`: one folder per GPU, compute
capability, TensorRT version and precision, so another GPU or TensorRT builds
its own), and loaded by the TensorRT runtime on the next start; the
``force_engine_update`` setting rebuilds it. A cached engine is rebuilt when
the ONNX graph it was built from changed (:func:`needs_build`). Buffers live
in CUDA memory allocated with ``cuda-python``; the beam search between the
decoder steps is :mod:`.runtime`'s. torch-tensorrt from a checkpoint stays as
the other compile path (:mod:`.exported`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np
import yaml

from ..outputs import build_lock
from .errors import BackendError
from .runtime import ExportedModel, GraphBackend, fixed_batch

log = logging.getLogger(__name__)

GRAPHS = ("encoder", "decoder")
ENGINE_META = "engine.yaml"
WORKSPACE_BYTES = 1 << 30


def engine_folder(export: Path, gpu: str, capability: tuple[int, int], trt_version: str, fp16: bool) -> Path:
    """Where the engines of ``export`` for this GPU, TensorRT version and precision are cached."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", gpu).strip("_") or "gpu"
    return export / "engines" / f"{name}-sm{capability[0]}{capability[1]}-trt{trt_version}-{'fp16' if fp16 else 'fp32'}"


def graph_digest(onnx_file: Path) -> str:
    """The sha256 of an ONNX graph's bytes: what its engine was built from."""
    return hashlib.sha256(onnx_file.read_bytes()).hexdigest()


def needs_build(folder: Path, export: Path, force: bool = False) -> bool:
    """Whether the engines in ``folder`` must be (re)built: asked to, missing, or built from other graphs."""
    if force:
        return True
    meta_file = folder / ENGINE_META
    if not meta_file.is_file() or not all((folder / f"{g}.engine").is_file() for g in GRAPHS):
        return True
    built = yaml.safe_load(meta_file.read_text()) or {}
    return any(built.get("graphs", {}).get(g) != graph_digest(export / f"{g}.onnx") for g in GRAPHS)


def built_since(folder: Path, when: float) -> bool:
    """Whether the engines in ``folder`` were built at or after ``when`` (seconds since the epoch)."""
    meta_file = folder / ENGINE_META
    return meta_file.is_file() and meta_file.stat().st_mtime >= when


def _cuda():
    """cuda-python's runtime bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` of older releases)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendError("cuda-python is not installed (pip install cuda-python)") from None
    return cudart


def _check(result):
    """The value of a cuda-python call, which returns (error, value...); a failure raises."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(
            "tensorrt is not installed (pip install tensorrt cuda-python; a CUDA GPU is needed)"
        ) from None
    return trt


def device_of(device: str) -> int:
    """The CUDA device number of ``cuda`` or ``cuda:N``."""
    if device in ("cuda", "gpu"):
        return 0
    match = re.fullmatch(r"cuda:(\d+)", device)
    if match is None:
        raise BackendError(f"the tensorrt backend runs on a CUDA device (cuda or cuda:N), not {device!r}")
    return int(match.group(1))


def build_engines(export: Path, folder: Path, fp16: bool, rows: int) -> Path:
    """Build the engines of an export's graphs into ``folder`` with TensorRT's builder; returns ``folder``.

    ``rows``: the decoder step's rows (its beam) where its graph takes any number.
    """
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    tmp = folder.with_name(folder.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    digests = {}
    for graph in GRAPHS:
        onnx_file = export / f"{graph}.onnx"
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_file.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {onnx_file}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()  # the graphs' fixed shapes: min = opt = max
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if any(d < 0 for d in shape):  # the step's rows (DECODER_ROWS): built for the beam's
                shape = tuple(rows if d < 0 else d for d in shape)
                tensor.shape = shape
            if len(shape):
                profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        log.info(
            "building the TensorRT engine of %s (%s): minutes, once per GPU", onnx_file, "fp16" if fp16 else "fp32"
        )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT could not build an engine from {onnx_file}")
        (tmp / f"{graph}.engine").write_bytes(bytes(serialized))
        digests[graph] = graph_digest(onnx_file)
    meta = {"graphs": digests, "fp16": fp16, "tensorrt": trt.__version__}
    (tmp / ENGINE_META).write_text(yaml.safe_dump(meta, sort_keys=False))
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
        folder.rmdir()
    tmp.rename(folder)
    return folder


class Engine:
    """A deserialized engine with its input and output tensors in CUDA memory."""

    def __init__(self, path: Path, trt, logger, cudart) -> None:
        self.cudart = cudart
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT cannot load {path}: rebuild it (force_engine_update)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.inputs: list[str] = []
        self.outputs: dict[str, np.ndarray] = {}
        self.buffers: dict[str, int] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype)
            self.buffers[name] = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
            self.context.set_tensor_address(name, self.buffers[name])
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            else:
                self.outputs[name] = host

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """The engine on ``arrays`` (its inputs, in order): its outputs, copied back to the host."""
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in zip(self.inputs, arrays, strict=True):
            host = np.ascontiguousarray(array, dtype=np.dtype(self._dtype(name)))
            _check(cudart.cudaMemcpyAsync(self.buffers[name], host.ctypes.data, host.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT failed to run an engine")
        for name, host in self.outputs.items():
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self.buffers[name], host.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return [host.copy() for host in self.outputs.values()]

    def _dtype(self, name: str):
        import tensorrt as trt

        return trt.nptype(self.engine.get_tensor_dtype(name))


class TensorRTBackend(GraphBackend):
    """An exported model on TensorRT engines built (and cached) from its ONNX graphs; no torch."""

    name = "tensorrt"

    def __init__(
        self,
        exported: ExportedModel,
        views: np.ndarray,
        device: str = "cuda",
        fp16: bool = True,
        force_engine_update: bool = False,
        precision: str = "",
    ) -> None:
        trt, cudart = _tensorrt(), _cuda()
        super().__init__(exported, views, precision)
        number = device_of(device)
        _check(cudart.cudaSetDevice(number))
        props = _check(cudart.cudaGetDeviceProperties(number))
        gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        folder = engine_folder(exported.folder, gpu, (props.major, props.minor), trt.__version__, fp16)
        if needs_build(folder, exported.folder, force_engine_update):
            asked = time.time()
            with build_lock(folder):  # another process may be building them now: then they are current
                forced = force_engine_update and not built_since(folder, asked)  # a rebuild it waited for counts
                if needs_build(folder, exported.folder, forced):
                    build_engines(exported.folder, folder, fp16, int(exported.meta["beam"]))
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine_folder = folder
        self.encoder = Engine(folder / "encoder.engine", trt, logger, cudart)
        decoder = Engine(folder / "decoder.engine", trt, logger, cudart)

        def run(level: int, tokens: np.ndarray, keys: np.ndarray, values: np.ndarray):
            return decoder.run(np.asarray(level, np.int64), tokens, keys, values)

        self.step = fixed_batch(run, int(exported.meta["beam"]))  # type: ignore[method-assign]

    def encode_one(self, crops: np.ndarray) -> list[np.ndarray]:
        """One frame's crops (n, 3, S, S) -> its feature (1, F) and first token (1, D)."""
        return self.encoder.run(crops)
