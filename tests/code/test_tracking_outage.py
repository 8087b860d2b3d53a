"""Training stages' MLflow logging: system metrics, and a REAL `mlflow server` process that goes away mid-training.

* system metrics: a short training stage (sampling every 0.5 s) has ``system/cpu_utilization_percentage`` and
  memory curves in its run (sqlite store);
* outage survived: the test kills the server (SIGKILL) at a training step and starts it again a few steps later on
  the same port and backend store; training does not wait, every step's metrics (also those logged while the
  server was down) and every sample image end up in the store, the run ends FINISHED;
* never back: a real `vidpred train corrwise` process whose server is killed after its first logged step (deadline
  3 s): the stage finishes training, keeps its checkpoint, model file and metrics.jsonl, and exits 2 with one
  `error:` line saying what could not be logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from tests.servers import MlflowServer
from vidpred.errors import VidpredError
from vidpred.tracking_buffer import deadline_seconds
from vidpred.train.loop import LoopSettings, Task, run_training, stage_logging


@pytest.fixture(scope="module")
def _server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    srv = MlflowServer(root)
    yield srv
    srv.stop()


@pytest.fixture
def server(_server, monkeypatch):
    """The module's server (one start for both server tests: the first restarts it, the second kills it for
    good), up, with this process's tracking pointed at it."""
    if _server.proc is None or _server.proc.poll() is not None:
        _server.start()
    _server.wait_up()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _server.uri)
    monkeypatch.delenv("VIDPRED_ARTIFACT_ROOT", raising=False)  # the server picks the artifact store
    monkeypatch.delenv("VIDPRED_PARENT_RUN_ID", raising=False)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):  # a give-up sets them
        monkeypatch.delenv(name, raising=False)
    return _server


class Steps(Task):
    """A tiny regression task whose steps take ``pause`` s; ``hooks`` maps a step to a function run before it,
    ``each_step(step)`` runs before every step."""

    def __init__(self, pause: float, hooks: dict | None = None, each_step=None):
        self.net = torch.nn.Linear(4, 1)
        self.modules = {"net": self.net}
        self.optimizers = {"sgd": torch.optim.SGD(self.net.parameters(), lr=0.01)}
        self.pause, self.hooks, self.each_step = pause, dict(hooks or {}), each_step

    def training_step(self, batch, step):
        if self.each_step:
            self.each_step(step)
        if step in self.hooks:
            self.hooks.pop(step)()
        time.sleep(self.pause)
        x, y = batch
        return {"loss": torch.nn.functional.mse_loss(self.net(x), y)}

    def sample_images(self, batch, step):
        return {"grid": np.full((8, 8, 3), step % 256, np.uint8)}


def _batches():
    x = torch.randn(64, 4)
    return [(x[i:i + 8], x[i:i + 8].sum(1, keepdim=True)) for i in range(0, 64, 8)]


def test_deadline_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("VIDPRED_TRACKING_DEADLINE", raising=False)
    assert deadline_seconds() == 60.0
    monkeypatch.setenv("VIDPRED_TRACKING_DEADLINE", "7.5")
    assert deadline_seconds() == 7.5
    monkeypatch.setenv("VIDPRED_TRACKING_DEADLINE", "soon")
    with pytest.raises(VidpredError, match="VIDPRED_TRACKING_DEADLINE='soon'"):
        deadline_seconds()


@pytest.mark.slow
def test_buffer_delivers_in_order_and_reports_what_mlflow_refused(tmp_path):
    import mlflow

    from vidpred.tracking import ensure_experiment
    from vidpred.tracking_buffer import LogBuffer, TrackingOutage

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.create_run(ensure_experiment("outage-tests"))
    buffer = LogBuffer(run.info.run_id, os.environ["MLFLOW_TRACKING_URI"], stage="unit")
    buffer.params({"lr": 0.1})
    for step in range(1, 51):
        buffer.metrics({"a": step * 0.5, "b": -step}, step)
    buffer.params({"lr": 0.2})  # a param cannot change: MLflow refuses it (not retried), the rest goes on
    buffer.metrics({"a": 99.0}, 51)
    with pytest.raises(TrackingOutage, match=r"^unit: MLflow run \w+ refused what the stage logged: params lr: "):
        buffer.close()
    history = client.get_metric_history(run.info.run_id, "a")
    assert [(m.step, m.value) for m in history] == [(s, s * 0.5) for s in range(1, 51)] + [(51, 99.0)]
    assert len(client.get_metric_history(run.info.run_id, "b")) == 50
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}


@pytest.mark.slow
def test_training_stage_logs_system_metrics(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    settings = LoopSettings(out_dir=tmp_path / "run", max_steps=16, log_every=4, ckpt_every=0, sample_every=0,
                            progress=False, log_model=False, stage="sysmetrics", device="cpu")
    with stage_logging("sysmetrics", {"tracking": {"experiment": "outage-tests"}}, tmp_path / "run") as log:
        result = run_training(Steps(0.2), _batches(), settings, log)
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
    assert len(cpu) >= 2 and len(memory) >= 2, sorted(run.data.metrics)  # ~3 s of training, sampled every 0.5 s
    assert all(0 <= m.value <= 100 * os.cpu_count() for m in cpu) and all(m.value > 0 for m in memory)
    assert [m.step for m in cpu] == list(range(len(cpu)))
    gpu = [k for k in run.data.metrics if k.startswith("system/gpu")]
    assert bool(gpu) == torch.cuda.is_available()  # nvidia-ml-py is installed: harmless without a GPU
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 4

    # and off when MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING says so
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    settings.out_dir = tmp_path / "off"
    with stage_logging("sysmetrics", {"tracking": {"experiment": "outage-tests"}}, tmp_path / "off") as log:
        off = run_training(Steps(0.2), _batches(), settings, log)
    assert not [k for k in client.get_run(off.run_id).data.metrics if k.startswith("system/")]


@pytest.mark.slow
def test_training_survives_a_tracking_server_outage(server, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("VIDPRED_TRACKING_DEADLINE", "60")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # its own thread; tested above
    steps = 30
    killed, down_steps = threading.Event(), {}  # step run while the server was down → wall-clock time

    def kill():
        server.stop()
        killed.set()

    def restart():  # not waiting: training goes on while the server boots (several seconds)
        server.start(wait=False)

    def watch(step):
        if killed.is_set() and not server.up():
            down_steps[step] = time.time()

    task = Steps(0.15, hooks={6: kill, 10: restart}, each_step=watch)
    settings = LoopSettings(out_dir=tmp_path / "run", max_steps=steps, log_every=1, ckpt_every=10, sample_every=5,
                            progress=False, log_model=False, stage="outage", device="cpu")
    with stage_logging("outage", {"tracking": {"experiment": "outage-tests"}}, tmp_path / "run") as log:
        result = run_training(task, _batches(), settings, log)
    assert result.step == steps
    # training went on while the server was down: these steps ran (and logged) against a dead server
    assert len(down_steps) >= 4, down_steps

    client = mlflow.MlflowClient(server.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))  # every step, none twice
    stamps = {m.step: m.timestamp / 1000 for m in history}
    for step, when in down_steps.items():  # logged at step + 1 with the time it was logged, not when it was sent
        assert when < stamps[step + 1] < when + 5, (step, when, stamps[step + 1])
    local = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {m.step: m.value for m in history} == pytest.approx({d["step"]: d["train/loss"] for d in local})
    samples = sorted(a.path for a in client.list_artifacts(run.info.run_id, "samples/grid"))
    assert samples == [f"samples/grid/step-{s:06d}.png" for s in range(5, steps + 1, 5)]
    assert run.data.params["train.world_size"] == "1"


@pytest.mark.slow
def test_stage_whose_server_never_comes_back_keeps_its_outputs_and_fails_in_one_line(server, tmp_path):
    from vidpred.data.prepare import prepare
    from vidpred.train.corrwise import MODEL_FILE

    store = tmp_path / "store"
    prepare(dataset="shapes", out=store, size="32x48", clip_len=4, crop="aspect",
            options={"num_videos": 4, "num_val": 1, "num_test": 1, "num_frames": 8, "num_objects": 1})
    out = tmp_path / "corrwise"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "VIDPRED_TRACKING_DEADLINE": "3",
           "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "true", "OMP_NUM_THREADS": "1"}
    env.pop("VIDPRED_ARTIFACT_ROOT", None)
    cmd = [sys.executable, "-m", "vidpred.cli", "train", "corrwise", "--config", "smoke/corrwise",
           "--set", f"data.store={store}", "--set", f"train.out_dir={out}", "--set", "train.max_steps=40",
           "--set", "train.batch_size=2", "--set", "train.log_every=1", "--set", "train.ckpt_every=20",
           "--set", "train.sample_every=10", "--set", "tracking.experiment=outage-tests"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def kill_after_first_log():
        end = time.monotonic() + 300
        while not (out / "metrics.jsonl").is_file() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        server.stop()

    killer = threading.Thread(target=kill_after_first_log, daemon=True)
    killer.start()
    stdout, stderr = proc.communicate(timeout=600)
    killer.join(timeout=5)
    assert proc.returncode == 2, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    error = errors[0]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert f"the MLflow tracking server at {server.uri} was unreachable for more than 3 s" in error
    assert "metric values (train/l1, train/loss" in error and "steps " in error and "the model" in error, error
    assert "could not be logged to MLflow run" in error and "are kept" in error, error
    # the stage's work is done and kept: every step trained, checkpointed, the model file written
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 41))
    assert (out / "checkpoints" / "step-000040.pt").is_file()
    assert (out / MODEL_FILE).is_file()
    assert (out / "samples").is_dir()
