"""The codebook shared by scene, object and motion features (MOSO §3.1.2, appendix Tab. 11).

Vector quantisation with an exponential-moving-average codebook (VQ-VAE-2 style, Razavi et al. 2019):

* nearest code by L2 distance; ``q = e[argmin ||z - e_k||]``;
* in training, for every code k: ``N_k ← d·N_k + (1−d)·n_k`` and ``m_k ← d·m_k + (1−d)·Σ z`` (n_k inputs
  assigned to k), both debiased by ``1 − d^steps`` (the statistics start at zero); the counts are
  Laplace-smoothed ``(N_k + ε)/(ΣN + Kε)·ΣN`` and ``e_k = m_k / N_k`` is written for the codes used in the
  batch — codes no input chose keep their vectors (their ratio m_k/N_k would not move anyway);
* optional dead-code reset: a code unused for ``dead_after`` updates is replaced by a random input of the
  batch (and its statistics restarted there);
* loss ``β·||z − sg(q)||²`` (commitment) and the straight-through output ``z + sg(q − z)``.

Works on any channel-first tensor ``B×D×…`` (scene/object maps ``B×D×h×w``, motion ``B·T×D×h×w``).

Devices and precision: the codebook and its statistics are buffers (they move with ``.to``); the update is
written without host synchronisation or data-dependent shapes (masks and ``torch.where`` instead of boolean
indexing, the debiasing power as a tensor), so it runs on a GPU without stalls and on ``meta`` tensors.
Distances, the straight-through output and the commitment loss are computed in float32 with autocast
off — nearest-code search in bfloat16 picks wrong codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vidpred.models.devices import autocast_off


@dataclass
class Quantized:
    quantized: torch.Tensor  # straight-through output, same shape as the input
    indices: torch.Tensor  # int64, input shape without the channel dim
    commitment: torch.Tensor  # scalar loss (already multiplied by β)
    perplexity: torch.Tensor  # exp(entropy) of the code usage in this batch


class EMACodebook(nn.Module):
    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, beta: float = 0.25,
                 eps: float = 1e-5, dead_after: int = 0):
        super().__init__()
        self.num_codes, self.dim, self.decay, self.beta, self.eps = int(num_codes), int(dim), decay, beta, eps
        self.dead_after = int(dead_after)
        self.register_buffer("embed", torch.randn(num_codes, dim) * (1.0 / dim) ** 0.5)
        self.register_buffer("ema_count", torch.zeros(num_codes))
        self.register_buffer("ema_sum", torch.zeros(num_codes, dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("idle", torch.zeros(num_codes, dtype=torch.long))  # updates since last use

    # -- lookup -------------------------------------------------------------------------------------
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every row of ``flat`` (N×D)."""
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)[None])
        return dist.argmin(dim=1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for ``indices`` (any shape) as a channel-first tensor ``B×D×…``."""
        q = F.embedding(indices, self.embed)  # …×D
        return q.movedim(-1, 1)

    # -- training update ----------------------------------------------------------------------------
    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        d = self.decay
        codes = torch.arange(self.num_codes, device=indices.device)
        onehot = (indices[:, None] == codes).to(flat.dtype)  # N×K (no value check, unlike F.one_hot)
        counts, sums = onehot.sum(0), onehot.t() @ flat
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            # under DDP every rank sees its shard: sum the statistics so the codebook learns from the global
            # batch, as one process would (DDP then broadcasts rank 0's buffers, which now hold the same update)
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        self.updates += 1
        debias = 1.0 - d ** self.updates.to(flat.dtype)  # a tensor: no host sync
        count = self.ema_count / debias
        total = count.sum()
        smoothed = (count + self.eps) / (total + self.num_codes * self.eps) * total
        new = (self.ema_sum / debias) / smoothed[:, None]
        used = counts > 0
        self.embed.copy_(torch.where(used[:, None], new, self.embed))
        self.idle.copy_(torch.where(used, torch.zeros_like(self.idle), self.idle + 1))
        if self.dead_after > 0:
            # every code gets a random input as candidate; dead codes (idle for dead_after updates) take it
            dead = self.idle >= self.dead_after
            pick = flat[torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)]
            self.embed.copy_(torch.where(dead[:, None], pick, self.embed))
            self.ema_count.copy_(torch.where(dead, debias, self.ema_count))  # one input's worth
            self.ema_sum.copy_(torch.where(dead[:, None], pick * debias, self.ema_sum))
            self.idle.masked_fill_(dead, 0)

    def forward(self, z: torch.Tensor) -> Quantized:
        if z.shape[1] != self.dim:
            raise ValueError(f"codebook dim is {self.dim}, input has {z.shape[1]} channels")
        with autocast_off(z):
            z = z.to(self.embed.dtype)  # e.g. bfloat16 encoder features under autocast → float32
            zl = z.movedim(1, -1)
            flat = zl.reshape(-1, self.dim)
            indices = self.nearest(flat.detach())
            if self.training:
                self.ema_update(flat.detach(), indices)
            q = self.embed[indices].view_as(zl).movedim(-1, 1)
            commitment = self.beta * F.mse_loss(z, q.detach())
            quantized = z + (q - z).detach()
            counts = torch.zeros(self.num_codes, dtype=z.dtype, device=z.device)
            counts.index_add_(0, indices, torch.ones_like(indices, dtype=z.dtype))  # bincount (also on meta)
            probs = counts / indices.numel()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return Quantized(quantized, indices.view(zl.shape[:-1]), commitment, perplexity)
