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

Speed (issue 13; profiled with ``torch.profiler`` at the cpu profile's sizes, ``bench/bench_training.py``): the
blocks are written out (:class:`SelfAttention`, :class:`EncoderBlock`) instead of ``nn.MultiheadAttention`` /
``nn.TransformerEncoderLayer`` — the same maths and parameter names, so older model files load as they are —
to call ``scaled_dot_product_attention`` on strided head views without the modules' per-call transposes and
copies; dropout draws its mask with ``torch.rand`` (:func:`dropout`; ``bernoulli_`` was the third-largest cost);
:func:`prediction_loss` runs TransformerSO and TransformerG as one encoder pass over both inputs
(:meth:`MosoTransformer.so_logits_and_guidance`) and takes cross-entropies on contiguous rows. Training under
bf16 autocast on the CPU computes the attention itself in float32 (PyTorch's bf16 CPU flash backward is slower). With
``compile: true`` every block goes through ``torch.compile`` (on the 2-core CPU measured: slower than eager).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidpred.config import dataclass_from_dict
from vidpred.errors import VidpredError
from vidpred.models import compile_model
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
    compile: bool = False  # torch.compile every block (a run-time option: not stored in model files)

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


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout``'s maths — each element zeroed with probability ``p``, the others scaled by ``1/(1−p)`` — with
    the mask drawn by ``torch.rand`` (float32 uniforms ≥ ``p``) instead of ``bernoulli_``, which on the CPU takes
    about twice as long (it was the largest cost after attention and matmuls in a cpu-profile training step).
    The same distribution, not the same random draws as ``F.dropout``."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    keep = torch.rand(x.shape, device=x.device)
    keep = keep.ge_(p) if x.dtype == torch.float32 else (keep >= p).to(x.dtype)
    return x * keep.mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (no parameters, the same ``p``) computed by :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class SelfAttention(nn.Module):
    """Multi-head self-attention, ``N×L×D → N×L×D``: one fused q/k/v projection, heads as strided views of it,
    :func:`torch.nn.functional.scaled_dot_product_attention` (PyTorch's fused flash kernel on the CPU) and
    the output projection.

    The maths and the parameters are those of ``nn.MultiheadAttention(dim, heads, batch_first=True)`` —
    ``in_proj_weight`` (3D×D: q, k, v rows), ``in_proj_bias``, ``out_proj`` — with the same initialisation
    in the same order, so model files written before this class existed load unchanged (and one seed gives
    the same weights). It skips what that module does per call: the batch-first transposes, the q/k/v
    unflatten-and-copy, and the argument checks."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        h = self.heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        p = self.dropout if self.training else 0.0
        if qkv.dtype == torch.bfloat16 and qkv.device.type == "cpu" and torch.is_grad_enabled():
            # bf16 autocast on the CPU, training: the attention itself in float32 — PyTorch's bfloat16 flash-attention
            # backward there takes over twice as long as the float32 one (measured at the cpu profile's sizes)
            q, k, v = qkv.float().view(n, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
            with torch.autocast("cpu", enabled=False):
                o = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            q, k, v = qkv.view(n, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out_proj(o.transpose(1, 2).reshape(n, l, d))


class EncoderBlock(nn.Module):
    """Pre-LN transformer block ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` with a GELU MLP and dropout on
    both residual branches and on the MLP activations: the maths and parameter names of
    ``nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout, activation="gelu", batch_first=True,
    norm_first=True)`` (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``), which TransformerSO/G
    used before — its model files load unchanged (its ``dropout``, ``dropout1``, ``dropout2`` are here too).
    Attention-probability dropout is ``attn_dropout``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.1, attn_dropout: float = 0.0):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attn_dropout)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(mlp_dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×L×D
        x = x + self.dropout1(self.self_attn(self.norm1(x)))
        h = self.dropout(F.gelu(self.linear1(self.norm2(x))))
        return x + self.dropout2(self.linear2(h))


def _block(cfg: TransformerConfig) -> EncoderBlock:
    return EncoderBlock(cfg.dim, cfg.heads, cfg.mlp_dim, cfg.dropout, cfg.attn_dropout)


class FactorizedBlock(nn.Module):
    """Attention within each frame, then across frames at each position, then an MLP (pre-LN)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.dim
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        # parameter names of nn.MultiheadAttention (``in_proj_weight``, ``in_proj_bias``, ``out_proj``)
        self.spatial = SelfAttention(d, cfg.heads, cfg.attn_dropout)
        self.temporal = SelfAttention(d, cfg.heads, cfg.attn_dropout)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, d),
                                 Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B×T×L×D
        b, t, l, d = x.shape
        x = x + self.spatial(self.n1(x).view(b * t, l, d)).view(b, t, l, d)
        h = self.n2(x).transpose(1, 2).reshape(b * l, t, d)
        x = x + self.temporal(h).view(b, l, t, d).transpose(1, 2)
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
        for blk in [*self.content, *self.motion]:
            compile_model(blk, cfg.compile)

    # -- TransformerSO / TransformerG ----------------------------------------------------------------
    def _content(self, cond_scene, cond_object, scene, obj) -> torch.Tensor:
        """The content encoder's normalised outputs ``B×(ns+no+T)×D``."""
        n = scene.shape[1] + obj.shape[1]
        pos = self.content_pos
        # per position: token + position (+ context token on scene/object positions), in the order of the
        # original ``tok(...) + pos; x[:, :n] += cond_tok(...)`` (bit-identical); the T summary rows are the
        # SUMMARY embedding, the same for every sample
        so = self.tok(torch.cat([scene, obj], dim=1)) + pos[:n]
        so = so + self.cond_tok(torch.cat([cond_scene, cond_object], dim=1))
        summary = (self.tok.weight[self.cfg.summary_id] + pos[n:]).expand(scene.shape[0], -1, -1)
        x = torch.cat([so, summary], dim=1)
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

    def so_logits_and_guidance(self, cond_scene, cond_object, masked_scene, masked_obj, scene, obj):
        """``so_logits(cond, masked)`` and ``guidance(cond, complete)`` — TransformerSO and TransformerG, one set
        of weights — as one encoder pass over the two inputs stacked on the batch (bigger matmuls, half the
        calls; the same maths as the two calls)."""
        b, t = scene.shape[0], self.cfg.frames
        x = self._content(torch.cat([cond_scene, cond_scene]), torch.cat([cond_object, cond_object]),
                          torch.cat([masked_scene, scene]), torch.cat([masked_obj, obj]))
        return self.content_head(x[:b, :-t]), x[b:, -t:]

    # -- TransformerM ---------------------------------------------------------------------------------
    def m_logits(self, motion: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """``motion`` B×T×L ids (MASK where unknown), ``guidance`` B×T×D → logits B×T×L×K."""
        x = torch.cat([self.guide_proj(guidance)[:, :, None], self.tok(motion)], dim=2)
        x = x + self.m_space[None, None] + self.m_time[None, :, None]
        for blk in self.motion:
            x = blk(x)
        return self.motion_head(self.motion_norm(x[:, :, 1:]))  # LayerNorm is per token: slice first

    def config_dict(self) -> dict:
        """The architecture (what a model file stores; ``compile`` is how this process runs it)."""
        return {k: v for k, v in asdict(self.cfg).items() if k != "compile"}


def weighted_masked_ce(logits: torch.Tensor, target: torch.Tensor, cond: torch.Tensor, masked: torch.Tensor,
                       changed_weight: float = 5.0) -> torch.Tensor:
    """Cross-entropy over masked positions, positions whose target differs from ``cond`` (the context
    clip's token there) weighted ``changed_weight``×; a weighted mean. logits B×N×K, the rest B×N."""
    # rows of a contiguous (B·N)×K matrix: PyTorch's fast log-softmax path (a B×K×N view is not)
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
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
    # TransformerSO on the masked tokens and TransformerG (same weights) on the complete target scene/object
    logits, guide = model.so_logits_and_guidance(cs, co, inp[:, :scene.shape[1]], inp[:, scene.shape[1]:], scene, obj)
    loss_so = weighted_masked_ce(logits, target_so, torch.cat([cs, co], dim=1), m_so, changed_weight)

    # TransformerM
    frame_idx = torch.arange(t, device=dev)[None, :, None].expand(b, t, l)
    given = (frame_idx < given_frames) & ~drop[:, None, None]
    m_m = random_mask(~given, mask_rate(torch.rand(b, generator=generator, device=dev)), generator)
    m_inp = torch.where(given, cond_motion, motion)
    m_inp = torch.where(m_m, torch.full_like(m_inp, cfg.mask_id), m_inp)
    m_logits = model.m_logits(m_inp, guide)
    ce_m = F.cross_entropy(m_logits.flatten(0, 2), motion.flatten(), reduction="none").view_as(motion)
    loss_m = (ce_m * m_m).sum() / m_m.sum().clamp_min(1)
    with torch.no_grad():
        acc_so = ((logits.argmax(-1) == target_so) & m_so).sum() / m_so.sum().clamp_min(1)
        acc_m = ((m_logits.argmax(-1) == motion) & m_m).sum() / m_m.sum().clamp_min(1)
    return {"loss": loss_so + loss_m, "loss_so": loss_so.detach(), "loss_m": loss_m.detach(),
            "acc_so": acc_so, "acc_m": acc_m}
