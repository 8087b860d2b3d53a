"""The shared training loop: learning, deterministic resume, NaN stop, checkpoints, images, MLflow.

The data is a small synthetic regression problem made here (y = x·w + noise); no real weights."""

from __future__ import annotations

import json

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
    with pytest.raises(VidpredError, match=r"loss is nan at step 5"):
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
