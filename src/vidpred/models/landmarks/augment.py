"""Training-pair perturbations for the landmark autoencoder (Shih et al. sec. 2.1, appendix A).

* pose input: a colour-jittered copy (kornia ``ColorJitter``; per-sample random parameters);
* appearance input: a thin-plate-spline-warped copy (spline solved by :func:`fit_tps`, applied with kornia's ``warp_points_tps`` / ``warp_image_tps``)
  whose control points are a regular grid moved by a random similarity (rotation, scale, translation)
  plus per-point jitter — or another frame of the same video (chosen by the training stage).

All images are float (B, 3, H, W) in [0, 1]. Control points use kornia's [-1, 1] frame
(``align_corners=False``), the same frame as :mod:`vidpred.models.landmarks.gaussians`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TPSParams:
    """Random TPS warp: ``grid`` control points per side; ranges in radians / factors / pixels."""

    grid: int = 10
    rotation: float = math.pi / 8
    scale: tuple[float, float] = (1.05, 1.15)
    translation_px: float = 10.0
    jitter_px: float = 2.0


def control_grid(n: int, batch: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, n², 2) regular control points spanning [-1, 1]."""
    t = torch.linspace(-1, 1, n, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    return pts.unsqueeze(0).expand(batch, -1, -1).contiguous()


def fit_tps(centres: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard thin-plate spline through ``centres`` (B, N, 2) → ``values`` (B, N, 2), in kornia's layout.

    Returns (kernel weights (B, N, 2), affine weights (B, 3, 2)) for kornia's ``warp_points_tps`` /
    ``warp_image_tps`` with ``kernel_centers=centres`` (kernel ½ r² log r², as kornia's). Written here
    because kornia's ``get_tps_transform`` builds its kernel matrix between the two point sets (not
    centres × centres): for a jittered 10×10 grid that system is so ill-conditioned that the warps come
    out shredded (checked in ``tests/model/test_landmarks_gaussians.py``). Solved in float64.
    """
    c, v = centres.double(), values.double()
    b, n, _ = c.shape
    d2 = (c[:, :, None] - c[:, None]).pow(2).sum(-1)
    k = torch.where(d2 > 0, 0.5 * d2 * torch.where(d2 > 0, d2, torch.ones_like(d2)).log(), torch.zeros_like(d2))
    p = torch.cat([torch.ones(b, n, 1, dtype=c.dtype, device=c.device), c], -1)
    top = torch.cat([k, p], -1)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=c.dtype, device=c.device)], -1)
    rhs = torch.cat([v, torch.zeros(b, 3, 2, dtype=c.dtype, device=c.device)], 1)
    sol = torch.linalg.solve(torch.cat([top, bottom], 1), rhs)
    return sol[:, :n], sol[:, n:]


def tps_sample_points(points: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Where each output point (B, P, 2) samples the input, for the warp that moves ``src`` to ``dst``:
    the spline dst → src (evaluated with kornia's ``warp_points_tps``); at ``points == dst`` it gives ``src``."""
    from kornia.geometry.transform import warp_points_tps

    kernel_weights, affine_weights = fit_tps(dst, src)
    return warp_points_tps(points.double(), dst.double(), kernel_weights, affine_weights).to(points.dtype)


def tps_warp(images: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, coarse: int | None = 16) -> torch.Tensor:
    """Warp images so that content at control points ``src`` moves to ``dst`` (both (B, N, 2), [-1, 1]).

    The spline is :func:`fit_tps`, applied with kornia. With ``coarse`` set, it is evaluated on a
    coarse × coarse lattice spanning the pixel centres (:func:`tps_sample_points`) and bilinearly
    upsampled to a full sampling grid — exact for the affine part, ~4× faster than kornia's per-pixel
    ``warp_image_tps`` here; ``coarse=None`` uses ``warp_image_tps`` directly.
    """
    import torch.nn.functional as F
    from kornia.geometry.transform import warp_image_tps

    if coarse is None:
        kernel_weights, affine_weights = fit_tps(dst, src)
        return warp_image_tps(images.double(), dst.double(), kernel_weights, affine_weights, align_corners=False,
                              padding_mode="border").to(images.dtype)
    b, _, h, w = images.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, coarse, device=images.device, dtype=images.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, coarse, device=images.device, dtype=images.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(b, -1, -1)
    moved = tps_sample_points(pts, src, dst).reshape(b, coarse, coarse, 2)
    grid = F.interpolate(moved.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=True)
    return F.grid_sample(images, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=False)


def random_tps_targets(src: torch.Tensor, height: int, width: int, params: TPSParams,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Move control points by a random similarity transform plus per-point jitter."""
    b = src.shape[0]
    opts = dict(device=src.device, dtype=src.dtype)

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, **opts)

    angle = uni(-params.rotation, params.rotation, b)
    scale = uni(params.scale[0], params.scale[1], b)
    px_to_grid = src.new_tensor([2.0 / width, 2.0 / height])
    shift = uni(-params.translation_px, params.translation_px, b, 1, 2) * px_to_grid
    jitter = uni(-params.jitter_px, params.jitter_px, b, src.shape[1], 2) * px_to_grid
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # B 2 2
    moved = torch.einsum("bij,bnj->bni", rot * scale[:, None, None], src)
    return moved + shift + jitter


def random_tps(images: torch.Tensor, params: TPSParams | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A randomly TPS-warped copy of ``images``."""
    params = params or TPSParams()
    b, _, h, w = images.shape
    src = control_grid(params.grid, b, images.device, images.dtype)
    dst = random_tps_targets(src, h, w, params, generator)
    return tps_warp(images, src, dst)


def color_jitter(images: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.3) -> torch.Tensor:
    """Per-sample random colour jitter (kornia), output clamped to [0, 1]."""
    from kornia.augmentation import ColorJitter

    aug = ColorJitter(brightness, contrast, saturation, hue, p=1.0)
    return aug(images).clamp(0, 1)
