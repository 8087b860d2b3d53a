"""Landmark dynamics (Shih et al. sec. 2.4, appendix A): an LSTM in (μ, Cholesky) state space.

The state of a frame is (B, K, 5) — see :mod:`vidpred.models.landmarks.gaussians`. At each step the
LSTM reads [state_t, residual_t] (residual_t = state_t − state_{t−1}, zero at the first frame) and
predicts residual_{t+1}; the next state is state_t + residual_{t+1}. Any output maps to a
positive-definite covariance through Σ = L Lᵀ + εI.

Training setup "n inputs, m future" (appendix A): on a sequence of n + m states the model predicts the
n + m − 1 next states, reading ground truth for the first n steps and its own output for the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vidpred.config import dataclass_from_dict
from vidpred.models.landmarks.gaussians import STATE_DIM


@dataclass
class DynamicsConfig:
    num_landmarks: int = 30
    hidden: int = 256
    layers: int = 3
    residual_scale: float = 0.1  # head output × scale = residual (residuals are small in grid units)

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicsConfig":
        # n_inputs / n_future sit in the same config section but are training settings
        return dataclass_from_dict(cls, d, "dynamics", ignore=("n_inputs", "n_future"))

    def to_dict(self) -> dict:
        return asdict(self)


class LandmarkLSTM(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.num_landmarks * STATE_DIM
        self.lstm = nn.LSTM(2 * d, cfg.hidden, cfg.layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden, d)

    def step(self, state: torch.Tensor, residual: torch.Tensor, hidden=None):
        """One step: states (B, K, 5) → (next state, predicted residual, hidden)."""
        b = state.shape[0]
        x = torch.cat([state.reshape(b, -1), residual.reshape(b, -1)], -1).unsqueeze(1)
        out, hidden = self.lstm(x, hidden)
        res = (self.head(out[:, 0]) * self.cfg.residual_scale).reshape_as(state)
        return state + res, res, hidden

    def forward(self, states: torch.Tensor, n_inputs: int) -> torch.Tensor:
        """"n inputs, m future": states (B, T, K, 5), T = n + m → predictions of frames 1…T−1 (B, T−1, K, 5)."""
        t_total = states.shape[1]
        if not 1 <= n_inputs <= t_total:
            raise ValueError(f"n_inputs={n_inputs} must be in 1..{t_total}")
        preds, hidden = [], None
        state, prev = states[:, 0], None
        residual = torch.zeros_like(state)
        for t in range(t_total - 1):
            if t < n_inputs:  # ground-truth input
                state = states[:, t]
                residual = state - states[:, t - 1] if t > 0 else torch.zeros_like(state)
            else:  # own previous output
                state, residual = prev, last_res
            nxt, last_res, hidden = self.step(state, residual, hidden)
            preds.append(nxt)
            prev = nxt
        return torch.stack(preds, 1)

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, steps: int) -> torch.Tensor:
        """Read context states (B, T0, K, 5) (T0 ≥ 1), then predict ``steps`` future states (B, steps, K, 5)."""
        hidden, residual = None, torch.zeros_like(context[:, 0])
        for t in range(context.shape[1]):
            state = context[:, t]
            if t > 0:
                residual = state - context[:, t - 1]
            nxt, res, hidden = self.step(state, residual, hidden)
        out = [] if steps > 0 else [context[:, :0]]
        for _ in range(steps):
            out.append(nxt)
            nxt, res, hidden = self.step(nxt, res, hidden)
        return torch.stack(out, 1) if steps > 0 else out[0]
