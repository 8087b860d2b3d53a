"""MOSO-VQVAE unit tests: shared EMA codebook, straight-through gradients, the time-independent decoder,
the working-pool property behind Eq. 12, and config errors. Pure torch on small random tensors."""

from __future__ import annotations

import pytest
import torch

from vidpred.errors import VidpredError
from vidpred.models.moso.quantizer import EMACodebook
from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig, reconstruction_loss

SMALL = dict(image_size=16, frames=4, pool=2, channels=16, embed_dim=8, num_codes=32, scene_factor=2,
             object_factor=2, motion_factor=4, res_layers=1, res_hidden=8, head_dim=8)


def _model(**kw) -> MosoVQVAE:
    torch.manual_seed(0)
    return MosoVQVAE(VQVAEConfig(**{**SMALL, **kw}))


def _clip(seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, SMALL["frames"], 3, 16, 16, generator=g)
    return x


def test_ema_moves_used_codes_toward_inputs_and_leaves_unused():
    torch.manual_seed(0)
    cb = EMACodebook(num_codes=6, dim=3, decay=0.9)
    cb.embed.copy_(torch.eye(6, 3) * 10 + torch.arange(6)[:, None] * torch.tensor([0.0, 0.0, 10.0]))
    before = cb.embed.clone()
    # inputs near code 0 and code 1 only, offset from them by +1 in every channel
    z = torch.cat([before[0] + 1 + 0.1 * torch.randn(20, 3), before[1] + 1 + 0.1 * torch.randn(10, 3)])
    cb.train()
    out = cb(z[:, :, None])
    assert set(out.indices.flatten().tolist()) == {0, 1}
    for k, rows in ((0, z[:20]), (1, z[20:])):
        assert torch.dist(cb.embed[k], rows.mean(0)) < torch.dist(before[k], rows.mean(0)) - 0.5
    assert torch.equal(cb.embed[2:], before[2:])  # unused codes untouched
    # repeated updates converge to the input means
    for _ in range(30):
        cb(z[:, :, None])
    assert torch.allclose(cb.embed[0], z[:20].mean(0), atol=1e-2)
    assert torch.equal(cb.embed[2:], before[2:])


def test_ema_frozen_in_eval_and_dead_codes_reset():
    cb = EMACodebook(num_codes=8, dim=2, decay=0.9, dead_after=2)
    z = torch.randn(16, 2, 1)
    cb.eval()
    before = cb.embed.clone()
    cb(z)
    assert torch.equal(cb.embed, before)
    cb.train()
    cb.embed.copy_(torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(7)]))
    for _ in range(2):
        cb(z)  # everything maps to code 0; codes 1..7 are idle for 2 updates → reset onto inputs
    flat = z[:, :, 0]
    for k in range(1, 8):
        assert torch.cdist(cb.embed[k][None], flat).min() < 1e-5


def test_commitment_loss_and_straight_through():
    cb = EMACodebook(num_codes=4, dim=2, beta=0.25)
    cb.eval()
    z = torch.randn(5, 2, 3, requires_grad=True)
    out = cb(z)
    q = cb.embed[out.indices].movedim(-1, 1)
    assert torch.allclose(out.quantized, q, atol=1e-6)
    assert torch.allclose(out.commitment, 0.25 * ((z - q) ** 2).mean())
    (out.quantized * 3.0).sum().backward()
    assert torch.allclose(z.grad, torch.full_like(z, 3.0) + 0.0 * z.grad)  # identity gradient (+ nothing from q)


def test_straight_through_gradients_reach_all_encoders():
    m = _model()
    x = _clip()
    out = m(x * 2 - 1, x, x)
    torch.nn.functional.mse_loss(out["recon"], x).backward()  # reconstruction only, no commitment term
    for enc in (m.scene_enc, m.object_enc, m.motion_enc):
        grads = [p.grad for p in enc.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_shapes_tokens_and_decode_tokens_roundtrip():
    m = _model().eval()
    x = _clip()
    out = m(x * 2 - 1, x, x)
    assert out["recon"].shape == x.shape
    assert out["tokens"]["scene"].shape == (2, 8, 8)
    assert out["tokens"]["object"].shape == (2, 8, 8)
    assert out["tokens"]["motion"].shape == (2, 4, 4, 4)
    assert torch.allclose(m.decode_tokens(out["tokens"]), out["recon"], atol=1e-5)
    assert out["perplexity"] >= 1.0


def test_reconstruction_loss_terms():
    x = torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    blurred = torch.nn.functional.avg_pool2d(x.flatten(0, 1), 3, stride=1, padding=1).view_as(x)
    assert float(reconstruction_loss(x, x, l1=1.0, l2=1.0, ssim=1.0)) == pytest.approx(0.0, abs=1e-6)
    only_ssim = reconstruction_loss(blurred, x, l1=0.0, l2=0.0, ssim=1.0)
    assert 0.1 < float(only_ssim) < 1.0  # 1 − SSIM of a blurred noise image
    both = reconstruction_loss(blurred, x, l1=1.0, l2=0.0, ssim=1.0)
    assert float(both) == pytest.approx(float(only_ssim) + float((blurred - x).abs().mean()), rel=1e-5)
    pred = blurred.clone().requires_grad_(True)
    reconstruction_loss(pred, x, l1=0.0, l2=0.0, ssim=1.0).backward()
    assert pred.grad.abs().sum() > 0


def test_decoder_is_time_independent():
    m = _model().eval()
    x = _clip()
    tokens = m(x * 2 - 1, x, x)["tokens"]
    base = m.decode_tokens(tokens)
    other = {k: v.clone() for k, v in tokens.items()}
    other["motion"][:, 1:] = (other["motion"][:, 1:] + 7) % SMALL["num_codes"]  # change every frame but 0
    changed = m.decode_tokens(other)
    assert torch.allclose(changed[:, 0], base[:, 0], atol=1e-6)  # frame 0 sees only its own motion
    assert (changed[:, 1:] - base[:, 1:]).abs().max() > 1e-5  # the other frames do change
    # decoding one frame alone gives the same frame
    single = m.decode_tokens({**tokens, "motion": tokens["motion"][:, 2:3]})
    assert torch.allclose(single[:, 0], base[:, 2], atol=1e-6)


def test_motion_features_depend_only_on_their_working_pool():
    """Paper Eq. 12: clips equal in the first K frames (K a multiple of the pool) share those motion tokens."""
    m = _model().eval()
    a = _clip(0) * 2 - 1
    b = a.clone()
    b[:, 3] = -b[:, 3]  # frames 0..1 (pool 0) equal; frame 3 differs (pool 1 = frames 2, 3)
    za, zb = m.motion_enc(a), m.motion_enc(b)
    assert torch.equal(za[:, :2], zb[:, :2])
    assert not torch.allclose(za[:, 2], zb[:, 2])  # frame 2 shares a pool with frame 3, so it moves


def test_non_decomposed_ablation_has_same_token_budget():
    mso = VQVAEConfig(image_size=64, frames=8, pool=2, scene_factor=4, object_factor=4, motion_factor=8)
    none = VQVAEConfig(image_size=64, frames=8, pool=2, motion_factor=8, decomposition="none", groups=2)
    assert sum(mso.token_counts().values()) == sum(none.token_counts().values()) == 1024
    m = _model(decomposition="none", groups=2).eval()
    x = _clip()
    out = m(x)
    assert out["recon"].shape == x.shape and out["tokens"]["motion"].shape == (2, 4, 2, 4, 4)
    assert torch.allclose(m.decode_tokens(out["tokens"]), out["recon"], atol=1e-5)


@pytest.mark.parametrize("bad, msg", [({"pool": 3}, "pool"), ({"scene_factor": 3}, "scene_factor"),
                                      ({"decomposition": "x"}, "decomposition")])
def test_impossible_config_raises(bad, msg):
    with pytest.raises(VidpredError, match=msg):
        VQVAEConfig.from_dict({**SMALL, **bad})
    with pytest.raises(VidpredError, match="unknown"):
        VQVAEConfig.from_dict({**SMALL, "codebok": 3})
