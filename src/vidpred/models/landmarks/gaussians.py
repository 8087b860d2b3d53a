"""2D Gaussian landmarks: fit, render, and the (mean, Cholesky) state used for dynamics and interpolation.

Shih et al. (unsupervised landmarks, sec. 2.1–2.4) represent each of K part maps by a 2D Gaussian
(μ_k, Σ_k). This module holds all of that math in one place, pure torch, batched:

* coordinates live on a [-1, 1] grid with pixel centres at ``(2i + 1) / W - 1`` (the ``grid_sample``
  convention with ``align_corners=False``; kornia's TPS uses the same frame), x first, then y;
* :func:`spatial_softmax` turns part logits into per-map probabilities;
* :func:`fit_gaussians` gives μ = Σ p·l and Σ = Σ p·l lᵀ − μμᵀ (+ a small floor for stability);
* :func:`render_heatmaps` draws s = 1 / (1 + dᵀΣ⁻¹d) (paper eq. 5, ``kind="cauchy"``) or the
  Gaussian density shape exp(−½ dᵀΣ⁻¹d) (``kind="gaussian"``, used to check the fit);
* a landmark *state* is 5 numbers per landmark: (μx, μy, l11, l21, l22) with Σ = L Lᵀ; any state,
  including an unconstrained LSTM output, maps back to a positive-definite Σ (L Lᵀ + εI);
* :func:`interpolate_states` is the paper's eq. 7 (linear in μ and L).

Devices and precision: grids and identity matrices are made on the inputs' device. The softmax, moments,
Mahalanobis distances and Cholesky maps run in float32 with autocast off (``float32_math``): second moments
minus squared means cancel in bfloat16, and a covariance that comes out non-positive gives NaN heatmaps.
Their results are float32 (float64 for float64 inputs) also when the network feeding them ran in bfloat16.
"""

from __future__ import annotations

import torch

from vidpred.models.devices import float32_math

COV_EPS = 1e-4  # floor added to Σ (grid units², i.e. ~1/40 px² at 64 px): keeps Σ⁻¹ finite


def coordinate_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) pixel-centre coordinates in [-1, 1], last axis (x, y)."""
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


@float32_math
def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the spatial positions of each map: (B, K, H, W) → (B, K, H, W), each map sums to 1."""
    b, k, h, w = logits.shape
    return torch.softmax(logits.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)


@float32_math
def fit_gaussians(probs: torch.Tensor, eps: float = COV_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, K, 2) and covariance (B, K, 2, 2) of probability maps (B, K, H, W) on the [-1, 1] grid."""
    _, _, h, w = probs.shape
    grid = coordinate_grid(h, w, probs.device, probs.dtype)  # H W 2
    mu = torch.einsum("bkhw,hwc->bkc", probs, grid)
    second = torch.einsum("bkhw,hwc,hwd->bkcd", probs, grid, grid)
    cov = second - mu.unsqueeze(-1) * mu.unsqueeze(-2)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    eye = torch.eye(2, device=probs.device, dtype=probs.dtype)
    return mu, cov + eps * eye


def _inv2x2(cov: torch.Tensor) -> torch.Tensor:
    a, b, c, d = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 0], cov[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return inv / det[..., None, None]


@float32_math
def mahalanobis_sq(mu: torch.Tensor, cov: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """dᵀΣ⁻¹d for every grid location: (B, K, H, W)."""
    grid = coordinate_grid(height, width, mu.device, mu.dtype)  # H W 2
    d = grid[None, None] - mu[:, :, None, None, :]  # B K H W 2
    inv = _inv2x2(cov)  # B K 2 2
    return torch.einsum("bkhwc,bkcd,bkhwd->bkhw", d, inv, d)


def render_heatmaps(mu: torch.Tensor, cov: torch.Tensor, height: int, width: int,
                    kind: str = "cauchy") -> torch.Tensor:
    """Heatmaps (B, K, H, W) of Gaussians (μ, Σ): ``cauchy`` 1/(1 + dᵀΣ⁻¹d) (paper eq. 5) or ``gaussian``."""
    m = mahalanobis_sq(mu, cov, height, width)
    if kind == "cauchy":
        return 1.0 / (1.0 + m)
    if kind == "gaussian":
        return torch.exp(-0.5 * m)
    raise ValueError(f"unknown heatmap kind {kind!r} (cauchy or gaussian)")


@float32_math
def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map (B, K, H, W) to sum to one."""
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


# --- (μ, Cholesky) state -------------------------------------------------------------------------

STATE_DIM = 5  # μx, μy, l11, l21, l22


@float32_math
def cov_to_cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Σ (..., 2, 2) → (l11, l21, l22) (..., 3) with Σ = L Lᵀ, L lower-triangular, positive diagonal."""
    a, b, d = cov[..., 0, 0], cov[..., 1, 0], cov[..., 1, 1]
    l11 = a.clamp_min(1e-12).sqrt()
    l21 = b / l11
    l22 = (d - l21 * l21).clamp_min(1e-12).sqrt()
    return torch.stack([l11, l21, l22], dim=-1)


@float32_math
def cholesky_to_cov(params: torch.Tensor, eps: float = COV_EPS) -> torch.Tensor:
    """(l11, l21, l22) (..., 3) → Σ = L Lᵀ + εI (..., 2, 2): positive definite for ANY real input."""
    l11, l21, l22 = params.unbind(-1)
    zero = torch.zeros_like(l11)
    low = torch.stack([torch.stack([l11, zero], -1), torch.stack([l21, l22], -1)], -2)
    eye = torch.eye(2, device=params.device, dtype=params.dtype)
    return low @ low.transpose(-1, -2) + eps * eye


def gaussians_to_state(mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """(μ (..., K, 2), Σ (..., K, 2, 2)) → state (..., K, 5)."""
    return torch.cat([mu, cov_to_cholesky(cov)], dim=-1)


def state_to_gaussians(state: torch.Tensor, eps: float = COV_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """state (..., K, 5) → (μ, Σ); Σ is positive definite whatever the state holds."""
    return state[..., :2], cholesky_to_cov(state[..., 2:], eps=eps)


def interpolate_states(start: torch.Tensor, end: torch.Tensor, alphas) -> torch.Tensor:
    """Paper eq. 7: (1 − α)·start + α·end for each α; states (..., K, 5) → (len(alphas), ..., K, 5)."""
    alphas = torch.as_tensor(alphas, dtype=start.dtype, device=start.device)
    shape = (-1,) + (1,) * start.dim()
    a = alphas.reshape(shape)
    return (1 - a) * start.unsqueeze(0) + a * end.unsqueeze(0)


def grid_to_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[-1, 1] grid coordinates (..., 2) → pixel coordinates (x, y) of an H×W image (pixel centres at i)."""
    scale = points.new_tensor([width, height])
    return ((points + 1) * scale - 1) / 2


def pixels_to_grid(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`grid_to_pixels`."""
    scale = points.new_tensor([width, height])
    return (2 * points + 1) / scale - 1
