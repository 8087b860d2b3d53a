"""MaskGIT masking and sampling for MOSO (paper §3.2 and §3.2.1), and the token-level tasks.

* :func:`mask_rate` — ``γ(u) = cos(π/2·u)`` (γ(0)=1, γ(1)=0).
* :func:`random_mask` — mask ``ceil(γ·n)`` random positions among the allowed ones of every sample.
* :func:`maskgit_fill` — iterative decoding: every step samples all still-masked positions, keeps the
  most confident (confidence = log p + temperature·Gumbel, not annealed), re-masks the others on a
  cosine schedule; given positions are never touched and the last step fills everything. Tokens are
  drawn from ``softmax(logits / token_temperature)`` (1 = the model's distribution, as in the paper;
  0 = the most likely token). :func:`maskgit_step` is one of its steps.
* :func:`pseudo_clip` / :func:`given_frames` — the pseudo clip (context padded with its last frame, Eq. 10)
  and how many of its motion frames equal the real clip's: the context frames lying in whole working
  pools (``⌊K/pool⌋·pool``; paper Eq. 12 and appendix B). Eq. 12 holds for the motion *encoder*; the
  motion *input* of frame t (``2·x_t − x_0 − x_{t+1}``, see :mod:`vidpred.preprocess.moso`) also looks at
  frame t+1, which the pseudo clip replaces by a copy of frame K−1, so the last context pool's stored
  tokens differ between pseudo and real clip (measured on cpu shapes: none of the given frames matched).
  Training and inference both take the given frames from the pseudo clip, so the two stay consistent.
* :func:`predict_tokens`, :func:`interpolate_tokens`, :func:`generate_tokens` — the three tasks at token
  level (scene/object first, then guidance, then motion).

Devices: every tensor is made on the tokens' device and random draws use the caller's generator, which must
live on that device too (a CUDA generator for CUDA tokens). Logits are sampled in float32. On ``meta``
tensors (a shape-only dry run) every step runs, since "is anything still masked" has no answer there.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from vidpred.models.devices import has_values, module_device


def mask_rate(u: torch.Tensor | float) -> torch.Tensor:
    """γ(u) on ``u``'s device (a float gives a CPU scalar)."""
    return torch.cos(math.pi / 2 * torch.as_tensor(u, dtype=torch.float32))


def random_mask(allowed: torch.Tensor, rate: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool mask of the shape of ``allowed`` (B×…): per sample ``ceil(rate_b · n_allowed_b)`` (at least 1
    when anything is allowed) random allowed positions."""
    b = allowed.shape[0]
    flat = allowed.reshape(b, -1)
    n_allowed = flat.sum(1)
    n = torch.ceil(rate.to(flat.device) * n_allowed).long().clamp(min=1)
    n = torch.minimum(n, n_allowed)
    scores = torch.rand(flat.shape, generator=generator, device=flat.device)
    scores = scores.masked_fill(~flat, 2.0)  # never pick a disallowed position
    ranks = scores.argsort(1).argsort(1)
    return (ranks < n[:, None]).view_as(allowed)


def maskgit_fill(logits_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, unknown: torch.Tensor,
                 mask_id: int, steps: int = 16, temperature: float = 4.5,
                 generator: torch.Generator | None = None, token_temperature: float = 1.0) -> torch.Tensor:
    """Fill the ``unknown`` positions of ``tokens`` (B×N, any ids there) by MaskGIT decoding.

    ``logits_fn(ids B×N) → B×N×K`` sees MASK at every still-masked position. Returns B×N ids with every
    unknown position set to a code in ``0..K−1`` and every other position unchanged."""
    if steps < 1:
        raise ValueError("MaskGIT needs at least one step")
    if token_temperature < 0:
        raise ValueError(f"token_temperature must be ≥ 0, got {token_temperature}")
    masked = unknown.clone()
    n_unknown = unknown.sum(1)
    out = torch.where(unknown, torch.full_like(tokens, mask_id), tokens)
    for i in range(steps):
        if has_values(masked) and not masked.any():
            break
        out, masked = maskgit_step(logits_fn, out, masked, n_unknown, i, steps, mask_id, temperature, generator,
                                   token_temperature)
    return out


def maskgit_step(logits_fn: Callable[[torch.Tensor], torch.Tensor], out: torch.Tensor, masked: torch.Tensor,
                 n_unknown: torch.Tensor, i: int, steps: int, mask_id: int, temperature: float = 4.5,
                 generator: torch.Generator | None = None, token_temperature: float = 1.0):
    """Step ``i`` of ``steps`` of :func:`maskgit_fill`: sample every ``masked`` position of ``out`` (B×N), keep
    the most confident, re-mask the rest on the cosine schedule. Returns the new ``(out, masked)``."""
    logits = logits_fn(torch.where(masked, torch.full_like(out, mask_id), out)).float()
    if token_temperature > 0:
        logp = torch.log_softmax(logits / token_temperature, dim=-1)
        sampled = torch.multinomial(logp.exp().flatten(0, 1), 1, generator=generator).view(out.shape)
    else:
        logp = torch.log_softmax(logits, dim=-1)
        sampled = logp.argmax(-1)
    conf = logp.gather(-1, sampled[..., None])[..., 0]
    u = torch.rand(conf.shape, generator=generator, device=conf.device).clamp(1e-20, 1 - 1e-7)
    conf = conf + temperature * -torch.log(-torch.log(u))
    conf = conf.masked_fill(~masked, float("inf"))  # fixed and given positions are never re-masked
    keep_masked = torch.floor(n_unknown.float() * math.cos(math.pi / 2 * (i + 1) / steps)).long()
    keep_masked = torch.minimum(keep_masked, (masked.sum(1) - 1).clamp(min=0))
    if i == steps - 1:
        keep_masked.zero_()
    ranks = conf.argsort(1).argsort(1)
    remask = ranks < keep_masked[:, None]
    return torch.where(masked & ~remask, sampled, out), masked & remask


def given_frames(context: int, pool: int) -> int:
    """Motion frames of the pseudo clip that equal the real clip's: context frames in whole working pools."""
    return (int(context) // int(pool)) * int(pool)


def pseudo_clip(context: torch.Tensor, length: int) -> torch.Tensor:
    """Pad context frames ``B×K×…`` to ``B×length×…`` by repeating the last one (paper Eq. 10)."""
    k = context.shape[1]
    if k > length:
        raise ValueError(f"{k} context frames do not fit a clip of {length}")
    return torch.cat([context, context[:, -1:].expand(-1, length - k, *context.shape[2:])], dim=1)


def _fill_content(model, cond_scene, cond_object, scene, obj, unknown_so, steps, temperature, generator,
                  token_temperature=1.0):
    ns = scene.shape[1]

    def logits_fn(ids):
        return model.so_logits(cond_scene, cond_object, ids[:, :ns], ids[:, ns:])

    so = maskgit_fill(logits_fn, torch.cat([scene, obj], 1), unknown_so, model.cfg.mask_id, steps,
                      temperature, generator, token_temperature)
    return so[:, :ns], so[:, ns:]


def _fill_motion(model, guide, motion, unknown, steps, temperature, generator, token_temperature=1.0):
    b, t, l = motion.shape

    def logits_fn(ids):
        return model.m_logits(ids.view(b, t, l), guide).flatten(1, 2)

    return maskgit_fill(logits_fn, motion.flatten(1), unknown.flatten(1), model.cfg.mask_id, steps,
                        temperature, generator, token_temperature).view(b, t, l)


@torch.no_grad()
def predict_tokens(model, cond: dict, given: int, steps: int = 16, temperature: float = 4.5,
                   generator: torch.Generator | None = None, token_temperature: float = 1.0,
                   content: dict | None = None) -> dict:
    """Prediction: ``cond`` holds the pseudo clip's ``scene``/``object``/``motion`` token maps. New scene and
    object tokens are sampled (TransformerSO), guidance computed (TransformerG), then the motion tokens
    of frames ≥ ``given`` sampled (TransformerM) with the first ``given`` frames kept from ``cond``.
    ``content`` (``scene``/``object`` maps) skips TransformerSO and uses those tokens instead — with the real
    clip's, this isolates TransformerM (a diagnostic of where prediction error comes from)."""
    cs, co, cm = cond["scene"], cond["object"], cond["motion"]
    b = cs.shape[0]
    cs_f, co_f = cs.flatten(1), co.flatten(1)
    if content is None:
        unknown_so = torch.ones(b, cs_f.shape[1] + co_f.shape[1], dtype=torch.bool, device=cs.device)
        s, o = _fill_content(model, cs_f, co_f, cs_f, co_f, unknown_so, steps, temperature, generator,
                             token_temperature)
    else:
        s, o = content["scene"].flatten(1), content["object"].flatten(1)
    guide = model.guidance(cs_f, co_f, s, o)
    m = cm.flatten(2)
    unknown = torch.zeros_like(m, dtype=torch.bool)
    unknown[:, given:] = True
    m = _fill_motion(model, guide, m, unknown, steps, temperature, generator, token_temperature)
    return {"scene": s.view_as(cs), "object": o.view_as(co), "motion": m.view_as(cm)}


@torch.no_grad()
def interpolate_tokens(model, tokens: dict, known: torch.Tensor, steps: int = 16, temperature: float = 4.5,
                       generator: torch.Generator | None = None, token_temperature: float = 1.0) -> dict:
    """Interpolation: keep the clip's scene/object tokens and the motion tokens of frames where ``known``
    (bool, length T) is true; generate the other frames' motion tokens."""
    s, o, m = tokens["scene"].flatten(1), tokens["object"].flatten(1), tokens["motion"]
    guide = model.guidance(s, o, s, o)
    mf = m.flatten(2)
    unknown = (~known.to(mf.device))[None, :, None].expand_as(mf).clone()
    mf = _fill_motion(model, guide, mf, unknown, steps, temperature, generator, token_temperature)
    return {"scene": tokens["scene"], "object": tokens["object"], "motion": mf.view_as(m)}


@torch.no_grad()
def generate_tokens(model, batch: int, scene_hw: tuple, object_hw: tuple, steps: int = 16,
                    temperature: float = 4.5, generator: torch.Generator | None = None, device=None,
                    token_temperature: float = 1.0) -> dict:
    """Unconditional generation: context all MASK, every scene/object/motion token sampled (on ``device``;
    default: the model's)."""
    cfg = model.cfg
    device = module_device(model) if device is None else torch.device(device)
    ns, no = cfg.scene_tokens, cfg.object_tokens
    mask = lambda n: torch.full((batch, n), cfg.mask_id, dtype=torch.long, device=device)  # noqa: E731
    unknown_so = torch.ones(batch, ns + no, dtype=torch.bool, device=device)
    s, o = _fill_content(model, mask(ns), mask(no), mask(ns), mask(no), unknown_so, steps, temperature, generator,
                         token_temperature)
    guide = model.guidance(mask(ns), mask(no), s, o)
    m = torch.full((batch, cfg.frames, cfg.motion_tokens), cfg.mask_id, dtype=torch.long, device=device)
    m = _fill_motion(model, guide, m, torch.ones_like(m, dtype=torch.bool), steps, temperature, generator,
                     token_temperature)
    return {"scene": s.view(batch, *scene_hw), "object": o.view(batch, *object_hw),
            "motion": m.view(batch, cfg.frames, *cfg.motion_hw)}
