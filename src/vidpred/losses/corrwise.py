"""Correspondence-wise losses (Geng, Hamilton, Owens, CVPR 2022, §3 and Alg. 1).

:class:`CorrWiseLoss` wraps a *base* loss ``base(a, b) -> scalar`` (L1, MSE, perceptual, or a weighted
sum of them, see :func:`make_base_loss`) so that it compares corresponding pixels instead of pixels at
the same position::

    F_p = (1 - ε) · flow(target, pred)      # where each target pixel is in the prediction
    F_t = (1 - ε) · flow(pred, target)
    loss = base(target, warp(pred, F_p)) + base(pred, warp(target, F_t))     # symmetric

ε = 0.1 ("flow scaling"); warp = bilinear backward warp, reflection padding, align_corners=True
(``vidpred.models.flow.warp``). The flow is computed without gradient (gradients reach the prediction
through the warp). A weighted sum of base losses is computed once per flow pair. Optional regularisers
(paper eq. 3; they need a differentiable flow, i.e. RAFT with ``keep_grad``): the flow magnitude (L1 of
the flow divided by size − 1) and the edge-aware first-order smoothness (weights exp(−150·|∇I|), robust
L1 sqrt(x² + 1e-6)), each averaged over both directions. ``pixelwise=True`` in ``forward`` returns the
plain base loss — the warm start.

Devices and precision: the flow backend is a submodule (``loss.to(device)`` moves RAFT's weights and the
perceptual trunk). In the corr-wise form, prediction and target are taken to float32 (when they are
bfloat16 / float16, e.g. a prediction made under autocast) and the flows, warps and flow regularisers run
in float32 with autocast off; the base loss runs under whatever autocast the caller set.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError
from vidpred.models.devices import at_least_float32, autocast_off
from vidpred.models.flow import check_images, warp

BaseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class WeightedLoss(torch.nn.Module):
    """``sum_k w_k · loss_k(a, b)`` over named base losses."""

    def __init__(self, terms: Mapping[str, tuple[float, BaseLoss]]):
        super().__init__()
        self.weights = {k: float(w) for k, (w, _) in terms.items()}
        self.terms = torch.nn.ModuleDict({k: f for k, (_, f) in terms.items() if isinstance(f, torch.nn.Module)})
        self._fns = {k: f for k, (_, f) in terms.items()}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(w * self._fns[k](a, b) for k, w in self.weights.items())


def make_base_loss(spec: str | Mapping[str, float], perceptual: dict | None = None) -> WeightedLoss:
    """``"l1"``, ``"mse"``, ``"l1+perceptual"`` (equal-weight average, CorrWise code) or a mapping
    ``{"l1": 0.5, "perceptual": 0.5}``. ``perceptual`` holds :class:`PerceptualLoss` keyword arguments."""
    if isinstance(spec, str):
        names = [s.strip() for s in spec.split("+") if s.strip()]
        spec = {n: 1.0 / len(names) for n in names} if names else {}
    terms: dict[str, tuple[float, BaseLoss]] = {}
    for name, weight in spec.items():
        if name == "l1":
            terms[name] = (weight, F.l1_loss)
        elif name == "mse":
            terms[name] = (weight, F.mse_loss)
        elif name == "perceptual":
            from vidpred.losses.perceptual import PerceptualLoss

            terms[name] = (weight, PerceptualLoss(**(perceptual or {})))
        else:
            raise VidpredError(f"loss.base: unknown base loss '{name}' (known: l1, mse, perceptual)")
    if not terms:
        raise VidpredError("loss.base is empty")
    return WeightedLoss(terms)


def _grad_xy(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]


def flow_magnitude(flow: torch.Tensor) -> torch.Tensor:
    h, w = flow.shape[2:]
    scale = torch.tensor([max(w - 1, 1), max(h - 1, 1)], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return (flow / scale).abs().mean()


def edge_aware_smoothness(flow: torch.Tensor, image: torch.Tensor, edge_weight: float = 150.0) -> torch.Tensor:
    fx, fy = _grad_xy(flow)
    ix, iy = _grad_xy(image)
    wx = torch.exp(-edge_weight * ix.abs().mean(1, keepdim=True))
    wy = torch.exp(-edge_weight * iy.abs().mean(1, keepdim=True))
    robust = lambda d: torch.sqrt(d * d + 1e-6)  # noqa: E731
    return 0.5 * ((wx * robust(fx)).mean() + (wy * robust(fy)).mean())


class CorrWiseLoss(torch.nn.Module):
    """The correspondence-wise form of ``base``; see the module docstring."""

    def __init__(self, base: BaseLoss, flow, epsilon: float = 0.1, symmetric: bool = True,
                 magnitude_weight: float = 0.0, smoothness_weight: float = 0.0, edge_weight: float = 150.0):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise VidpredError(f"loss.epsilon must be in [0, 1), got {epsilon}")
        if (magnitude_weight or smoothness_weight) and not getattr(flow, "differentiable", False):
            raise VidpredError(f"loss regularisers need a differentiable flow (raft), not '{flow.name}'")
        self.base = base
        self.flow = flow
        self.epsilon = float(epsilon)
        self.symmetric = symmetric
        self.magnitude_weight = float(magnitude_weight)
        self.smoothness_weight = float(smoothness_weight)
        self.edge_weight = float(edge_weight)

    @property
    def _keep_grad(self) -> bool:
        return bool(self.magnitude_weight or self.smoothness_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, pixelwise: bool = False,
                return_extras: bool = False):
        check_images("prediction", pred)
        check_images("target", target)
        if pred.shape != target.shape:
            raise VidpredError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if pixelwise:
            loss = self.base(pred, target)
            return (loss, {}) if return_extras else loss
        scale = 1.0 - self.epsilon
        pred, target = at_least_float32(pred), at_least_float32(target)
        with autocast_off(pred):
            flow_p = scale * self.flow(target, pred, keep_grad=self._keep_grad)  # target pixel → where in pred
            warped_pred = warp(pred, flow_p)
        loss = self.base(warped_pred, target)
        flows = [(flow_p, target)]
        extras = {"warped_pred": warped_pred, "flow_pred": flow_p}
        if self.symmetric:
            with autocast_off(pred):
                flow_t = scale * self.flow(pred, target, keep_grad=self._keep_grad)
                warped_target = warp(target, flow_t)
            loss = loss + self.base(pred, warped_target)
            flows.append((flow_t, pred))
            extras.update(warped_target=warped_target, flow_target=flow_t)
        with autocast_off(pred):
            if self.magnitude_weight:
                loss = loss + self.magnitude_weight * sum(flow_magnitude(f) for f, _ in flows) / len(flows)
            if self.smoothness_weight:
                loss = loss + self.smoothness_weight * sum(
                    edge_aware_smoothness(f, im, self.edge_weight) for f, im in flows) / len(flows)
        return (loss, extras) if return_extras else loss
