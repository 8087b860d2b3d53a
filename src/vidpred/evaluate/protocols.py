"""Evaluation protocols as data: ``configs/protocols.yaml`` → :class:`Protocol`.

A protocol fixes everything that decides a score except the model: the split, the frame size, K context and
H predicted frames, which clips (seeded, reproducible), how many trials per clip and how the best one is
chosen, and the metrics. :func:`get_protocol` reads one by name (with ``key=value`` overrides, e.g.
``clips.count=8``); :func:`select_clips` turns it into the list of ``(video_id, clip_start)`` every method of
a track is scored on.

Settings are strict: a key a protocol does not have — at the top, in ``clips`` or in ``fvd``, from the file or
from an override (``clips.cuont=8``) — is one VidpredError naming it and the closest known key. ``methods``
maps a method to its options, taken whole: the method's predictor checks them (``load_predictor``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from vidpred.config import CONFIG_DIR, apply_override, load_config, suggest
from vidpred.errors import VidpredError

PROTOCOLS_FILE = CONFIG_DIR / "protocols.yaml"
IMAGE_METRICS = ("psnr", "ssim", "lpips", "mse", "l1")
SET_METRICS = ("fvd",)
KEYPOINT_METRICS = ("keypoint_acc", "keypoint_err_px")
KNOWN_METRICS = IMAGE_METRICS + SET_METRICS + KEYPOINT_METRICS
_KEYS = {"description", "kind", "split", "fit_split", "size", "context", "horizon", "clips", "samples", "best_of",
         "metrics", "first_n", "fvd", "methods", "threshold_px", "threshold_at", "max_frames"}
_SUB_KEYS = {"clips": {"mode", "count", "seed", "step"}, "fvd": {"frames", "samples"}}


@dataclass
class Protocol:
    name: str
    kind: str = "prediction"
    split: str = "test"
    size: tuple[int, int] | None = None
    context: int = 1
    horizon: int = 1
    clip_mode: str = "random"
    clip_count: int | None = None
    clip_seed: int = 0
    clip_step: int = 1
    samples: int = 1
    best_of: str = "single"
    metrics: tuple[str, ...] = ("psnr", "ssim")
    first_n: tuple[int, ...] = ()
    fvd_frames: int = 16
    fvd_samples: str = "first"
    methods: dict = field(default_factory=dict)
    description: str = ""
    fit_split: str = "train"
    threshold_px: float = 6.0
    threshold_at: int | None = None
    max_frames: int = 512
    provenance: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @property
    def span(self) -> int:
        """Frames one evaluated clip needs: K + H."""
        return self.context + self.horizon

    def method_options(self, method: str) -> dict:
        return dict(self.methods.get(method) or {})

    def to_dict(self) -> dict:
        return {"name": self.name, **self.raw}


def known_protocols() -> list[str]:
    return sorted(load_config(PROTOCOLS_FILE).get("protocols"))


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VidpredError(f"protocol setting {key} must be an integer ≥ {minimum}, got {value!r}")
    return value


def get_protocol(name: str, overrides: Iterable[str] = ()) -> Protocol:
    """The protocol ``name`` of ``configs/protocols.yaml``; ``overrides`` are ``key=value`` relative to it."""
    cfg = load_config(PROTOCOLS_FILE)
    table = cfg.get("protocols")
    if name not in table:  # checked before the overrides, which would make a new entry
        near = suggest(name, table)
        hint = f"did you mean '{near}'?; " if near else ""
        raise VidpredError(f"unknown protocol '{name}' ({hint}known: {', '.join(sorted(table))})")
    for o in overrides:
        apply_override(cfg, f"protocols.{name}.{o}")
    table = cfg.get("protocols")
    raw = dict(table[name])
    prefix = f"protocols.{name}."
    return _from_raw(name, raw, {k[len(prefix):]: v for k, v in cfg.provenance.items() if k.startswith(prefix)})


def _from_raw(name: str, raw: dict, prov: dict) -> Protocol:
    """A checked :class:`Protocol` from its YAML mapping (one VidpredError naming the setting otherwise)."""
    known = _KEYS | {f"{s}.{k}" for s, keys in _SUB_KEYS.items() for k in keys}
    unknown = sorted(set(raw) - _KEYS) + sorted(f"{s}.{k}" for s in _SUB_KEYS if isinstance(raw.get(s), dict)
                                                for k in set(raw[s]) - _SUB_KEYS[s])
    if unknown:
        near = suggest(unknown[0], known)
        hint = f"did you mean '{near}'?; " if near else ""
        raise VidpredError(f"protocol {name}: unknown setting(s) {', '.join(unknown)} ({hint}known: "
                           f"{', '.join(sorted(known - set(_SUB_KEYS)))})")
    where = f"protocol {name}"
    kind = raw.get("kind", "prediction")
    if kind not in ("prediction", "keypoints"):
        raise VidpredError(f"{where}: kind must be prediction or keypoints, got {kind!r}")
    size = raw.get("size")
    if size is not None:
        size = [size, size] if isinstance(size, int) else list(size)
        if len(size) != 2:
            raise VidpredError(f"{where}: size must be N or [H, W], got {raw.get('size')!r}")
        size = (_int(size[0], f"{name}.size", 1), _int(size[1], f"{name}.size", 1))
    metrics = tuple(raw.get("metrics") or ())
    bad = [m for m in metrics if m not in KNOWN_METRICS]
    if bad or not metrics:
        raise VidpredError(f"{where}: unknown or no metrics {bad or metrics} (known: {', '.join(KNOWN_METRICS)})")
    clips = dict(raw.get("clips") or {})
    fvd = dict(raw.get("fvd") or {})
    p = Protocol(
        name=name, kind=kind, split=str(raw.get("split", "test")), size=size,
        context=_int(raw.get("context", 1), f"{name}.context", 1) if kind == "prediction" else 0,
        horizon=_int(raw.get("horizon", 1), f"{name}.horizon", 1) if kind == "prediction" else 0,
        clip_mode=str(clips.get("mode", "random")),
        clip_count=None if clips.get("count") is None else _int(clips["count"], f"{name}.clips.count", 1),
        clip_seed=_int(clips.get("seed", 0), f"{name}.clips.seed", 0),
        clip_step=_int(clips.get("step", 1), f"{name}.clips.step", 1),
        samples=_int(raw.get("samples", 1), f"{name}.samples", 1),
        best_of=str(raw.get("best_of", "single")), metrics=metrics,
        first_n=tuple(_int(n, f"{name}.first_n", 1) for n in raw.get("first_n") or ()),
        fvd_frames=_int(fvd.get("frames", 16), f"{name}.fvd.frames", 1), fvd_samples=str(fvd.get("samples", "first")),
        methods=dict(raw.get("methods") or {}), description=str(raw.get("description", "")),
        fit_split=str(raw.get("fit_split", "train")), threshold_px=float(raw.get("threshold_px", 6.0)),
        threshold_at=raw.get("threshold_at"), max_frames=_int(raw.get("max_frames", 512), f"{name}.max_frames", 1),
        provenance=prov, raw=raw)
    if p.clip_mode not in ("random", "first"):
        raise VidpredError(f"{where}: clips.mode must be random or first, got {p.clip_mode!r}")
    if p.best_of not in ("single", "per_metric"):
        raise VidpredError(f"{where}: best_of must be single or per_metric, got {p.best_of!r}")
    if p.fvd_samples not in ("first", "all"):
        raise VidpredError(f"{where}: fvd.samples must be first or all, got {p.fvd_samples!r}")
    if kind == "prediction" and any(n > p.horizon for n in p.first_n):
        raise VidpredError(f"{where}: first_n {list(p.first_n)} exceeds the horizon {p.horizon}")
    if kind == "prediction" and "fvd" in metrics and p.fvd_frames > p.span:
        raise VidpredError(f"{where}: FVD needs {p.fvd_frames}-frame videos but context + horizon is {p.span} frames")
    if kind == "keypoints" and any(m not in KEYPOINT_METRICS for m in metrics):
        raise VidpredError(f"{where}: keypoint protocols score only {', '.join(KEYPOINT_METRICS)}")
    if kind == "prediction" and any(m in KEYPOINT_METRICS for m in metrics):
        raise VidpredError(f"{where}: keypoint metrics need kind: keypoints")
    return p


def adhoc_protocol(context: int, horizon: int, split: str = "test", metrics: Iterable[str] = ("psnr", "ssim"),
                   samples: int = 1, clips: int | None = None, seed: int = 0) -> Protocol:
    """A protocol built from command-line numbers (``vidpred evaluate`` without ``--protocol``)."""
    metrics = list(metrics)
    bad = [m for m in metrics if m not in IMAGE_METRICS + SET_METRICS]
    if bad:
        raise VidpredError(f"--metrics: unknown metric(s) {', '.join(bad)} (known: {', '.join(IMAGE_METRICS + SET_METRICS)})")
    raw = {"kind": "prediction", "split": split, "context": context, "horizon": horizon, "samples": samples,
           "best_of": "per_metric" if samples > 1 else "single", "metrics": metrics,
           "clips": {"mode": "random", "count": clips, "seed": seed, "step": 1}}
    return _from_raw("custom", raw, {"": "override: command line"})


def select_clips(manifest, protocol: Protocol) -> list[tuple[str, int]]:
    """``(video_id, clip_start)`` pairs of the protocol's split, in manifest order; identical for the same seed.

    ``random``: ``count`` of all windows of ``span`` frames (starts ``step`` apart) drawn without replacement;
    ``first``: the first window of each long-enough video (``count`` of them drawn when there are more)."""
    videos = manifest if protocol.split == "all" else manifest[manifest["split"] == protocol.split]
    if videos.empty:
        known = ", ".join(sorted(manifest["split"].unique()))
        raise VidpredError(f"the store has no '{protocol.split}' split (splits: {known})")
    span = protocol.span
    if protocol.clip_mode == "first":
        windows = [(str(v), 0) for v, n in zip(videos["video_id"], videos["num_frames"]) if int(n) >= span]
    else:
        windows = [(str(v), s) for v, n in zip(videos["video_id"], videos["num_frames"])
                   for s in range(0, int(n) - span + 1, protocol.clip_step)]
    if not windows:
        raise VidpredError(f"no '{protocol.split}' video has the {span} frames protocol {protocol.name} needs "
                           f"(context {protocol.context} + horizon {protocol.horizon})")
    if protocol.clip_count is not None and protocol.clip_count < len(windows):
        rng = np.random.default_rng(protocol.clip_seed)
        keep = np.sort(rng.choice(len(windows), size=protocol.clip_count, replace=False))
        windows = [windows[i] for i in keep]
    return windows


__all__ = ["Protocol", "get_protocol", "adhoc_protocol", "select_clips", "known_protocols", "IMAGE_METRICS",
           "SET_METRICS", "KEYPOINT_METRICS", "KNOWN_METRICS"]
