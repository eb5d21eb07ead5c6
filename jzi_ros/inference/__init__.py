"""Inference backends behind one interface: PyTorch, ONNX Runtime, TensorRT."""

from .backend import BACKENDS, Backend, TorchBackend, make_backend
from .errors import BackendError

__all__ = ["BACKENDS", "Backend", "BackendError", "TorchBackend", "make_backend"]
