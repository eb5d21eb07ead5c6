"""Inference backends behind one interface: PyTorch, ONNX Runtime, TensorRT.

The backends load on first use: an exported model runs on :mod:`.runtime`
(NumPy and ONNX Runtime) without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .errors import BackendError

if TYPE_CHECKING:
    from .backend import BACKENDS, Backend, TorchBackend, make_backend

_LAZY = {"BACKENDS": "backend", "Backend": "backend", "TorchBackend": "backend", "make_backend": "backend"}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["BACKENDS", "Backend", "BackendError", "TorchBackend", "make_backend"]
