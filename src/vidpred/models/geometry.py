"""Frame geometry of model configs: ``image_size`` is ``N`` (square N×N, as in every older config and model
file) or ``[H, W]`` (also accepted: ``"HxW"``, the ``--size`` spelling of ``vidpred data prepare``).

:func:`image_hw` reads either form as ``(H, W)``; :func:`normalize_image_size` is what configs store (an int
when square, so square model files are unchanged; ``[H, W]`` otherwise); :func:`check_divisible` gives the
one error a model raises when H or W does not fit its down/upsampling.
"""

from __future__ import annotations

from vidpred.errors import VidpredError


def image_hw(value, name: str = "model.image_size") -> tuple[int, int]:
    """``N`` → ``(N, N)``; ``[H, W]`` / ``(H, W)`` / ``"HxW"`` → ``(H, W)``; anything else is a VidpredError."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = None
        if nums is None or len(nums) not in (1, 2):
            raise VidpredError(f"{name} must be N or [H, W] (or 'HxW'), got {value!r}")
        value = nums[0] if len(nums) == 1 else nums
    if isinstance(value, bool):
        raise VidpredError(f"{name} must be N or [H, W], got {value!r}")
    if isinstance(value, int):
        hw = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        hw = (int(value[0]), int(value[1]))
    else:
        raise VidpredError(f"{name} must be N or [H, W] (two integers), got {value!r}")
    if min(hw) < 1:
        raise VidpredError(f"{name} must be positive, got {value!r}")
    return hw


def normalize_image_size(value, name: str = "model.image_size") -> int | list[int]:
    """The stored form: ``N`` when square, ``[H, W]`` otherwise."""
    h, w = image_hw(value, name)
    return h if h == w else [h, w]


def describe_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}×{hw[1]}"


def check_divisible(value, factors: dict[str, int], name: str = "model.image_size") -> tuple[int, int]:
    """``(H, W)`` of ``value``; a VidpredError naming H or W (and every factor) when either is not a multiple of
    every factor (``{"2**pose_depth": 16, …}``)."""
    h, w = image_hw(value, name)
    bad = [(axis, n, label, f) for axis, n in (("H", h), ("W", w)) for label, f in factors.items() if n % f]
    if bad:
        needs = ", ".join(f"{label}={f}" for label, f in factors.items())
        what = "; ".join(f"{axis}={n} is not a multiple of {label}={f}" for axis, n, label, f in bad)
        raise VidpredError(f"{name}={value!r} (H×W {h}×{w}): {what} — H and W must both be multiples of {needs}")
    return h, w
