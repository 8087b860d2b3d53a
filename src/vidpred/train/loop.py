"""The one training loop every vidpred stage uses (checkpoint, resume, progress, logging).

A stage (``vidpred.train.corrwise``, ``moso_vqvae``, ``landmarks`` …) writes a small :class:`Task` and
hands it, with its batches and a :class:`LoopSettings`, to :func:`run_training`::

    class MyTask(Task):
        def __init__(self, cfg):
            self.net = Net(cfg)
            self.modules = {"net": self.net}                         # checkpointed, logged to MLflow
            self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), 1e-4)}

        def training_step(self, batch, step):                        # forward + loss, no backward
            loss = F.l1_loss(self.net(batch["frames"][:, :3]), batch["frames"][:, 3])
            return {"loss": loss, "l1": loss.detach()}               # every entry is logged

        def sample_images(self, batch, step):                        # optional: name → H×W×3 uint8
            return {"prediction": grid}

    settings = LoopSettings(out_dir=run_dir, max_steps=1000, ckpt_every=100, sample_every=100)
    with stage_logging("mystage", cfg, run_dir) as log:              # MLflow nested run, if available
        result = run_training(MyTask(cfg), epoch_batches(dataset, 8, seed=0), settings, log)

What the loop does, in order, for each step (nanoGPT style, nothing hidden):

1. take the next batch (a new epoch restarts the batch source; see *Data* below);
2. ``out = task.training_step(batch, step)``; ``out["loss"]`` must be finite, else :class:`VidpredError`
   naming the stage and the step (checkpoints written so far stay, so the run can be inspected/resumed);
3. unless ``task.manual_optimization`` is true (GAN-style stages that step several optimizers
   themselves): zero grads, ``loss.backward()``, clip the global grad norm of all ``task.modules`` to
   ``settings.grad_clip`` (if set), step every optimizer in ``task.optimizers`` and every scheduler in
   ``task.schedulers``;
4. every ``log_every`` steps: log the scalars of ``out`` (``train/<name>``); every ``val_every`` steps:
   ``task.validation(step)`` → ``val/<name>``; every ``sample_every`` steps: ``task.sample_images`` →
   PNGs (``samples/<name>/step-000100.png`` in ``out_dir`` and in MLflow);
5. every ``ckpt_every`` steps and at the end: an atomic checkpoint ``out_dir/checkpoints/step-XXXXXX.pt``
   holding modules, optimizers, schedulers, ``task.extra_state()``, the step/epoch position and all RNG
   states (python, numpy, torch). The newest ``keep_checkpoints`` are kept.

At the end the model (``task.export_model()``, default: the single module) is logged with
``mlflow.pytorch.log_model`` when an MLflow run is active.

*Resume*: with ``settings.resume`` (default) the loop loads the newest checkpoint in ``out_dir`` and
continues from its step; the result equals an uninterrupted run because the batch source is replayed to
the same position and the RNG states are restored.

*Data*: ``batches`` is either an iterable that yields the same order every time it is iterated, or a
callable ``epoch -> iterable`` (see :func:`epoch_batches`, which shuffles with a per-epoch seed). The
task sees the position through ``task.step`` and ``task.epoch`` (set before each step), e.g. for a
warm start measured in epochs.

*Logging*: a :class:`StepLogger` writes ``metrics.jsonl`` and sample PNGs into ``out_dir`` and, when an
MLflow run is active, the same metrics/images to MLflow. Pass ``callback=fn`` to receive
``fn(kind, step, payload)`` calls (kind ``"metrics"`` or ``"images"``) without MLflow.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_file

CKPT_PATTERN = "step-*.pt"


# ----------------------------------------------------------------------------------------------------
# What a stage provides


class Task:
    """Base class of a training stage's task. Override ``training_step``; the rest is optional."""

    modules: dict[str, torch.nn.Module] = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, Any] = {}
    manual_optimization: bool = False  # True: training_step does backward/step itself
    step: int = 0  # set by the loop before every training_step
    epoch: int = 0

    def training_step(self, batch: Any, step: int) -> dict[str, Any]:
        """Forward pass; return a dict with a scalar tensor ``"loss"`` plus any scalars to log."""
        raise NotImplementedError

    def validation(self, step: int) -> dict[str, float] | None:
        """Validation metrics (plain floats), or None."""
        return None

    def sample_images(self, batch: Any, step: int) -> dict[str, np.ndarray]:
        """Pictures to look at: name → H×W×3 uint8 array (e.g. a grid context | prediction | target)."""
        return {}

    def extra_state(self) -> dict:
        """Anything else to checkpoint (e.g. an EMA or a codebook usage counter)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def export_model(self) -> torch.nn.Module | None:
        """The module logged to MLflow at the end (default: the only module, if there is one)."""
        return next(iter(self.modules.values())) if len(self.modules) == 1 else None


@dataclass
class LoopSettings:
    out_dir: Path
    max_steps: int
    log_every: int = 10
    ckpt_every: int = 500
    sample_every: int = 500
    val_every: int = 0  # 0: only at the end
    grad_clip: float | None = None  # max global grad norm; None/0: no clipping
    seed: int = 0
    resume: bool = True
    keep_checkpoints: int = 2
    progress: bool = True
    log_model: bool = True
    stage: str = "train"  # used in messages and the MLflow model name

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if int(self.max_steps) < 1:
            raise VidpredError(f"{self.stage}: max_steps must be ≥ 1, got {self.max_steps}")
        for name in ("log_every", "ckpt_every", "sample_every", "val_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 0:
                raise VidpredError(f"{self.stage}: {name} must be ≥ 0, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, section: dict, out_dir: Path, stage: str) -> "LoopSettings":
        """Build from a config ``train`` section (keys named like the fields; unknown keys ignored)."""
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section and k != "out_dir"}
        return cls(out_dir=out_dir, stage=stage, **known)


@dataclass
class TrainResult:
    stage: str
    out_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    resumed_from: int | None = None
    run_id: str | None = None

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        resumed = f" (resumed from step {self.resumed_from})" if self.resumed_from else ""
        run = f"; MLflow run {self.run_id}" if self.run_id else ""
        return f"{self.stage}: trained to step {self.step}{resumed}: {shown}; checkpoint {self.checkpoint}{run}"


# ----------------------------------------------------------------------------------------------------
# Data


def epoch_batches(dataset, batch_size: int, seed: int = 0, shuffle: bool = True, num_workers: int = 0,
                  drop_last: bool = True, collate_fn=None) -> Callable[[int], Iterable]:
    """A batch source for :func:`run_training`: epoch → DataLoader shuffled with seed ``seed + epoch``."""
    if len(dataset) < (batch_size if drop_last else 1):
        raise VidpredError(f"dataset has {len(dataset)} items, fewer than one batch of {batch_size}")

    def make(epoch: int):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                           num_workers=num_workers, drop_last=drop_last,
                                           collate_fn=collate_fn)

    return make


def _epoch_iter(batches, epoch: int) -> Iterator:
    source = batches(epoch) if callable(batches) and not hasattr(batches, "__iter__") else batches
    return iter(source)


EVAL_SPLIT = "val"  # default ``data.eval_split`` of every stage: in-training validation never looks at test
# how to prepare a store with a val split, per dataset source (the hint of require_split's error)
VAL_SPLIT_HINTS = {
    "shapes": "-o num_val=N", "toycar": "-o num_val=N", "bair": "-o val_count=N", "mmnist": "-o val_count=N",
    "folder": "-o val_fraction=F (or a val/ subfolder)", "kth": "-o val_persons=… (persons out of train_persons)",
    "kitti": "-o val_drives=…", "bbcpose": "-o val_videos=…",
}


def require_split(what: str, splits: Iterable, split: str, dataset: str | None = None, redo: str = "") -> None:
    """One-line VidpredError unless ``split`` is among ``splits`` (e.g. a manifest's split column).

    Stages validate and tune on ``data.eval_split`` (default ``val``) only; a store without that split is an
    error naming the store and how to add the split — never a silent fallback to test or a skipped
    validation. ``what`` names the data ("store data/"), ``dataset`` picks the hint, ``redo`` says which
    derived outputs to rebuild afterwards."""
    present = sorted({str(s) for s in splits})
    if split in present:
        return
    if split == "val":
        hint = VAL_SPLIT_HINTS.get(str(dataset), "a val split (shapes: -o num_val=N; see the dataset's options)")
        fix = f"prepare it with {hint}{redo}"
    else:
        fix = "set data.eval_split to one of its splits"
    raise VidpredError(f"{what} has no '{split}' split (splits: {', '.join(present) or 'none'}): {fix}")


# ----------------------------------------------------------------------------------------------------
# Logging: local files always, MLflow when a run is active, a plain callback if given


class StepLogger:
    """Writes metrics/images to ``out_dir`` and, if an MLflow run is active, to MLflow."""

    def __init__(self, out_dir: Path, callback: Callable[[str, int, dict], None] | None = None,
                 use_mlflow: bool | None = None):
        self.out_dir = Path(out_dir)
        self.callback = callback
        self._mlflow = None
        if use_mlflow is None:  # auto: only if someone already imported mlflow (importing it takes ~8 s)
            use_mlflow = "mlflow" in sys.modules
        if use_mlflow:
            import mlflow

            if mlflow.active_run() is not None:
                self._mlflow = mlflow

    @property
    def run_id(self) -> str | None:
        return self._mlflow.active_run().info.run_id if self._mlflow else None

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        if self._mlflow:
            self._mlflow.log_metrics(values, step=step)
        if self.callback:
            self.callback("metrics", step, values)

    def images(self, images: dict[str, np.ndarray], step: int) -> None:
        from PIL import Image

        for name, array in images.items():
            array = _as_uint8_image(name, array)
            path = self.out_dir / "samples" / name / f"step-{step:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as fh:
                Image.fromarray(array).save(fh, format="PNG")
            if self._mlflow:
                self._mlflow.log_artifact(str(path), artifact_path=f"samples/{name}")
        if self.callback and images:
            self.callback("images", step, images)

    def files(self, paths, artifact_path: str = "model") -> None:
        """Log files (e.g. a stage's model file and what it needs beside it) under ``artifact_path``, so
        ``runs:/<run id>/model`` is a folder ``vidpred evaluate --model`` can load."""
        if self._mlflow:
            for path in paths:
                self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def model(self, module: torch.nn.Module, name: str) -> None:
        if not self._mlflow:
            return
        import mlflow.pytorch

        # pickle format: "pt2" needs an input example; explicit requirements skip a ~10 s inference
        mlflow.pytorch.log_model(module, name=name, serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "vidpred"])


def _as_uint8_image(name: str, array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise VidpredError(f"sample image '{name}' must be H×W×3 uint8, got {array.dtype} {array.shape}")
    return array


@contextlib.contextmanager
def stage_logging(stage: str, config=None, out_dir: Path | None = None, data_md5: str | None = None,
                  callback=None) -> Iterator[StepLogger]:
    """Open the stage's MLflow run through ``vidpred.tracking.stage_run`` (if that module exists) and
    yield a :class:`StepLogger` for :func:`run_training`. Without ``vidpred.tracking`` it logs to files
    (and the callback) only."""
    try:
        from vidpred.tracking import stage_run
    except ModuleNotFoundError as exc:
        if exc.name != "vidpred.tracking":
            raise
        stage_run = None
    out_dir = Path(out_dir or ".")
    if stage_run is None:
        yield StepLogger(out_dir, callback, use_mlflow=False)
        return
    with stage_run(stage, config=config, data_md5=data_md5):
        yield StepLogger(out_dir, callback, use_mlflow=True)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted((Path(out_dir) / "checkpoints").glob(CKPT_PATTERN))
    return found[-1] if found else None


def save_checkpoint(task: Task, settings: LoopSettings, step: int, epoch: int, batch_in_epoch: int) -> Path:
    state = {
        "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
        "modules": {k: m.state_dict() for k, m in task.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
        "extra": task.extra_state(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                "torch": torch.get_rng_state()},
    }
    path = settings.out_dir / "checkpoints" / f"step-{step:06d}.pt"
    with atomic_file(path) as fh:
        torch.save(state, fh)
    old = sorted(path.parent.glob(CKPT_PATTERN))[:-settings.keep_checkpoints or None]
    for stale in old if settings.keep_checkpoints else []:
        stale.unlink(missing_ok=True)
    return path


def load_checkpoint(task: Task, path: Path) -> dict:
    """Restore modules/optimizers/schedulers/extra state; return the position and RNG states."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        for k, m in task.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in task.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in task.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
    except (KeyError, RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VidpredError(f"checkpoint {path} cannot be resumed: {msg}") from None
    task.load_extra_state(state.get("extra", {}))
    return state


def _set_rng(rng: dict) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])


# ----------------------------------------------------------------------------------------------------
# The loop


def _scalar(value) -> float:
    return float(value.detach().float().mean()) if torch.is_tensor(value) else float(value)


def run_training(task: Task, batches, settings: LoopSettings, logger: StepLogger | None = None,
                 callback=None) -> TrainResult:
    """Train ``task`` until ``settings.max_steps``; see the module docstring for what happens when."""
    logger = logger or StepLogger(settings.out_dir, callback)
    random.seed(settings.seed)
    np.random.seed(settings.seed % 2**32)
    torch.manual_seed(settings.seed)

    step, epoch, batch_in_epoch, resumed_from, rng = 0, 0, 0, None, None
    ckpt = latest_checkpoint(settings.out_dir) if settings.resume else None
    if ckpt is not None:
        state = load_checkpoint(task, ckpt)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        resumed_from, rng = step, state["rng"]

    # Replay the batch source to the saved position, then restore the RNG (the replay may consume it).
    it = _epoch_iter(batches, epoch)
    for _ in range(batch_in_epoch):
        if next(it, None) is None:
            raise VidpredError(f"checkpoint {ckpt} does not match the training data (epoch {epoch} is shorter)")
    if rng is not None:
        _set_rng(rng)

    params = [p for m in task.modules.values() for p in m.parameters() if p.requires_grad]
    last: dict[str, float] = {}
    ckpt_path = ckpt
    bar = tqdm(total=settings.max_steps, initial=step, desc=settings.stage, file=sys.stderr,
               disable=not settings.progress, dynamic_ncols=True)
    try:
        while step < settings.max_steps:
            try:
                batch = next(it)
            except StopIteration:
                if batch_in_epoch == 0:
                    raise VidpredError(f"{settings.stage}: the training data yields no batches") from None
                epoch, batch_in_epoch = epoch + 1, 0
                it = _epoch_iter(batches, epoch)
                continue
            batch_in_epoch += 1
            task.step, task.epoch = step, epoch
            for m in task.modules.values():
                m.train()

            out = task.training_step(batch, step)
            loss = out["loss"]
            loss_value = _scalar(loss)
            if not math.isfinite(loss_value):
                raise VidpredError(f"{settings.stage}: loss is {loss_value} at step {step} (epoch {epoch}); "
                                   f"lower the learning rate or check the input data")
            if not task.manual_optimization:
                for opt in task.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                for opt in task.optimizers.values():
                    opt.step()
                for sched in task.schedulers.values():
                    sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4g}", refresh=False)

            last = {f"train/{k}": _scalar(v) for k, v in out.items()}
            final = step == settings.max_steps
            if settings.log_every and (step % settings.log_every == 0 or final):
                logger.metrics(last, step)
            if (settings.val_every and step % settings.val_every == 0) or final:
                val = _validate(task, step)
                if val:
                    last.update(val)
                    logger.metrics(val, step)
            if (settings.sample_every and step % settings.sample_every == 0) or final:
                with torch.no_grad():
                    for m in task.modules.values():
                        m.eval()
                    logger.images(task.sample_images(batch, step), step)
            if (settings.ckpt_every and step % settings.ckpt_every == 0) or final:
                ckpt_path = save_checkpoint(task, settings, step, epoch, batch_in_epoch)
    finally:
        bar.close()

    if settings.log_model:
        model = task.export_model()
        if model is not None:
            logger.model(model, "model")
    return TrainResult(settings.stage, settings.out_dir, step, last, ckpt_path, resumed_from, logger.run_id)


def _validate(task: Task, step: int) -> dict[str, float]:
    for m in task.modules.values():
        m.eval()
    with torch.no_grad():
        val = task.validation(step) or {}
    return {f"val/{k}": float(v) for k, v in val.items()}
