"""Flat retrieval, the baseline the zoom is measured against: the same encoder, nearest terminal view.

As Sample4Geo-style systems place a frame: its global feature and every
terminal view's are mapped into one embedding space and the frame goes to
the nearest view. Here the encoder is the zoom model's own, frozen, so the
comparison is at an equal encoder: only two linear heads (frame, view) are
trained, with a cross-entropy over all the map's terminal views (InfoNCE in
which every other view is a negative), on frames of the map's own raster,
as many as the zoom model was trained on. The search is one product with
every terminal view and a top-k; its cost grows with the map, where the
zoom's stays a few decoder steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .errors import EvaluationError

EMBED_DIM = 128
"""Width of the shared embedding (the zoom decoder's default width)."""


@dataclass
class FlatRetrieval:
    """Two linear heads into a shared unit-length embedding and the map's terminal views embedded.

    ``views`` (T, D) the terminal views' embeddings in the map's order; ``scale`` the learned inverse
    temperature that turns cosine similarities into logits; ``frames`` how many frames trained the heads
    and ``trained_on`` what they were.
    """

    query_head: nn.Linear
    views: torch.Tensor
    scale: float
    frames: int = 0
    trained_on: str = ""

    @classmethod
    def fit(
        cls,
        query_feats: torch.Tensor,
        labels: np.ndarray,
        view_feats: torch.Tensor,
        epochs: int = 60,
        batch: int = 256,
        seed: int = 0,
        trained_on: str = "",
    ) -> FlatRetrieval:
        """Train the heads on frames' features (N, F) whose terminal views are ``labels`` (N,).

        Args:
            query_feats: The frames' global features under the frozen encoder.
            labels: Each frame's terminal view number (0 .. T-1).
            view_feats: Every terminal view's global feature (T, F), in the map's order.
            epochs: Passes over the frames.
            batch: Frames per step.
            seed: Seed of the heads' initialization and the batches' order.
            trained_on: What the frames are, for the report.

        Raises:
            EvaluationError: No frames, or labels outside the map's terminal views.
        """
        labels = np.asarray(labels, np.int64)
        if len(labels) == 0 or len(labels) != len(query_feats):
            raise EvaluationError(f"flat retrieval needs frames with labels (got {len(query_feats)}, {len(labels)})")
        if labels.min() < 0 or labels.max() >= len(view_feats):
            raise EvaluationError(f"terminal view labels must be 0 to {len(view_feats) - 1}")
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        feat_dim = query_feats.shape[1]
        q_head, v_head = nn.Linear(feat_dim, EMBED_DIM), nn.Linear(feat_dim, EMBED_DIM)
        log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        params = [*q_head.parameters(), *v_head.parameters(), log_scale]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
        x, y, v = query_feats.float(), torch.from_numpy(labels), view_feats.float()
        steps = epochs * ((len(x) + batch - 1) // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=gen)
                for i in range(0, len(x), batch):
                    idx = order[i : i + batch]
                    q = F.normalize(q_head(x[idx]), dim=1)
                    views = F.normalize(v_head(v), dim=1)
                    logits = log_scale.exp().clamp(max=100) * q @ views.T
                    loss = F.cross_entropy(logits, y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
        with torch.no_grad():
            views = F.normalize(v_head(v), dim=1)
        return cls(q_head.eval(), views, float(log_scale.detach().exp().clamp(max=100)), len(x), trained_on)

    def embed(self, query_feats: torch.Tensor) -> torch.Tensor:
        """Frames' global features (N, F) -> unit embeddings (N, D)."""
        with torch.no_grad():
            return F.normalize(self.query_head(query_feats.float()), dim=1)

    def search(self, embedded: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Embedded frames (N, D) -> the ``top_k`` nearest terminal views (N, K) and their softmax probabilities."""
        with torch.no_grad():
            logits = self.scale * embedded @ self.views.T
            probs = logits.softmax(1)
            top, idx = probs.topk(min(top_k, probs.shape[1]), dim=1)
        return idx.numpy(), top.numpy()
