"""Benchmark evaluation: every method and baseline of a track on the same held-out clips, one metric convention.

:func:`evaluate_track` is the stage (and :func:`evaluate_one` the single-method command, ``vidpred evaluate``):

1. the protocol (:mod:`vidpred.evaluate.protocols`) picks the clips — the same ``(video_id, clip_start)`` list
   for every method, reproducible from the seed;
2. each predictor (:mod:`vidpred.evaluate.predictors`) gets the K context frames in [0, 1] and predicts H frames,
   N trials where it is stochastic;
3. :class:`MetricSet` scores every predicted frame (``docs/METRICS.md``): PSNR (capped), SSIM, LPIPS, MSE, L1 per
   frame; with ``best_of: per_metric`` each metric keeps its own best trial per clip (MOSO §4); FVD over the
   whole set (I3D features of context + prediction against the real clips);
4. means with 95 % bootstrap intervals over clips, per-frame curves with their intervals, optional first-n means;
5. the output folder of each method (``metrics.json``, ``per_clip.csv``, ``per_frame.png``, ``samples.png``, see
   ``docs/CONTRACTS.md``), and — when an MLflow run is wanted — one run ``evaluate/<track>/<method>`` per
   method under the pipeline's parent run, with per-frame metrics at step = frame index.

Weights: LPIPS (AlexNet) and FVD (I3D) need pretrained files. A metric whose weights cannot be had is
*unavailable* (recorded with the reason) when it came from the protocol, and an error when it was asked for
explicitly (``required``). Scores computed with stand-in or unverified weights are marked ``stand_in`` in
``metrics.json``, tagged in MLflow and printed as such; they are not real scores.
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from vidpred.errors import VidpredError
from vidpred.evaluate.predictors import Predictor, load_predictor
from vidpred.evaluate.protocols import IMAGE_METRICS, Protocol, select_clips
from vidpred.fsutil import atomic_dir

FORMAT = "vidpred-eval/1"
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "mse": False, "l1": False, "fvd": False,
                    "keypoint_acc": True, "keypoint_err_px": False}
UNITS = {"psnr": "dB", "ssim": "", "lpips": "", "mse": "", "l1": "", "fvd": "", "keypoint_acc": "fraction",
         "keypoint_err_px": "px"}
WEIGHTS_OF = {"lpips": "alexnet", "fvd": "i3d"}
SAMPLE_CLIPS = 4  # rows of samples.png
N_BOOT = 1000  # bootstrap replicates (docs/METRICS.md)


# ------------------------------------------------------------------------------------------ metrics

class MetricSet:
    """The metrics of a protocol, with LPIPS / I3D loaded once; ``unavailable`` names those that could not be."""

    def __init__(self, names: Iterable[str], required: Iterable[str] = (), device: str | torch.device = "cpu"):
        from vidpred.weights import weight_status

        self.names = [n for n in names]
        self.unavailable: dict[str, str] = {}
        self.weights: dict[str, str] = {}
        self.stand_in: dict[str, bool] = {}
        self.lpips = self.fvd = None
        required = set(required)
        for name in self.names:
            if name not in WEIGHTS_OF:
                continue
            try:
                if name == "lpips":
                    from vidpred.metrics.lpips import LPIPSMetric

                    self.lpips = LPIPSMetric(device=device)
                else:
                    from vidpred.metrics.fvd import FVDMetric

                    self.fvd = FVDMetric(device=device)
            except VidpredError as exc:
                if name in required:
                    raise
                self.unavailable[name] = str(exc)
                warnings.warn(f"{name} not computed: {exc}", stacklevel=2)
                continue
            status = weight_status(WEIGHTS_OF[name])
            self.weights[WEIGHTS_OF[name]] = status
            self.stand_in[name] = status != "verified"

    @property
    def image(self) -> list[str]:
        return [n for n in self.names if n in IMAGE_METRICS and n not in self.unavailable]

    def score_frames(self, pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-frame scores of ``pred`` (…×3×H×W) against ``truth`` (same shape) → name → tensor of the leading shape."""
        from vidpred.metrics.image import l1, mse, psnr, ssim

        flat_p = pred.reshape(-1, *pred.shape[-3:]).double()  # reported metrics in float64 (docs/METRICS.md)
        flat_t = truth.reshape(-1, *truth.shape[-3:]).double()
        fns = {"psnr": psnr, "ssim": ssim, "mse": mse, "l1": l1, "lpips": self.lpips}
        out = {}
        for name in self.image:
            out[name] = fns[name](flat_p, flat_t).double().reshape(pred.shape[:-3])
        return out


# ------------------------------------------------------------------------------------------ scoring

@dataclass
class Scores:
    """Raw results of one method on one protocol (clips × predicted frames per metric)."""

    method: str
    clips: list[tuple[str, int]]
    per_frame: dict[str, np.ndarray]  # name → clips × H
    trial: dict[str, np.ndarray]  # name → clips (the trial kept for that metric)
    set_level: dict[str, float] = field(default_factory=dict)  # fvd
    set_counts: dict[str, int] = field(default_factory=dict)  # fvd: videos per set
    samples: list[dict] = field(default_factory=list)  # first clips: context, truth, prediction (T×3×H×W)


def _load_clip(store, video_id: str, start: int, span: int) -> torch.Tensor:
    frames = np.asarray(store.frames(video_id)[start:start + span])
    return torch.from_numpy(frames.astype(np.float32) / 255.0).permute(0, 3, 1, 2)


def check_store(store, protocol: Protocol) -> None:
    shape = store.meta.get("frame_shape") or [int(store.manifest["height"].iloc[0]),
                                              int(store.manifest["width"].iloc[0]), 3]
    if protocol.size is not None and tuple(shape[:2]) != tuple(protocol.size):
        raise VidpredError(f"protocol {protocol.name} is defined at {protocol.size[0]}×{protocol.size[1]} but the store "
                           f"{store.root} holds {shape[0]}×{shape[1]} frames")


def score_method(store, predictor: Predictor, protocol: Protocol, metrics: MetricSet,
                 clips: list[tuple[str, int]], batch_size: int = 8, seed: int = 0, progress: bool = True) -> Scores:
    """Run ``predictor`` on ``clips`` and score every predicted frame (see the module docstring)."""
    from tqdm import tqdm

    k, h = protocol.context, protocol.horizon
    gen = torch.Generator().manual_seed(seed)
    per_frame = {m: [] for m in metrics.image}
    trial = {m: [] for m in metrics.image}
    real_feats, fake_feats = [], []
    samples: list[dict] = []
    n = protocol.samples if predictor.stochastic else 1
    bs = max(1, batch_size // n)
    bar = tqdm(total=len(clips), desc=f"evaluate {predictor.name}", unit="clip", disable=not progress, leave=False)
    for i in range(0, len(clips), bs):
        chunk = clips[i:i + bs]
        frames = torch.stack([_load_clip(store, v, s, k + h) for v, s in chunk])
        context, truth = frames[:, :k], frames[:, k:]
        pred = predictor.predict(context, h, n, gen)  # B×N×H×3×H×W
        if not bool(torch.isfinite(pred).all()):
            raise VidpredError(f"{predictor.name} predicted NaN or infinite values for clip {chunk[0][0]}@{chunk[0][1]}")
        scores = metrics.score_frames(pred, truth[:, None].expand_as(pred))  # name → B×N×H
        for name, s in scores.items():
            mean = s.mean(-1)  # B×N
            if protocol.best_of == "per_metric":
                pick = mean.argmax(1) if HIGHER_IS_BETTER[name] else mean.argmin(1)
            else:
                pick = torch.zeros(len(chunk), dtype=torch.long)
            per_frame[name].append(s[torch.arange(len(chunk)), pick].numpy())
            trial[name].append(pick.numpy())
        if metrics.fvd is not None:
            f = protocol.fvd_frames
            real_feats.append(metrics.fvd.features(frames[:, :f]))
            trials = range(pred.shape[1]) if protocol.fvd_samples == "all" else range(1)
            for t in trials:
                fake_feats.append(metrics.fvd.features(torch.cat([context, pred[:, t]], 1)[:, :f]))
        if len(samples) < SAMPLE_CLIPS:  # the grid shows the best-PSNR trial (trial 0 without best-of)
            shown = (scores["psnr"].mean(-1).argmax(1) if "psnr" in scores and protocol.best_of == "per_metric"
                     else torch.zeros(len(chunk), dtype=torch.long))
            for j in range(min(len(chunk), SAMPLE_CLIPS - len(samples))):
                samples.append({"video_id": chunk[j][0], "clip_start": chunk[j][1], "context": context[j],
                                "truth": truth[j], "prediction": pred[j, int(shown[j])]})
        bar.update(len(chunk))
    bar.close()
    out = Scores(predictor.name, list(clips), {m: np.concatenate(v) for m, v in per_frame.items()},
                 {m: np.concatenate(v) for m, v in trial.items()}, samples=samples)
    if metrics.fvd is not None:
        from vidpred.metrics.fvd import fvd_from_features

        real, fake = np.concatenate(real_feats), np.concatenate(fake_feats)
        out.set_level["fvd"] = float(fvd_from_features(real, fake))
        out.set_counts["fvd"] = len(fake)
    return out


# ------------------------------------------------------------------------------------------ summary

def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def summarise(scores: Scores, protocol: Protocol, metrics: MetricSet, *, track: str, model: str | None,
              store, data_md5: str | None = None, predictor: str = "") -> dict:
    """The ``metrics.json`` document of one method (see docs/CONTRACTS.md)."""
    from vidpred.metrics.stats import bootstrap_ci

    k, h = protocol.context, protocol.horizon
    out: dict = {}
    for name, values in scores.per_frame.items():
        clip_means = values.mean(1)
        lo, hi = bootstrap_ci(clip_means, n_boot=N_BOOT)
        flo, fhi = bootstrap_ci(values, n_boot=N_BOOT)
        out[name] = {"mean": float(clip_means.mean()), "ci95": [lo, hi], "per_frame": values.mean(0).tolist(),
                     "per_frame_ci95": [[float(a), float(b)] for a, b in zip(flo, fhi)],
                     "higher_is_better": HIGHER_IS_BETTER[name], "unit": UNITS[name],
                     "stand_in": bool(metrics.stand_in.get(name, False))}
        for first in protocol.first_n:
            sub = values[:, :first].mean(1)
            slo, shi = bootstrap_ci(sub, n_boot=N_BOOT)
            out[f"{name}_first{first}"] = {"mean": float(sub.mean()), "ci95": [slo, shi], "per_frame": None,
                                           "per_frame_ci95": None, "higher_is_better": HIGHER_IS_BETTER[name],
                                           "unit": UNITS[name], "stand_in": out[name]["stand_in"]}
    for name, value in scores.set_level.items():
        out[name] = {"mean": value, "ci95": None, "per_frame": None, "per_frame_ci95": None,
                     "higher_is_better": HIGHER_IS_BETTER[name], "unit": UNITS[name],
                     "stand_in": bool(metrics.stand_in.get(name, False)), "videos": scores.set_counts.get(name)}
    caveats = []
    for name, reason in metrics.unavailable.items():
        caveats.append(f"{name} not computed: {reason}")
    for name, flag in metrics.stand_in.items():
        if flag and name in out:
            weights = WEIGHTS_OF[name]
            caveats.append(f"{name} computed with {metrics.weights.get(weights)} {weights} weights: NOT a real "
                           f"{name} score, not comparable with published numbers")
    if "fvd" in out:
        from vidpred.metrics.fvd import FVD_CLIPS

        if (out["fvd"].get("videos") or 0) < FVD_CLIPS:
            caveats.append(f"FVD from {out['fvd']['videos']} generated videos (StyleGAN-V's fvd2048_16f uses "
                           f"{FVD_CLIPS}); with fewer the score is biased upward")
    return {
        "format": FORMAT, "track": track, "method": scores.method, "predictor": predictor,
        "protocol": protocol.name, "protocol_spec": protocol.to_dict(), "provenance": protocol.provenance,
        "model": model, "store": str(Path(store.root).resolve()), "data_md5": data_md5, "split": protocol.split,
        "context": k, "horizon": h, "samples": protocol.samples, "best_of": protocol.best_of,
        "num_clips": len(scores.clips), "clips": [{"video_id": v, "clip_start": s} for v, s in scores.clips],
        "frames": list(range(k, k + h)), "metrics": out, "unavailable": dict(metrics.unavailable),
        "weights": dict(metrics.weights), "stand_in": any(v["stand_in"] for v in out.values()),
        "caveats": caveats, "images": {"per_frame": "per_frame.png", "samples": "samples.png"},
    }


# ------------------------------------------------------------------------------------------ files

def _write_csv(path: Path, scores: Scores, k: int) -> None:
    names = list(scores.per_frame)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "clip_start", "frame", *names, *[f"{m}_trial" for m in names]])
        for c, (vid, start) in enumerate(scores.clips):
            h = next(iter(scores.per_frame.values())).shape[1] if names else 0
            for j in range(h):
                w.writerow([vid, start, k + j, *[repr(float(scores.per_frame[m][c, j])) for m in names],
                            *[int(scores.trial[m][c]) for m in names]])


def samples_grid(samples: list[dict]) -> np.ndarray:
    """uint8 image: per clip two rows — context | ground truth, then context | prediction (a red bar after the
    context frames, a white line between clips)."""
    rows = []
    for s in samples:
        ctx = s["context"]
        gap = torch.zeros(3, ctx.shape[-2], 3)
        gap[0] = 1.0  # a red bar between the context and the predicted / true future
        for future in (s["truth"], s["prediction"]):
            rows.append(torch.cat([*ctx, gap, *future], dim=2))  # 3×H×(T·W + 3)
        rows.append(torch.ones(3, 3, rows[-1].shape[-1]))  # a white line between clips
    grid = torch.cat(rows[:-1], dim=1) if rows else torch.zeros(3, 1, 1)
    return (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def write_outputs(out_dir: Path, summary: dict, scores: Scores, per_frame_png: Path | None = None) -> Path:
    """Write one method's output folder atomically; ``per_frame_png``: the track's plot (all its methods; None
    when no metric has per-frame values) is copied in."""
    import shutil

    from PIL import Image

    with atomic_dir(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        _write_csv(tmp / "per_clip.csv", scores, summary["context"])
        if per_frame_png is not None:
            shutil.copyfile(per_frame_png, tmp / "per_frame.png")
        if scores.samples:
            Image.fromarray(samples_grid(scores.samples)).save(tmp / "samples.png")
    return Path(out_dir)


# ------------------------------------------------------------------------------------------ MLflow

def log_evaluation(summary: dict, out_dir: Path, parent_run_id: str | None = None) -> str:
    """One MLflow run ``evaluate/<track>/<method>`` under ``parent_run_id`` (or env ``VIDPRED_PARENT_RUN_ID``)."""
    import mlflow

    from vidpred import tracking

    name = f"evaluate/{summary['track']}/{summary['method']}"
    params = {"protocol": summary["protocol_spec"], "method": summary["method"], "model": summary["model"] or "",
              "store": summary["store"], "provenance": summary["provenance"]}
    with tracking.stage_run(name, config=params, parent_run_id=parent_run_id, data_md5=summary.get("data_md5")) as run:
        mlflow.set_tags({"vidpred.stage": "evaluate", "vidpred.eval.track": summary["track"],
                         "vidpred.eval.method": summary["method"], "vidpred.eval.protocol": summary["protocol"],
                         "vidpred.eval.stand_in": str(bool(summary["stand_in"])).lower()})
        for metric, reason in summary["unavailable"].items():
            mlflow.set_tag(f"vidpred.eval.unavailable.{metric}", reason[:5000])
        headline = {}
        for metric, m in summary["metrics"].items():
            headline[metric] = m["mean"]
            if m.get("ci95"):
                headline[f"{metric}_ci_low"], headline[f"{metric}_ci_high"] = m["ci95"]
        # the headline metrics are also the evaluated LoggedModel's metrics on this store (MLflow's model page)
        model_id = tracking.logged_model_id(summary["model"]) if summary["model"] else None
        datasets = tracking.LOGGED_DATASETS.get(run.info.run_id) or [None]
        if model_id:
            from mlflow.entities import LoggedModelInput

            mlflow.log_input(model=LoggedModelInput(model_id))
        tracking.log_metrics({k: v for k, v in headline.items() if _finite(v) is not None}, model_id=model_id,
                             dataset=datasets[0])
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        curve = [Metric(f"{metric}_per_frame", float(value), now, int(frame))
                 for metric, m in summary["metrics"].items()
                 for frame, value in zip(summary["frames"], m.get("per_frame") or []) if _finite(value) is not None]
        for i in range(0, len(curve), 1000):  # MLflow's batch limit
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=curve[i:i + 1000])
        mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
        return run.info.run_id


# ------------------------------------------------------------------------------------------ entry points

@dataclass
class EvalResult:
    out_dir: Path
    summary: dict
    run_id: str | None = None
    promotion: object | None = None  # vidpred.registry.Decision of the track's model, when it was registered

    def describe(self) -> str:
        s = self.summary
        if s["horizon"]:
            head = (f"{s['method']} on {s['protocol']} ({s['split']}, {s['num_clips']} clips, {s['context']} → "
                    f"{s['horizon']} frames" + (f", best of {s['samples']}" if s['best_of'] == 'per_metric' else "") + ")")
        else:  # keypoint protocols score frames
            head = f"{s['method']} on {s['protocol']} ({s['split']}, {s['num_clips']} frames)"
        lines = [head]
        for name, m in s["metrics"].items():
            ci = f" [{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]" if m.get("ci95") else ""
            flag = "  STAND-IN WEIGHTS: not a real score" if m.get("stand_in") else ""
            lines.append(f"  {name:18s} {m['mean']:.4g}{ci}{flag}")
        for name, reason in s["unavailable"].items():
            lines.append(f"  {name:18s} not computed ({reason})")
        lines.append(f"  outputs: {self.out_dir}" + (f"; MLflow run {self.run_id}" if self.run_id else ""))
        if self.promotion is not None:
            lines.append(f"  registry: {self.promotion.describe()}")
        return "\n".join(lines)


def _data_md5() -> str | None:
    """The pipeline's data md5 (env ``VIDPRED_DATA_MD5``, set by the components); None for a standalone run."""
    import os

    return os.environ.get("VIDPRED_DATA_MD5") or None


def evaluate_track(store_dir, track: str, protocol: Protocol, methods: list[tuple[str, str | None]], out_root,
                   *, required_metrics: Iterable[str] = (), device: str = "cpu", batch_size: int = 8,
                   log_mlflow: bool = False, parent_run_id: str | None = None, progress: bool = True,
                   method_options: dict | None = None, flat: bool = False, promotion=None) -> list[EvalResult]:
    """Every ``(method, model)`` of a track on the protocol's clips; one output folder per method under
    ``out_root`` (``out_root/<method>``, or ``out_root`` itself for a single method with ``flat``); per-frame
    plots show all methods of the track on one axis.

    ``promotion`` (a :class:`vidpred.registry.PromotionSpec`): the model of ``promotion.method`` is registered and
    compared with the track's champion, which is scored again here on the same clips
    (:func:`vidpred.registry.promote_evaluated`); needs ``log_mlflow``."""
    from vidpred.data.store import open_store

    from vidpred.evaluate.predictors import resolve_device

    device = resolve_device(device)
    store = open_store(store_dir)
    out_root = Path(out_root)
    if flat and len(methods) != 1:
        raise VidpredError("flat output needs exactly one method")

    def out_dir_for(method: str) -> Path:
        return out_root if flat else out_root / method

    if promotion is not None:
        if not log_mlflow or protocol.kind == "keypoints":
            raise VidpredError(f"registering {promotion.name} needs an MLflow-logged frame-prediction evaluation")
        if promotion.primary_metric.split("_first")[0] not in protocol.metrics:
            raise VidpredError(f"primary metric {promotion.primary_metric} is not among protocol {protocol.name}'s "
                               f"metrics ({', '.join(protocol.metrics)})")
        if not any(m == promotion.method and model for m, model in methods):
            raise VidpredError(f"registering {promotion.name}: no {promotion.method} model among the evaluated methods")
    if protocol.kind == "keypoints":
        from vidpred.evaluate.keypoints import evaluate_keypoints_protocol

        return [evaluate_keypoints_protocol(store, track, protocol, model, out_dir_for(method), log_mlflow=log_mlflow,
                                            parent_run_id=parent_run_id, data_md5=_data_md5())
                for method, model in methods]
    check_store(store, protocol)
    clips = select_clips(store.manifest, protocol)
    metrics = MetricSet(protocol.metrics, required_metrics, device)
    done: list[tuple[Scores, dict]] = []
    for method, model in methods:
        options = {**protocol.method_options(method), **((method_options or {}).get(method) or {})}
        predictor = load_predictor(method, model, device, options)
        scores = score_method(store, predictor, protocol, metrics, clips, batch_size, protocol.clip_seed, progress)
        done.append((scores, summarise(scores, protocol, metrics, track=track, model=str(model) if model else None,
                                       store=store, data_md5=_data_md5(), predictor=predictor.describe())))
    import tempfile

    from vidpred.evaluate.plots import plot_per_frame

    results = []
    with tempfile.TemporaryDirectory() as tmp:  # one plot of every method of the track, copied into each folder
        plot = plot_per_frame({summary["method"]: summary for _, summary in done}, Path(tmp) / "per_frame.png",
                              title=f"{track}: {protocol.name} ({protocol.split}, {len(clips)} clips)")
        for scores, summary in done:
            if plot is None:  # no metric with per-frame values (e.g. FVD only)
                summary["images"].pop("per_frame", None)
            if not scores.samples:
                summary["images"].pop("samples", None)
            out_dir = write_outputs(out_dir_for(summary["method"]), summary, scores, plot)
            run_id = log_evaluation(summary, out_dir, parent_run_id) if log_mlflow else None
            results.append(EvalResult(out_dir, summary, run_id))
    if promotion is not None:
        from vidpred.registry import promote_evaluated

        def score_champion(model_uri: str) -> dict:  # the same evaluation (store, protocol, clips, seed)
            options = {**protocol.method_options(promotion.method),
                       **((method_options or {}).get(promotion.method) or {})}
            predictor = load_predictor(promotion.method, model_uri, device, options)
            scores = score_method(store, predictor, protocol, metrics, clips, batch_size, protocol.clip_seed, False)
            return summarise(scores, protocol, metrics, track=track, model=model_uri, store=store,
                             data_md5=_data_md5(), predictor=predictor.describe())

        result = next(r for r in results if r.summary["method"] == promotion.method)
        model = next(model for m, model in methods if m == promotion.method and model)
        result.promotion = promote_evaluated(model, promotion, result.summary, score_champion, result.run_id)
    return results


def evaluate_one(store_dir, method: str, protocol: Protocol, out, model: str | None = None, **kw) -> EvalResult:
    """One method (``vidpred evaluate``): its output folder is ``out`` itself."""
    track = kw.pop("track", None) or protocol.name
    return evaluate_track(store_dir, track, protocol, [(method, model)], out, flat=True, **kw)[0]


__all__ = ["MetricSet", "Scores", "score_method", "summarise", "write_outputs", "log_evaluation", "evaluate_track",
           "evaluate_one", "EvalResult", "samples_grid"]
