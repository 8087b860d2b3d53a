"""MOSO-Transformer (MOSO §3.2): TransformerSO and TransformerG with shared weights, and TransformerM.

Vocabulary: the VQVAE's codebook ids ``0..K−1`` plus ``MASK = K`` and ``SUMMARY = K+1`` (one summary
token per frame whose output is that frame's guidance embedding).

* ``content`` (TransformerSO ≡ TransformerG, one set of weights): a bidirectional encoder over
  ``[target scene | target object | T summary tokens]`` where each target position also carries the
  embedding of the context (pseudo clip) token at the same position — the paper does not say how the
  previous tokens enter TransformerSO; adding them position-aligned (rather than as a second sequence)
  makes "keep the context's token" easy to learn and halves the sequence (measured on the cpu profile).
  As SO it predicts masked target scene/object tokens (logits at those positions, paper Eq. 11);
  as G, fed the complete target scene/object tokens, its outputs at the summary positions are the
  guidance embeddings ``g_1..g_T``.
* ``motion`` (TransformerM): per frame the sequence ``[g_t, motion tokens of frame t]``; every block
  attends within the frame, then across frames at the same position, then an MLP (paper Eq. 13).

:func:`prediction_loss` is the MaskGIT training objective (cosine mask rate per token group,
cross-entropy on masked positions, scene/object targets that differ from the context clip's tokens
weighted ``changed_weight``× — 5 in the paper's code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidpred.config import dataclass_from_dict
from vidpred.errors import VidpredError
from vidpred.models.moso.sampling import mask_rate, random_mask


@dataclass
class TransformerConfig:
    num_codes: int = 512
    scene_tokens: int = 256  # hs·ws
    object_tokens: int = 256
    frames: int = 8
    motion_hw: tuple = (8, 8)
    dim: int = 128
    heads: int = 4
    so_layers: int = 2
    m_layers: int = 2
    mlp_dim: int = 256
    dropout: float = 0.1  # on residual branches and MLP activations
    attn_dropout: float = 0.0  # on attention probabilities (> 0 disables PyTorch's fused CPU attention)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        cfg = dataclass_from_dict(cls, d, "transformer")
        cfg.motion_hw = tuple(cfg.motion_hw)
        if cfg.dim % cfg.heads:
            raise VidpredError(f"transformer.dim={cfg.dim} must be a multiple of transformer.heads={cfg.heads}")
        return cfg

    @property
    def mask_id(self) -> int:
        return self.num_codes

    @property
    def summary_id(self) -> int:
        return self.num_codes + 1

    @property
    def motion_tokens(self) -> int:
        return self.motion_hw[0] * self.motion_hw[1]


def _block(cfg: TransformerConfig) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.mlp_dim, cfg.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
    # The layer applies one dropout everywhere; attention-probability dropout is set on its own because
    # with it PyTorch falls back from the fused (flash) CPU kernel to unfused attention (~6× slower here).
    layer.self_attn.dropout = cfg.attn_dropout
    return layer


class FactorizedBlock(nn.Module):
    """Attention within each frame, then across frames at each position, then an MLP (pre-LN)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.dim
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.spatial = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.attn_dropout, batch_first=True)
        self.temporal = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.attn_dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, d),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×T×L×D
        b, t, l, d = x.shape
        h = self.n1(x).reshape(b * t, l, d)
        x = x + self.spatial(h, h, h, need_weights=False)[0].view(b, t, l, d)
        h = self.n2(x).transpose(1, 2).reshape(b * l, t, d)
        x = x + self.temporal(h, h, h, need_weights=False)[0].view(b, l, t, d).transpose(1, 2)
        return x + self.mlp(self.n3(x))


class MosoTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d, vocab = cfg.dim, cfg.num_codes + 2
        self.content_len = cfg.scene_tokens + cfg.object_tokens + cfg.frames
        self.tok = nn.Embedding(vocab, d)
        self.cond_tok = nn.Embedding(vocab, d)  # context tokens (MASK when there is no context)
        self.content_pos = nn.Parameter(torch.randn(self.content_len, d) * 0.02)
        self.content = nn.ModuleList([_block(cfg) for _ in range(cfg.so_layers)])
        self.content_norm = nn.LayerNorm(d)
        self.content_head = nn.Linear(d, cfg.num_codes)
        self.m_space = nn.Parameter(torch.randn(cfg.motion_tokens + 1, d) * 0.02)
        self.m_time = nn.Parameter(torch.randn(cfg.frames, d) * 0.02)
        self.guide_proj = nn.Linear(d, d)
        self.motion = nn.ModuleList([FactorizedBlock(cfg) for _ in range(cfg.m_layers)])
        self.motion_norm = nn.LayerNorm(d)
        self.motion_head = nn.Linear(d, cfg.num_codes)

    # -- TransformerSO / TransformerG ----------------------------------------------------------------
    def _content(self, cond_scene, cond_object, scene, obj) -> torch.Tensor:
        b = scene.shape[0]
        summary = torch.full((b, self.cfg.frames), self.cfg.summary_id, dtype=torch.long, device=scene.device)
        x = self.tok(torch.cat([scene, obj, summary], dim=1)) + self.content_pos
        x[:, :-self.cfg.frames] += self.cond_tok(torch.cat([cond_scene, cond_object], dim=1))
        for blk in self.content:
            x = blk(x)
        return self.content_norm(x)

    def so_logits(self, cond_scene, cond_object, scene, obj) -> torch.Tensor:
        """Logits ``B×(ns+no)×K`` for the target scene+object tokens (MASK where unknown)."""
        x = self._content(cond_scene, cond_object, scene, obj)
        return self.content_head(x[:, :-self.cfg.frames])

    def guidance(self, cond_scene, cond_object, scene, obj) -> torch.Tensor:
        """Guidance embeddings ``B×T×D`` from complete target scene/object tokens (TransformerG)."""
        x = self._content(cond_scene, cond_object, scene, obj)
        return x[:, -self.cfg.frames:]

    # -- TransformerM ---------------------------------------------------------------------------------
    def m_logits(self, motion: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """``motion`` B×T×L ids (MASK where unknown), ``guidance`` B×T×D → logits B×T×L×K."""
        b, t, l = motion.shape
        x = torch.cat([self.guide_proj(guidance)[:, :, None], self.tok(motion)], dim=2)
        x = x + self.m_space[None, None] + self.m_time[None, :, None]
        for blk in self.motion:
            x = blk(x)
        return self.motion_head(self.motion_norm(x)[:, :, 1:])

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def weighted_masked_ce(logits: torch.Tensor, target: torch.Tensor, cond: torch.Tensor, masked: torch.Tensor,
                       changed_weight: float = 5.0) -> torch.Tensor:
    """Cross-entropy over masked positions, positions whose target differs from ``cond`` (the context
    clip's token there) weighted ``changed_weight``×; a weighted mean. logits B×N×K, the rest B×N."""
    ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    w = torch.where(target != cond, torch.full_like(ce, changed_weight), torch.ones_like(ce)) * masked
    return (w * ce).sum() / w.sum().clamp_min(1e-8)


def prediction_loss(model: MosoTransformer, batch: dict, given_frames: int, changed_weight: float = 5.0,
                    uncond_prob: float = 0.0, generator: torch.Generator | None = None) -> dict:
    """MaskGIT loss for prediction. ``batch``: token tensors ``cond_scene``/``cond_object`` B×n,
    ``cond_motion`` B×T×h×w (the pseudo clip's) and ``scene``/``object``/``motion`` (the real clip's).
    The first ``given_frames`` motion frames are taken from the pseudo clip and never masked (Eq. 12).
    With probability ``uncond_prob`` a sample's context is dropped (all MASK, no given frames) so the
    same model can generate unconditionally."""
    cfg = model.cfg
    scene, obj = batch["scene"].flatten(1), batch["object"].flatten(1)
    cs, co = batch["cond_scene"].flatten(1), batch["cond_object"].flatten(1)
    motion = batch["motion"].flatten(2)
    cond_motion = batch["cond_motion"].flatten(2)
    b, t, l = motion.shape
    dev = scene.device
    drop = torch.rand(b, generator=generator, device=dev) < uncond_prob if uncond_prob > 0 else \
        torch.zeros(b, dtype=torch.bool, device=dev)
    cs = torch.where(drop[:, None], torch.full_like(cs, cfg.mask_id), cs)
    co = torch.where(drop[:, None], torch.full_like(co, cfg.mask_id), co)

    # TransformerSO: mask each group (scene, object) with its own cosine rate
    target_so = torch.cat([scene, obj], dim=1)
    m_s = random_mask(torch.ones_like(scene, dtype=torch.bool), mask_rate(torch.rand(b, generator=generator, device=dev)), generator)
    m_o = random_mask(torch.ones_like(obj, dtype=torch.bool), mask_rate(torch.rand(b, generator=generator, device=dev)), generator)
    m_so = torch.cat([m_s, m_o], dim=1)
    inp = torch.where(m_so, torch.full_like(target_so, cfg.mask_id), target_so)
    logits = model.so_logits(cs, co, inp[:, :scene.shape[1]], inp[:, scene.shape[1]:])
    loss_so = weighted_masked_ce(logits, target_so, torch.cat([cs, co], dim=1), m_so, changed_weight)

    # TransformerG (same weights) on the complete target scene/object, then TransformerM
    guide = model.guidance(cs, co, scene, obj)
    frame_idx = torch.arange(t, device=dev)[None, :, None].expand(b, t, l)
    given = (frame_idx < given_frames) & ~drop[:, None, None]
    m_m = random_mask(~given, mask_rate(torch.rand(b, generator=generator, device=dev)), generator)
    m_inp = torch.where(given, cond_motion, motion)
    m_inp = torch.where(m_m, torch.full_like(m_inp, cfg.mask_id), m_inp)
    m_logits = model.m_logits(m_inp, guide)
    ce_m = F.cross_entropy(m_logits.permute(0, 3, 1, 2), motion, reduction="none")
    loss_m = (ce_m * m_m).sum() / m_m.sum().clamp_min(1)
    with torch.no_grad():
        acc_so = ((logits.argmax(-1) == target_so) & m_so).sum() / m_so.sum().clamp_min(1)
        acc_m = ((m_logits.argmax(-1) == motion) & m_m).sum() / m_m.sum().clamp_min(1)
    return {"loss": loss_so + loss_m, "loss_so": loss_so.detach(), "loss_m": loss_m.detach(),
            "acc_so": acc_so, "acc_m": acc_m}
