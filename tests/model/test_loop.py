"""The shared training loop: learning, deterministic resume, NaN stop, checkpoints, images, MLflow.

The data is a small synthetic regression problem made here (y = x·w + noise); no real weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidpred.errors import VidpredError
from vidpred.train.loop import LoopSettings, Task, epoch_batches, latest_checkpoint, run_training


class Regression(Task):
    def __init__(self, lr=0.05, nan_at=None):
        torch.manual_seed(123)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))
        self.modules = {"net": self.net}
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=lr)}
        self.nan_at = nan_at

    def training_step(self, batch, step):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.nan_at is not None and step >= self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss}

    def sample_images(self, batch, step):
        return {"grid": np.full((8, 12, 3), step % 256, np.uint8)}


def _data(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.01 * torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def _settings(tmp_path, **kw):
    base = dict(out_dir=tmp_path / "run", max_steps=30, log_every=1, ckpt_every=10, sample_every=15,
                progress=False, log_model=False, seed=7)
    base.update(kw)
    return LoopSettings(**base)


def _losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


def test_loss_decreases_on_toy_regression(tmp_path):
    result = run_training(Regression(), epoch_batches(_data(), 8, seed=1), _settings(tmp_path, max_steps=60))
    losses = _losses(tmp_path / "run")
    assert len(losses) == 60
    assert np.mean(losses[-5:]) < 0.25 * np.mean(losses[:5])
    assert result.step == 60
    assert result.checkpoint == latest_checkpoint(tmp_path / "run")
    # sample grids are PNGs a person can open
    pngs = sorted((tmp_path / "run" / "samples" / "grid").glob("*.png"))
    assert [p.name for p in pngs] == ["step-000015.png", "step-000030.png", "step-000045.png", "step-000060.png"]


def test_resume_matches_uninterrupted_run(tmp_path):
    # 40 items / batch 8 = 5 batches an epoch, so the interruption at step 12 is mid-epoch; dropout and
    # shuffling both use RNG, so only a restored RNG + replayed data order give the same weights.
    full = Regression()
    run_training(full, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "a", max_steps=30, ckpt_every=12))

    first = Regression()
    run_training(first, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "b", max_steps=12, ckpt_every=12))
    second = Regression()  # a fresh process would start like this
    result = run_training(second, epoch_batches(_data(), 8, seed=1),
                          _settings(tmp_path / "b", max_steps=30, ckpt_every=12))
    assert result.resumed_from == 12
    for p, q in zip(full.net.parameters(), second.net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # and the optimizer state too (Adam step counts)
    assert full.optimizers["adam"].state_dict()["state"][0]["step"] == second.optimizers["adam"].state_dict()["state"][0]["step"]


def test_nan_loss_stops_with_step_in_message(tmp_path):
    with pytest.raises(VidpredError, match=r"non-finite loss at step 5 \(epoch 1\): term .loss. is nan"):
        run_training(Regression(nan_at=5), epoch_batches(_data(), 8), _settings(tmp_path))


def test_keeps_only_newest_checkpoints(tmp_path):
    run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path, max_steps=35, ckpt_every=5,
                                                                   keep_checkpoints=2))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step-000030.pt", "step-000035.pt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "step-000010.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(VidpredError, match="step-000010.pt cannot be resumed"):
        run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path))


def test_empty_data_and_bad_settings(tmp_path):
    with pytest.raises(VidpredError, match="no batches"):
        run_training(Regression(), [], _settings(tmp_path))
    with pytest.raises(VidpredError, match="max_steps"):
        _settings(tmp_path, max_steps=0)
    with pytest.raises(VidpredError, match="fewer than one batch"):
        epoch_batches(_data(4), 8)


def test_callback_receives_metrics_and_images(tmp_path):
    seen = []
    run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path, max_steps=15, log_every=5),
                 callback=lambda kind, step, payload: seen.append((kind, step, sorted(payload))))
    assert ("metrics", 5, ["train/loss"]) in seen
    assert ("images", 15, ["grid"]) in seen


@pytest.mark.slow
def test_mlflow_run_gets_metrics_images_and_model(tmp_path):
    import os

    import mlflow

    from vidpred.train.loop import StepLogger

    from vidpred.tracking import ensure_experiment

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    exp_id = ensure_experiment("test-loop")  # artifacts under the test session's root, never ./mlruns
    with mlflow.start_run(experiment_id=exp_id) as run:
        logger = StepLogger(tmp_path / "run", use_mlflow=True)
        run_training(Regression(), epoch_batches(_data(), 8),
                     _settings(tmp_path, max_steps=10, log_model=True), logger)
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == 10
    arts = [a.path for a in client.list_artifacts(run.info.run_id, "samples/grid")]
    assert arts == ["samples/grid/step-000010.png"]
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    x = torch.randn(3, 4)
    assert model.eval()(x).shape == (3, 1)


# ----------------------------------------------------------------------------------------------------
# Devices, precision, checkpoints elsewhere, numerical faults, sharding (issue 13)


class Terms(Regression):
    """Regression whose loss has two logged terms; ``bad`` maps the n-th call (0, 1, …; the step unless
    batches were skipped) → (term, value) to poison."""

    def __init__(self, bad=None, **kw):
        super().__init__(**kw)
        self.bad = bad or {}
        self.calls = 0

    def training_step(self, batch, step):
        x, y = batch
        fit = torch.nn.functional.mse_loss(self.net(x), y)
        reg = 1e-3 * sum(p.pow(2).sum() for p in self.net.parameters())
        term, value = self.bad.get(self.calls, (None, None))
        self.calls += 1
        if term == "reg":
            reg = reg * value
        elif term == "fit":
            fit = fit * value
        return {"loss": fit + reg, "fit": fit.detach(), "reg": reg.detach()}


def _weights(task):
    return [p.detach().clone() for p in task.net.parameters()]


def test_to_device_moves_tensors_inside_containers():
    from collections import namedtuple

    from vidpred.train.loop import to_device

    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "pair": Pair(torch.zeros(1), "id"), "list": [torch.ones(1), 3], "name": "clip"}
    out = to_device(batch, torch.device("meta"))
    assert out["x"].device.type == "meta" and out["pair"].a.device.type == "meta"
    assert isinstance(out["pair"], Pair) and out["pair"].b == "id"
    assert out["list"][0].device.type == "meta" and out["list"][1] == 3 and out["name"] == "clip"


def test_device_selection(tmp_path, monkeypatch):
    assert _settings(tmp_path, device="cpu").device == torch.device("cpu")
    assert _settings(tmp_path).device == torch.device("cuda" if torch.cuda.is_available() else "cpu")  # auto
    if not torch.cuda.is_available():
        with pytest.raises(VidpredError, match=r"^train.device: device cuda: CUDA is not available on this machine$"):
            _settings(tmp_path, device="cuda")
    with pytest.raises(VidpredError, match="auto, cpu, cuda or cuda:N, got 'tpu'"):
        _settings(tmp_path, device="tpu")
    # under torchrun: auto / cuda → cuda:LOCAL_RANK; one pinned GPU for several processes is refused
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _settings(tmp_path, device="auto").device == torch.device("cuda", 1)
    assert _settings(tmp_path, device="cuda").device == torch.device("cuda", 1)
    with pytest.raises(VidpredError, match="pins one GPU, but torchrun runs 2 processes"):
        _settings(tmp_path, device="cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(VidpredError, match="LOCAL_RANK 2 but only 2 GPU"):
        _settings(tmp_path, device="cuda")


def test_precision_settings(tmp_path):
    assert _settings(tmp_path, precision=32).precision == "32"
    assert _settings(tmp_path, precision="bf16-mixed").precision == "bf16"
    with pytest.raises(VidpredError, match="precision must be 32, bf16 or 16-mixed, got 'fp8'"):
        _settings(tmp_path, precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(VidpredError, match=r"16-mixed needs a CUDA device, but this run trains on cpu .*use "
                                               r"train.precision=bf16 or 32$"):
            _settings(tmp_path, precision="16-mixed", device="cpu")


class Probe(Regression):
    """Records the dtype the network computes in (autocast) and the device batches arrive on."""

    seen: list

    def training_step(self, batch, step):
        self.seen = getattr(self, "seen", [])
        x, y = batch
        out = self.net(x)
        self.seen.append((out.dtype, x.device.type))
        return {"loss": torch.nn.functional.mse_loss(out.float(), y)}


def test_bf16_autocast_trains_and_resumes_bit_identically(tmp_path):
    probe = Probe()
    run_training(probe, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "p", max_steps=2, precision="bf16"))
    assert probe.seen == [(torch.bfloat16, "cpu")] * 2
    full = Regression()
    run_training(full, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "a", precision="bf16", ckpt_every=12))
    losses = _losses(tmp_path / "a" / "run")
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    first = Regression()
    run_training(first, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "b", max_steps=12, precision="bf16"))
    second = Regression()
    r = run_training(second, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "b", precision="bf16"))
    assert r.resumed_from == 12
    for p, q in zip(full.net.parameters(), second.net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


class GanLike(Regression):
    """Manual optimization through the Task API (two optimizers, like the GAN stages)."""

    manual_optimization = True

    def __init__(self, inf_at=None):
        super().__init__()
        self.head = torch.nn.Linear(1, 1)
        self.modules = {"net": self.net, "head": self.head}
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=0.05),
                           "head": torch.optim.SGD(self.head.parameters(), lr=0.01)}
        self.inf_at = inf_at

    def training_step(self, batch, step):
        x, y = batch
        pred = self.train_module("net")(x)
        loss = torch.nn.functional.mse_loss(pred, y)
        self.optimizers["adam"].zero_grad()
        self.backward(loss)
        if step == self.inf_at:  # an fp16 overflow: the scaler must skip this step
            next(self.net.parameters()).grad[0, 0] = float("inf")
        self.optimizer_step(self.optimizers["adam"])
        head = torch.nn.functional.mse_loss(self.head(pred.detach()), y)
        self.optimizers["head"].zero_grad()
        self.backward(head, {"head": head})
        self.optimizer_step(self.optimizers["head"])
        return {"loss": loss.detach(), "head": head.detach()}


def test_16_mixed_scales_grads_for_manual_steps_and_checkpoints_the_scaler(tmp_path, monkeypatch):
    import shutil

    from vidpred.train import loop

    monkeypatch.setattr(loop, "FP16_ON_CPU", True)  # no GPU here: exercise the GradScaler on the CPU
    seen = []
    scale_fn = torch.amp.GradScaler.scale
    monkeypatch.setattr(torch.amp.GradScaler, "scale", lambda self, loss: seen.append(1) or scale_fn(self, loss))

    def fp16(**kw):
        return _settings(tmp_path, precision="16-mixed", device="cpu", **kw)

    task = GanLike()  # (fp16 on the CPU overflows at steps 0, 1, 3 and 6 by itself: the scale settles at 4096)
    run_training(task, epoch_batches(_data(), 8, seed=1), fp16(max_steps=7, ckpt_every=7))
    assert len(seen) == 14  # both manual backward passes of every step went through the scaler
    seven = _weights(task)
    scale = torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)["scaler"]["scale"]
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    # step 7 overflows: the scaler skips the optimizer step and halves its scale, which the checkpoint keeps
    resumed = GanLike(inf_at=7)
    r = run_training(resumed, epoch_batches(_data(), 8, seed=1), fp16(max_steps=8, ckpt_every=8))
    assert r.resumed_from == 7 and scale == 4096.0
    assert all(torch.equal(p, q) for p, q in zip(seven, _weights(resumed)))
    state = torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)
    assert state["scaler"]["scale"] == scale / 2 and state["precision"] == "16-mixed"
    # without the overflow the same step does change the weights
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "copy").rename(tmp_path / "run")
    clean = GanLike()
    run_training(clean, epoch_batches(_data(), 8, seed=1), fp16(max_steps=8, ckpt_every=8))
    assert not any(torch.equal(p, q) for p, q in zip(seven, _weights(clean)))
    assert torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)["scaler"]["scale"] == scale


def test_nonfinite_term_stops_without_checkpointing_the_bad_step(tmp_path):
    task = Terms(bad={5: ("reg", float("inf"))})
    with pytest.raises(VidpredError) as err:
        run_training(task, epoch_batches(_data(), 8, seed=1), _settings(tmp_path, ckpt_every=1, keep_checkpoints=0))
    msg = str(err.value)
    assert msg.startswith("train: non-finite loss at step 5 (epoch 1): term 'reg' is inf; the last good checkpoint ")
    assert "step-000005.pt is kept" in msg and "\n" not in msg
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names[-1] == "step-000005.pt" and len(names) == 5  # nothing after the bad step
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-000005.pt", weights_only=True)
    for p, q in zip(task.net.state_dict().values(), state["modules"]["net"].values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # the bad step did not touch the weights
    with pytest.raises(VidpredError, match="term 'fit' is nan"):
        run_training(Terms(bad={0: ("fit", float("nan"))}), epoch_batches(_data(), 8), _settings(tmp_path / "b"))


def test_skip_mode_skips_isolated_bad_batches_and_stops_after_max_skipped(tmp_path):
    bad = {3: ("fit", float("nan")), 7: ("reg", float("inf"))}
    task = Terms(bad=bad)
    result = run_training(task, epoch_batches(_data(), 8, seed=1),
                          _settings(tmp_path, max_steps=10, skip_nonfinite=True, max_skipped=2))
    assert result.step == 10 and result.skipped_batches == 2
    assert all(torch.isfinite(p).all() for p in task.net.parameters())
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train/skipped_batches"] == 2.0
    assert [r["step"] for r in rows if set(r) == {"step", "train/skipped_batches"}] == [3, 6]  # logged when skipped
    with pytest.raises(VidpredError, match=r"at step 2 \(epoch 0\): term 'fit' is nan; 3 bad batches, more than "
                                           r"train.max_skipped=2"):
        run_training(Terms(bad={s: ("fit", float("nan")) for s in range(2, 9)}), epoch_batches(_data(), 8),
                     _settings(tmp_path / "b", skip_nonfinite=True, max_skipped=2))


class Blowup(Regression):
    """Finite losses, but an infinite gradient (at the ``grad_at``-th call), overflowing weights (``sgd``) or a
    model error (at step ``fail_at``)."""

    def __init__(self, grad_at=None, sgd=False, fail_at=None):
        super().__init__()
        if sgd:
            self.optimizers = {"sgd": torch.optim.SGD(self.net.parameters(), lr=1e38)}
        self.grad_at, self.fail_at, self.calls = grad_at, fail_at, 0

    def training_step(self, batch, step):
        if step == self.fail_at:
            raise VidpredError("prediction contains NaN or infinite values")
        out = super().training_step(batch, step)
        self.calls += 1
        if self.calls - 1 == self.grad_at:
            out["loss"] = out["loss"] + 0 * torch.sqrt(self.net[0].weight[0, 0] * 0)  # d sqrt(x)/dx at 0 = inf
        return out


def test_nonfinite_gradients_overflowing_weights_and_model_errors(tmp_path):
    task = Blowup(grad_at=2)
    with pytest.raises(VidpredError, match=r"^train: non-finite gradient at step 2 \(epoch 0\): the gradient norm "
                                           r"is (nan|inf) although every loss term was finite; the last good "):
        run_training(task, epoch_batches(_data(), 8), _settings(tmp_path / "a", ckpt_every=1))
    state = torch.load(latest_checkpoint(tmp_path / "a" / "run"), weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(p).all() for p in task.net.parameters())
    skipping = Blowup(grad_at=2)
    result = run_training(skipping, epoch_batches(_data(), 8), _settings(tmp_path / "b", max_steps=5,
                                                                          skip_nonfinite=True))
    assert result.skipped_batches == 1 and all(torch.isfinite(p).all() for p in skipping.net.parameters())
    with pytest.raises(VidpredError, match=r"^train: the weights are non-finite after step 1 although every loss "
                                           r"term and gradient was finite .*; not checkpointed; lower the "):
        run_training(Blowup(sgd=True), epoch_batches(_data(), 8), _settings(tmp_path / "c", ckpt_every=1))
    assert not (tmp_path / "c" / "run" / "checkpoints").exists()
    with pytest.raises(VidpredError, match=r"^train: step 3 \(epoch 0\): prediction contains NaN or infinite "
                                           r"values$"):
        run_training(Blowup(fail_at=3), epoch_batches(_data(), 8), _settings(tmp_path / "d"))


def test_checkpoints_in_a_ckpt_dir_outside_out_dir_and_fsspec_uris(tmp_path):
    full = Regression()
    run_training(full, epoch_batches(_data(), 8, seed=1), _settings(tmp_path / "a", max_steps=20))
    for where in (str(tmp_path / "volume" / "ckpt"), (tmp_path / "mnt" / "ckpt").as_uri()):
        first = Regression()
        run_training(first, epoch_batches(_data(), 8, seed=1),
                     _settings(tmp_path / "b", max_steps=12, ckpt_every=6, ckpt_dir=where))
        second = Regression()
        r = run_training(second, epoch_batches(_data(), 8, seed=1),
                         _settings(tmp_path / "b", max_steps=20, ckpt_every=6, ckpt_dir=where))
        assert r.resumed_from == 12 and str(r.checkpoint).endswith("step-000020.pt")
        assert str(r.checkpoint).startswith("file://" if "://" in where else where)
        for p, q in zip(full.net.parameters(), second.net.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        (tmp_path / "b" / "run" / "metrics.jsonl").unlink()
    assert not (tmp_path / "b" / "run" / "checkpoints").exists()
    assert sorted(p.name for p in (tmp_path / "volume" / "ckpt").iterdir()) == ["step-000018.pt", "step-000020.pt"]
    with pytest.raises(VidpredError, match=r"train.ckpt_dir nosuch://x/y: Protocol not known: nosuch"):
        run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path / "c", ckpt_dir="nosuch://x/y"))


def test_checkpoints_load_with_weights_only_and_unsafe_ones_are_refused(tmp_path):
    run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path, max_steps=10))
    ckpt = latest_checkpoint(tmp_path / "run")
    state = torch.load(ckpt, weights_only=True)  # plain values and tensors only, RNG states included
    assert state["format"] == "vidpred-checkpoint/2" and state["world_size"] == 1 and len(state["rng"]) == 1
    state["rng"][0]["numpy"] = np.random.get_state()  # what older checkpoints held: a numpy array
    torch.save(state, ckpt)
    with pytest.raises(VidpredError, match=r"step-000010.pt cannot be loaded safely \(weights_only\): it holds a "
                                           r"Python object \(numpy\.\S+\) .*set train.resume=false"):
        run_training(Regression(), epoch_batches(_data(), 8), _settings(tmp_path, max_steps=20))
    from vidpred.models.files import load_model_file

    torch.save({"kind": "k", "config": {}, "state_dict": {}, "extra": np.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(VidpredError, match=r"model .*model.pt cannot be loaded: it holds a Python object \(numpy"):
        load_model_file(tmp_path / "model.pt", "k", "model", "train it")


def test_epoch_batches_shard_the_global_batch_by_rank(monkeypatch):
    data = torch.utils.data.TensorDataset(torch.arange(41).float())
    single = [b[0].tolist() for b in epoch_batches(data, 8, seed=3)(2)]
    assert len(single) == 5
    shards = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        shards.append([b[0].tolist() for b in epoch_batches(data, 8, seed=3)(2)])
    assert [len(b) for b in shards[0]] == [4] * 5
    for k in range(5):  # step k of each rank: halves of the same global batch
        assert sorted(shards[0][k] + shards[1][k]) == sorted(single[k])
    with pytest.raises(VidpredError, match="batch size 7 .* not divisible by the 2 training processes"):
        epoch_batches(data, 7)
    with pytest.raises(VidpredError, match="must shard by rank"):  # a plain list cannot be split
        from vidpred.train import loop

        loop._train(Regression(), [], _settings(Path("/nonexistent")), None, None)


def test_torchrun_command():
    from vidpred.train.distributed import torchrun_command

    cmd = torchrun_command("moso_vqvae", "smoke/moso-vqvae", ["train.max_steps=4"], nproc=2)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1", "--standalone",
                       "-m", "vidpred.cli", "train", "moso-vqvae", "--config", "smoke/moso-vqvae",
                       "--set", "train.max_steps=4"]
    multi = torchrun_command("corrwise", "c.yaml", nproc=4, nnodes=2, node_rank=1, master_addr="10.0.0.1")
    assert multi[3:14] == ["--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1",
                           "--master-port", "29500", "-m"]
    with pytest.raises(VidpredError, match="2 nodes need master_addr"):
        torchrun_command("corrwise", "c.yaml", nproc=1, nnodes=2)
    with pytest.raises(VidpredError, match="unknown training stage 'gan'"):
        torchrun_command("gan", "c.yaml")
    with pytest.raises(VidpredError, match="nproc must be an integer ≥ 1, got 0"):
        torchrun_command("corrwise", "c.yaml", nproc=0)
