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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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
        onehot = F.one_hot(indices, self.num_codes).type(flat.dtype)  # N×K
        counts = onehot.sum(0)
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(onehot.t() @ flat, alpha=1 - d)
        self.updates += 1
        debias = 1.0 - d ** int(self.updates)
        count = self.ema_count / debias
        total = count.sum()
        smoothed = (count + self.eps) / (total + self.num_codes * self.eps) * total
        new = (self.ema_sum / debias) / smoothed[:, None]
        used = counts > 0
        self.embed[used] = new[used]
        self.idle[used] = 0
        self.idle[~used] += 1
        if self.dead_after > 0:
            dead = (self.idle >= self.dead_after).nonzero().flatten()
            if dead.numel():
                pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
                self.embed[dead] = flat[pick]
                self.ema_count[dead] = debias  # one input's worth, after debiasing
                self.ema_sum[dead] = flat[pick] * debias
                self.idle[dead] = 0

    def forward(self, z: torch.Tensor) -> Quantized:
        if z.shape[1] != self.dim:
            raise ValueError(f"codebook dim is {self.dim}, input has {z.shape[1]} channels")
        zl = z.movedim(1, -1)
        flat = zl.reshape(-1, self.dim)
        indices = self.nearest(flat.detach())
        if self.training:
            self.ema_update(flat.detach().float(), indices)
        q = self.embed[indices].view_as(zl).movedim(-1, 1)
        commitment = self.beta * F.mse_loss(z, q.detach())
        quantized = z + (q - z).detach()
        probs = torch.bincount(indices, minlength=self.num_codes).float() / indices.numel()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return Quantized(quantized, indices.view(zl.shape[:-1]), commitment, perplexity)
