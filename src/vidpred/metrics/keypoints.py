"""Keypoint evaluation of unsupervised landmarks (Shih et al. sec. 3, appendix B; as Jakab / Lorenz).

A linear regressor WITHOUT intercept maps the K landmark means of a frame to its J ground-truth
keypoints; both are first expressed in pixels with the origin at the image centre (appendix B). The
regressor is fitted on training frames (least squares, ``numpy.linalg.lstsq``) and applied to held-out
frames; accuracy is the share of predicted keypoints within ``threshold`` pixels of the truth (6 px at
128 px in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidpred.errors import VidpredError


def _flat(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise VidpredError(f"{name} must have shape (N, points, 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise VidpredError(f"{name} holds NaN or infinite values")
    return points.reshape(len(points), -1)


def centre(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel coordinates (x, y) with pixel centres at integers → origin at the image centre."""
    return np.asarray(points, dtype=np.float64) - np.array([(width - 1) / 2, (height - 1) / 2])


def fit_regressor(landmarks: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Least-squares W (2K, 2J) with keypoints ≈ landmarks @ W (no intercept); inputs (N, K, 2), (N, J, 2)."""
    x, y = _flat(landmarks, "landmarks"), _flat(keypoints, "keypoints")
    if len(x) != len(y):
        raise VidpredError(f"landmarks ({len(x)} frames) and keypoints ({len(y)} frames) differ in length")
    if len(x) == 0:
        raise VidpredError("keypoint regression needs at least one frame")
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return weights


def predict(weights: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Apply a fitted regressor: (N, K, 2) → (N, J, 2)."""
    x = _flat(landmarks, "landmarks")
    return (x @ weights).reshape(len(x), -1, 2)


def accuracy(pred: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """Share of keypoints whose Euclidean error is at most ``threshold`` pixels."""
    err = np.linalg.norm(np.asarray(pred, float) - np.asarray(truth, float), axis=-1)
    return float((err <= threshold).mean())


@dataclass
class KeypointResult:
    accuracy: float
    threshold: float
    mean_error_px: float
    train_frames: int
    test_frames: int

    def describe(self) -> str:
        return (f"keypoint accuracy {100 * self.accuracy:.1f}% within {self.threshold:g} px "
                f"(mean error {self.mean_error_px:.2f} px; regression on {self.train_frames} frames, "
                f"tested on {self.test_frames})")


def evaluate_keypoints(train_landmarks, train_keypoints, test_landmarks, test_keypoints,
                       height: int, width: int, threshold: float = 6.0) -> KeypointResult:
    """Fit on train, score on test; all coordinates in pixels (x, y) of an H×W image."""
    w = fit_regressor(centre(train_landmarks, height, width), centre(train_keypoints, height, width))
    pred = predict(w, centre(test_landmarks, height, width))
    truth = centre(test_keypoints, height, width)
    err = np.linalg.norm(pred - truth, axis=-1)
    return KeypointResult(accuracy(pred, truth, threshold), threshold, float(err.mean()),
                          len(train_landmarks), len(test_landmarks))
