"""The time-independent MOSO decoder (MOSO §3.1.3, Eq. 3–8).

Frame t is decoded from the scene map, the object map and *only* motion map t: all frames are folded into
the batch dimension, so nothing in the decoder sees the time index or another frame (in eval mode; in
training, BatchNorm statistics are shared across the batch as usual).

Merge module (paper Eq. 3–8): scene and object features (at the decoder's base resolution) are taken to a
3-level pyramid by stride-2 convs; the frame's motion feature is resized to every level; per level
``1×1 conv(3C→C) → ReLU → 1×1 conv`` gives a weight feature; levels are summed coarse-to-fine with bilinear
upsampling; a sigmoid 1×1 conv gives ``w``; the frame feature is ``w·scene + (1−w)·object`` (Eq. 8).
Then a Conv3×3, a residual stack, ConvTranspose 5×5 stride-2 upsampling and a Conv3×3 to RGB.

With ``merge=False`` (the non-decomposed ablation) the frame feature is the motion feature alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidpred.models.moso.encoders import ResidualStack, num_stages


class MergeModule(nn.Module):
    def __init__(self, channels: int, levels: int = 3):
        super().__init__()
        self.levels = levels
        self.down_s = nn.ModuleList([nn.Conv2d(channels, channels, 3, 2, 1) for _ in range(levels - 1)])
        self.down_o = nn.ModuleList([nn.Conv2d(channels, channels, 3, 2, 1) for _ in range(levels - 1)])
        self.weight = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3 * channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1))
            for _ in range(levels)])
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, scene: torch.Tensor, obj: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """scene, obj: N×C×h×w (already repeated per frame); motion: N×C×h'×w' → N×C×h×w."""
        s_lv, o_lv = [scene], [obj]
        for ds, do in zip(self.down_s, self.down_o):
            s_lv.append(ds(s_lv[-1]))
            o_lv.append(do(o_lv[-1]))
        g = None
        for lvl in reversed(range(self.levels)):
            m = F.interpolate(motion, size=s_lv[lvl].shape[-2:], mode="bilinear", align_corners=False)
            cur = self.weight[lvl](torch.cat([s_lv[lvl], o_lv[lvl], m], dim=1))
            if g is not None:
                cur = cur + F.interpolate(g, size=cur.shape[-2:], mode="bilinear", align_corners=False)
            g = cur
        w = torch.sigmoid(self.out(g))
        return w * scene + (1 - w) * obj


class Decoder(nn.Module):
    """``(scene B×D×hs×ws, object B×D×ho×wo, motion B×T×D×hm×wm) → frames B×T×3×H×W``."""

    def __init__(self, embed_dim: int, channels: int, base_factor: int, res_layers: int = 2,
                 res_hidden: int | None = None, merge: bool = True, out_channels: int = 3):
        super().__init__()
        self.base_factor = base_factor
        self.merge = MergeModule(channels) if merge else None
        self.in_s = nn.Conv2d(embed_dim, channels, 1)
        self.in_o = nn.Conv2d(embed_dim, channels, 1)
        self.in_m = nn.Conv2d(embed_dim, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.res = ResidualStack(channels, res_hidden or channels, res_layers)
        ups = []
        for _ in range(num_stages(base_factor)):
            ups += [nn.ConvTranspose2d(channels, channels, 5, stride=2, padding=2, output_padding=1),
                    nn.BatchNorm2d(channels), nn.GELU()]
        self.up = nn.Sequential(*ups)
        self.rgb = nn.Conv2d(channels, out_channels, 3, padding=1)

    def base_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size[0] // self.base_factor, image_size[1] // self.base_factor

    def forward(self, scene, obj, motion, image_size: tuple[int, int]) -> torch.Tensor:
        b, t = motion.shape[:2]
        size = self.base_size(image_size)
        m = self.in_m(motion.flatten(0, 1))
        if self.merge is not None:
            s = F.interpolate(self.in_s(scene), size=size, mode="bilinear", align_corners=False)
            o = F.interpolate(self.in_o(obj), size=size, mode="bilinear", align_corners=False)
            s = s.repeat_interleave(t, dim=0)  # every frame sees the same scene and object
            o = o.repeat_interleave(t, dim=0)
            feat = self.merge(s, o, m)
        else:
            feat = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        x = self.rgb(self.up(self.res(self.conv(feat))))
        return x.view(b, t, *x.shape[1:])
