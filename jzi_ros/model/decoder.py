"""The causal zoom decoder (nanoGPT style): attention -> MLP -> block -> config -> model.

Token sequence for a grid of L levels and g*g children::

    [query, view_0, act_0, view_1, act_1, ..., view_{L-1}]

``view_k`` is the overhead view of the cell chosen so far at level k. With
``tokens="cls"`` (the paper) it is one token, the view's global feature, and
the logits over the g*g children are read from it. With ``tokens="children"``
it is a block of 1 + g*g tokens: the global feature, then one token per child
(the view's patch tokens pooled over that child's area, plus an embedding of
the child's place in the grid); the logit of child c is read from its own
token. ``tokens="views"`` is the same block with each child's token taken
from the child's own view (its global feature), as flat retrieval compares a
frame with every terminal cell's own view (the map's features differ,
:func:`~jzi_ros.localizer.index.index_map`), and the logit of child c adds the
product of its final token with the query, as retrieval scores a view by its
product with the frame. The query enters that product as the first block's
attention value of the query token, which the key/value cache holds at every
level. ``tokens="match"`` keeps the sequence of ``"cls"`` (one token per
view) and scores each child by the product of its token (pooled from the
view's patches, as with ``"children"``) with the view's final token: the
children's tokens never pass through the blocks, so a step costs what a CLS
step costs. Attention is causal between blocks and full inside a view's block.

Training runs the full sequence (:meth:`ZoomDecoder.forward`, teacher
forcing). Zooming runs one level per :meth:`ZoomDecoder.step`: the level's
chunk of 1 + V tokens (the query or the action just taken, then the view
block) attends to a key/value cache of the chunks before it, so each step
computes only its new tokens. The cache has the full sequence's fixed length
(unwritten places are masked), so the step has one static shape for every
level and exports as one graph. The map's view tokens enter the decoder
already projected to its width (:meth:`ZoomDecoder.view_embedding`, done
once per map by :class:`~.search.ViewTokens`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import cast

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

    def step(
        self, x: torch.Tensor, mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], place: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend from new tokens x (B, n, C) over the cache with their own keys written in.

        ``cache``: keys and values (B, H, T, C/H) of the whole sequence, zeros
        where not yet written (so writing is adding); ``place`` (T, n):
        one-hot, where each new token goes; ``mask`` (n, T): the full mask's
        rows of the new tokens. Returns (B, n, C) and the updated cache.
        """
        b, n, c = x.shape
        q, k, v = (z.view(b, n, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        keys, values = cache[0] + place @ k, cache[1] + place @ v  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, c)), (keys, values)


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

    def step(
        self, x: torch.Tensor, mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], place: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward` for new tokens x (B, n, C) against a key/value cache (see :meth:`SelfAttention.step`)."""
        y, cache = self.attn.step(self.ln1(x), mask, cache, place)
        x = x + y
        return x + self.mlp(self.ln2(x)), cache


TOKENS = ("children", "cls", "views", "match")
"""A view's tokens (:attr:`DecoderConfig.tokens`), the default first."""


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder size and the grid it zooms through.

    ``feat_dim``: encoder feature width; ``grid``: g; ``levels``: L;
    ``tokens``: "cls" (one token per view), "children" (1 + g*g per view, the
    children's tokens pooled from the view's patches), "views" (1 + g*g, the
    children's tokens from their own views) or "match" (one token per view in
    the sequence; the children's pooled tokens matched with its final token).
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
        if self.tokens not in TOKENS:
            raise ModelError(f"decoder tokens must be one of {', '.join(TOKENS)}, not {self.tokens!r}")
        if self.dim % self.heads:
            raise ModelError(f"decoder width {self.dim} is not divisible by {self.heads} heads")

    @property
    def actions(self) -> int:
        """Number of children of a cell (g*g): the logits per level."""
        return self.grid * self.grid

    @property
    def view_tokens(self) -> int:
        """Tokens V in one view block as the map gives it: 1 with "cls", 1 + g*g otherwise."""
        return 1 if self.tokens == "cls" else 1 + self.actions

    @property
    def block_tokens(self) -> int:
        """Tokens of a view block in the sequence: 1 with "cls" and "match", V otherwise."""
        return 1 if self.tokens in ("cls", "match") else self.view_tokens

    @property
    def step_places(self) -> int:
        """Sequence places one zoom step fills: the query or the action just taken, then the view's block."""
        return 1 + self.block_tokens

    @property
    def step_len(self) -> int:
        """Tokens n given to one zoom step: the query or the action just taken, then a view block."""
        return 1 + self.view_tokens

    @property
    def seq_len(self) -> int:
        """Sequence length T: the query, L view blocks and the L-1 actions between them."""
        return 1 + self.levels * self.block_tokens + (self.levels - 1)

    def view_start(self, level: int) -> int:
        """Sequence position of the first token of level ``level``'s view block."""
        return 1 + level * self.step_places

    def cache_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the key (or value) cache of :meth:`ZoomDecoder.step`: (depth, B, heads, T, dim / heads)."""
        return (self.depth, batch, self.heads, self.seq_len, self.dim // self.heads)

    def to_dict(self) -> dict:
        """The config's fields as a plain dict, as a checkpoint stores them."""
        return asdict(self)


def attention_mask(cfg: DecoderConfig) -> torch.Tensor:
    """(T, T) bool, True where attention is allowed: causal, and full inside a view block."""
    t = cfg.seq_len
    block = torch.arange(t)
    for k in range(cfg.levels):
        s = cfg.view_start(k)
        block[s : s + cfg.block_tokens] = s
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
        self.head = nn.Linear(d, cfg.actions if cfg.block_tokens == 1 else 1)
        if cfg.tokens in ("views", "match"):  # a child's logit also matches its token with the frame or the view
            self.match_query, self.match_view = nn.Linear(d, d), nn.Linear(d, d)
        mask = attention_mask(cfg)
        self.register_buffer("mask", mask, persistent=False)
        # per zoom step k: the sequence places of its n tokens, one-hot (T, n), and their mask rows (n, T)
        n = cfg.step_places
        places = torch.arange(cfg.levels)[:, None] * n + torch.arange(n)  # (L, n)
        self.register_buffer("step_place", (torch.arange(cfg.seq_len)[:, None] == places[:, None]).float(), False)
        self.register_buffer("step_mask", mask[places], persistent=False)
        nn.init.normal_(self.pos_emb, std=0.02)

    def first_levels(self, levels: int) -> ZoomDecoder:
        """This decoder over its first ``levels`` levels only (a map of fewer levels), with the same weights.

        A zoom step at level k reads only the sequence before it, whose places
        and embeddings do not depend on how many levels follow, so the first
        ``levels`` steps of the shorter decoder are this one's.

        Raises:
            ModelError: ``levels`` is not 1 to this decoder's levels.
        """
        if not 1 <= levels <= self.cfg.levels:
            raise ModelError(f"a decoder of {self.cfg.levels} levels zooms through 1 to them, not {levels}")
        if levels == self.cfg.levels:
            return self
        cut = ZoomDecoder(replace(self.cfg, levels=levels))
        state = self.state_dict()
        state["level_emb.weight"] = state["level_emb.weight"][:levels]
        state["pos_emb"] = state["pos_emb"][:, : cut.cfg.seq_len]
        cut.load_state_dict(state, strict=True)
        return cut.to(self.pos_emb.device).train(self.training)

    def view_embedding(self, feats: torch.Tensor, level: int) -> torch.Tensor:
        """Decoder input tokens (n, V, D) of level-``level`` views from their features (n, V, F).

        The projection, the slot, level and position embeddings: what a view
        contributes to the sequence before the first block, the same at every
        query (so :class:`~.search.ViewTokens` computes it once per map). With
        ``tokens="match"`` the children's tokens stay out of the sequence and
        have no position.
        """
        cfg = self.cfg
        s, n = cfg.view_start(level), cfg.block_tokens
        pos = F.pad(self.pos_emb[0, s : s + n], (0, 0, 0, cfg.view_tokens - n))
        return self.view_in(feats) + self.slot_emb.weight + self.level_emb.weight[level] + pos

    def forward(self, query: torch.Tensor, views: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, g*g) over each level's children from query (B, F), views (B, L, V, F), actions (B, L-1)."""
        cfg = self.cfg
        b = query.shape[0]
        parts = [self.query_in(query)[:, None] + self.pos_emb[:, :1]]  # (B, 1, D)
        outside = []  # per level: the children's tokens kept out of the sequence (B, V - block, D)
        for k in range(cfg.levels):
            tokens = self.view_embedding(views[:, k], k)  # (B, V, D)
            parts.append(tokens[:, : cfg.block_tokens])
            outside.append(tokens[:, cfg.block_tokens :])
            if k < cfg.levels - 1:
                p = cfg.view_start(k + 1) - 1
                act = self.action_emb(actions[:, k : k + 1]) + self.level_emb.weight[k]  # taken at level k
                parts.append(act + self.pos_emb[:, p : p + 1])  # (B, 1, D)
        x = torch.cat(parts, dim=1)  # (B, T, D)
        first = x[:, 0]
        for block in self.blocks:
            x = block(x, self.mask)
        x = self.ln_f(x)
        frame = self._frame_value(first) if cfg.tokens == "views" else None
        starts = [cfg.view_start(k) for k in range(cfg.levels)]
        logits = [self._logits(x[:, s : s + cfg.block_tokens], frame, c) for s, c in zip(starts, outside, strict=True)]
        return torch.stack(logits, dim=1).reshape(b, cfg.levels, cfg.actions)  # (B, L, g*g)

    def _frame_value(self, token: torch.Tensor) -> torch.Tensor:
        """The first block's attention value (B, D) of the query token (B, D): what the cache holds of the query."""
        block = cast(Block, self.blocks[0])
        return block.attn.qkv(block.ln1(token))[:, 2 * self.cfg.dim :]

    def _logits(self, block: torch.Tensor, frame: torch.Tensor | None, outside: torch.Tensor) -> torch.Tensor:
        """Logits (B, g*g) over the children from a view block's final tokens (B, block_tokens, D).

        ``frame`` (B, D): the query's value (:meth:`_frame_value`), which the
        children's tokens are matched with (``tokens="views"``; None otherwise).
        ``outside`` (B, g*g or 0, D): the children's tokens that
        ``tokens="match"`` matches with the view's final token.
        """
        if self.cfg.tokens == "cls":
            return self.head(block[:, 0])
        if self.cfg.tokens == "match":
            return self.head(block[:, 0]) + self._match(outside, block[:, 0])
        logits = self.head(block[:, 1:]).squeeze(-1)
        return logits if frame is None else logits + self._match(block[:, 1:], frame)

    def _match(self, children: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Each child's product (B, g*g) of its token (B, g*g, D) with ``token`` (B, D), as retrieval scores a view."""
        match = self.match_view(children) @ self.match_query(token)[..., None]  # (B, g*g, 1)
        return match.squeeze(-1) / math.sqrt(self.cfg.dim)

    def query_token(self, query: torch.Tensor) -> torch.Tensor:
        """The first token (B, D) of the sequence, from query features (B, F): zoom step 0 starts with it."""
        return self.query_in(query) + self.pos_emb[0, 0]

    def action_token(self, level: int, action: torch.Tensor) -> torch.Tensor:
        """The token (B, D) of the child (B,) taken at level ``level`` - 1: zoom step ``level`` starts with it."""
        place = self.cfg.view_start(level) - 1
        return self.action_emb(action) + self.level_emb.weight[level - 1] + self.pos_emb[0, place]

    def step(
        self, level: torch.Tensor, tokens: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One zoom step: the logits over level ``level``'s children and the cache with this step written in.

        ``level``: int64 scalar tensor k; ``tokens`` (B, n, D): the step's
        tokens, :meth:`query_token` (k = 0) or :meth:`action_token`, then the
        chosen level-k cell's view block (:meth:`view_embedding`); ``keys`` and
        ``values`` (depth, B, heads, T, D/heads): the cache of the steps
        before, zeros elsewhere (zeros at level 0). Every input has the same
        shape at every level, so the step exports as one graph.

        Returns:
            Logits (B, g*g), keys and values of the same shape as given.
        """
        places, masks = cast(torch.Tensor, self.step_place), cast(torch.Tensor, self.step_mask)
        place, mask = places[level].to(tokens.dtype), masks[level]  # (T, n), (n, T)
        n = self.cfg.step_places
        x, outside = tokens[:, :n], tokens[:, n:]
        new_keys, new_values = [], []
        for i, blk in enumerate(self.blocks):
            x, (k, v) = cast(Block, blk).step(x, mask, (keys[i], values[i]), place)
            new_keys.append(k)
            new_values.append(v)
        keys, values = torch.stack(new_keys), torch.stack(new_values)
        frame = values[0, :, :, 0].reshape(x.shape[0], -1) if self.cfg.tokens == "views" else None  # (B, D)
        return self._logits(self.ln_f(x[:, 1:]), frame, outside), keys, values
