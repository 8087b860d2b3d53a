"""MOSO-VQVAE encoders (MOSO §3.1.2; layer details from the authors' code, see IMPLEMENTATION-NOTES).

* :class:`DownStage` — ``Conv5×5 stride 2 → BN → GELU → Conv3×3 → BN → GELU``, halves the resolution.
* :class:`ResidualStack` — ``[Conv3×3 → BN → GELU → Conv1×1 → BN → GELU] + skip``, repeated.
* :class:`ContentEncoder` — scene or object encoder: per-frame down stages, then the temporal
  compressing layer (frames concatenated on channels, a linear map T·C → C), a residual stack and a
  1×1 projection to the codebook dimension. One token map per clip: ``B×T×3×H×W → B×D×H/f×W/f``.
* :class:`MotionEncoder` — per-frame down stages, then temporal multi-head self-attention at every
  spatial location inside *working pools* of consecutive frames (no exchange across pools; post-LN;
  d_k = d_v = 64), a residual stack and the projection. ``B×T×3×H×W → B×T×D×H/f×W/f``.
  Because attention never crosses a pool, a frame's motion feature depends only on the frames of its pool
  (the property behind the pseudo-clip trick, paper Eq. 12).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def num_stages(factor: int) -> int:
    n = int(round(math.log2(factor)))
    if factor < 1 or 2 ** n != factor:
        raise ValueError(f"downsample factor must be a power of 2, got {factor}")
    return n


class DownStage(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.BatchNorm2d(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU(),
        )


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels), nn.GELU(),
        )

    def forward(self, x):
        return x + self.body(x)


class ResidualStack(nn.Sequential):
    def __init__(self, channels: int, hidden: int, layers: int):
        super().__init__(*[ResidualLayer(channels, hidden) for _ in range(layers)])


def _down_path(cin: int, channels: int, factor: int) -> nn.Sequential:
    n = num_stages(factor)
    if n == 0:
        return nn.Sequential(nn.Conv2d(cin, channels, 3, padding=1))
    return nn.Sequential(*[DownStage(cin if i == 0 else channels, channels) for i in range(n)])


class ContentEncoder(nn.Module):
    """Scene or object encoder: a clip ``B×T×C×H×W`` → one feature map ``B×D×H/f×W/f``."""

    def __init__(self, frames: int, channels: int, embed_dim: int, factor: int, res_layers: int = 2,
                 res_hidden: int | None = None, in_channels: int = 3):
        super().__init__()
        self.frames = frames
        self.down = _down_path(in_channels, channels, factor)
        self.compress = nn.Conv2d(frames * channels, channels, 1)  # the temporal compressing layer
        self.res = ResidualStack(channels, res_hidden or channels, res_layers)
        self.proj = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        if t != self.frames:
            raise ValueError(f"content encoder built for {self.frames} frames, got {t}")
        f = self.down(clip.flatten(0, 1))  # B·T×C×h×w
        f = f.view(b, t * f.shape[1], *f.shape[2:])
        return self.proj(self.res(self.compress(f)))


class PoolAttention(nn.Module):
    """Temporal self-attention inside working pools of ``pool`` consecutive frames (post-LayerNorm)."""

    def __init__(self, channels: int, pool: int, head_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.pool = pool
        heads = max(1, channels // head_dim)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(channels)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # B×T×C×h×w
        b, t, c, h, w = f.shape
        if t % self.pool:
            raise ValueError(f"clip length {t} is not a multiple of the working pool size {self.pool}")
        x = f.permute(0, 3, 4, 1, 2).reshape(b * h * w * (t // self.pool), self.pool, c)
        x = self.norm(x + self.attn(x, x, x, need_weights=False)[0])
        return x.view(b, h, w, t, c).permute(0, 3, 4, 1, 2)


class MotionEncoder(nn.Module):
    """Motion encoder: ``B×T×C×H×W`` → ``B×T×D×H/f×W/f`` (attention only inside working pools)."""

    def __init__(self, channels: int, embed_dim: int, factor: int, pool: int, res_layers: int = 2,
                 res_hidden: int | None = None, head_dim: int = 64, attn_dropout: float = 0.1,
                 in_channels: int = 3):
        super().__init__()
        self.pool = pool
        self.down = _down_path(in_channels, channels, factor)
        self.attn = PoolAttention(channels, pool, head_dim, attn_dropout)
        self.res = ResidualStack(channels, res_hidden or channels, res_layers)
        self.proj = nn.Conv2d(channels, embed_dim, 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        f = self.down(clip.flatten(0, 1))
        f = self.attn(f.view(b, t, *f.shape[1:]))
        f = self.proj(self.res(f.flatten(0, 1)))
        return f.view(b, t, *f.shape[1:])
