"""Zooming: greedy and beam search over the cell hierarchy.

Per query the work is L decoder steps over precomputed view features; no
overhead view is encoded at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..geo.grid import view_indices
from .decoder import DecoderConfig
from .errors import ModelError


class StepDecoder(Protocol):
    """What the search needs of a decoder: its config and one call.

    The call is (query (B, F), views (B, L, V, F), actions (B, L-1)) -> logits (B, L, g*g).
    :class:`~.decoder.ZoomDecoder` is one; the exported backends wrap theirs.
    """

    cfg: DecoderConfig

    def __call__(self, query: torch.Tensor, views: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, g*g) for query (B, F), views (B, L, V, F) and actions (B, L-1)."""
        ...


@dataclass
class SearchResult:
    """Top-K terminal cells per query, best first.

    ``paths`` (Q, K, L) actions; ``probs`` (Q, K) probability of each cell,
    normalized over every terminal cell the final beam reached (so they sum to
    at most 1); ``log_probs`` (Q, K) the model's joint log-probability of each path.
    """

    paths: torch.Tensor
    probs: torch.Tensor
    log_probs: torch.Tensor


def as_features(array, device="cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A map's (memory-mapped, read-only) feature array as a tensor of its own."""
    return torch.tensor(np.asarray(array), dtype=dtype, device=device)


def _take(x: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """Pick parent beams (Q, keep) of x: x (Q, nb, ...) -> x (Q, keep, ...)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], parent]


@torch.no_grad()
def beam_search(
    decoder: StepDecoder,
    query: torch.Tensor,
    view_feats: torch.Tensor,
    beam: int = 1,
    top_k: int = 5,
    prefix: tuple[int, ...] = (),
) -> SearchResult:
    """Zoom from the root to terminal cells keeping the ``beam`` best partial paths per level.

    beam=1 is greedy decoding, as in the paper.

    ``query`` (Q, F) query features; ``view_feats`` (N, 1 + g*g, F) the map's
    features in breadth-first view order (global token, then child tokens).
    ``prefix``: start inside that cell (a prior) instead of at the root;
    probabilities are then conditional on it.
    """
    cfg = decoder.cfg
    levels, actions, v = cfg.levels, cfg.actions, cfg.view_tokens
    if len(prefix) >= levels:
        raise ModelError(f"prefix {prefix} must be shorter than the {levels} levels")
    feats = view_feats[:, :v].to(query.dtype)  # (N, V, F)
    q, f = query.shape
    dev = query.device
    paths = torch.tensor(prefix, dtype=torch.long, device=dev).view(1, 1, -1).expand(q, 1, len(prefix)).clone()
    scores = torch.zeros(q, 1, device=dev)
    views = torch.zeros(q, 1, levels, v, f, dtype=query.dtype, device=dev)
    acts = torch.zeros(q, 1, levels - 1, dtype=torch.long, device=dev)
    for k, a in enumerate(prefix):
        views[:, :, k] = feats[view_indices(paths[..., :k], actions)]
        acts[:, :, k] = a
    for k in range(len(prefix), levels):
        nb = paths.shape[1]
        views[:, :, k] = feats[view_indices(paths, actions)]  # (Q, nb, V, F)
        logits = decoder(
            query[:, None].expand(q, nb, f).reshape(q * nb, f),
            views.reshape(q * nb, levels, v, f),
            acts.reshape(q * nb, levels - 1),
        )[:, k]  # (Q*nb, A)
        cand = (scores[..., None] + logits.log_softmax(-1).view(q, nb, actions)).reshape(q, nb * actions)
        if k == levels - 1:
            break
        scores, idx = cand.topk(min(beam, nb * actions), dim=1)  # (Q, keep)
        parent, action = idx // actions, idx % actions
        paths = torch.cat([_take(paths, parent), action[..., None]], dim=2)
        views = _take(views, parent)
        acts = _take(acts, parent)
        acts[:, :, k] = action
    probs = cand.softmax(-1)
    top, idx = cand.topk(min(top_k, cand.shape[1]), dim=1)
    parent, action = idx // actions, idx % actions
    return SearchResult(torch.cat([_take(paths, parent), action[..., None]], dim=2), probs.gather(1, idx), top)


@torch.no_grad()
def search_features(
    decoder: StepDecoder, queries: np.ndarray, view_feats: torch.Tensor, beam: int, top_k: int, batch: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`beam_search` over encoded queries (N, F) in batches of ``batch``, on ``view_feats``' device.

    Returns:
        Terminal paths (N, K, L) and their probabilities (N, K), as NumPy arrays.
    """
    paths, probs = [], []
    for i in range(0, len(queries), batch):
        x = torch.from_numpy(np.asarray(queries[i : i + batch])).float().to(view_feats.device)
        res = beam_search(decoder, x, view_feats, beam=beam, top_k=top_k)
        paths.append(res.paths.cpu().numpy())
        probs.append(res.probs.float().cpu().numpy())
    return np.concatenate(paths), np.concatenate(probs)


def teacher_inputs(
    view_feats: torch.Tensor, paths: torch.Tensor, cfg: DecoderConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Views along given paths and their actions, for teacher forcing.

    ``paths`` (B, L) -> views (B, L, V, F), actions (B, L-1).
    """
    idx = torch.stack([view_indices(paths[:, :k], cfg.actions) for k in range(cfg.levels)], 1)  # (B, L)
    return view_feats[idx][:, :, : cfg.view_tokens], paths[:, : cfg.levels - 1]


@torch.no_grad()
def path_log_probs(
    decoder: StepDecoder, query: torch.Tensor, view_feats: torch.Tensor, paths: torch.Tensor
) -> torch.Tensor:
    """Joint log-probability of full ``paths`` (B, L) for queries ``query`` (B, F)."""
    views, acts = teacher_inputs(view_feats.to(query.dtype), paths, decoder.cfg)
    logp = decoder(query, views, acts).log_softmax(-1)  # (B, L, A)
    return logp.gather(2, paths[..., None]).squeeze(-1).sum(1)
