"""The one training loop every vidpred stage uses (devices, precision, DDP, checkpoints, resume, logging).

A stage (``vidpred.train.corrwise``, ``moso_vqvae``, ``landmarks`` …) writes a small :class:`Task` and
hands it, with its batches and a :class:`LoopSettings`, to :func:`run_training`::

    class MyTask(Task):
        def __init__(self, cfg):
            self.net = Net(cfg)
            self.modules = {"net": self.net}                         # trained, checkpointed, logged to MLflow
            self.aux_modules = {"vgg": PerceptualLoss()}             # frozen helpers: moved to the device only
            self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), 1e-4)}

        def training_step(self, batch, step):                        # forward + loss, no backward
            net = self.train_module("net")                           # DDP-wrapped under torchrun
            loss = F.l1_loss(net(batch["frames"][:, :3]), batch["frames"][:, 3])
            return {"loss": loss, "l1": loss.detach()}               # every entry is checked and logged

        def sample_images(self, batch, step):                        # optional: name → H×W×3 uint8
            return {"prediction": grid}

    settings = LoopSettings(out_dir=run_dir, max_steps=1000, ckpt_every=100, sample_every=100)
    with stage_logging("mystage", cfg, run_dir) as log:              # MLflow nested run (rank 0 only)
        result = run_training(MyTask(cfg), epoch_batches(dataset, 8, seed=0), settings, log)

Settings (the ``train`` section of every stage config, :class:`LoopSettings`): ``max_steps``, ``log_every``,
``ckpt_every``, ``sample_every``, ``val_every``, ``grad_clip``, ``seed``, ``resume``, ``keep_checkpoints``,
``progress``, ``log_model``, and

* ``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` — resolved once by
  :class:`LoopSettings` (:func:`vidpred.train.distributed.resolve_device`; under torchrun ``cuda:LOCAL_RANK``);
* ``precision``: ``32``; ``bf16`` (``torch.autocast`` bfloat16 around ``training_step``, no scaler; works on
  the CPU); ``16-mixed`` (autocast float16 + ``torch.amp.GradScaler``, whose state is checkpointed). 16-mixed
  needs CUDA: on the CPU it is one clear error, not a fallback. bfloat16 is the CPU's mixed precision (float32's
  range, no scaler; as fast as float16 on CPUs that have either); float16 is emulated on CPUs without
  AVX512-FP16 and some CPU kernels lack it; and a run whose params say ``16-mixed`` must not have silently
  trained in another precision — the error says to set ``train.precision=bf16``;
* ``ckpt_dir``: where checkpoints go (default ``<out_dir>/checkpoints``): any folder (a mounted volume) or an
  fsspec URI (``file://…``; ``s3://…`` when an fsspec backend such as s3fs is installed);
* ``skip_nonfinite`` (default false) and ``max_skipped`` (default 10): see *Numerical faults*.

What the loop does, once, before the first step:

1. join the process group when torchrun started several processes (``gloo`` on the CPU, ``nccl`` on CUDA;
   :mod:`vidpred.train.distributed`); seed python / numpy / torch with ``seed + rank``;
2. ``task.setup_device(device)``: moves ``task.modules`` and ``task.aux_modules`` (losses, VGG, RAFT, frozen
   networks) to the device — a task that owns anything else overrides it;
3. resume (``resume``, the default): rank 0 picks the newest checkpoint in ``ckpt_dir`` and every rank loads
   that one (``torch.load(weights_only=True)``);
4. with several processes, wraps every module with trainable parameters in ``DistributedDataParallel``
   (``task.train_module(name)`` returns the wrapped one; ``find_unused_parameters`` from the task).

Then, for each step (nanoGPT style, nothing hidden):

1. take the next batch (a new epoch restarts the batch source; see *Data*) and move it to the device
   (tensors inside dicts / lists / tuples; ``non_blocking`` on CUDA);
2. ``out = task.training_step(batch, step)`` under the precision's autocast; every entry of ``out`` is
   averaged over the processes and must be finite (see *Numerical faults*);
3. unless ``task.manual_optimization`` is true (GAN-style stages that step several optimizers themselves
   through ``task.backward(loss)`` and ``task.optimizer_step(opt)``, which apply the same scaler and
   checks): zero grads, backward (scaled under 16-mixed), unscale and clip the global grad norm of all
   ``task.modules`` to ``grad_clip`` (if set), refuse a non-finite gradient norm (32 / bf16; the scaler
   skips such steps under 16-mixed), step every optimizer in ``task.optimizers`` and every scheduler in
   ``task.schedulers``; then update the scaler;
4. on rank 0 only: every ``log_every`` steps log the scalars of ``out`` (``train/<name>``, means over all
   processes); every ``val_every`` steps ``task.validation(step)`` → ``val/<name>``; every ``sample_every``
   steps ``task.sample_images`` → PNGs (``samples/<name>/step-000100.png`` in ``out_dir`` and in MLflow);
5. every ``ckpt_every`` steps and at the end: an atomic checkpoint ``<ckpt_dir>/step-XXXXXX.pt`` written by
   rank 0, holding modules, optimizers, schedulers, the grad scaler, ``task.extra_state()``, the data
   position (epoch, batch in the epoch, skipped batches, world size) and every rank's RNG states (python,
   numpy, torch, CUDA) as plain values and tensors. The newest ``keep_checkpoints`` are kept.

At the end rank 0 logs the model (``task.export_model()``, default: the single module; a CPU copy) with
``mlflow.pytorch.log_model`` when an MLflow run is active — the stage's LoggedModel, with the final step's metrics;
the files the stage then passes to ``StepLogger.files`` go into the same LoggedModel, and ``out_dir/mlflow_model.json``
names it — and the process group is destroyed.

*Stopping*: a SIGTERM while training (torchrun stopping the other processes after one failed, a pod being
evicted) and a peer process that dies (the collective fails) both end the stage with one VidpredError line, so
its MLflow run ends FAILED; the checkpoints written so far stay.

*Resume*: the result equals an uninterrupted run because the batch source is replayed to the same position
and the RNG states are restored (bit-identical on the CPU, also under bf16). A checkpoint that cannot be
loaded with ``weights_only=True`` (e.g. one written by an older vidpred) is one clear error.

*Data*: ``batches`` is either an iterable that yields the same order every time it is iterated, or a
callable ``epoch -> iterable``. :func:`epoch_batches` (what every stage uses) shuffles with a per-epoch seed
and, under torchrun, shards each epoch by rank with a ``DistributedSampler`` (same seed on every rank): the
``batch_size`` it is given is the global batch, each process loads ``batch_size / world_size`` items, and
step k sees the same global batch whatever the number of processes. Any other batch source is refused with
several processes. The task sees the position through ``task.step`` and ``task.epoch`` (set before each step).

*Numerical faults*: a NaN/Inf entry of ``out`` (or of the loss given to ``task.backward``), or a non-finite
gradient norm, stops the stage with one line naming the stage, the step and the term — before any optimizer
step and without writing a checkpoint, so the newest checkpoint is the last good one (weights that overflow
in an optimizer step are caught before the next checkpoint is written); the exception ends the MLflow run
FAILED. An error a model raises inside ``training_step`` is prefixed with the stage and the step. With
``skip_nonfinite: true`` such a batch is skipped instead (no optimizer step, the step counter does not
advance), counted as ``train/skipped_batches``, and the stage stops once more than ``max_skipped`` batches
were skipped in total.

*Logging*: a :class:`StepLogger` writes ``metrics.jsonl`` and sample PNGs into ``out_dir`` and, when an
MLflow run is active, the same metrics/images to MLflow, plus the params ``train.world_size`` and
``train.device_used`` — through :class:`vidpred.tracking_buffer.LogBuffer`, so training never waits for the
tracking server and survives it going away for a while (the stage's run gets everything once it is back; past
``VIDPRED_TRACKING_DEADLINE`` the stage finishes its work and fails with one line saying what was not logged).
Training stages (``stage_logging``) also log MLflow system metrics (``vidpred.tracking.log_system_metrics``).
Pass ``callback=fn`` to receive ``fn(kind, step, payload)`` calls (kind ``"metrics"`` or ``"images"``) without
MLflow. Processes other than rank 0 write nothing.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import os
import pickle
import random
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from vidpred.errors import VidpredError
from vidpred.fsutil import atomic_file
from vidpred.train import distributed

CKPT_PATTERN = "step-*.pt"
CKPT_RE = re.compile(r"^step-(\d+)\.pt$")
CKPT_FORMAT = "vidpred-checkpoint/2"
PRECISIONS = {"32": "32", "32-true": "32", "bf16": "bf16", "bf16-mixed": "bf16", "16-mixed": "16-mixed"}
FP16_ON_CPU = False  # 16-mixed on the CPU is refused (see the module doc); tests set this to exercise the scaler


# ----------------------------------------------------------------------------------------------------
# Devices


def to_device(data: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """``data`` with every tensor (inside dicts / lists / tuples / named tuples) moved to ``device``."""
    if torch.is_tensor(data):
        return data.to(device, non_blocking=non_blocking)
    if isinstance(data, dict):
        return {k: to_device(v, device, non_blocking) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(to_device(v, device, non_blocking) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(v, device, non_blocking) for v in data)
    return data


def move_module(obj: Any, device: torch.device | str) -> Any:
    """Move a module (or anything with a ``.to(device)``) to ``device``; other objects are left alone."""
    if obj is None:
        return obj
    to = getattr(obj, "to", None)
    if callable(to):
        moved = to(device)
        return obj if isinstance(obj, torch.nn.Module) or moved is None else moved
    return obj


# ----------------------------------------------------------------------------------------------------
# What a stage provides


class Task:
    """Base class of a training stage's task. Override ``training_step``; the rest is optional."""

    modules: dict[str, torch.nn.Module] = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, Any] = {}
    aux_modules: dict[str, Any] = {}  # not trained, not checkpointed: moved to the device with the modules
    manual_optimization: bool = False  # True: training_step does backward/step itself (task.backward / …)
    find_unused_parameters: bool | Iterable[str] = False  # DDP: True (or the names of the modules) when a step
    # may leave some trainable parameters without a gradient; only for modules called once per step (Task.call)
    step: int = 0  # set by the loop before every training_step
    epoch: int = 0
    device: torch.device = torch.device("cpu")  # set by setup_device
    _loop: "_LoopContext | None" = None  # set by run_training while it runs

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
        """Anything else to checkpoint (tensors and plain values, e.g. an EMA or a second optimizer's state)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def export_model(self) -> torch.nn.Module | None:
        """The module logged to MLflow at the end (default: the only module, if there is one)."""
        return next(iter(self.modules.values())) if len(self.modules) == 1 else None

    # -- called by the loop / used by stages ------------------------------------------------------

    def setup_device(self, device: torch.device) -> None:
        """Move everything the task computes with to ``device`` (the loop calls this once, before resuming).
        Default: ``self.modules`` and ``self.aux_modules``; override (and call this) for anything else."""
        self.device = torch.device(device)
        for module in (*self.modules.values(), *self.aux_modules.values()):
            move_module(module, self.device)

    def to_device(self, data: Any) -> Any:
        """``data`` (a tensor, or tensors in dicts / lists / tuples) on the task's device, e.g. for validation."""
        return to_device(data, self.device)

    def train_module(self, name: str):
        """The module ``name`` to call in ``training_step``: under torchrun a handle whose calls — ``m(x)`` and
        methods such as ``m.rollout(x, n)`` — go through ``DistributedDataParallel`` (so their gradients are
        averaged over the processes); in a single process ``self.modules[name]`` itself."""
        loop = self._loop
        if loop is not None and name in loop.wrapped:
            return loop.wrapped[name]
        return self.modules[name]

    def call(self, name: str, fn: Callable, *args, **kwargs):
        """``fn(self.modules[name], *args, **kwargs)`` as one forward pass of module ``name`` — under torchrun one
        ``DistributedDataParallel`` forward — for losses that run the module several times (or its methods),
        e.g. ``self.call("transformer", prediction_loss, batch, …)``."""
        loop = self._loop
        if loop is not None and name in loop.wrapped:
            return loop.wrapped[name].ddp(fn, *args, **kwargs)
        return fn(self.modules[name], *args, **kwargs)

    def backward(self, loss: torch.Tensor, terms: dict | None = None) -> None:
        """Backward for ``manual_optimization`` tasks: checks ``loss`` (and ``terms``, for the message) are
        finite on every process first, then backward — scaled by the grad scaler under 16-mixed."""
        loop = self._loop
        if loop is None:
            loss.backward()
            return
        loop.check({**(terms or {}), "loss": loss})
        loop.amp.backward(loss)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, clip: float | None = None) -> None:
        """Step ``optimizer`` for ``manual_optimization`` tasks: unscale (16-mixed), clip its parameters' grad
        norm to ``clip`` (default ``train.grad_clip``), refuse a non-finite gradient (32 / bf16; under 16-mixed the
        scaler skips such steps), step through the scaler."""
        loop = self._loop
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if loop is None:
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            return
        clip = loop.settings.grad_clip if clip is None else clip
        if clip:
            loop.amp.unscale(optimizer)
        loop.clip_and_check(params, clip)
        loop.amp.step(optimizer)


def normalize_precision(value, stage: str = "train") -> str:
    key = str(value).strip().lower()
    if key not in PRECISIONS:
        raise VidpredError(f"{stage}: train.precision must be 32, bf16 or 16-mixed, got {value!r}")
    return PRECISIONS[key]


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
    device: str | torch.device = "auto"  # auto | cpu | cuda | cuda:N → a torch.device after __post_init__
    precision: str = "32"  # 32 | bf16 | 16-mixed
    ckpt_dir: str | None = None  # None: <out_dir>/checkpoints; a folder or an fsspec URI
    skip_nonfinite: bool = False  # skip a batch with a non-finite loss instead of stopping
    max_skipped: int = 10  # ... but stop once more than this many were skipped

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        if int(self.max_steps) < 1:
            raise VidpredError(f"{self.stage}: max_steps must be ≥ 1, got {self.max_steps}")
        for name in ("log_every", "ckpt_every", "sample_every", "val_every", "keep_checkpoints", "max_skipped"):
            if int(getattr(self, name)) < 0:
                raise VidpredError(f"{self.stage}: {name} must be ≥ 0, got {getattr(self, name)}")
        if not isinstance(self.skip_nonfinite, bool):
            raise VidpredError(f"{self.stage}: train.skip_nonfinite must be true or false, got {self.skip_nonfinite!r}")
        self.precision = normalize_precision(self.precision, self.stage)
        spec = self.device
        self.device = spec if isinstance(spec, torch.device) else distributed.resolve_device(spec)
        if self.precision == "16-mixed" and self.device.type != "cuda" and not FP16_ON_CPU:
            raise VidpredError(f"{self.stage}: train.precision=16-mixed needs a CUDA device, but this run trains on "
                               f"{self.device} (train.device={spec}); on the CPU use train.precision=bf16 or 32")
        if self.ckpt_dir is not None and not str(self.ckpt_dir).strip():
            self.ckpt_dir = None

    @property
    def ckpt_location(self) -> str:
        """``ckpt_dir``, or ``<out_dir>/checkpoints`` when it is not set."""
        return str(self.ckpt_dir) if self.ckpt_dir is not None else str(self.out_dir / "checkpoints")

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
    checkpoint: Path | str | None = None
    resumed_from: int | None = None
    run_id: str | None = None
    skipped_batches: int = 0

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        resumed = f" (resumed from step {self.resumed_from})" if self.resumed_from else ""
        skipped = f"; {self.skipped_batches} non-finite batch(es) skipped" if self.skipped_batches else ""
        run = f"; MLflow run {self.run_id}" if self.run_id else ""
        return (f"{self.stage}: trained to step {self.step}{resumed}: {shown}{skipped}; checkpoint "
                f"{self.checkpoint}{run}")


# ----------------------------------------------------------------------------------------------------
# Data


def epoch_batches(dataset, batch_size: int, seed: int = 0, shuffle: bool = True, num_workers: int = 0,
                  drop_last: bool = True, collate_fn=None, pin_memory: bool = False) -> Callable[[int], Iterable]:
    """A batch source for :func:`run_training`: epoch → DataLoader over this process's share of the epoch.

    ``batch_size`` is the global batch. The epoch's order is ``randperm`` seeded with ``seed`` and the epoch
    (a ``DistributedSampler``, the same on every rank); under torchrun rank r of W loads every W-th item, so
    each process's batch is ``batch_size / W`` items and together they form the same global batch as one
    process would. ``batch_size`` not divisible by W is one clear error. ``pin_memory`` for CUDA."""
    world, rank = distributed.world_size(), distributed.rank()
    if int(batch_size) % world:
        raise VidpredError(f"batch size {batch_size} (the global batch) is not divisible by the {world} training "
                           "processes; choose a multiple of the number of processes")
    per_rank = int(batch_size) // world
    if len(dataset) < (batch_size if drop_last else 1):
        raise VidpredError(f"dataset has {len(dataset)} items, fewer than one batch of {batch_size}")

    def make(epoch: int):
        base = int(seed) * 1_000_003
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                                      seed=base, drop_last=True)
        sampler.set_epoch(int(epoch))
        # the loader's own generator (worker seeds) is seeded too, so it never draws from the global RNG
        gen = torch.Generator().manual_seed(base + int(epoch))
        return torch.utils.data.DataLoader(dataset, batch_size=per_rank, sampler=sampler, generator=gen,
                                           num_workers=num_workers, drop_last=drop_last, collate_fn=collate_fn,
                                           pin_memory=pin_memory)

    make.shards_by_rank = True
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
    """Writes metrics/images to ``out_dir`` and, if an MLflow run is active, to MLflow. ``enabled=False``
    (processes other than rank 0) writes nothing at all. Metrics, params and sample images go to MLflow through a
    :class:`vidpred.tracking_buffer.LogBuffer` (in order, retried, training never waits for the server);
    :meth:`flush` waits for them, :meth:`close` (``stage_logging`` calls it) raises one line if some were lost."""

    def __init__(self, out_dir: Path, callback: Callable[[str, int, dict], None] | None = None,
                 use_mlflow: bool | None = None, enabled: bool = True, stage: str = "train"):
        self.out_dir = Path(out_dir)
        self.callback = callback if enabled else None
        self.enabled = enabled
        self._mlflow = None
        self._buffer = None  # vidpred.tracking_buffer.LogBuffer of the active run
        self.model_id: str | None = None  # the MLflow LoggedModel of this stage, once logged
        if not enabled:
            return
        if use_mlflow is None:  # auto: only if someone already imported mlflow (importing it takes ~8 s)
            use_mlflow = "mlflow" in sys.modules
        if use_mlflow:
            import mlflow

            if mlflow.active_run() is not None:
                from vidpred.tracking_buffer import LogBuffer

                self._mlflow = mlflow
                self._buffer = LogBuffer(mlflow.active_run().info.run_id, mlflow.get_tracking_uri(), stage)

    @property
    def run_id(self) -> str | None:
        return self._mlflow.active_run().info.run_id if self._mlflow else None

    def params(self, values: dict[str, Any]) -> None:
        """Run parameters (MLflow only), e.g. ``train.world_size``."""
        if self._buffer:
            self._buffer.params(values)

    def metrics(self, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        if self._buffer:
            self._buffer.metrics(values, step)
        if self.callback:
            self.callback("metrics", step, values)

    def images(self, images: dict[str, np.ndarray], step: int) -> None:
        if not self.enabled:
            return
        from PIL import Image

        for name, array in images.items():
            array = _as_uint8_image(name, array)
            path = self.out_dir / "samples" / name / f"step-{step:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as fh:
                Image.fromarray(array).save(fh, format="PNG")
            if self._buffer:
                self._buffer.artifact(path, f"samples/{name}")
        if self.callback and images:
            self.callback("images", step, images)

    def flush(self) -> bool:
        """Wait until everything logged so far is in MLflow (True), or the tracking server stayed unreachable
        past the deadline (False; :meth:`close` then says what was lost). True without MLflow."""
        return self._buffer.wait() if self._buffer else True

    def close(self, raise_errors: bool = True) -> None:
        """:meth:`flush` and stop sending; raise one :class:`vidpred.tracking_buffer.TrackingOutage` line naming
        what could not be logged (unless ``raise_errors`` is false, e.g. while another error propagates)."""
        if self._buffer:
            self._buffer.close(raise_errors)

    def _server_gone(self, what: str) -> bool:
        """Flush first (model files go to MLflow directly); past the outage deadline skip ``what`` and say so."""
        if self._buffer is None or self._buffer.wait():
            return False
        self._buffer.not_logged(what)
        return True

    def files(self, paths, artifact_path: str = "model") -> None:
        """Put files (a stage's model file and what it needs beside it) into the stage's LoggedModel (made here if
        the loop logged none), so ``models:/<model id>`` and ``runs:/<run id>/model`` are a folder ``vidpred
        evaluate --model`` can load; ``out_dir/mlflow_model.json`` names that model for the evaluation stage."""
        if self._mlflow and not self._server_gone("the model files"):
            from vidpred import tracking

            self.model_id = tracking.log_model_files(paths, self.model_id, name=artifact_path)
            tracking.write_model_pointer(self.out_dir, self.model_id, self.run_id)

    def model(self, module: torch.nn.Module, name: str, step: int = 0) -> None:
        """Log ``module`` as the stage's MLflow LoggedModel ``name`` (pytorch flavour), with the run's metrics of
        ``step`` (the final one) linked to it."""
        if not self._mlflow or self._server_gone("the model"):
            return
        import mlflow.pytorch

        from vidpred import tracking

        if any(t.device.type != "cpu" for t in (*module.parameters(), *module.buffers())):
            module = copy.deepcopy(module).cpu()  # loadable where there is no GPU
        # pickle format: "pt2" needs an input example; explicit requirements skip a ~10 s inference
        info = mlflow.pytorch.log_model(module, name=name, serialization_format="pickle", step=step,
                                        tags=tracking.model_tags(), model_type="vidpred",
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "vidpred"])
        self.model_id = info.model_id
        tracking.write_model_pointer(self.out_dir, self.model_id, self.run_id)


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
    (and the callback) only. Under torchrun only rank 0 opens a run; the other ranks get a logger that
    writes nothing."""
    out_dir = Path(out_dir or ".")
    if not distributed.is_main():
        yield StepLogger(out_dir, None, use_mlflow=False, enabled=False)
        return
    try:
        from vidpred.tracking import stage_run
    except ModuleNotFoundError as exc:
        if exc.name != "vidpred.tracking":
            raise
        stage_run = None
    if stage_run is None:
        yield StepLogger(out_dir, callback, use_mlflow=False)
        return
    from vidpred.tracking_buffer import TrackingOutage

    try:
        with stage_run(stage, config=config, data_md5=data_md5, system_metrics=True):
            log = StepLogger(out_dir, callback, use_mlflow=True, stage=stage)
            try:
                yield log
            except BaseException:
                log.close(raise_errors=False)  # what was logged before the error still goes in (or waits out)
                raise
            log.close()  # one TrackingOutage line if something could not be logged: the run ends FAILED
    except Exception as exc:  # ending the run on a server that stayed away fails too: say what was lost instead
        cause = exc
        while cause is not None and not isinstance(cause, TrackingOutage):
            cause = cause.__context__
        if cause is not None and cause is not exc:
            raise cause from None
        raise


# ----------------------------------------------------------------------------------------------------
# Checkpoints: a local folder (atomic rename) or an fsspec location


class CheckpointStore:
    """The checkpoints of one stage: ``step-XXXXXX.pt`` files in a folder or under an fsspec URI."""

    def __init__(self, location: str | Path):
        self.location = str(location).rstrip("/") or "/"
        self.fs = None
        if "://" in self.location:
            try:
                import fsspec

                self.fs, root = fsspec.core.url_to_fs(self.location)
            except ImportError as exc:
                raise VidpredError(f"train.ckpt_dir {self.location}: no fsspec backend for it is installed "
                                   f"({distributed.first_line(exc)})") from None
            except ValueError as exc:
                raise VidpredError(f"train.ckpt_dir {self.location}: {distributed.first_line(exc)} (give a folder "
                                   "or a URI fsspec knows, e.g. file:///mnt/ckpt)") from None
            self.root = root.rstrip("/")
        else:
            self.root = str(Path(self.location).expanduser())

    def display(self, name: str) -> Path | str:
        """Where checkpoint ``name`` is, as shown to users (a Path for folders, a URI otherwise)."""
        return Path(self.root) / name if self.fs is None else f"{self.location}/{name}"

    def names(self) -> list[str]:
        """Checkpoint file names, oldest (lowest step) first."""
        try:
            if self.fs is None:
                found = [p.name for p in Path(self.root).glob(CKPT_PATTERN)]
            else:
                found = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.glob(f"{self.root}/{CKPT_PATTERN}")]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise VidpredError(f"train.ckpt_dir {self.location} cannot be listed: {distributed.first_line(exc)}") \
                from None
        steps = {n: int(m.group(1)) for n in found if (m := CKPT_RE.match(n))}
        return sorted(steps, key=steps.get)

    def latest(self) -> str | None:
        names = self.names()
        return names[-1] if names else None

    def save(self, state: dict, name: str) -> Path | str:
        try:
            if self.fs is None:
                with atomic_file(Path(self.root) / name) as fh:
                    torch.save(state, fh)
            else:
                buf = io.BytesIO()
                torch.save(state, buf)
                self.fs.makedirs(self.root, exist_ok=True)
                tmp = f"{self.root}/.{name}.tmp-{os.getpid()}"
                try:
                    with self.fs.open(tmp, "wb") as fh:
                        fh.write(buf.getvalue())
                    self.fs.mv(tmp, f"{self.root}/{name}")
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.fs.rm(tmp)
                    raise
        except OSError as exc:
            raise VidpredError(f"checkpoint {self.display(name)} cannot be written: {distributed.first_line(exc)}") \
                from None
        return self.display(name)

    def read(self, name: str) -> dict:
        """The checkpoint's dict, loaded with ``weights_only=True``; one VidpredError when it cannot be."""
        where = self.display(name)
        try:
            if self.fs is None:
                source = Path(self.root) / name
            else:
                with self.fs.open(f"{self.root}/{name}", "rb") as fh:
                    source = io.BytesIO(fh.read())
            return torch.load(source, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            if unsafe:
                raise VidpredError(f"checkpoint {where} cannot be loaded safely (weights_only): it holds a Python "
                                   f"object ({unsafe.group(1)}) besides tensors and plain values, so an older vidpred "
                                   "or another program wrote it; delete it (or set train.resume=false) to train this "
                                   "stage from the start") from None
            raise VidpredError(f"checkpoint {where} cannot be resumed: the file is corrupt or not a PyTorch "
                               "checkpoint") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
            raise VidpredError(f"checkpoint {where} cannot be resumed: {distributed.first_line(exc)}") from None

    def prune(self, keep: int) -> None:
        """Remove all but the newest ``keep`` checkpoints (0: keep all)."""
        if not keep:
            return
        for stale in self.names()[:-keep]:
            with contextlib.suppress(FileNotFoundError, OSError):
                if self.fs is None:
                    (Path(self.root) / stale).unlink()
                else:
                    self.fs.rm(f"{self.root}/{stale}")


def latest_checkpoint(out_dir: Path | None = None, ckpt_dir: str | Path | None = None) -> Path | str | None:
    """The newest checkpoint in ``ckpt_dir`` (default ``<out_dir>/checkpoints``), or None."""
    store = CheckpointStore(ckpt_dir if ckpt_dir is not None else Path(out_dir) / "checkpoints")
    name = store.latest()
    return store.display(name) if name else None


def _rng_state(device: torch.device) -> dict:
    """This process's RNG states as plain values and tensors (so ``weights_only`` loading takes them)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {"python": random.getstate(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng(rng: dict, device: torch.device) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def save_checkpoint(task: Task, settings: LoopSettings, step: int, epoch: int, batch_in_epoch: int,
                    skipped: int = 0, amp: "Precision | None" = None,
                    store: CheckpointStore | None = None) -> Path | str | None:
    """Write ``<ckpt_dir>/step-XXXXXX.pt`` (rank 0; every rank contributes its RNG state) and keep the newest
    ``keep_checkpoints``. Returns where it went (None on the other ranks)."""
    rng = distributed.gather_objects(_rng_state(settings.device))  # a collective: every rank calls it
    if not distributed.is_main():
        return None
    state = {
        "format": CKPT_FORMAT, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "skipped": skipped,
        "world_size": len(rng), "precision": settings.precision,
        "modules": {k: m.state_dict() for k, m in task.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
        "scaler": amp.state_dict() if amp is not None else None,
        "extra": task.extra_state(),
        "rng": rng,
    }
    store = store or CheckpointStore(settings.ckpt_location)
    where = store.save(state, f"step-{step:06d}.pt")
    store.prune(settings.keep_checkpoints)
    return where


def load_checkpoint(task: Task, path: Path | str, amp: "Precision | None" = None) -> dict:
    """Restore modules/optimizers/schedulers/scaler/extra state from the checkpoint at ``path`` (a file or a
    URI); return the whole state (position, RNG states)."""
    text = str(path)
    folder, _, name = text.rstrip("/").rpartition("/")
    return _load_into(task, CheckpointStore(folder or "."), name, amp)


def _load_into(task: Task, store: CheckpointStore, name: str, amp: "Precision | None") -> dict:
    where = store.display(name)
    state = store.read(name)
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        found = state.get("format", "no format tag") if isinstance(state, dict) else type(state).__name__
        raise VidpredError(f"checkpoint {where} is not a {CKPT_FORMAT} checkpoint ({found}); delete it (or set "
                           "train.resume=false) to train this stage from the start")
    try:
        for k, m in task.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in task.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in task.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if amp is not None:
            amp.load_state_dict(state.get("scaler"))
        task.load_extra_state(state.get("extra", {}))
    except (KeyError, RuntimeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VidpredError(f"checkpoint {where} cannot be resumed: {msg}") from None
    return state


# ----------------------------------------------------------------------------------------------------
# Precision


class Precision:
    """Autocast and grad scaling for ``train.precision`` (``32`` | ``bf16`` | ``16-mixed``) on ``device``."""

    def __init__(self, mode: str, device: torch.device):
        self.mode = normalize_precision(mode)
        self.device = torch.device(device)
        self.dtype = {"bf16": torch.bfloat16, "16-mixed": torch.float16}.get(self.mode)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.mode == "16-mixed" else None
        self._touched = False  # unscale_/step called since the last update

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        off = torch.autocast(self.device.type, enabled=False) if self.dtype is not None else contextlib.nullcontext()
        with off:  # backward runs outside autocast (ops take the dtypes of their forward)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
            self._touched = True

    def step(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the scaled grads overflowed
            self._touched = True
        else:
            optimizer.step()

    def update(self) -> None:
        """End of an iteration: adjust the scale (16-mixed) once every optimizer has stepped."""
        if self.scaler is not None and self._touched:
            self.scaler.update()
        self._touched = False

    def state_dict(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


# ----------------------------------------------------------------------------------------------------
# DDP: calls on a module go through DistributedDataParallel.forward


class _Entry(torch.nn.Module):
    """Holds the task's module for DDP; ``forward(method, …)`` calls the module or one of its methods."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, _method, *args, **kwargs):
        if callable(_method):  # Task.call: a function of the module, e.g. a loss that runs it several times
            return _method(self.module, *args, **kwargs)
        fn = self.module if _method is None else getattr(self.module, _method)
        return fn(*args, **kwargs)


class DDPModule:
    """What ``Task.train_module`` returns under torchrun: ``m(x)`` and ``m.method(…)`` run through
    ``DistributedDataParallel`` (the gradients of what they compute are averaged across processes); the
    ``nn.Module`` API (``parameters()``, ``train()`` …) and plain attributes read through to the module."""

    def __init__(self, ddp):
        self.ddp = ddp
        self.module = ddp.module.module

    def __call__(self, *args, **kwargs):
        return self.ddp(None, *args, **kwargs)

    def __getattr__(self, name: str):
        attr = getattr(self.module, name)
        if callable(attr) and (name == "forward" or not hasattr(torch.nn.Module, name)):
            return functools.partial(self.ddp, name)
        return attr


def _wrap_ddp(task: Task, device: torch.device) -> dict:
    if not distributed.active():
        return {}
    from torch.nn.parallel import DistributedDataParallel

    unused = task.find_unused_parameters
    wrapped = {}
    for name, module in task.modules.items():
        if any(p.requires_grad for p in module.parameters()):
            find = unused if isinstance(unused, bool) else name in set(unused or ())
            ddp = DistributedDataParallel(_Entry(module), device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=find)
            wrapped[name] = DDPModule(ddp)
    return wrapped


# ----------------------------------------------------------------------------------------------------
# Numerical faults


class NonFiniteLoss(Exception):
    """A term of the loss is NaN/Inf on some process (raised identically on every process)."""

    def __init__(self, term: str, value: float):
        super().__init__(f"term '{term}' is {value}")
        self.term, self.value = term, value


def _reduce_terms(terms: dict, device: torch.device, world: int) -> dict[str, float]:
    """Every scalar entry of ``terms`` as a float, averaged over the processes (one all-reduce)."""
    names, parts = [], []
    for name, value in terms.items():
        if torch.is_tensor(value):
            parts.append(value.detach().float().mean().to(device))
        elif isinstance(value, (int, float, bool, np.number)):
            parts.append(torch.tensor(float(value), device=device))
        else:
            continue
        names.append(name)
    if not parts:
        return {}
    vec = torch.stack(parts)
    if world > 1:
        vec = distributed.all_reduce_sum(vec) / world  # a NaN/Inf anywhere stays non-finite
    return dict(zip(names, vec.tolist()))


class _LoopContext:
    """What a task reaches through ``task._loop`` while :func:`run_training` runs."""

    def __init__(self, settings: LoopSettings, amp: Precision, world: int):
        self.settings, self.amp, self.world = settings, amp, world
        self.wrapped: dict = {}

    def clip_and_check(self, params: list, clip: float | None) -> None:
        """Clip the grad norm of ``params`` to ``clip`` (if set; grads already unscaled) and — without a grad
        scaler, which skips overflowing steps itself — raise NonFiniteLoss for a non-finite gradient norm before
        any optimizer steps on it. Under DDP the gradients, hence the decision, are the same on every rank."""
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        elif self.amp.scaler is None:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        else:
            return
        if self.amp.scaler is None and not math.isfinite(float(norm)):
            raise NonFiniteLoss("gradient norm", float(norm))

    def check(self, terms: dict) -> dict[str, float]:
        """Reduced values of ``terms``; NonFiniteLoss naming the first non-finite term (``loss`` last)."""
        values = _reduce_terms(terms, self.settings.device, self.world)
        for name in sorted(values, key=lambda k: k == "loss"):
            if not math.isfinite(values[name]):
                raise NonFiniteLoss(name, values[name])
        return values


def _nonfinite_message(settings: LoopSettings, bad: NonFiniteLoss, step: int, epoch: int, skipped: int,
                       ckpt) -> str:
    if bad.term == "gradient norm":
        head = (f"{settings.stage}: non-finite gradient at step {step} (epoch {epoch}): the gradient norm is "
                f"{bad.value} although every loss term was finite")
    else:
        head = f"{settings.stage}: non-finite loss at step {step} (epoch {epoch}): term '{bad.term}' is {bad.value}"
    if settings.skip_nonfinite:
        head += f"; {skipped} bad batches, more than train.max_skipped={settings.max_skipped}"
    kept = f"; the last good checkpoint {ckpt} is kept" if ckpt else "; no checkpoint was written yet"
    fix = "lower the learning rate or check the input data"
    if not settings.skip_nonfinite:
        fix += " (train.skip_nonfinite=true skips isolated bad batches)"
    return f"{head}{kept}; {fix}"


# ----------------------------------------------------------------------------------------------------
# The loop


def run_training(task: Task, batches, settings: LoopSettings, logger: StepLogger | None = None,
                 callback=None) -> TrainResult:
    """Train ``task`` until ``settings.max_steps``; see the module docstring for what happens when."""
    with distributed.process_group(settings.device), _sigterm_as_error(settings.stage):
        try:
            return _train(task, batches, settings, logger, callback)
        except RuntimeError as exc:  # a peer process died or hung up: one line instead of a traceback wall
            if distributed.world_size() > 1 and _is_comm_error(exc):
                reason = re.sub(r"^(\[[^\]]*\]\s*)+", "", distributed.first_line(exc))[:200]  # no source paths
                raise VidpredError(f"{settings.stage}: rank {distributed.rank()} lost contact with the other "
                                   f"training processes ({reason}); the newest "
                                   "checkpoint is kept, so the same command resumes") from None
            raise
        finally:
            task._loop = None


@contextlib.contextmanager
def _sigterm_as_error(stage: str) -> Iterator[None]:
    """SIGTERM (torchrun stopping the survivors of a failed rank, a pod being evicted) becomes a VidpredError, so
    the stage's MLflow run ends FAILED with a reason instead of staying RUNNING; checkpoints written so far stay."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise VidpredError(f"{stage}: rank {distributed.rank()} was stopped (SIGTERM): another training process "
                           "failed or the job was cancelled; the newest checkpoint is kept, so the same command "
                           "resumes")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except BaseException:
        # Under torchrun a failed worker is going down: a (further) SIGTERM from the agent must not cut short the
        # stage's cleanup (its MLflow run ending FAILED); the agent kills it after its shutdown timeout anyway.
        signal.signal(signal.SIGTERM, signal.SIG_IGN if distributed.under_torchrun() else previous)
        raise
    signal.signal(signal.SIGTERM, previous)


def _is_comm_error(exc: BaseException) -> bool:
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc).lower()
    return isinstance(exc, dist_error) or any(s in text for s in (
        "gloo", "nccl", "connection closed", "connection reset", "broken pipe", "timed out", "peer"))


def _train(task: Task, batches, settings: LoopSettings, logger: StepLogger | None, callback) -> TrainResult:
    device, world, rank = settings.device, distributed.world_size(), distributed.rank()
    main = distributed.is_main()
    if world > 1 and not getattr(batches, "shards_by_rank", False):
        raise VidpredError(f"{settings.stage}: with {world} processes the batch source must shard by rank; "
                           "make it with vidpred.train.loop.epoch_batches")
    owned = False
    if not main:
        logger = StepLogger(settings.out_dir, enabled=False)
    else:
        owned = logger is None  # a logger made here is closed here; stage_logging closes its own
        logger = logger or StepLogger(settings.out_dir, callback, stage=settings.stage)
    random.seed(settings.seed + rank)
    np.random.seed((settings.seed + rank) % 2**32)
    torch.manual_seed(settings.seed + rank)

    amp = Precision(settings.precision, device)
    loop = _LoopContext(settings, amp, world)
    task._loop = loop
    task.setup_device(device)
    store = CheckpointStore(settings.ckpt_location)

    step, epoch, batch_in_epoch, skipped, resumed_from, rng, ckpt_path = 0, 0, 0, 0, None, None, None
    if settings.resume:
        name = distributed.broadcast_object(store.latest() if main else None)  # every rank loads rank 0's pick
        if name is not None:
            state = _load_into(task, store, name, amp)
            step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            skipped, resumed_from, rng, ckpt_path = state.get("skipped", 0), step, state["rng"], store.display(name)
    loop.wrapped = _wrap_ddp(task, device)
    logger.params({"train.world_size": world, "train.device_used": str(device)})

    # Replay the batch source to the saved position, then restore the RNG (the replay may consume it).
    it = _epoch_iter(batches, epoch)
    for _ in range(batch_in_epoch):
        if next(it, None) is None:
            raise VidpredError(f"checkpoint {ckpt_path} does not match the training data (epoch {epoch} is shorter)")
    if rng is not None:
        if rank < len(rng):
            _set_rng(rng[rank], device)
        if len(rng) != world and main:
            warnings.warn(f"{settings.stage}: checkpoint {ckpt_path} was written by {len(rng)} process(es), this run "
                          f"has {world}: the data order is kept, random augmentations start from fresh seeds",
                          stacklevel=2)

    params = [p for m in task.modules.values() for p in m.parameters() if p.requires_grad]
    non_blocking = device.type == "cuda"
    last: dict[str, float] = {}
    bar = tqdm(total=settings.max_steps, initial=step, desc=settings.stage, file=sys.stderr,
               disable=not (settings.progress and main), dynamic_ncols=True)
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
            batch = to_device(batch, device, non_blocking)
            task.step, task.epoch = step, epoch
            for m in task.modules.values():
                m.train()

            try:
                try:
                    with amp.autocast():
                        out = task.training_step(batch, step)
                except VidpredError as exc:  # e.g. a model's input check: say where it happened
                    raise VidpredError(f"{settings.stage}: step {step} (epoch {epoch}): {exc}") from None
                if not isinstance(out, dict) or "loss" not in out:
                    raise VidpredError(f"{settings.stage}: training_step must return a dict with a 'loss' entry")
                values = loop.check(out)
                if not task.manual_optimization:
                    for opt in task.optimizers.values():
                        opt.zero_grad(set_to_none=True)
                    amp.backward(out["loss"])
                    if settings.grad_clip:
                        for opt in task.optimizers.values():
                            amp.unscale(opt)
                    loop.clip_and_check(params, settings.grad_clip)
                    for opt in task.optimizers.values():
                        amp.step(opt)
                    for sched in task.schedulers.values():
                        sched.step()
                amp.update()
            except NonFiniteLoss as bad:
                amp.update()  # closes the scaler's iteration if an optimizer stepped before the fault
                for opt in task.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                skipped += 1
                if not settings.skip_nonfinite or skipped > settings.max_skipped:
                    raise VidpredError(_nonfinite_message(settings, bad, step, epoch, skipped, ckpt_path)) from None
                logger.metrics({"train/skipped_batches": float(skipped)}, step)
                bar.set_postfix(skipped=skipped, refresh=False)
                continue
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)

            last = {f"train/{k}": v for k, v in values.items()}
            if settings.skip_nonfinite:
                last["train/skipped_batches"] = float(skipped)
            final = step == settings.max_steps
            if main and settings.log_every and (step % settings.log_every == 0 or final):
                logger.metrics(last, step)
            if main and ((settings.val_every and step % settings.val_every == 0) or final):
                val = _validate(task, step)
                if val:
                    last.update(val)
                    logger.metrics(val, step)
            if main and ((settings.sample_every and step % settings.sample_every == 0) or final):
                with torch.no_grad():
                    for m in task.modules.values():
                        m.eval()
                    logger.images(task.sample_images(batch, step), step)
            if (settings.ckpt_every and step % settings.ckpt_every == 0) or final:
                if not all(bool(torch.isfinite(p).all()) for m in task.modules.values() for p in m.parameters()):
                    raise VidpredError(f"{settings.stage}: the weights are non-finite after step {step} although every "
                                       "loss term and gradient was finite (an optimizer step overflowed); not "
                                       "checkpointed" + (f", the last good checkpoint {ckpt_path} is kept" if ckpt_path
                                                         else "") + "; lower the learning rate")
                ckpt_path = save_checkpoint(task, settings, step, epoch, batch_in_epoch, skipped, amp, store)
    finally:
        bar.close()

    logger.flush()  # everything logged is in MLflow when training returns (or the server stayed away too long)
    if main and settings.log_model:
        model = task.export_model()
        if model is not None:
            logger.model(model, "model", step)
    if main and owned:
        logger.close()
    return TrainResult(settings.stage, settings.out_dir, step, last, ckpt_path, resumed_from, logger.run_id, skipped)


def _validate(task: Task, step: int) -> dict[str, float]:
    for m in task.modules.values():
        m.eval()
    with torch.no_grad():
        val = task.validation(step) or {}
    return {f"val/{k}": float(v) for k, v in val.items()}
