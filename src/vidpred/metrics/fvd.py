"""Fréchet Video Distance as StyleGAN-V computes it (``fvd2048_16f``), with a float64 Fréchet distance.

What StyleGAN-V does (read in universome/stylegan-v at commit 1f630af5; facts only, no code copied):

* detector: the I3D Kinetics-400 torchscript ``i3d_torchscript.pt`` from
  ``https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1`` (a port of the tf.hub I3D used by the
  original TensorFlow FVD), called with ``rescale=True, resize=True, return_features=True`` — "raw features
  before the softmax layer", 400 per clip (``src/metrics/frechet_video_distance.py``, ``compute_fvd``);
* input: a **uint8** tensor in ``[0, 255]``, layout **B×C×T×H×W** (the data loader's B×T×C×H×W clips are
  permuted with ``permute(0, 2, 1, 3, 4)``; grayscale is repeated to 3 channels); generated frames in
  ``[-1, 1]`` are quantised with ``(x * 127.5 + 128).clamp(0, 255).to(uint8)``, i.e. rounded to the nearest
  level (``src/metrics/metric_utils.py``, ``compute_feature_stats_for_dataset`` / ``..._for_generator``);
* value range and resize happen INSIDE the detector: ``rescale=True`` maps ``[0, 255]`` to ``[-1, 1]`` as
  ``x / 255 * 2 - 1`` (the maintainer's description of the torchscript's code, universome/fvd-comparison
  issue #4), ``resize=True`` resizes every frame to 224×224 spatially (the number of frames is kept).
  ``frechet_video_distance.py``'s docstring says the result matches the TensorFlow FVD (which resizes
  with ``tf.image.resize_bilinear`` to 224²) "up to the upsampling operation": the interpolation is the
  torchscript's own, so we never resize ourselves — we hand over the frames at their stored size;
* statistics: features are accumulated in float64; the covariance is the POPULATION covariance
  (``sum(x xᵀ)/N − μ μᵀ``, ``FeatureStats.get_mean_cov``), not ``np.cov``'s N − 1;
* ``fvd2048_16f`` (``src/metrics/metric_main.py``): 2048 real and 2048 generated clips of 16 consecutive
  frames (``max_real=2048, num_gen=2048, num_frames=16``); short videos are discarded;
* distance: ``|μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2·sqrtm(Σ₁Σ₂))`` with ``scipy.linalg.sqrtm``.

What we do:

* :class:`FVDMetric` loads the torchscript through :func:`vidpred.weights.load_torchscript` (``"i3d"``),
  takes videos B×T×3×H×W as uint8 or float in ``[0, 1]`` (floats are quantised as StyleGAN-V quantises
  its generator output), permutes them to B×3×T×H×W and calls the detector with :data:`I3D_KWARGS`;
* :func:`frechet_distance` computes the same quantity in float64 without scipy, from eigen-decompositions
  of symmetric matrices: ``tr sqrtm(Σ₁Σ₂) = tr sqrt(√Σ₁ Σ₂ √Σ₁) = ‖√Σ₂ √Σ₁‖_*`` (nuclear norm = sum of
  singular values of ``√Σ₂ √Σ₁``), which is exact for singular covariances (fewer clips than 400
  features) where ``sqrtm`` of the non-symmetric product is ill-conditioned;
* clips need at least :data:`FVD_MIN_FRAMES` = 10 frames (I3D's temporal pooling breaks below that); the
  standard is :data:`FVD_FRAMES` = 16 and :data:`FVD_CLIPS` = 2048 clips per set. Fewer clips bias the
  score upward (the Fréchet distance of finite samples is biased): such scores are not comparable with
  ``fvd2048_16f`` numbers.

Devices and precision: the detector lives on ``FVDMetric.device`` (``metric.to(device)`` moves it); videos on
any device are quantised where they are and copied there batch by batch; the detector runs with autocast
off (so a caller's mixed precision does not change the score), and the features come back as float64 numpy
arrays — the Fréchet distance is numpy (CPU) by design.

Weights: the I3D file has no published hash. ``stand_in`` (module attribute, read live) and
``FVDMetric.stand_in`` are True unless :func:`vidpred.weights.weight_status` says ``"verified"``, i.e. the
file's sha256 equals the one pinned when it was downloaded. Scores computed with a stand-in are never
compared with a paper's number.
"""

from __future__ import annotations

import numpy as np
import torch

from vidpred.errors import VidpredError
from vidpred.models.devices import autocast_off

FVD_FRAMES = 16  # StyleGAN-V's fvd2048_16f: clips of 16 consecutive frames
FVD_MIN_FRAMES = 10  # fewer frames break I3D (IMPLEMENTATION-NOTES, "Metric conventions seen in peers")
FVD_CLIPS = 2048  # clips per set in fvd2048_16f
FEATURE_DIM = 400  # I3D Kinetics-400 pre-softmax features
I3D_KWARGS = {"rescale": True, "resize": True, "return_features": True}  # as StyleGAN-V calls the detector


# ----------------------------------------------------------------------------------------- Fréchet distance

def _symmetric(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise VidpredError(f"frechet_distance: {name} must be a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise VidpredError(f"frechet_distance: {name} holds NaN or infinite values")
    return (a + a.T) / 2.0


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix. Eigenvalues below the numerical-rank tolerance
    (``n·eps·λ_max``, numpy's ``matrix_rank`` rule; includes rounding's tiny negatives) are set to 0."""
    lam, vec = np.linalg.eigh(a)
    tol = max(lam.max(initial=0.0), 0.0) * a.shape[0] * np.finfo(np.float64).eps
    lam = np.where(lam > tol, lam, 0.0)
    return (vec * np.sqrt(lam)) @ vec.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64, without scipy.

    ``|mu1 − mu2|² + tr(sigma1) + tr(sigma2) − 2·tr sqrt(√sigma1 · sigma2 · √sigma1)``; the last trace is the
    sum of the singular values of ``√sigma2 · √sigma1``. Rounding can make a distance of identical
    distributions a hair below zero: the result is clipped at 0.
    """
    mu1 = np.asarray(mu1, dtype=np.float64).reshape(-1)
    mu2 = np.asarray(mu2, dtype=np.float64).reshape(-1)
    s1, s2 = _symmetric(sigma1, "sigma1"), _symmetric(sigma2, "sigma2")
    if not (mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)):
        raise VidpredError(f"frechet_distance: shapes do not fit: mu1 {mu1.shape}, sigma1 {s1.shape}, "
                           f"mu2 {mu2.shape}, sigma2 {s2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise VidpredError("frechet_distance: a mean holds NaN or infinite values")
    cross = np.linalg.svd(_psd_sqrt(s2) @ _psd_sqrt(s1), compute_uv=False).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross
    return float(max(value, 0.0))


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and POPULATION covariance (divided by N, as StyleGAN-V) of features N×D, in float64."""
    x = _features(features, "features")
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / len(x)


def _features(features, name: str) -> np.ndarray:
    x = features.detach().cpu().numpy() if torch.is_tensor(features) else features
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise VidpredError(f"fvd: {name} must be features N×D, got shape {x.shape}")
    if len(x) < 2:
        raise VidpredError(f"fvd: {name} has {len(x)} video(s); a Fréchet distance needs at least 2 per set "
                           f"(StyleGAN-V's fvd2048_16f uses {FVD_CLIPS})")
    if not np.isfinite(x).all():
        raise VidpredError(f"fvd: {name} holds NaN or infinite values")
    return x


def fvd_from_features(real, fake) -> float:
    """FVD between two feature sets (N×D each, N ≥ 2)."""
    a, b = _features(real, "real features"), _features(fake, "fake features")
    if a.shape[1] != b.shape[1]:
        raise VidpredError(f"fvd: feature sizes differ: real {a.shape[1]}, fake {b.shape[1]}")
    return frechet_distance(*feature_stats(a), *feature_stats(b))


# ----------------------------------------------------------------------------------------------- videos

def to_uint8_clips(videos) -> torch.Tensor:
    """B×T×C×H×W uint8, or float in [0, 1] → the detector's input: uint8 B×3×T×H×W.

    Floats are quantised to the nearest of 256 levels (``floor(x·255 + 0.5)``, StyleGAN-V's quantisation of
    its generator output); grayscale is repeated to 3 channels."""
    v = torch.from_numpy(np.asarray(videos)) if not torch.is_tensor(videos) else videos
    v = v.detach()
    if v.ndim != 5:
        raise VidpredError(f"fvd: expected videos B×T×C×H×W, got shape {tuple(v.shape)}")
    b, t, c = v.shape[:3]
    if c not in (1, 3):
        raise VidpredError(f"fvd: expected 3 (or 1) colour channels in B×T×C×H×W, got {c} (shape {tuple(v.shape)})")
    if t < FVD_MIN_FRAMES:
        raise VidpredError(f"fvd: clips have {t} frames; I3D needs at least {FVD_MIN_FRAMES} "
                           f"(the standard fvd2048_16f uses {FVD_FRAMES})")
    if v.dtype != torch.uint8:
        if not v.is_floating_point():
            raise VidpredError(f"fvd: videos must be uint8 or float in [0, 1], got {v.dtype}")
        if not bool(torch.isfinite(v).all()):
            raise VidpredError("fvd: videos contain NaN or infinite values")
        lo, hi = float(v.min()), float(v.max())
        if lo < 0.0 or hi > 1.0:
            raise VidpredError(f"fvd: float videos must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        v = torch.floor(v.double() * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    if c == 1:
        v = v.expand(b, t, 3, *v.shape[3:])
    return v.permute(0, 2, 1, 3, 4).contiguous()


class FVDMetric:
    """I3D features and FVD as StyleGAN-V's ``fvd2048_16f`` (see the module docstring).

    ``metric.features(videos)`` → float64 numpy B×400; ``metric.fvd(real, fake)`` → float, where each
    argument is videos (B×T×C×H×W) or features (B×D) computed before. ``stand_in`` is True unless the I3D file
    is verified (its sha256 equals the pin recorded at download).
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 8, download: bool | None = None,
                 allow_stand_in: bool | None = None):
        from vidpred.weights import load_torchscript, weight_status

        if int(batch_size) < 1:
            raise VidpredError(f"fvd: batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = load_torchscript("i3d", download=download, allow_stand_in=allow_stand_in).to(self.device)
        self.weights = weight_status("i3d")
        self.stand_in = self.weights != "verified"

    def to(self, device: str | torch.device) -> "FVDMetric":
        """Move the detector to ``device`` (features are computed there from now on)."""
        self.device = torch.device(device)
        self.model = self.model.to(self.device)
        return self

    @torch.no_grad()
    def features(self, videos) -> np.ndarray:
        """I3D features of every clip, float64 B×D, computed ``batch_size`` clips at a time."""
        clips = to_uint8_clips(videos)
        if len(clips) == 0:
            raise VidpredError("fvd: no videos given")
        out = []
        for start in range(0, len(clips), self.batch_size):
            batch = clips[start:start + self.batch_size].to(self.device)
            with autocast_off(batch):
                feats = self.model(batch, **I3D_KWARGS)
            if not torch.is_tensor(feats) or feats.ndim != 2 or feats.shape[0] != len(batch):
                shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
                raise VidpredError(f"fvd: the I3D detector returned {shape} for {len(batch)} clips, expected "
                                   f"{len(batch)}×{FEATURE_DIM} features")
            out.append(feats.detach().to("cpu", torch.float64).numpy())
        return np.concatenate(out)

    def _as_features(self, x):
        """Videos (5-D) → their features; anything else is taken as features (checked by fvd_from_features)."""
        ndim = x.ndim if hasattr(x, "ndim") else np.asarray(x).ndim
        return self.features(x) if ndim == 5 else x

    def fvd(self, real, fake) -> float:
        """FVD between two sets (each videos B×T×C×H×W or features B×D; at least 2 per set)."""
        for name, x in (("real", real), ("fake", fake)):
            n = len(x)
            if n < 2:
                raise VidpredError(f"fvd: the {name} set has {n} video(s); a Fréchet distance needs at least 2 "
                                   f"per set (StyleGAN-V's fvd2048_16f uses {FVD_CLIPS})")
        return fvd_from_features(self._as_features(real), self._as_features(fake))


def __getattr__(name: str):
    """``stand_in``: True unless the cached I3D file is verified (evaluated at each access, not at import)."""
    if name == "stand_in":
        from vidpred.weights import weight_status

        return weight_status("i3d") != "verified"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FVD_FRAMES", "FVD_MIN_FRAMES", "FVD_CLIPS", "FEATURE_DIM", "I3D_KWARGS", "FVDMetric",
           "frechet_distance", "feature_stats", "fvd_from_features", "to_uint8_clips"]
