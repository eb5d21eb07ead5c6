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
with the encoder and decoder. The export takes the grey image itself: its
input channels (:class:`GreyFeatures`) are computed inside the graph, which
describes a 210 px crop in two thirds of the time NumPy's input and the
network took together.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..localizer.matchers import LEARNED_INPUTS, DenseMatcher, MatcherConfig, learned_matcher, stored_window
from .errors import CheckpointError

MAX_WINDOW = 31
"""The widest normalization window [px]: its mirrored border needs half of it (images: 16 px or more)."""


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, H, W) -> the mean over a ``window`` px square around each pixel, borders mirrored as OpenCV's.

    :func:`jzi_ros.localizer.matchers.local_mean` in PyTorch (two one-dimensional means: cheaper in
    ONNX Runtime than one square).
    """
    r = window // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    return F.avg_pool2d(F.avg_pool2d(x, (window, 1), stride=1), (1, window), stride=1)


@dataclass(frozen=True)
class DescriptorConfig:
    """The network's size and normalization.

    ``width``: channels of the hidden layers; ``channels``: descriptor channels per pixel;
    ``window``: the side [px] of the square around each pixel whose statistics (its mean grey,
    spread and norm) normalize the input and the descriptors, so that a pixel's descriptor depends
    only on ground near it and the map's descriptors can be computed once for every crop (odd, 3
    to :data:`MAX_WINDOW`); 0 for the whole image's statistics (every matcher trained before
    windows: :meth:`from_dict` reads those so).
    """

    width: int = 16
    channels: int = 8
    window: int = 17

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise CheckpointError(f"the descriptor has 1 channel or more, not {self.channels}")
        if self.width < 1:
            raise CheckpointError(f"the descriptor's hidden layers have 1 channel or more, not {self.width}")
        if self.window and not (3 <= self.window <= MAX_WINDOW and self.window % 2):
            raise CheckpointError(f"the descriptor's window is 0 or odd from 3 to {MAX_WINDOW} px, not {self.window}")

    @classmethod
    def from_dict(cls, d: dict) -> DescriptorConfig:
        """The config a checkpoint stored (:func:`dataclasses.asdict`); one stored before windows has none (0)."""
        return cls(**({"window": 0} | {k: int(v) for k, v in d.items() if k in cls.__dataclass_fields__}))


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
        # as CFOG: a tenth of the mean norm (the image's or the window's) in the denominator keeps flat ground near zero
        mean = local_mean(norm, self.cfg.window) if self.cfg.window else norm.mean(dim=(2, 3), keepdim=True)
        return y / (norm + torch.clamp(mean * 0.1, min=1e-3))


class GreyFeatures(nn.Module):
    """(H, W) grey image -> (1, 10, H, W): :func:`~jzi_ros.localizer.matchers.learned_input` as convolutions.

    The same numbers to float rounding: Sobel gradients and the Gaussian with OpenCV's mirrored
    border (ONNX ``reflect`` padding), the orientation smoothing as a 1x1 convolution, the
    normalization by the mean norm, then the grey image standardized (by the whole image's
    statistics, or with ``window`` by those of the square around each pixel).
    """

    sobel: torch.Tensor
    orient: torch.Tensor
    blur_y: torch.Tensor
    blur_x: torch.Tensor
    across: torch.Tensor

    def __init__(
        self, bins: int = MatcherConfig.bins, sigma_px: float = MatcherConfig.sigma_px, window: int = 0
    ) -> None:
        super().__init__()
        self.window = window
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("sobel", torch.stack([gx, gx.T])[:, None])  # (2, 1, 3, 3): d/dx, d/dy
        angles = torch.arange(bins, dtype=torch.float64) * math.pi / bins
        self.register_buffer("orient", torch.stack([angles.cos(), angles.sin()], 1).float()[..., None, None])
        # OpenCV's own kernel for GaussianBlur(sigma) on float images (its size: 8 sigma + 1, odd)
        kernel = torch.from_numpy(cv2.getGaussianKernel(round(sigma_px * 8 + 1) | 1, sigma_px, cv2.CV_32F)[:, 0])
        self.radius = len(kernel) // 2
        self.register_buffer("blur_y", kernel.view(1, 1, -1, 1).repeat(bins, 1, 1, 1))
        self.register_buffer("blur_x", kernel.view(1, 1, 1, -1).repeat(bins, 1, 1, 1))
        eye = torch.eye(bins)  # circular [1, 2, 1] / 4 across orientation
        self.register_buffer("across", ((eye.roll(1, 0) + 2 * eye + eye.roll(-1, 0)) / 4)[..., None, None])
        self.bins = bins

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """The network's input channels of one grey image."""
        g = grey[None, None]
        r = self.radius
        grad = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="reflect"), self.sobel)
        chans = torch.abs(F.conv2d(grad, self.orient))
        chans = F.conv2d(F.pad(chans, (0, 0, r, r), mode="reflect"), self.blur_y, groups=self.bins)
        chans = F.conv2d(F.pad(chans, (r, r, 0, 0), mode="reflect"), self.blur_x, groups=self.bins)
        chans = F.conv2d(chans, self.across)
        norm = torch.sqrt((chans * chans).sum(1, keepdim=True))
        if self.window:
            chans = chans / (norm + torch.clamp(local_mean(norm, self.window) * 0.1, min=1e-3))
            mean = local_mean(g, self.window)
            spread = torch.sqrt(torch.clamp(local_mean(g * g, self.window) - mean * mean, min=0.0))
            return torch.cat([chans, (g - mean) / (spread + 1.0)], 1)
        chans = chans / (norm + torch.clamp(norm.mean() * 0.1, min=1e-3))
        centred = g - g.mean()
        return torch.cat([chans, centred / (torch.sqrt((centred * centred).mean()) + 1.0)], 1)


class GreyDescriptor(nn.Module):
    """(H, W) grey image -> (H, W, C) descriptors: the graph :func:`export_descriptor` writes."""

    def __init__(self, net: DescriptorNet) -> None:
        super().__init__()
        self.features, self.net = GreyFeatures(window=net.cfg.window), net

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Descriptors of one grey image, channels last as the dense matcher reads them."""
        return self.net(self.features(grey))[0].permute(1, 2, 0)


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
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's learned matcher does not rebuild: {exc}") from None
    return net.eval()


def torch_runner(net: DescriptorNet) -> Callable[[np.ndarray], np.ndarray]:
    """A function from the network's NumPy input to its NumPy output, run by PyTorch (training and tests)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


def export_descriptor(stored: dict, path: Path | io.BytesIO, opset: int = 17) -> Path | io.BytesIO:
    """Write the learned matcher as ONNX: input ``grey`` (H, W), output ``descriptors`` (H, W, C), any H and W.

    Exports made before the input channels moved into the graph take ``grey_features`` (1, 10, H, W)
    and give (1, C, H, W); :func:`jzi_ros.inference.runtime.onnx_matcher_runner` runs either.
    """
    graph = GreyDescriptor(load_descriptor(stored)).eval()
    axes = {0: "height", 1: "width"}
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (torch.zeros(64, 64),),
            path,  # type: ignore[arg-type]  # a file-like object works as well
            opset_version=opset,
            input_names=["grey"],
            output_names=["descriptors"],
            dynamic_axes={"grey": axes, "descriptors": axes},
            dynamo=False,
        )
    return path


def checkpoint_matcher(stored: dict, config: MatcherConfig = MatcherConfig()) -> DenseMatcher:
    """The learned matcher of a checkpoint's ``matcher`` entry, run by ONNX Runtime as an export's is.

    The same graph and runtime as the export's: identical outputs, and several times faster on a CPU
    than PyTorch's dilated convolutions. ``config``: the dense matcher's settings (its patch grid).
    """
    from ..inference.runtime import onnx_matcher_runner

    buffer = io.BytesIO()
    export_descriptor(stored, buffer)
    run = onnx_matcher_runner(buffer.getvalue())
    return learned_matcher(run, stored.get("checks"), config, window=stored_window(stored))
