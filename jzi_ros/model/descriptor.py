"""The learned matcher's descriptor network: a few convolutions over CFOG and the grey image.

:class:`DescriptorNet` maps the learned matcher's input
(:func:`jzi_ros.localizer.matchers.learned_input`: nine CFOG channels and the
standardized grey image, at the registration's resolution) to a handful of
channels per pixel, normalized per pixel as CFOG is, so the dense matcher's
correlation, patches and checks run on them unchanged. Three 3x3
convolutions with growing dilation (a receptive field of 15 px) and a
linear shortcut from the input: a network that starts as a projection of
CFOG and learns what stays the same between sources. It is trained by
:mod:`jzi_ros.train.matcher`, stored in the checkpoint under ``matcher``
(:func:`matcher_state`) and exported to ONNX (:func:`export_descriptor`)
with the encoder and decoder.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..localizer.matchers import LEARNED_INPUTS, DenseMatcher, learned_matcher
from .errors import CheckpointError


@dataclass(frozen=True)
class DescriptorConfig:
    """``width``: channels of the hidden layers; ``channels``: descriptor channels per pixel."""

    width: int = 16
    channels: int = 8

    @classmethod
    def from_dict(cls, d: dict) -> DescriptorConfig:
        """The config a checkpoint stored (:func:`dataclasses.asdict`)."""
        return cls(**{k: int(v) for k, v in d.items() if k in cls.__dataclass_fields__})


class DescriptorNet(nn.Module):
    """(B, 10, H, W) inputs (:func:`~jzi_ros.localizer.matchers.learned_input`) -> (B, C, H, W) descriptors."""

    def __init__(self, cfg: DescriptorConfig = DescriptorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.body = nn.Sequential(
            nn.Conv2d(LEARNED_INPUTS, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=4, dilation=4),
            nn.ReLU(),
            nn.Conv2d(w, cfg.channels, 1),
        )
        self.shortcut = nn.Conv2d(LEARNED_INPUTS, cfg.channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors of a batch of inputs."""
        y = self.body(x) + self.shortcut(x)
        norm = torch.sqrt((y * y).sum(1, keepdim=True) + 1e-12)
        # as CFOG: a tenth of the image's mean norm in the denominator keeps flat ground near zero
        eps = torch.clamp(norm.mean(dim=(2, 3), keepdim=True) * 0.1, min=1e-3)
        return y / (norm + eps)


def matcher_state(net: DescriptorNet, report: dict | None = None) -> dict:
    """What a checkpoint stores under ``matcher``: the config, the weights and how it was trained.

    :func:`jzi_ros.train.matcher.train_matcher` adds ``checks``, the peak ratios fitted for it.
    """
    return {"config": asdict(net.cfg), "state": {k: v.detach().cpu() for k, v in net.state_dict().items()}} | (
        {"report": report} if report else {}
    )


def load_descriptor(stored: dict) -> DescriptorNet:
    """The network a checkpoint's ``matcher`` entry holds, in eval mode."""
    try:
        net = DescriptorNet(DescriptorConfig.from_dict(stored["config"]))
        net.load_state_dict(stored["state"], strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's learned matcher does not rebuild: {exc}") from None
    return net.eval()


def torch_runner(net: DescriptorNet) -> Callable[[np.ndarray], np.ndarray]:
    """A function from the network's NumPy input to its NumPy output, run by PyTorch (training and tests)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


def export_descriptor(stored: dict, path: Path | io.BytesIO, opset: int = 17) -> Path | io.BytesIO:
    """Write the learned matcher's network as ONNX (input ``grey_features``, any height and width)."""
    net = load_descriptor(stored)
    example = torch.zeros(1, LEARNED_INPUTS, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            path,  # type: ignore[arg-type]  # a file-like object works as well
            opset_version=opset,
            input_names=["grey_features"],
            output_names=["descriptors"],
            dynamic_axes={"grey_features": axes, "descriptors": axes},
            dynamo=False,
        )
    return path


def checkpoint_matcher(stored: dict) -> DenseMatcher:
    """The learned matcher of a checkpoint's ``matcher`` entry, run by ONNX Runtime as an export's is.

    The same graph and runtime as the export's: identical outputs, and several times faster on a CPU
    than PyTorch's dilated convolutions.
    """
    from ..inference.runtime import onnx_matcher_runner

    buffer = io.BytesIO()
    export_descriptor(stored, buffer)
    return learned_matcher(onnx_matcher_runner(buffer.getvalue()), stored.get("checks"))
