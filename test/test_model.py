"""The zoom model: causality, search, checkpoints, weights, map features."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch

from jzi_ros.geo.grid import view_indices
from jzi_ros.model import (
    PACKAGED_WEIGHTS,
    CheckpointError,
    DecoderConfig,
    Encoder,
    EncoderConfig,
    ModelConfig,
    ModelError,
    WeightsError,
    ZoomDecoder,
    ZoomModel,
    beam_search,
    load_backbone_weights,
    load_checkpoint,
    path_log_probs,
    save_checkpoint,
)
from jzi_ros.model.search import ViewTokens

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


@pytest.mark.parametrize("tokens", ["cls", "children", "views", "match"])
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


def test_matched_children_score_only_themselves_and_stay_out_of_the_sequence():
    dec = _decoder("match")
    query, views, acts = _inputs(dec.cfg)
    base = dec(query, views, acts)
    v2 = views.clone()
    v2[:, 0, 1 + 3] = torch.randn_like(v2[:, 0, 1 + 3])  # child 3's token, first level
    out = dec(query, v2, acts)
    changed = ~torch.isclose(out, base, atol=1e-6)
    assert changed[:, 0, 3].all()  # that child's logit moves with its token ...
    changed[:, 0, 3] = False
    assert not changed.any()  # ... and nothing else: no other child, no later level
    assert dec.cfg.seq_len == _decoder("cls").cfg.seq_len  # a CLS decoder's sequence


def _map_feats(cfg: DecoderConfig, seed: int = 2) -> torch.Tensor:
    n = sum(cfg.actions**k for k in range(cfg.levels))
    return torch.randn(n, 1 + cfg.actions, cfg.feat_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tokens", ["cls", "children", "views", "match"])
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


@pytest.mark.parametrize("tokens", ["cls", "children", "views", "match"])
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
    """A decoder that is no nn.Module: the search needs only its config and one step."""

    def __init__(self, decoder: ZoomDecoder) -> None:
        self.cfg, self.decoder, self.calls = decoder.cfg, decoder, 0

    def query_token(self, query):
        return self.decoder.query_token(query)

    def action_token(self, level, action):
        return self.decoder.action_token(level, action)

    def step(self, *inputs):
        self.calls += 1
        return self.decoder.step(*inputs)


def test_search_runs_any_decoder_with_a_config_and_a_step():
    dec = _decoder("children")
    feats = _map_feats(dec.cfg)
    query = _inputs(dec.cfg, batch=2)[0]
    wrapped = _RecordingDecoder(dec)
    res = beam_search(wrapped, query, ViewTokens.project(dec, feats), beam=3, top_k=2)
    assert wrapped.calls == dec.cfg.levels
    assert torch.equal(res.paths, beam_search(dec, query, feats, beam=3, top_k=2).paths)


def full_sequence_search(dec: ZoomDecoder, query, feats, beam: int, top_k: int, prefix=()):
    """The search as it was before the key/value cache: every level re-runs the whole fixed-length sequence."""
    cfg = dec.cfg
    levels, actions, v = cfg.levels, cfg.actions, cfg.view_tokens
    feats = feats[:, :v]
    q, f = query.shape
    take = lambda x, parent: x[torch.arange(x.shape[0])[:, None], parent]  # noqa: E731
    paths = torch.tensor(prefix, dtype=torch.long).view(1, 1, -1).expand(q, 1, len(prefix)).clone()
    scores = torch.zeros(q, 1)
    views = torch.zeros(q, 1, levels, v, f)
    acts = torch.zeros(q, 1, levels - 1, dtype=torch.long)
    for k, a in enumerate(prefix):
        views[:, :, k] = feats[view_indices(paths[..., :k], actions)]
        acts[:, :, k] = a
    for k in range(len(prefix), levels):
        nb = paths.shape[1]
        views[:, :, k] = feats[view_indices(paths, actions)]
        logits = dec(
            query[:, None].expand(q, nb, f).reshape(q * nb, f),
            views.reshape(q * nb, levels, v, f),
            acts.reshape(q * nb, levels - 1),
        )[:, k]
        cand = (scores[..., None] + logits.log_softmax(-1).view(q, nb, actions)).reshape(q, nb * actions)
        if k == levels - 1:
            break
        scores, idx = cand.topk(min(beam, nb * actions), dim=1)
        parent, action = idx // actions, idx % actions
        paths = torch.cat([take(paths, parent), action[..., None]], dim=2)
        views, acts = take(views, parent), take(acts, parent)
        acts[:, :, k] = action
    probs = cand.softmax(-1)
    top, idx = cand.topk(min(top_k, cand.shape[1]), dim=1)
    parent, action = idx // actions, idx % actions
    return torch.cat([take(paths, parent), action[..., None]], dim=2), probs.gather(1, idx), top


@pytest.mark.parametrize("tokens", ["cls", "children", "views", "match"])
@pytest.mark.parametrize("beam", [1, 4])
def test_incremental_search_gives_the_full_sequence_paths_and_probabilities(tokens, beam):
    dec = _decoder(tokens)
    feats = _map_feats(dec.cfg)
    query = _inputs(dec.cfg, batch=16)[0]
    for prefix in ((), (1,)):
        res = beam_search(dec, query, ViewTokens.project(dec, feats), beam=beam, top_k=5, prefix=prefix)
        paths, probs, log_probs = full_sequence_search(dec, query, feats, beam, 5, prefix)
        assert torch.equal(res.paths, paths)
        assert torch.allclose(res.probs, probs, atol=1e-5)
        assert torch.allclose(res.log_probs, log_probs, atol=1e-5)


def test_incremental_search_on_a_trained_model_gives_the_full_sequence_answer(trained):
    """No accuracy change: the cache reproduces the full sequence's paths and probabilities to 1e-5."""
    from jzi_ros.geo import MapDir
    from jzi_ros.model.encoder import prepare_queries

    map_dir, model_path, tif = trained
    model, _ = load_checkpoint(model_path)
    feats = torch.from_numpy(np.asarray(MapDir(map_dir).load_features(model.identity())))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(32)]
    with torch.no_grad():
        x, n = prepare_queries(images, model.cfg.encoder)
        query = model.encoder(x)[0].view(-1, n, model.cfg.decoder.feat_dim).mean(1)
    views = ViewTokens.project(model.decoder, feats)
    for beam in (1, 4):
        res = beam_search(model.decoder, query, views, beam=beam, top_k=5)
        paths, probs, _ = full_sequence_search(model.decoder, query, feats, beam, 5)
        assert torch.equal(res.paths, paths)
        assert torch.allclose(res.probs, probs, atol=1e-5), float((res.probs - probs).abs().max())


def test_a_step_computes_only_its_level_and_leaves_the_rest_of_the_cache():
    dec = _decoder("children")
    cfg = dec.cfg
    feats = _map_feats(cfg)
    query = _inputs(cfg, batch=2)[0]
    views = ViewTokens.project(dec, feats)
    keys = torch.zeros(cfg.cache_shape(2))
    block = views.take(torch.zeros(2, dtype=torch.long), torch.float32)
    tokens = torch.cat([dec.query_token(query)[:, None], block], dim=1)
    _, keys1, _ = dec.step(torch.tensor(0), tokens, keys, keys.clone())
    written = keys1.abs().sum((0, 1, 2, 4)) > 0  # (T,) places with keys
    assert written.tolist() == [t < cfg.step_len for t in range(cfg.seq_len)]
    block = views.take(torch.tensor([1, 2]), torch.float32)
    tokens = torch.cat([dec.action_token(1, torch.tensor([0, 1]))[:, None], block], dim=1)
    _, keys2, _ = dec.step(torch.tensor(1), tokens, keys1, keys1.clone())
    assert torch.equal(keys2[..., : cfg.step_len, :], keys1[..., : cfg.step_len, :])
    assert (keys2.abs().sum((0, 1, 2, 4)) > 0).tolist() == [t < 2 * cfg.step_len for t in range(cfg.seq_len)]


@pytest.mark.parametrize("precision", ["float16", "bfloat16", "int8"])
def test_view_tokens_in_reduced_precision_are_smaller_and_close(precision):
    dec = _decoder("children")
    feats = _map_feats(dec.cfg)
    full = ViewTokens.project(dec, feats)
    small = ViewTokens.project(dec, feats, precision)
    assert small.nbytes < full.nbytes * (0.6 if precision != "int8" else 0.3)
    index = torch.arange(full.tokens.shape[0])
    a, b = full.take(index, torch.float32), small.take(index, torch.float32)
    assert a.shape == b.shape and b.dtype == torch.float32
    assert (a - b).abs().max() <= 0.02 * a.abs().max()
    assert not torch.equal(a, b)  # rounded, really stored smaller


def test_raw_features_need_a_decoder_that_can_project_them():
    dec = _decoder("children")
    with pytest.raises(ModelError, match="pass ViewTokens"):
        beam_search(_RecordingDecoder(dec), _inputs(dec.cfg, batch=1)[0], _map_feats(dec.cfg))


def test_view_tokens_refuse_a_map_of_another_grid_or_precision():
    dec = _decoder("children")
    with pytest.raises(ModelError, match="map views"):
        ViewTokens.project(dec, _map_feats(dec.cfg)[:-1])
    with pytest.raises(ModelError, match="precision"):
        ViewTokens.project(dec, _map_feats(dec.cfg), "float8")


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such model"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a jzi checkpoint: .* cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a jzi_ros model"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"path": tmp_path}, tmp_path / "pickled.pt")  # more than tensors: torch's weights-only load refuses it
    with pytest.raises(CheckpointError, match=r"cannot be read as a PyTorch file \(UnpicklingError\); give") as e:
        load_checkpoint(tmp_path / "pickled.pt")
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)  # one line, none of torch's advice


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
