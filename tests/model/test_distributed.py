"""Training in several processes (PyTorch DDP with gloo on this CPU-only machine) and surviving killed processes.

Every test here starts real processes: torchrun with 2 workers, or one training process killed with SIGKILL.
The model is tiny (a task written into a worker script below, or the corrwise stage on a 16-px toy store), so
the time goes into starting Python; each test takes 15–60 s, hence ``slow``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

# A tiny training job. argv[1] is JSON: out, steps, batch, ckpt_every, ckpt_dir, precision, sleep (s a step),
# dropout, poison (an item index whose input is NaN), skip (skip_nonfinite), mlflow (open a stage run).
WORKER = r'''
import json, sys, time
import torch
from vidpred.train import distributed
from vidpred.train.loop import LoopSettings, StepLogger, Task, epoch_batches, run_training, stage_logging

cfg = json.loads(sys.argv[1])
torch.set_num_threads(1)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 16), torch.nn.Linear(16, 1)
        self.drop = torch.nn.Dropout(cfg.get("dropout", 0.0))

    def forward(self, x):
        return self.b(self.drop(torch.tanh(self.a(x))))

    def twice(self, x):  # a method: under DDP it runs through the wrapped module too
        return 0.5 * (self(x) + self(x.flip(0)).flip(0))


def half_loss(net, x, y):  # a function of the module, run as one forward (Task.call)
    return torch.nn.functional.mse_loss(net(x), y)


class Toy(Task):
    def __init__(self):
        torch.manual_seed(123)
        self.net = Net()
        self.modules = {"net": self.net}
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=0.05)}

    def training_step(self, batch, step):
        time.sleep(cfg.get("sleep", 0))
        x, y = batch
        self.rank_batch = x.shape[0]
        if step % 3 == 2:
            loss = self.call("net", half_loss, x, y)
        else:
            net = self.train_module("net")
            loss = torch.nn.functional.mse_loss(net.twice(x) if step % 3 else net(x), y)
        return {"loss": loss}


g = torch.Generator().manual_seed(0)
x = torch.randn(40, 4, generator=g)
y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(40, 1, generator=g)
if cfg.get("poison") is not None:
    x[cfg["poison"], 0] = float("nan")
data = torch.utils.data.TensorDataset(x, y)
settings = LoopSettings(out_dir=cfg["out"], max_steps=cfg["steps"], ckpt_every=cfg.get("ckpt_every", 3),
                        sample_every=0, log_every=1, progress=False, log_model=False, seed=7, device="cpu",
                        precision=cfg.get("precision", "32"), ckpt_dir=cfg.get("ckpt_dir"),
                        skip_nonfinite=cfg.get("skip", False), stage="toy")
task = Toy()
batches = epoch_batches(data, cfg["batch"], seed=1)
if cfg.get("mlflow"):
    with stage_logging("toy", {"train": {"steps": cfg["steps"]}}, settings.out_dir) as log:
        result = run_training(task, batches, settings, log)
else:
    result = run_training(task, batches, settings, StepLogger(settings.out_dir, use_mlflow=False))
if distributed.is_main():
    torch.save(task.net.state_dict(), f"{cfg['out']}/final-{cfg.get('tag', 'x')}.pt")
    print(json.dumps({"step": result.step, "resumed_from": result.resumed_from, "run_id": result.run_id,
                      "skipped": result.skipped_batches, "loss": result.metrics.get("train/loss"),
                      "rank_batch": task.rank_batch}))
'''


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               VIDPRED_ARTIFACT_ROOT=str(tmp_path / "mlartifacts"))
    return env


def _worker(tmp_path: Path, nproc: int | None = None, **cfg) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    head = [sys.executable] if nproc is None else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   "--nproc-per-node", str(nproc)]
    return [*head, str(script), json.dumps(cfg)]


def _run(cmd, tmp_path, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_two_processes_equal_one_process_on_the_same_global_batches(tmp_path):
    out1, out2 = tmp_path / "one", tmp_path / "two"
    common = dict(steps=8, batch=8, ckpt_every=4)  # 40 items / 8 = 5 steps an epoch: crosses an epoch
    single = _run(_worker(tmp_path, out=str(out1), **common), tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _run(_worker(tmp_path, nproc=2, out=str(out2), mlflow=True, **common), tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    a, b = _weights(out1 / "final-x.pt"), _weights(out2 / "final-x.pt")
    for k in a:  # equal up to float summation order: gradients were averaged over both halves of each batch
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert (_last_json(single.stdout)["rank_batch"], _last_json(ddp.stdout)["rank_batch"]) == (8, 4)
    # the logged loss is the mean over both processes = the single process's loss
    assert _last_json(ddp.stdout)["loss"] == pytest.approx(_last_json(single.stdout)["loss"], rel=1e-5)
    # rank 0 alone wrote: one line per step, one MLflow run (with the world size), checkpoints
    assert len((out2 / "metrics.jsonl").read_text().splitlines()) == 8
    assert sorted(p.name for p in (out2 / "checkpoints").iterdir()) == ["step-000004.pt", "step-000008.pt"]
    state = torch.load(out2 / "checkpoints" / "step-000008.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG state
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["train.world_size"] == "2" and runs[0].data.params["train.device_used"] == "cpu"


def test_a_bad_batch_on_one_rank_is_skipped_by_both(tmp_path):
    # item 13 is NaN: whichever rank loads it, both must skip that step (else one would wait for the other)
    common = dict(steps=7, batch=8, ckpt_every=7, poison=13, skip=True)
    single = _run(_worker(tmp_path, out=str(tmp_path / "one"), **common), tmp_path)
    ddp = _run(_worker(tmp_path, nproc=2, out=str(tmp_path / "two"), **common), tmp_path)
    assert single.returncode == 0 and ddp.returncode == 0, ddp.stderr
    assert _last_json(single.stdout)["skipped"] == _last_json(ddp.stdout)["skipped"] == 2  # one per epoch
    a, b = _weights(tmp_path / "one" / "final-x.pt"), _weights(tmp_path / "two" / "final-x.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # without skip mode both ranks stop at that step with the same one-line reason
    stop = _run(_worker(tmp_path, nproc=2, out=str(tmp_path / "three"), steps=7, batch=8, poison=13), tmp_path)
    assert stop.returncode != 0
    assert stop.stderr.count("toy: non-finite loss at step") == 2  # both ranks, same step and term
    assert "term 'loss' is nan" in stop.stderr


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path.name} appeared: {proc.communicate()}")
        if time.time() > end:
            proc.kill()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


@pytest.mark.parametrize("precision,uri", [("32", False), ("bf16", True)])
def test_kill_9_then_resume_from_a_ckpt_dir_elsewhere_is_bit_identical(tmp_path, precision, uri):
    ckpt = tmp_path / "volume" / "ckpt"  # outside out_dir, like a mounted volume; also as a file:// URI
    where = ckpt.as_uri() if uri else str(ckpt)
    common = dict(steps=30, batch=8, ckpt_every=5, precision=precision, dropout=0.2)
    full = _run(_worker(tmp_path, out=str(tmp_path / "full"), tag="full", **common), tmp_path)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(_worker(tmp_path, out=str(tmp_path / "run"), ckpt_dir=where, sleep=0.05, **common),
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    _wait_for(ckpt / "step-000015.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "final-x.pt").exists() and not (tmp_path / "run" / "checkpoints").exists()
    again = _run(_worker(tmp_path, out=str(tmp_path / "run"), ckpt_dir=where, **common), tmp_path)
    assert again.returncode == 0, again.stderr
    assert _last_json(again.stdout)["resumed_from"] >= 15
    a, b = _weights(tmp_path / "full" / "final-full.pt"), _weights(tmp_path / "run" / "final-x.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------------
# The real stage through the CLI: `vidpred train corrwise --nproc 2`


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> Path:
    from vidpred.data.sources.toycar import SOURCE
    from vidpred.data.store import StoreWriter

    out = tmp_path_factory.mktemp("data") / "toycar"
    with StoreWriter(out, {"dataset": "toycar", "size": 32, "clip_len": 4, "options": {}}) as w:
        for v in SOURCE.iter_videos(None, {"num_videos": 4, "frames": 8, "size": 16}):
            w.add(v.video_id, v.split, v.frames, fps=v.fps, source=v.source)
    return out


def _corrwise(store: Path, out: Path, steps: int, nproc: int = 2) -> list[str]:
    sets = [f"data.store={store}", f"train.out_dir={out}", f"train.max_steps={steps}", "train.ckpt_every=5",
            "train.sample_every=0", "train.log_every=5", "train.batch_size=2", "model.ngf=4", "train.progress=false",
            "train.log_model=false"]
    return [sys.executable, "-m", "vidpred.cli", "train", "corrwise", "--config", "smoke/corrwise",
            "--nproc", str(nproc), *[a for s in sets for a in ("--set", s)]]


def _rank_pids(marker: str) -> dict[int, int]:
    """Global rank → pid of the torchrun workers whose command line contains ``marker``."""
    pids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmd and b"vidpred.cli" in cmd:
            for item in env:
                if item.startswith(b"RANK="):
                    pids[int(item[5:])] = int(d.name)
    return pids


def test_killing_one_rank_fails_the_job_in_one_line_and_a_rerun_resumes(tmp_path, toy_store):
    out = tmp_path / "run"
    proc = subprocess.Popen(_corrwise(toy_store, out, 5000), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for(out / "checkpoints" / "step-000010.pt", proc)
    pids = _rank_pids(str(out))
    assert sorted(pids) == [0, 1], pids
    os.kill(pids[1], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error: corrwise: distributed training failed, rank 1 killed by SIGKILL"), stderr
    last = max(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt"))
    again = subprocess.run(_corrwise(toy_store, out, last + 2), env=_env(tmp_path), capture_output=True, text=True,
                           timeout=240, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"corrwise: trained to step {last + 2} (resumed from step {last})" in again.stdout
    assert again.stdout.count("trained to step") == 1  # rank 1 prints nothing
    assert (out / "predictor.pt").is_file()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 2  # one per launch, both opened by rank 0
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"], [r.data.tags for r in runs]
    failed, done = sorted(runs, key=lambda r: r.info.status)
    assert done.data.params["train.world_size"] == "2"
    assert "lost contact" in failed.data.tags["vidpred.error"] or "(SIGTERM)" in failed.data.tags["vidpred.error"]


def _codebook_rank(rank: int, world: int, init: str, flat: torch.Tensor, out: str) -> None:
    """One rank of the codebook test: its half of the inputs, statistics all-reduced inside ema_update."""
    from vidpred.models.moso.quantizer import EMACodebook

    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        book = EMACodebook(16, 4, dead_after=0)
        book.train()
        shard = flat.chunk(world)[rank]
        book.ema_update(shard, book.nearest(shard))
        if rank == 0:
            torch.save(book.state_dict(), out)
    finally:
        torch.distributed.destroy_process_group()


def test_moso_codebook_learns_from_every_rank(tmp_path):
    # the EMA codebook is a buffer update, not a gradient: DDP would keep only rank 0's shard without the all-reduce
    from vidpred.models.moso.quantizer import EMACodebook

    flat = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    single = EMACodebook(16, 4, dead_after=0)
    single.ema_update(flat, single.nearest(flat))
    out = tmp_path / "rank0.pt"
    torch.multiprocessing.spawn(_codebook_rank, args=(2, f"file://{tmp_path / 'store'}", flat, str(out)), nprocs=2)
    both = torch.load(out, weights_only=True)
    for key in ("embed", "ema_count", "ema_sum"):
        torch.testing.assert_close(both[key], single.state_dict()[key], rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    half = EMACodebook(16, 4, dead_after=0)  # what rank 0 alone would learn: different (the test can fail)
    shard = flat.chunk(2)[0]
    half.ema_update(shard, half.nearest(shard))
    assert not torch.allclose(half.state_dict()["ema_count"], single.state_dict()["ema_count"])
