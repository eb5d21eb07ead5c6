"""The causal zoom decoder (nanoGPT style): attention -> MLP -> block -> config -> model.

Token sequence for a grid of L levels and g*g children::

    [query, view_0, act_0, view_1, act_1, ..., view_{L-1}]

``view_k`` is the overhead view of the cell chosen so far at level k. With
``tokens="cls"`` (the paper) it is one token, the view's global feature, and
the logits over the g*g children are read from it. With ``tokens="children"``
it is a block of 1 + g*g tokens: the global feature, then one token per child
(the view's patch tokens pooled over that child's area, plus an embedding of
the child's place in the grid); the logit of child c is read from its own
token. Attention is causal between blocks and full inside a view's block.

The decoder always runs on the full, fixed-length sequence: when zooming, the
views and actions not yet chosen are zeros, which causality keeps from
touching the logits of earlier levels. A fixed shape exports cleanly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .errors import ModelError


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, T, C) tokens, restricted by a boolean attention mask."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attend over tokens x (B, T, C) where mask (T, T) bool is True -> (B, T, C)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)  # 3 x (B, T, C)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))  # (B, T, C)


class MLP(nn.Module):
    """Feed-forward layer: Linear to ``ratio`` x the width, GELU, Linear back, dropout."""

    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to tokens x (..., C) -> (..., C)."""
        return self.net(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention, then MLP, each residual: tokens x (B, T, C), mask (T, T) bool -> (B, T, C)."""
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder size and the grid it zooms through.

    ``feat_dim``: encoder feature width; ``grid``: g; ``levels``: L;
    ``tokens``: "cls" (one token per view) or "children" (1 + g*g per view).
    """

    feat_dim: int
    grid: int = 4
    levels: int = 4
    tokens: str = "children"
    dim: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.tokens not in ("cls", "children"):
            raise ModelError(f"decoder tokens must be 'cls' or 'children', not {self.tokens!r}")
        if self.dim % self.heads:
            raise ModelError(f"decoder width {self.dim} is not divisible by {self.heads} heads")

    @property
    def actions(self) -> int:
        """Number of children of a cell (g*g): the logits per level."""
        return self.grid * self.grid

    @property
    def view_tokens(self) -> int:
        """Tokens V in one view block: 1 with "cls", 1 + g*g with "children"."""
        return 1 if self.tokens == "cls" else 1 + self.actions

    @property
    def seq_len(self) -> int:
        """Sequence length T: the query, L view blocks and the L-1 actions between them."""
        return 1 + self.levels * self.view_tokens + (self.levels - 1)

    def view_start(self, level: int) -> int:
        """Sequence position of the first token of level ``level``'s view block."""
        return 1 + level * (self.view_tokens + 1)

    def to_dict(self) -> dict:
        """The config's fields as a plain dict, as a checkpoint stores them."""
        return asdict(self)


def attention_mask(cfg: DecoderConfig) -> torch.Tensor:
    """(T, T) bool, True where attention is allowed: causal, and full inside a view block."""
    t = cfg.seq_len
    block = torch.arange(t)
    for k in range(cfg.levels):
        s = cfg.view_start(k)
        block[s : s + cfg.view_tokens] = s
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) | (block[:, None] == block[None, :])


class ZoomDecoder(nn.Module):
    """(query (B, F), views (B, L, V, F), actions (B, L-1)) -> logits (B, L, g*g)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.query_in = nn.Sequential(nn.LayerNorm(cfg.feat_dim), nn.Linear(cfg.feat_dim, d))
        self.view_in = nn.Sequential(nn.LayerNorm(cfg.feat_dim), nn.Linear(cfg.feat_dim, d))
        self.action_emb = nn.Embedding(cfg.actions, d)
        self.level_emb = nn.Embedding(cfg.levels, d)
        self.slot_emb = nn.Embedding(cfg.view_tokens, d)  # place inside a view block: global, child 0..g*g-1
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.seq_len, d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.actions if cfg.tokens == "cls" else 1)
        self.register_buffer("mask", attention_mask(cfg), persistent=False)
        nn.init.normal_(self.pos_emb, std=0.02)

    def forward(self, query: torch.Tensor, views: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, g*g) over each level's children from query (B, F), views (B, L, V, F), actions (B, L-1)."""
        cfg = self.cfg
        b = query.shape[0]
        slots = self.slot_emb.weight[None]  # (1, V, D)
        parts = [self.query_in(query)[:, None]]  # (B, 1, D)
        for k in range(cfg.levels):
            parts.append(self.view_in(views[:, k]) + slots + self.level_emb.weight[k])  # (B, V, D)
            if k < cfg.levels - 1:
                parts.append(self.action_emb(actions[:, k])[:, None] + self.level_emb.weight[k])  # (B, 1, D)
        x = torch.cat(parts, dim=1) + self.pos_emb  # (B, T, D)
        for block in self.blocks:
            x = block(x, self.mask)
        x = self.ln_f(x)
        logits = []
        for k in range(cfg.levels):
            s = cfg.view_start(k)
            if cfg.tokens == "cls":
                logits.append(self.head(x[:, s]))  # (B, g*g)
            else:
                logits.append(self.head(x[:, s + 1 : s + 1 + cfg.actions]).squeeze(-1))  # (B, g*g)
        return torch.stack(logits, dim=1).reshape(b, cfg.levels, cfg.actions)  # (B, L, g*g)
