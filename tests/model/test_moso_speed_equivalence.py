"""The faster MOSO models compute what the earlier ones did (issue 13).

* against stored outputs of the models as they were at commit c85c45b (``fixtures/moso_reference_c85c45b.pt``,
  written by ``fixtures/make_moso_reference.py``): the earlier state dicts load unchanged, one seed still gives
  the same initial weights, and eval outputs, the training loss and every gradient agree to float tolerance;
* block by block against PyTorch's own ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (what the
  blocks were), in both directions of state-dict loading, in training and eval mode;
* the rewritten dropout has ``F.dropout``'s distribution and scale;
* ``model.compile`` (``vidpred.models.compile_model``) leaves parameters, state-dict keys and results alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidpred.models import compile_model
from vidpred.models.moso.transformer import (EncoderBlock, MosoTransformer, SelfAttention, TransformerConfig,
                                             dropout, prediction_loss)
from vidpred.models.moso.vqvae import MosoVQVAE, VQVAEConfig, reconstruction_loss

FIXTURE = Path(__file__).parent / "fixtures" / "moso_reference_c85c45b.pt"


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE, weights_only=True)


def _close(a, b, rtol=1e-5, atol=1e-6):
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max |Δ| {(a - b).abs().max():.3g}"


# ----------------------------------------------------------------------------------------------------
# whole models against the stored reference


def test_transformer_loads_old_state_dict_and_matches_old_outputs(ref):
    r = ref["transformer"]
    net = MosoTransformer(TransformerConfig(**r["config"]))
    net.load_state_dict(r["state_dict"], strict=True)  # same keys, same shapes
    torch.manual_seed(0)
    fresh = MosoTransformer(TransformerConfig(**r["config"]))  # same initialisation order: same weights
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, r["state_dict"][k]), k

    b = r["batch"]
    cs, co = b["cond_scene"].flatten(1), b["cond_object"].flatten(1)
    net.eval()
    with torch.no_grad():
        _close(net.so_logits(cs, co, r["so_in"], r["ob_in"]), r["so_logits"])
        guide = net.guidance(cs, co, b["scene"].flatten(1), b["object"].flatten(1))
        _close(guide, r["guidance"])
        _close(net.m_logits(r["m_in"], guide), r["m_logits"])
        logits, g2 = net.so_logits_and_guidance(cs, co, r["so_in"], r["ob_in"], b["scene"].flatten(1),
                                                b["object"].flatten(1))
        _close(logits, r["so_logits"])
        _close(g2, r["guidance"])

    net.train()  # dropout 0: the loss depends only on the generator's masks
    out = prediction_loss(net, b, 2, changed_weight=5.0, uncond_prob=0.3, generator=torch.Generator().manual_seed(2))
    out["loss"].backward()
    for k, v in r["loss"].items():
        _close(out[k].detach(), v)
    for name, p in net.named_parameters():
        _close(p.grad, r["grads"][name], rtol=1e-4, atol=1e-6)


def test_vqvae_loads_old_state_dict_and_matches_old_outputs(ref):
    r = ref["vqvae"]
    torch.manual_seed(0)
    net = MosoVQVAE(VQVAEConfig(**r["config"]))
    for k, v in net.state_dict().items():
        assert torch.equal(v, r["state_dict"][k]), k
    net.load_state_dict(r["state_dict"], strict=True)
    x = r["x"]
    net.train()
    out = net(x * 2 - 1, x, x)
    loss = reconstruction_loss(out["recon"], x, 1.0, 1.0, 0.0) + out["commitment"]
    loss.backward()
    t = r["train"]
    _close(out["recon"].detach(), t["recon"])
    _close(loss.detach(), t["loss"])
    for k, v in t["tokens"].items():
        assert torch.equal(out["tokens"][k], v), k
    for name, p in net.named_parameters():
        _close(p.grad, t["grads"][name], rtol=1e-4, atol=1e-6)
    state = net.state_dict()
    for k, v in t["state_after"].items():
        _close(state[k].float(), v.float())
    net.eval()
    with torch.no_grad():
        e = net(x * 2 - 1, x, x)
    _close(e["recon"], r["eval"]["recon"])
    for k, v in r["eval"]["tokens"].items():
        assert torch.equal(e["tokens"][k], v), k


# ----------------------------------------------------------------------------------------------------
# blocks against PyTorch's modules


@pytest.mark.parametrize("training", [False, True])
def test_self_attention_is_multihead_attention(training):
    torch.manual_seed(0)
    ours = SelfAttention(16, 4)
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same keys, same order
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k  # same initialisation
    theirs.load_state_dict(ours.state_dict())
    ours.train(training), theirs.train(training)
    x = torch.randn(3, 7, 16, requires_grad=True)
    a = ours(x)
    b = theirs(x, x, x, need_weights=False)[0]
    _close(a, b)
    g = torch.randn_like(a)
    ga = torch.autograd.grad(a, [x, *ours.parameters()], g)
    gb = torch.autograd.grad(b, [x, *theirs.parameters()], g)
    for u, v in zip(ga, gb):
        _close(u, v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_encoder_block_is_transformer_encoder_layer(training):
    torch.manual_seed(0)
    ours = EncoderBlock(16, 2, 24, dropout=0.0)
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(16, 2, 24, 0.0, activation="gelu", batch_first=True, norm_first=True)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    ours.load_state_dict(theirs.state_dict())  # and the other way
    ours.train(training), theirs.train(training)
    x = torch.randn(2, 9, 16)
    if training:
        x.requires_grad_()
        a, b = ours(x), theirs(x)
        _close(a, b)
        g = torch.randn_like(a)
        for u, v in zip(torch.autograd.grad(a, [x, *ours.parameters()], g),
                        torch.autograd.grad(b, [x, *[dict(theirs.named_parameters())[n]
                                                      for n, _ in ours.named_parameters()]], g)):
            _close(u, v, rtol=1e-4, atol=1e-6)
    else:
        with torch.no_grad():  # PyTorch's fused inference path on its side
            _close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_attention_under_bf16_autocast_on_cpu_runs_in_float32_when_training():
    torch.manual_seed(0)
    att = SelfAttention(16, 2).train()
    x = torch.randn(2, 5, 16, requires_grad=True)
    ref = att(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = att(x)
    assert y.dtype == torch.bfloat16  # the projections still autocast
    _close(y.float(), ref, rtol=5e-2, atol=5e-2)
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------------------------
# dropout


def test_dropout_has_f_dropout_distribution_and_scale():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.1)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient = mask × scale
    z = torch.randn(4, 5)
    assert dropout(z, 0.1, training=False) is z and dropout(z, 0.0) is z
    assert torch.equal(dropout(z, 1.0), torch.zeros_like(z))
    h = torch.ones(1000, dtype=torch.bfloat16)
    assert dropout(h, 0.5).dtype == torch.bfloat16
    blk = EncoderBlock(8, 2, 8, dropout=0.3)
    assert blk.dropout.p == blk.dropout1.p == blk.dropout2.p == 0.3
    blk.eval()
    x = torch.randn(2, 3, 8)
    assert torch.equal(blk(x), blk(x))  # no dropout in eval mode


# ----------------------------------------------------------------------------------------------------
# compile option


def test_compile_model_is_a_no_op_when_disabled_and_keeps_keys_when_enabled():
    m = nn.Linear(3, 2)
    keys = list(m.state_dict())
    assert compile_model(m, False) is m and m._compiled_call_impl is None
    assert compile_model(m, True) is m and m._compiled_call_impl is not None  # compiled lazily, on first call
    assert list(m.state_dict()) == keys


def test_compile_flag_in_model_configs_is_run_time_only():
    cfg = dict(num_codes=8, scene_tokens=4, object_tokens=4, frames=2, motion_hw=(1, 2), dim=8, heads=2,
               so_layers=1, m_layers=1, mlp_dim=8)
    plain = MosoTransformer(TransformerConfig.from_dict(cfg))
    comp = MosoTransformer(TransformerConfig.from_dict({**cfg, "compile": True}))
    assert all(b._compiled_call_impl is not None for b in [*comp.content, *comp.motion])
    assert all(b._compiled_call_impl is None for b in [*plain.content, *plain.motion])
    assert list(comp.state_dict()) == list(plain.state_dict())
    assert "compile" not in comp.config_dict()  # model files do not carry it
    vq = MosoVQVAE(VQVAEConfig(image_size=8, frames=2, pool=2, channels=4, embed_dim=4, num_codes=8,
                               scene_factor=2, object_factor=2, motion_factor=4, res_layers=1, res_hidden=4,
                               head_dim=4, compile=True))
    assert vq.decoder._compiled_call_impl is not None and vq.codebook._compiled_call_impl is None
    assert "compile" not in vq.config_dict()


@pytest.mark.slow
def test_compiled_block_computes_the_same():
    torch.manual_seed(0)
    blk = EncoderBlock(16, 2, 24, dropout=0.0).train()
    x = torch.randn(2, 9, 16, requires_grad=True)
    ref = blk(x)
    (gx,) = torch.autograd.grad(ref.sum(), x)
    compile_model(blk)
    out = blk(x)
    _close(out, ref, rtol=1e-4, atol=1e-5)
    _close(torch.autograd.grad(out.sum(), x)[0], gx, rtol=1e-4, atol=1e-5)
