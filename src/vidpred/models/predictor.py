"""The CorrWise deterministic video predictor: a 3D-conv ResNet (pix2pixHD-style generator with 3D convs).

Layout (IMPLEMENTATION-NOTES, CorrWise code): input B×3×T×H×W (T context frames, [-1, 1]);
replication-pad + Conv3d (3, 7, 7) → ``ngf``; three Conv3d k3 stride (1, 2, 2) downsamples (×2 channels
each); ``n_res3d`` residual 3D blocks; keep the last time slice; ``n_res2d`` residual 2D blocks; three
nearest-upsample + Conv 3×3 (+BN, ReLU) stages; reflection-pad + Conv 7×7 + tanh → one frame.
H and W must be multiples of 8.

:meth:`Predictor.forward` takes the loader's layout B×T×3×H×W and returns B×3×H×W;
:meth:`Predictor.rollout` predicts ``n`` frames by feeding predictions back (B×n×3×H×W). The
interpolation mode of the Vimeo-90K experiment is the same network given the two frames around the
missing one as its context (``context_frames = 2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidpred.errors import VidpredError


@dataclass
class PredictorConfig:
    ngf: int = 32
    context_frames: int = 3
    n_res3d: int = 2
    n_res2d: int = 4


class ResBlock3d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReplicationPad3d(1), nn.Conv3d(c, c, 3), nn.BatchNorm3d(c), nn.ReLU(inplace=True),
            nn.ReplicationPad3d(1), nn.Conv3d(c, c, 3), nn.BatchNorm3d(c))

    def forward(self, x):
        return x + self.body(x)


class ResBlock2d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class Predictor(nn.Module):
    def __init__(self, cfg: PredictorConfig | None = None, **kw):
        super().__init__()
        cfg = cfg or PredictorConfig(**kw)
        if cfg.ngf < 1 or cfg.context_frames < 1:
            raise VidpredError(f"model.ngf and model.context_frames must be ≥ 1, got {cfg.ngf}, {cfg.context_frames}")
        self.cfg = cfg
        g = cfg.ngf
        enc = [nn.ReplicationPad3d((3, 3, 3, 3, 1, 1)), nn.Conv3d(3, g, (3, 7, 7)), nn.BatchNorm3d(g), nn.ReLU(True)]
        c = g
        for _ in range(3):
            enc += [nn.Conv3d(c, 2 * c, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(2 * c), nn.ReLU(True)]
            c *= 2
        enc += [ResBlock3d(c) for _ in range(cfg.n_res3d)]
        self.encoder = nn.Sequential(*enc)
        dec = [ResBlock2d(c) for _ in range(cfg.n_res2d)]
        for _ in range(3):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1),
                    nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        dec += [nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """B×T×3×H×W context (T = ``context_frames``) → next frame B×3×H×W."""
        if context.ndim != 5 or context.shape[2] != 3 or context.shape[1] != self.cfg.context_frames:
            raise VidpredError(f"predictor expects B×{self.cfg.context_frames}×3×H×W context, got {tuple(context.shape)}")
        if context.shape[3] % 8 or context.shape[4] % 8:
            raise VidpredError(f"predictor needs H and W divisible by 8, got {context.shape[3]}×{context.shape[4]}")
        h = self.encoder(context.permute(0, 2, 1, 3, 4))  # B×C×T×h×w
        return self.decoder(h[:, :, -1])

    def rollout(self, context: torch.Tensor, n: int) -> torch.Tensor:
        """Predict ``n`` frames, feeding each prediction back as the newest context frame."""
        frames, out = context, []
        for _ in range(n):
            nxt = self(frames[:, -self.cfg.context_frames:])
            out.append(nxt)
            frames = torch.cat([frames, nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)
