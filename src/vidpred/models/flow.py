"""Optical flow backends and the backward warp used by correspondence-wise losses.

One interface: ``backend(x1, x2) -> flow`` with ``x1, x2`` float tensors B×3×H×W in [-1, 1] and
``flow`` B×2×H×W (u = x, v = y, in pixels) such that ``x1[p] ≈ x2[p + flow[p]]``; hence
``warp(x2, flow)`` is aligned with ``x1`` (a backward warp).

* ``raft`` — torchvision RAFT (``raft_large`` or ``raft_small``), weights from the registry
  (``vidpred.weights.weight_path``), 5 refinement iterations by default (CorrWise code). RAFT needs
  sides that are multiples of 8 and at least 128 px: inputs are resized up to that, and the flow is
  resized back and its vectors rescaled. No gradient by default; ``keep_grad=True`` keeps it (for the
  flow regularisers).
* ``dis`` — OpenCV's DIS optical flow on the CPU (no weights, no gradient). The default when RAFT
  weights are not installed; the paper's Tab. 5 shows weaker flows still help.

``make_flow("auto")`` picks RAFT if its weights are present, else DIS.

Devices and precision: both backends are ``nn.Module``s, so a loss holding one as an attribute moves it with
``.to(device)`` (RAFT's weights go along; a RAFT whose weights sit elsewhere than its inputs is one clear
error). DIS copies its inputs to the CPU explicitly (OpenCV) and returns the flow on the first input's device
in its dtype. RAFT and :func:`warp` run in float32 with autocast switched off: optical flow and sampling
grids in bfloat16 are off by pixels at a few hundred pixels of width.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vidpred.errors import VidpredError
from vidpred.models.devices import autocast_off, float32_math, has_values

FLOW_BACKENDS = ("auto", "raft", "raft_small", "dis")


def check_images(name: str, x: torch.Tensor) -> None:
    """Raise a clear error unless ``x`` is a finite B×C×H×W tensor with C in (1, 3)."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise VidpredError(f"{name} must be a B×3×H×W (or B×1×H×W) tensor, got {shape}")
    if has_values(x) and not torch.isfinite(x).all():  # meta tensors (shape-only dry runs) have no values
        raise VidpredError(f"{name} contains NaN or infinite values")


@float32_math
def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out[p] = image[p + flow[p]]``, bilinear, reflection padding, align_corners=True.

    Computed in float32 or wider (bfloat16 / float16 inputs are upcast, autocast is off), on the inputs'
    device; the result has the wider of the two inputs' dtypes."""
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != image.shape[0] or flow.shape[2:] != image.shape[2:]:
        raise VidpredError(f"flow of shape {tuple(flow.shape)} does not fit image of shape {tuple(image.shape)}")
    dtype = torch.promote_types(image.dtype, flow.dtype)
    image, flow = image.to(dtype), flow.to(dtype)
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=flow.device),
                            torch.arange(w, dtype=dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


class DisFlow(torch.nn.Module):
    """OpenCV DIS optical flow (CPU, no gradient). ``preset``: ultrafast, fast or medium.

    A module without parameters (so it sits in a loss like RAFT does); inputs on any device are copied to the
    CPU for OpenCV and the flow comes back on ``x1``'s device in ``x1``'s dtype."""

    name = "dis"
    differentiable = False

    def __init__(self, preset: str = "medium", min_side: int = 0):
        super().__init__()
        import cv2

        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        if preset not in presets:
            raise VidpredError(f"flow.dis_preset must be one of {sorted(presets)}, got '{preset}'")
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(presets[preset])
        self.min_side = int(min_side)  # small images are upscaled to this before matching (0: never)

    @staticmethod
    def _gray(x: torch.Tensor) -> np.ndarray:
        x = x.detach().to("cpu", torch.float32)  # OpenCV works on the CPU: copy explicitly, then quantise
        x = x.clamp(-1, 1).mean(dim=1) if x.shape[1] == 3 else x[:, 0]
        return ((x + 1.0) * 127.5).round().to(torch.uint8).numpy()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, keep_grad: bool = False) -> torch.Tensor:
        if keep_grad:
            raise VidpredError("flow backend 'dis' has no gradient; use 'raft' for the flow regularisers")
        check_images("flow input x1", x1)
        check_images("flow input x2", x2)
        a, b = self._gray(x1), self._gray(x2)
        h, w = a.shape[1:]
        scale = max(1.0, self.min_side / min(h, w))
        size = (int(round(w * scale)), int(round(h * scale)))
        flows = []
        for i in range(a.shape[0]):
            if scale == 1.0:
                flows.append(self._dis.calc(a[i], b[i], None))  # H×W×2
                continue
            up_a = self._cv2.resize(a[i], size, interpolation=self._cv2.INTER_LINEAR)
            up_b = self._cv2.resize(b[i], size, interpolation=self._cv2.INTER_LINEAR)
            flow = self._cv2.resize(self._dis.calc(up_a, up_b, None), (w, h), interpolation=self._cv2.INTER_AREA)
            flows.append(flow * np.array([w / size[0], h / size[1]], np.float32))
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(device=x1.device, dtype=x1.dtype)


class RaftFlow(torch.nn.Module):
    """torchvision RAFT with registry weights; ``weights=None`` means random initialisation (bench/tests only).

    RAFT is a submodule: ``.to(device)`` moves its weights (and so does moving a loss that holds this flow).
    It stays in eval mode and frozen whatever ``train()`` says, and runs in float32 with autocast off."""

    differentiable = True

    def __init__(self, size: str = "large", iters: int = 5, weights: str | None = "registry", min_side: int = 128):
        super().__init__()
        from torchvision.models.optical_flow import raft_large, raft_small

        if size not in ("large", "small"):
            raise VidpredError(f"flow.raft_size must be 'large' or 'small', got '{size}'")
        self.name = f"raft_{size}"
        self.iters = int(iters)
        self.min_side = int(min_side)
        self.model = (raft_large if size == "large" else raft_small)(weights=None, progress=False)
        if weights == "registry":
            weights = str(_registry_path(self.name))
        if weights is not None:
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                self.model.load_state_dict(state)
            except Exception as exc:  # corrupt or wrong file
                raise VidpredError(f"RAFT weights {weights} cannot be loaded: {str(exc).splitlines()[0]}") from None
        self.model.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # RAFT stays in eval mode (its BatchNorm statistics are frozen)
        super().train(mode)
        self.model.eval()
        return self

    def _size(self, h: int, w: int) -> tuple[int, int]:
        scale = max(1.0, self.min_side / min(h, w))
        return int(math.ceil(h * scale / 8) * 8), int(math.ceil(w * scale / 8) * 8)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, keep_grad: bool = False) -> torch.Tensor:
        check_images("flow input x1", x1)
        check_images("flow input x2", x2)
        weight = next(self.model.parameters(), None)
        device, dtype = (x1.device, torch.float32) if weight is None else (weight.device, weight.dtype)
        if device != x1.device or x2.device != x1.device:
            raise VidpredError(f"RAFT weights are on {device} but the images on {x1.device} and {x2.device}: "
                               f"move the flow (or the loss holding it) with .to(device)")
        if x1.shape[1] == 1:
            x1, x2 = x1.expand(-1, 3, -1, -1), x2.expand(-1, 3, -1, -1)
        h, w = x1.shape[2:]
        rh, rw = self._size(h, w)
        with torch.set_grad_enabled(keep_grad and torch.is_grad_enabled()), autocast_off(x1):
            # torchvision RAFT takes [-1, 1]; in its weights' dtype (float32), never in autocast's bfloat16
            a, b = x1.to(dtype).clamp(-1, 1), x2.to(dtype).clamp(-1, 1)
            if (rh, rw) != (h, w):
                a = F.interpolate(a, size=(rh, rw), mode="bilinear", align_corners=False)
                b = F.interpolate(b, size=(rh, rw), mode="bilinear", align_corners=False)
            flow = self.model(a, b, num_flow_updates=self.iters)[-1]
            if (rh, rw) != (h, w):
                flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
                flow = flow * torch.tensor([w / rw, h / rh], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
        return flow.to(x1.dtype)


def _registry_path(name: str, download: bool | None = None):
    try:
        from vidpred.weights import weight_path
    except ModuleNotFoundError as exc:
        if exc.name != "vidpred.weights":
            raise
        raise VidpredError(f"RAFT weights '{name}' need the weights registry (vidpred.weights), not installed") from None
    return weight_path(name, download=download)


def raft_available(name: str = "raft_large") -> bool:
    try:
        _registry_path(name, download=False)
    except VidpredError:
        return False
    return True


def make_flow(backend: str = "auto", iters: int = 5, dis_preset: str = "medium", raft_weights: str | None = "registry",
              dis_min_side: int = 0):
    """A flow backend by name: ``auto`` (RAFT if its weights are present, else DIS), ``raft``,
    ``raft_small`` or ``dis``."""
    if backend == "auto":
        backend = "raft" if raft_available("raft_large") else "dis"
    if backend == "dis":
        return DisFlow(dis_preset, dis_min_side)
    if backend in ("raft", "raft_large"):
        return RaftFlow("large", iters, raft_weights)
    if backend == "raft_small":
        return RaftFlow("small", iters, raft_weights)
    raise VidpredError(f"unknown flow backend '{backend}' (known: {', '.join(FLOW_BACKENDS)})")
