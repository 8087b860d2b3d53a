"""MOSO-Transformer unit tests: MaskGIT masking and sampling, the pseudo clip (Eq. 10/12), prediction,
interpolation and generation at token level, and the weighted training loss. Untrained tiny models
on random token maps (the properties tested hold for any weights)."""

from __future__ import annotations

import math

import pytest
import torch

from vidpred.models.moso.sampling import (generate_tokens, given_frames, interpolate_tokens, mask_rate,
                                          maskgit_fill, predict_tokens, pseudo_clip, random_mask)
from vidpred.models.moso.transformer import (MosoTransformer, TransformerConfig, prediction_loss,
                                             weighted_masked_ce)

K_CODES, T = 16, 4
CFG = dict(num_codes=K_CODES, scene_tokens=4, object_tokens=4, frames=T, motion_hw=(2, 2), dim=16, heads=2,
           so_layers=1, m_layers=1, mlp_dim=32, dropout=0.0)


def _model():
    torch.manual_seed(0)
    return MosoTransformer(TransformerConfig(**CFG)).eval()


def _tokens(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"scene": torch.randint(0, K_CODES, (b, 2, 2), generator=g),
            "object": torch.randint(0, K_CODES, (b, 2, 2), generator=g),
            "motion": torch.randint(0, K_CODES, (b, T, 2, 2), generator=g)}


def test_mask_rate_is_cosine():
    assert math.isclose(float(mask_rate(0.0)), 1.0, abs_tol=1e-6)
    assert math.isclose(float(mask_rate(1.0)), 0.0, abs_tol=1e-6)
    assert math.isclose(float(mask_rate(0.5)), math.cos(math.pi / 4), rel_tol=1e-6)


def test_random_mask_counts_and_respects_allowed():
    allowed = torch.ones(3, 10, dtype=torch.bool)
    allowed[:, :4] = False
    m = random_mask(allowed, torch.tensor([1.0, 0.5, 0.01]), torch.Generator().manual_seed(0))
    assert m.sum(1).tolist() == [6, 3, 1]
    assert not m[:, :4].any()


def test_maskgit_fill_fills_every_masked_token_and_keeps_given():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, K_CODES, (3, 20), generator=g)
    unknown = torch.rand(3, 20, generator=g) < 0.6
    seen = []

    def logits_fn(ids):
        seen.append((ids == K_CODES).sum().item())
        assert torch.equal(ids[~unknown], tokens[~unknown])  # given tokens always visible, unchanged
        return torch.randn(*ids.shape, K_CODES, generator=g)

    out = maskgit_fill(logits_fn, tokens, unknown, mask_id=K_CODES, steps=5, temperature=4.5, generator=g)
    assert torch.equal(out[~unknown], tokens[~unknown])
    assert ((out >= 0) & (out < K_CODES)).all()
    assert seen[0] == unknown.sum().item()
    assert all(a > b for a, b in zip(seen, seen[1:]))  # fewer masks every step


def test_token_temperature_zero_takes_the_most_likely_token_and_low_sharpens():
    g = torch.Generator().manual_seed(0)
    tokens = torch.zeros(4, 30, dtype=torch.long)
    unknown = torch.ones(4, 30, dtype=torch.bool)
    fixed = torch.randn(4, 30, K_CODES, generator=g)  # the same logits every step
    best = fixed.argmax(-1)
    greedy = maskgit_fill(lambda ids: fixed, tokens, unknown, K_CODES, steps=3, generator=g, token_temperature=0.0)
    assert torch.equal(greedy, best)
    flat = maskgit_fill(lambda ids: fixed, tokens, unknown, K_CODES, steps=3, generator=g, token_temperature=1.0)
    cold = maskgit_fill(lambda ids: fixed, tokens, unknown, K_CODES, steps=3, generator=g, token_temperature=0.1)
    assert (cold == best).float().mean() > (flat == best).float().mean()
    with pytest.raises(ValueError, match="token_temperature"):
        maskgit_fill(lambda ids: fixed, tokens, unknown, K_CODES, token_temperature=-1.0)


def test_attention_dropout_is_separate_from_residual_dropout():
    m = MosoTransformer(TransformerConfig(**{**CFG, "dropout": 0.1, "attn_dropout": 0.0}))
    assert all(blk.self_attn.dropout == 0.0 and blk.dropout1.p == 0.1 for blk in m.content)
    assert all(blk.spatial.dropout == 0.0 and blk.temporal.dropout == 0.0 for blk in m.motion)


def test_pseudo_clip_and_aligned_given_frames():
    ctx = torch.arange(2 * 3 * 5).view(2, 3, 5).float()
    p = pseudo_clip(ctx, 6)
    assert p.shape == (2, 6, 5)
    assert torch.equal(p[:, :3], ctx) and torch.equal(p[:, 3:], ctx[:, 2:3].expand(-1, 3, -1))
    assert given_frames(10, 10) == 10 and given_frames(2, 2) == 2 and given_frames(3, 2) == 2
    assert given_frames(1, 16) == 0  # BAIR-like: the context frame shares a pool with generated ones


def test_prediction_keeps_context_motion_tokens_and_fills_the_rest():
    m = _model()
    cond = _tokens()
    out = predict_tokens(m, cond, given=2, steps=4, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out["motion"][:, :2], cond["motion"][:, :2])
    for k in ("scene", "object", "motion"):
        assert out[k].shape == cond[k].shape
        assert ((out[k] >= 0) & (out[k] < K_CODES)).all()
    # given scene/object tokens (the real clip's, a diagnostic) are used as they are; motion is still sampled
    real = _tokens(seed=5)
    with_real = predict_tokens(m, cond, given=2, steps=4, generator=torch.Generator().manual_seed(1), content=real)
    assert torch.equal(with_real["scene"], real["scene"]) and torch.equal(with_real["object"], real["object"])
    assert torch.equal(with_real["motion"][:, :2], cond["motion"][:, :2])


def test_interpolation_keeps_known_frames_tokens():
    m = _model()
    tok = _tokens(seed=3)
    known = torch.tensor([True, False, False, True])
    out = interpolate_tokens(m, tok, known, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["motion"][:, known], tok["motion"][:, known])
    assert torch.equal(out["scene"], tok["scene"]) and torch.equal(out["object"], tok["object"])
    assert ((out["motion"] >= 0) & (out["motion"] < K_CODES)).all()


def test_generation_shapes():
    out = generate_tokens(_model(), 2, (2, 2), (2, 2), steps=3, generator=torch.Generator().manual_seed(0))
    assert out["motion"].shape == (2, T, 2, 2) and out["scene"].shape == (2, 2, 2)
    assert all(((v >= 0) & (v < K_CODES)).all() for v in out.values())


def test_changed_tokens_weighted_five_times():
    logits = torch.log_softmax(torch.randn(1, 4, K_CODES, generator=torch.Generator().manual_seed(0)), -1)
    target = torch.tensor([[1, 2, 3, 4]])
    cond = torch.tensor([[1, 2, 0, 0]])  # positions 2, 3 changed
    masked = torch.tensor([[True, False, True, False]])
    ce = -logits[0, torch.arange(4), target[0]]
    want = (ce[0] + 5 * ce[2]) / 6
    assert torch.allclose(weighted_masked_ce(logits, target, cond, masked, 5.0), want)
    assert torch.allclose(weighted_masked_ce(logits, target, cond, masked, 1.0), (ce[0] + ce[2]) / 2)


@pytest.mark.slow
def test_prediction_loss_trains_both_transformers():
    m = _model().train()
    real, pseudo = _tokens(seed=1), _tokens(seed=2)
    batch = {**real, "cond_scene": pseudo["scene"], "cond_object": pseudo["object"],
             "cond_motion": pseudo["motion"]}
    out = prediction_loss(m, batch, given_frames=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert m.content_head.weight.grad.abs().sum() > 0 and m.motion_head.weight.grad.abs().sum() > 0
    assert m.content[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    # a few steps of Adam on one batch bring the loss down
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    first = None
    for i in range(15):
        opt.zero_grad()
        loss = prediction_loss(m, batch, 2, generator=torch.Generator().manual_seed(i))["loss"]
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
