"""Per-image PSNR and SSIM in torch, batched over any leading dimensions.

One convention for every method we evaluate (see IMPLEMENTATION-NOTES: SSIM differs between libraries):

* inputs are float tensors N×C×H×W or N×T×C×H×W with values in ``[0, data_range]``;
* results are one value per image: shape N or N×T;
* SSIM is Wang et al. (2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, population
  (not sample) covariances, averaged over the "valid" region (pixels whose window fits in the image) and
  over channels — the same numbers as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=...)``, which a test checks.

torchmetrics/piqa are not installed here; skimage is, but works on numpy one image at a time, so this
module keeps the small convolution in torch (a test pins it to skimage).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def check_pair(pred: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if not (torch.is_tensor(pred) and torch.is_tensor(target)):
        raise VidpredError(f"{what}: expected torch tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape:
        raise VidpredError(f"{what}: shape mismatch, prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.ndim not in (4, 5):
        raise VidpredError(f"{what}: expected N×C×H×W or N×T×C×H×W, got shape {tuple(pred.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise VidpredError(f"{what}: expected float tensors, got {pred.dtype} and {target.dtype}")
    if not bool(torch.isfinite(pred).all()) or not bool(torch.isfinite(target).all()):
        bad = "prediction" if not bool(torch.isfinite(pred).all()) else "target"
        raise VidpredError(f"{what}: the {bad} contains NaN or infinite values")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (``inf`` for identical images)."""
    check_pair(pred, target, "psnr")
    mse = (pred.double() - target.double()).pow(2).flatten(-3).mean(-1)
    return (10.0 * torch.log10(data_range**2 / mse)).to(pred.dtype)


def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(WINDOW, dtype=dtype, device=device) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Structural similarity per image (mean over channels and valid pixels), computed in ``dtype``
    (float64 for reported metrics; float32 is enough for a training loss and much faster on CPU)."""
    check_pair(pred, target, "ssim")
    lead = pred.shape[:-3]
    c, h, w = pred.shape[-3:]
    if h < WINDOW or w < WINDOW:
        raise VidpredError(f"ssim: images must be at least {WINDOW}×{WINDOW} pixels, got {h}×{w}")
    x = pred.reshape(-1, c, h, w).to(dtype)
    y = target.reshape(-1, c, h, w).to(dtype)
    g = _gaussian_1d(dtype, x.device)
    gy, gx = g.view(1, 1, WINDOW, 1).expand(c, 1, WINDOW, 1), g.view(1, 1, 1, WINDOW).expand(c, 1, 1, WINDOW)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, "valid" windows only (no padding)
        return F.conv2d(F.conv2d(t, gy, groups=c), gx, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).reshape(lead).to(pred.dtype)


__all__ = ["psnr", "ssim", "check_pair"]
