"""The zoom model: causality, search, checkpoints, weights, map features."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch

from jzi_ros.model import (
    PACKAGED_WEIGHTS,
    CheckpointError,
    DecoderConfig,
    Encoder,
    EncoderConfig,
    ModelConfig,
    WeightsError,
    ZoomDecoder,
    ZoomModel,
    beam_search,
    load_backbone_weights,
    load_checkpoint,
    path_log_probs,
    save_checkpoint,
)

TINY = dict(feat_dim=24, grid=2, levels=3, dim=32, depth=2, heads=4, dropout=0.0)


def _decoder(tokens: str, seed: int = 0) -> ZoomDecoder:
    torch.manual_seed(seed)
    return ZoomDecoder(DecoderConfig(tokens=tokens, **TINY)).eval()


def _inputs(cfg: DecoderConfig, batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, cfg.feat_dim, generator=g)
    views = torch.randn(batch, cfg.levels, cfg.view_tokens, cfg.feat_dim, generator=g)
    acts = torch.randint(0, cfg.actions, (batch, cfg.levels - 1), generator=g)
    return query, views, acts


@pytest.mark.parametrize("tokens", ["cls", "children"])
def test_decoder_is_causal_later_tokens_do_not_change_earlier_logits(tokens):
    dec = _decoder(tokens)
    query, views, acts = _inputs(dec.cfg)
    base = dec(query, views, acts)
    for level in range(1, dec.cfg.levels):
        v2, a2 = views.clone(), acts.clone()
        v2[:, level:] = torch.randn_like(v2[:, level:])
        a2[:, level - 1 :] = (a2[:, level - 1 :] + 1) % dec.cfg.actions
        out = dec(query, v2, a2)
        assert torch.allclose(out[:, :level], base[:, :level], atol=1e-6)
        assert not torch.allclose(out[:, level:], base[:, level:], atol=1e-4)  # ... and later ones do change


def test_children_inside_a_view_see_each_other():
    dec = _decoder("children")
    query, views, acts = _inputs(dec.cfg)
    base = dec(query, views, acts)
    v2 = views.clone()
    v2[:, 0, -1] = torch.randn_like(v2[:, 0, -1])  # the last child token of the first view
    out = dec(query, v2, acts)
    assert not torch.allclose(out[:, 0, 0], base[:, 0, 0], atol=1e-6)  # the first child's logit sees it


def _map_feats(cfg: DecoderConfig, seed: int = 2) -> torch.Tensor:
    n = sum(cfg.actions**k for k in range(cfg.levels))
    return torch.randn(n, 1 + cfg.actions, cfg.feat_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tokens", ["cls", "children"])
def test_beam_of_one_is_greedy_decoding(tokens):
    dec = _decoder(tokens)
    feats = _map_feats(dec.cfg)
    query = _inputs(dec.cfg, batch=8)[0]
    res = beam_search(dec, query, feats, beam=1, top_k=1)
    # greedy by hand: at each level the arg-max child given the chosen prefix
    for q in range(8):
        path = []
        for _level in range(dec.cfg.levels):
            best, best_lp = None, -1e9
            for a in range(dec.cfg.actions):
                cand = path + [a] + [0] * (dec.cfg.levels - len(path) - 1)
                lp = torch.log_softmax(
                    _logits_for(dec, query[q : q + 1], feats, torch.tensor([cand]))[0, len(path)], -1
                )[a]
                if lp > best_lp:
                    best, best_lp = a, lp
            path.append(best)
        assert res.paths[q, 0].tolist() == path


def _logits_for(dec, query, feats, paths):
    from jzi_ros.model import teacher_inputs

    views, acts = teacher_inputs(feats, paths, dec.cfg)
    return dec(query, views, acts)


@pytest.mark.parametrize("tokens", ["cls", "children"])
def test_a_beam_keeping_every_path_ranks_every_cell_by_its_path_probability(tokens):
    dec = _decoder(tokens)
    cfg = dec.cfg
    feats = _map_feats(cfg)
    query = _inputs(cfg, batch=4)[0]
    wide = cfg.actions ** (cfg.levels - 1)  # B >= g^(2(L-1)) keeps every prefix
    every = cfg.actions**cfg.levels
    res = beam_search(dec, query, feats, beam=wide, top_k=every)
    all_paths = torch.tensor(list(itertools.product(range(cfg.actions), repeat=cfg.levels)))
    for q in range(4):
        lp = path_log_probs(dec, query[q : q + 1].expand(every, -1), feats, all_paths)
        order = lp.argsort(descending=True)
        assert torch.equal(res.paths[q], all_paths[order])
        assert torch.allclose(res.log_probs[q], lp[order], atol=1e-5)
        assert torch.allclose(res.probs[q], torch.softmax(lp[order], 0), atol=1e-5)
        assert res.probs[q].sum() == pytest.approx(1.0, abs=1e-5)


def test_a_narrow_beam_returns_normalized_top_k():
    dec = _decoder("children")
    res = beam_search(dec, _inputs(dec.cfg, batch=2)[0], _map_feats(dec.cfg), beam=2, top_k=5)
    assert res.paths.shape == (2, 5, 3)
    assert (res.probs[:, :-1] >= res.probs[:, 1:]).all()
    assert (res.probs.sum(1) <= 1.0 + 1e-6).all()


def _small_model(name="tf_efficientnet_lite0", image_px=64) -> ZoomModel:
    enc = EncoderConfig(name=name, image_px=image_px, pooling="mean")
    dec = DecoderConfig(feat_dim=1280, grid=2, levels=2, dim=32, depth=1, heads=4)
    region = {"center_lat": 47.0, "center_lon": 8.0, "size_m": 100.0, "grid": 2, "levels": 2}
    return ZoomModel(ModelConfig(enc, dec, region))


def test_checkpoint_round_trips_config_weights_and_identity(tmp_path):
    model = _small_model()
    load_backbone_weights(model.encoder, PACKAGED_WEIGHTS)
    path = save_checkpoint(tmp_path / "m.pt", model, {"note": "x"})
    again, extra = load_checkpoint(path)
    assert extra == {"note": "x"}
    assert again.cfg == model.cfg
    assert again.identity() == model.identity()
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    img = np.random.default_rng(0).integers(0, 255, (2, 80, 100, 3), dtype=np.uint8)
    model.eval()
    assert torch.allclose(model.encode(list(img))[0], again.encode(list(img))[0])


def test_checkpoints_written_before_the_query_rename_still_load(tmp_path):
    model = _small_model()
    path = save_checkpoint(tmp_path / "m.pt", model, {})
    state = torch.load(path, weights_only=True)
    state["decoder"] = {k.replace("query_in", "ground_in"): v for k, v in state["decoder"].items()}
    assert any(k.startswith("ground_in.") for k in state["decoder"])
    torch.save(state, path)
    again, _ = load_checkpoint(path)
    assert torch.equal(again.decoder.query_in[1].weight, model.decoder.query_in[1].weight)


class _RecordingDecoder:
    """A decoder that is no nn.Module: the search needs only its config and one call."""

    def __init__(self, decoder: ZoomDecoder) -> None:
        self.cfg, self.decoder, self.calls = decoder.cfg, decoder, 0

    def __call__(self, query: torch.Tensor, views: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.decoder(query, views, actions)


def test_search_runs_any_decoder_with_a_config_and_a_call():
    dec = _decoder("children")
    feats = _map_feats(dec.cfg)
    query = _inputs(dec.cfg, batch=2)[0]
    wrapped = _RecordingDecoder(dec)
    res = beam_search(wrapped, query, feats, beam=3, top_k=2)
    assert wrapped.calls == dec.cfg.levels
    assert torch.equal(res.paths, beam_search(dec, query, feats, beam=3, top_k=2).paths)


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such model"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a jzi checkpoint: .* cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a jzi_ros model"):
        load_checkpoint(tmp_path / "other.pt")


def test_packaged_efficientnet_weights_load_by_order_and_classify(tmp_path):
    enc = Encoder(EncoderConfig(name="tf_efficientnet_lite0", pooling="mean"))
    load_backbone_weights(enc, PACKAGED_WEIGHTS)
    sd = torch.load(__import__("jzi_ros.model.encoder", fromlist=["x"]).packaged_weights_path(), weights_only=True)
    assert torch.equal(enc.backbone.conv_stem.weight, sd["_conv_stem.weight"])
    assert torch.equal(enc.backbone.bn2.running_var, sd["_bn1.running_var"])
    with pytest.raises(WeightsError, match="fits efficientnet_lite0"):
        load_backbone_weights(Encoder(EncoderConfig(name="resnet18")), PACKAGED_WEIGHTS)


def test_dinov2_style_weights_load_with_position_embedding_resampled(tmp_path):
    """An official-layout DINOv2 ViT-S/14 file (518 px grid, mask token) loads
    into the 224 px encoder; a ViT-B file is refused with what differs."""
    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=518)
    sd = dict(src.state_dict())
    sd["mask_token"] = torch.zeros(1, 384)
    torch.save(sd, tmp_path / "dinov2_vits14.pth")
    enc = Encoder(EncoderConfig(name="vit_small_patch14_dinov2", image_px=224))
    load_backbone_weights(enc, tmp_path / "dinov2_vits14.pth")
    assert enc.backbone.pos_embed.shape == (1, 1 + 16 * 16, 384)
    assert torch.equal(enc.backbone.blocks[3].attn.qkv.weight, sd["blocks.3.attn.qkv.weight"])
    pooled, children = enc(torch.zeros(1, 3, 224, 224))
    assert pooled.shape == (1, 384) and children.shape == (1, 16, 384)
    from safetensors.torch import save_file

    big = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, img_size=224)
    save_file(big.state_dict(), str(tmp_path / "vitb.safetensors"))
    with pytest.raises(WeightsError, match="do not fit vit_small_patch14_dinov2"):
        load_backbone_weights(enc, tmp_path / "vitb.safetensors")
    with pytest.raises(WeightsError, match="no such weights"):
        load_backbone_weights(enc, tmp_path / "missing.pth")


@pytest.mark.parametrize("h, w, g", [(7, 7, 4), (16, 16, 4), (2, 2, 2), (5, 9, 3)])
def test_child_tokens_pool_each_childs_area_like_adaptive_pooling(h, w, g):
    from jzi_ros.model.encoder import child_pool_matrix

    x = torch.randn(2, 8, h, w)
    expected = torch.nn.functional.adaptive_avg_pool2d(x, (g, g)).flatten(2).transpose(1, 2)
    assert torch.allclose(torch.einsum("bdn,cn->bcd", x.flatten(2), child_pool_matrix(h, w, g)), expected, atol=1e-6)
