"""Training on several processes (one per GPU, or several CPU processes) with PyTorch DDP under torchrun.

Every training stage runs unchanged under ``torchrun``; nothing here is home-made communication:

* **Who am I** — :func:`rank`, :func:`local_rank`, :func:`world_size` read the variables torchrun sets
  (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``); without torchrun they are 0, 0, 1 and nothing below does
  anything. :func:`is_main` is rank 0: the only process that logs to MLflow and writes metrics, samples,
  checkpoints and model files.
* **Device** — :func:`resolve_device` maps ``train.device`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) to
  this process's device: ``auto`` is CUDA when present, else the CPU; under torchrun ``auto`` / ``cuda``
  mean ``cuda:LOCAL_RANK``.
* **Process group** — :func:`process_group` (used by ``vidpred.train.loop.run_training``) calls
  ``torch.distributed.init_process_group`` with ``gloo`` on the CPU and ``nccl`` on CUDA when
  ``WORLD_SIZE`` > 1, and destroys the group at the end. The loop wraps every module with trainable
  parameters in ``DistributedDataParallel`` (gradients are averaged across processes) and
  ``vidpred.train.loop.epoch_batches`` shards each epoch by rank with a ``DistributedSampler``
  (same per-epoch seed on every rank; the config's batch size is the *global* batch, each process
  takes ``batch_size / world_size``).
* **Launching** — :func:`torchrun_command` builds ``python -m torch.distributed.run --nproc-per-node N …
  -m vidpred.cli train STAGE --config C --set …`` and :func:`launch` runs it with its output streaming
  through; ``vidpred train STAGE --config C --nproc N`` calls it, and so do the pipeline components.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import signal
import subprocess
import sys
from typing import Any, Iterable, Iterator, Sequence

import torch

from vidpred.errors import VidpredError

# ``vidpred train <name>`` sub-commands (the CLI's names) → the stage module under vidpred.train
STAGES = {"corrwise": "corrwise", "moso-vqvae": "moso_vqvae", "moso-transformer": "moso_transformer",
          "landmarks": "landmarks", "landmark-dynamics": "landmark_dynamics"}
# A rank may wait this long for the others (rank 0 validates and writes while they wait at the next step).
TIMEOUT = datetime.timedelta(minutes=60)


# ----------------------------------------------------------------------------------------------------
# Who am I


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise VidpredError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def world_size() -> int:
    """Number of training processes (``WORLD_SIZE`` from torchrun; 1 without it)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's global rank (``RANK``; 0 without torchrun)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; picks the GPU ``cuda:LOCAL_RANK``)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Rank 0: the process that logs, writes checkpoints and model files."""
    return rank() == 0


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def active() -> bool:
    """A process group with more than one process is initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ----------------------------------------------------------------------------------------------------
# Device


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """This process's training device for ``train.device``: ``auto`` → CUDA when present, else the CPU;
    ``cpu``; ``cuda`` (``cuda:LOCAL_RANK`` under torchrun); ``cuda:N``. One VidpredError when CUDA is asked
    for and missing, when ``cuda:N`` does not exist, or when one fixed GPU is named for several processes."""
    from vidpred.evaluate.predictors import resolve_device as resolve  # the one resolver of devices

    text = str(spec).strip() if spec is not None else "auto"
    try:
        dev = resolve(text or "auto")
    except VidpredError as exc:
        raise VidpredError(f"train.device: {exc}") from None
    if dev.type not in ("cpu", "cuda"):
        raise VidpredError(f"train.device must be auto, cpu, cuda or cuda:N, got {text!r}")
    if dev.type != "cuda":
        return dev
    count = torch.cuda.device_count()
    if dev.index is None or text in ("auto", "cuda"):
        index = local_rank()
        if index >= count:
            raise VidpredError(f"train.device={text}: this process has LOCAL_RANK {index} but only {count} "
                               f"GPU(s) are visible; start at most {count} processes per node")
        return torch.device("cuda", index)
    if world_size() > 1:
        raise VidpredError(f"train.device={text} pins one GPU, but torchrun runs {world_size()} processes: use "
                           "train.device=cuda (or auto) so each process takes cuda:LOCAL_RANK")
    if dev.index >= count:
        raise VidpredError(f"train.device={text}: only {count} GPU(s) are visible (cuda:0…cuda:{count - 1})")
    return dev


# ----------------------------------------------------------------------------------------------------
# Process group and collectives (no-ops in a single process)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[bool]:
    """Initialise the default process group when torchrun started several processes (``gloo`` on the CPU,
    ``nccl`` on CUDA) and destroy it on the way out; yields whether this call created it. A group that is
    already initialised (e.g. by a caller) is used and left alone."""
    import torch.distributed as dist

    if world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        yield False
        return
    if not dist.is_available():
        raise VidpredError("torch.distributed is not available in this PyTorch build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    except Exception as exc:  # rendezvous failures come as RuntimeError / DistStoreError / ValueError
        raise VidpredError(f"rank {rank()}: cannot join the {backend} process group of {world_size()} processes "
                           f"({first_line(exc)})") from None
    try:
        yield True
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (itself in a single process)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (in place; unchanged in a single process)."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------------
# Launching under torchrun


class LaunchError(VidpredError):
    """torchrun ended with a non-zero exit status (``returncode``)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def stage_command(stage: str) -> str:
    """The CLI name of a stage (``moso_vqvae`` and ``moso-vqvae`` both → ``moso-vqvae``)."""
    name = str(stage).strip().replace("_", "-")
    if name not in STAGES:
        raise VidpredError(f"unknown training stage '{stage}' (stages: {', '.join(STAGES)})")
    return name


def torchrun_command(stage: str, config: str | os.PathLike, overrides: Iterable[str] = (), nproc: int = 1,
                     nnodes: int = 1, node_rank: int = 0, master_addr: str | None = None,
                     master_port: int | None = None) -> list[str]:
    """The argv that trains ``stage`` under torchrun: ``nproc`` processes on each of ``nnodes`` nodes.

    One node without ``master_addr`` / ``master_port``: ``--standalone`` (a local rendezvous on a free port).
    Several nodes (or an explicit address): the static rendezvous at ``master_addr:master_port`` (default
    port 29500) with this node's ``node_rank`` — run the same command on every node."""
    name = stage_command(stage)
    for what, value, low in (("nproc", nproc, 1), ("nnodes", nnodes, 1), ("node_rank", node_rank, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise VidpredError(f"torchrun: {what} must be an integer ≥ {low}, got {value!r}")
    if node_rank >= nnodes:
        raise VidpredError(f"torchrun: node_rank {node_rank} must be below nnodes {nnodes}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--nnodes", str(nnodes)]
    if nnodes == 1 and master_addr is None and master_port is None:
        cmd.append("--standalone")
    else:
        if nnodes > 1 and not master_addr:
            raise VidpredError(f"torchrun: {nnodes} nodes need master_addr (the address of the node with rank 0)")
        cmd += ["--node-rank", str(node_rank), "--master-addr", str(master_addr or "127.0.0.1"),
                "--master-port", str(int(master_port or 29500))]
    cmd += ["-m", "vidpred.cli", "train", name, "--config", str(config)]
    for item in overrides or ():
        cmd += ["--set", str(item)]
    return cmd


REPORT_ENV = "VIDPRED_TORCHRUN_REPORT"  # launch(): where the wrapper writes torchrun's failures (JSON)
LAUNCHED_ENV = "VIDPRED_LAUNCHED"  # launch(): set for the workers, whose errors the launcher reports as one line


def record_worker_error(exc: BaseException) -> bool:
    """In a torchrun worker: write ``exc`` to torchrun's error file (``TORCHELASTIC_ERROR_FILE``), so the
    failure report names it; return whether this process should print it too (rank 0 when not started by
    :func:`launch`, which prints one line for the whole job)."""
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        with contextlib.suppress(Exception):
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

            ErrorHandler().record_exception(exc)
    return is_main() and not os.environ.get(LAUNCHED_ENV)


def _failure_text(failure) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    message = " ".join(str(message or "").split())
    for prefix in ("VidpredError: ", "LaunchError: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    if failure.exitcode < 0:
        return _describe_status(failure.exitcode)
    return f"{_describe_status(failure.exitcode)}" + (f": {message[:300]}" if message and "elastic/errors" not in
                                                       message else "")


def _main(argv: Sequence[str]) -> int:
    """``python -m vidpred.train.distributed <torchrun arguments>``: torchrun's own ``run()``, with its failure
    report (a traceback and a table) turned into JSON at ``$VIDPRED_TORCHRUN_REPORT`` and exit status 1."""
    import json
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    report = os.environ.get(REPORT_ENV)
    if report:  # launch() reports the failure as one line: the agent's own warnings would only repeat it
        for logger_name in list(logging.root.manager.loggerDict):
            if logger_name.startswith("torch.distributed"):
                logging.getLogger(logger_name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(list(argv)))
    except ChildFailedError as exc:
        failures = [{"rank": r, "local_rank": f.local_rank, "exitcode": f.exitcode, "timestamp": f.timestamp,
                     "text": _failure_text(f)} for r, f in sorted(exc.failures.items())]
        if report:
            with open(report, "w") as fh:
                json.dump(failures, fh)
        else:
            for f in failures:
                print(f"error: rank {f['rank']}: {f['text']}", file=sys.stderr)
        return 1
    return 0


def _root_cause(failures: list[dict]) -> dict | None:
    """The failure that explains the others: not a rank stopped by torchrun (SIGTERM) or one that only lost
    contact with a dead peer, earliest first."""
    def rank_key(f):
        follower = f["exitcode"] == -signal.SIGTERM or "lost contact" in f["text"] or "(SIGTERM)" in f["text"]
        return (follower, f["timestamp"], f["rank"])

    return min(failures, key=rank_key) if failures else None


def _describe_status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def launch(stage: str, config: str | os.PathLike, overrides: Sequence[str] = (), nproc: int = 1, nnodes: int = 1,
           node_rank: int = 0, master_addr: str | None = None, master_port: int | None = None,
           env: dict | None = None) -> int:
    """Run :func:`torchrun_command` with its output (progress bars, rank 0's log) streaming through; return 0.

    The arguments go to torchrun's own ``run()`` inside ``python -m vidpred.train.distributed``, which turns
    torchrun's failure report into data, so a failure — a rank raised, was killed, or torchrun itself was —
    is one :class:`LaunchError` line naming the rank and the cause, with the exit status (``returncode``).
    The checkpoints written so far stay, so the same command resumes."""
    import json
    import tempfile

    if under_torchrun():
        raise VidpredError("--nproc inside a torchrun worker: run the stage without --nproc (torchrun already "
                           "started the processes)")
    cmd = torchrun_command(stage, config, overrides, nproc, nnodes, node_rank, master_addr, master_port)
    name, total = stage_command(stage), nproc * nnodes
    print(f"{name}: torchrun, {nproc} process(es) × {nnodes} node(s): {shlex.join(cmd)}", file=sys.stderr,
          flush=True)
    wrapped = [cmd[0], "-m", "vidpred.train.distributed", *cmd[3:]]  # cmd[1:3] = -m torch.distributed.run
    fd, report = tempfile.mkstemp(prefix="vidpred-torchrun-", suffix=".json")
    os.close(fd)
    full_env = {**os.environ, **(env or {}), REPORT_ENV: report, LAUNCHED_ENV: "1"}
    full_env.setdefault("LOGLEVEL", "ERROR")  # torchrun's own agent messages: errors only
    try:
        try:
            proc = subprocess.run(wrapped, env=full_env)
        except OSError as exc:
            raise LaunchError(f"{name}: cannot start torchrun ({exc.strerror or exc})", 1) from None
        except KeyboardInterrupt:
            raise LaunchError(f"{name}: interrupted; the newest checkpoint is kept (rerun to resume)", 130) from None
        if proc.returncode == 0:
            return 0
        try:
            with open(report) as fh:
                root = _root_cause(json.load(fh))
        except (OSError, ValueError):
            root = None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(report)
    tail = "the newest checkpoint in train.ckpt_dir is kept, so the same command resumes from it"
    if root is None:
        cause = f"torchrun ended with {_describe_status(proc.returncode)}"
    elif root["exitcode"] < 0 or root["text"].startswith("exit status"):
        cause = f"rank {root['rank']} {root['text'] if root['exitcode'] < 0 else 'ended with ' + root['text']}"
    else:  # the rank's own one-line error (a VidpredError) says what happened
        raise LaunchError(f"{root['text']} (rank {root['rank']} of {total})", proc.returncode or 1)
    raise LaunchError(f"{name}: distributed training failed, {cause} ({total} processes); {tail}",
                      proc.returncode if proc.returncode > 0 else 1)


__all__ = ["world_size", "rank", "local_rank", "is_main", "under_torchrun", "active", "resolve_device",
           "process_group", "broadcast_object", "gather_objects", "all_reduce_sum", "torchrun_command", "launch",
           "LaunchError", "STAGES"]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
