"""MLflow tracking against real stores: a sqlite file store in tmp, and a real `mlflow server` subprocess.

Tests that touch MLflow are marked slow: `import mlflow` alone takes ~8 s on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.servers import MlflowServer, free_port
from vidpred import tracking
from vidpred.config import load_config
from vidpred.errors import VidpredError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _module_store(tmp_path_factory):
    """One sqlite store for this module (creating the tables takes seconds), artifacts beside it."""
    root = tmp_path_factory.mktemp("tracking")
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


@pytest.fixture
def store(monkeypatch, _module_store) -> str:
    uri, artifacts = _module_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("VIDPRED_ARTIFACT_ROOT", str(artifacts))
    monkeypatch.delenv("VIDPRED_PARENT_RUN_ID", raising=False)
    return uri


@pytest.fixture
def config(tmp_path):
    """A small config file with provenance, a long string and many keys (more than one MLflow batch)."""
    data = {
        "train": {"lr": 0.0002, "steps": 10, "note": "x" * 7000},
        "many": {f"k{i:03d}": i for i in range(120)},
        "tracking": {"experiment": "vidpred-test"},
        "provenance": {"train.lr": "paper: MOSO Tab. 9", "train.steps": "assumed: smoke test",
                       "many": "assumed: batch-limit test"},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


# ------------------------------------------------------------------------------------------ no MLflow needed

def test_default_uri_and_artifact_root_under_vidpred_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VIDPRED_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("VIDPRED_HOME", str(tmp_path / "proj"))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'proj' / 'mlflow.db'}"
    assert tracking.artifact_root() == (tmp_path / "proj" / "mlartifacts").as_uri()
    monkeypatch.delenv("VIDPRED_HOME")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("VIDPRED_ARTIFACT_ROOT", "s3://bucket/mlflow")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"
    assert tracking.artifact_root() == "s3://bucket/mlflow"
    monkeypatch.setenv("VIDPRED_ARTIFACT_ROOT", str(tmp_path / "arts"))
    assert tracking.artifact_root() == (tmp_path / "arts").as_uri()


def test_preflight_fails_fast_for_closed_port():
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(VidpredError) as err:
        tracking.preflight(uri)
    assert time.monotonic() - start < 5
    assert str(err.value).startswith(f"MLflow tracking server at {uri} is unreachable")
    assert "unset MLFLOW_TRACKING_URI" in str(err.value)


def test_preflight_sqlite_creates_directory_and_rejects_impossible_path(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'dir' / 'mlflow.db'}"
    assert tracking.preflight(uri) == uri
    assert (tmp_path / "new" / "dir").is_dir()
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(VidpredError, match="cannot be created"):
        tracking.preflight(f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}")


def test_flatten_params_respects_mlflow_limits():
    flat = tracking.flatten_params({"a": {"b": 1, "c": [1, 2]}, "long": "y" * 9000, "none": None, "empty": {}})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]" and flat["none"] == "null" and flat["empty"] == "{}"
    assert len(flat["long"]) == tracking.MAX_PARAM_VALUE and flat["long"].endswith("…")


def test_experiment_name_comes_from_tracking_section(monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert tracking._experiment_name({"tracking": {"experiment": "vidpred-paper"}}) == "vidpred-paper"
    assert tracking._experiment_name({"experiment": {"toycar": {"epochs": 20}}}) == "vidpred"  # a section, not a name
    paper = load_config("paper/pipeline")  # the project's own config uses the same key
    assert tracking._experiment_name(paper) == paper["tracking.experiment"] != "vidpred"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert tracking._experiment_name(None) == "from-env"


def test_git_sha_is_head_or_unknown(tmp_path):
    sha = tracking.git_sha()
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        assert sha == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert tracking.git_sha(tmp_path) == "unknown"  # not a git checkout


# ------------------------------------------------------------------------------------------ real sqlite store

@pytest.mark.slow
def test_default_sqlite_store_is_created_in_vidpred_home(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VIDPRED_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("VIDPRED_HOME", str(tmp_path))
    with tracking.pipeline_run("smoke", {"a": 1, "provenance": {"a": "assumed: test"}}) as run:
        run_id = run.info.run_id
    assert (tmp_path / "mlflow.db").is_file()
    exp = mlflow.MlflowClient(tracking.tracking_uri()).get_experiment_by_name("vidpred")
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    arts = tmp_path / "mlartifacts" / run_id / "artifacts" / "config"
    assert json.loads((arts / "provenance.json").read_text()) == {"a": "assumed: test"}
    assert yaml.safe_load((arts / "resolved.yaml").read_text()) == {"a": 1}


@pytest.mark.slow
def test_pipeline_run_logs_params_tags_and_provenance(store, config, tmp_path, _module_store):
    import mlflow

    with tracking.pipeline_run("smoke", config, data_md5="abc123") as run:
        run_id = run.info.run_id
    client = mlflow.MlflowClient(store)
    got = client.get_run(run_id)
    params, tags = got.data.params, got.data.tags
    assert params["train.lr"] == "0.0002" and params["many.k119"] == "119"
    assert len([k for k in params if k.startswith("many.")]) == 120  # more than one batch of 100
    assert len(params["train.note"]) == tracking.MAX_PARAM_VALUE
    assert tags["vidpred.data_md5"] == "abc123" and tags["vidpred.profile"] == "smoke"
    assert tags["vidpred.git_sha"] == tracking.git_sha()
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.name == "vidpred-test"
    assert exp.artifact_location == _module_store[1].as_uri()
    local = client.download_artifacts(run_id, "config/provenance.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["train.lr"] == "paper: MOSO Tab. 9"


@pytest.mark.slow
def test_stage_run_in_process_is_nested_under_active_pipeline_run(store, config):
    import mlflow

    with tracking.pipeline_run("smoke", config, data_md5="md5x") as parent:
        with tracking.stage_run("preprocess") as child:
            tracking.log_metrics({"loss": 0.5}, step=3)
            child_id = child.info.run_id
    got = mlflow.MlflowClient(store).get_run(child_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got.data.tags["vidpred.stage"] == "preprocess"
    assert got.data.tags["vidpred.data_md5"] == "md5x"  # inherited from the parent
    assert got.data.metrics["loss"] == 0.5


@pytest.mark.slow
def test_stage_run_from_another_process_finds_its_parent(store, config, tmp_path):
    import mlflow

    config.set("tracking.experiment", "vidpred-subprocess")  # its own experiment: exactly two runs in it
    with tracking.pipeline_run("smoke", config, data_md5="d41d8c") as parent:
        parent_id = parent.info.run_id
        exp_id = parent.info.experiment_id
        # kfp.local runs each stage in a subprocess: do the same here
        script = textwrap.dedent(f"""
            from vidpred import tracking
            with tracking.stage_run("train_vqvae", {{"lr": 0.1}}, parent_run_id={parent_id!r}) as run:
                tracking.log_metrics({{"loss": 1.25}}, step=7)
                print(run.info.run_id)
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ})
        assert out.returncode == 0, out.stderr[-2000:]
        child_id = out.stdout.strip().splitlines()[-1]
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_ids=[exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert list(runs["run_id"]) == [child_id]
    row = runs.iloc[0]
    assert row["tags.vidpred.stage"] == "train_vqvae" and row["tags.vidpred.profile"] == "smoke"
    assert row["tags.vidpred.data_md5"] == "d41d8c"
    assert row["params.lr"] == "0.1" and row["metrics.loss"] == 1.25
    all_runs = mlflow.search_runs(experiment_ids=[exp_id])
    assert set(all_runs["run_id"]) == {parent_id, child_id}


@pytest.mark.slow
def test_stage_run_takes_its_parent_from_the_environment(store, monkeypatch):
    import mlflow

    with tracking.pipeline_run("paper", {"tracking": {"experiment": "vidpred-env"}}) as parent:
        pass  # parent finished; the stage is started later, as a separate kfp task would
    monkeypatch.setenv("VIDPRED_PARENT_RUN_ID", parent.info.run_id)
    with tracking.stage_run("evaluate", {"k": 1}) as child:
        pass
    got = mlflow.MlflowClient(store).get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got.info.experiment_id == parent.info.experiment_id  # not the default "vidpred" experiment
    assert got.data.tags["vidpred.profile"] == "paper"


@pytest.mark.slow
def test_stage_run_with_unknown_parent_is_a_clear_error(store):
    with pytest.raises(VidpredError, match="parent MLflow run 'ffffffffffffffffffffffffffffffff' was not found"):
        with tracking.stage_run("x", parent_run_id="f" * 32):
            pass


@pytest.mark.slow
def test_image_gif_and_metric_helpers(store, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import torch
    from PIL import Image

    with tracking.pipeline_run("smoke", {}) as run:
        tracking.log_image(np.linspace(0, 1, 20 * 30 * 3).reshape(20, 30, 3), "samples/grid.png")
        tracking.log_image(torch.rand(3, 16, 24), "samples/chw.png")
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [1, 0])
        tracking.log_image(fig, "curves/fig.png")
        plt.close(fig)
        tracking.log_gif(np.random.default_rng(0).integers(0, 255, (5, 12, 10, 3), dtype=np.uint8), "clips/a.gif")
        tracking.log_metrics({"psnr": 30.0, "ssim": 0.9}, step=2)
        with pytest.raises(VidpredError, match="metric 'bad' is nan"):
            tracking.log_metrics({"bad": float("nan")})
        with pytest.raises(VidpredError, match="NaN"):
            tracking.log_image(np.full((4, 4), np.nan), "x.png")
    client = mlflow.MlflowClient(store)
    dl = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
    assert Image.open(dl / "samples" / "grid.png").size == (30, 20)
    assert Image.open(dl / "samples" / "chw.png").size == (24, 16)
    assert Image.open(dl / "curves" / "fig.png").format == "PNG"
    gif = Image.open(dl / "clips" / "a.gif")
    assert gif.n_frames == 5 and gif.size == (10, 12)
    assert not (dl / "x.png").exists()
    hist = client.get_metric_history(run.info.run_id, "psnr")
    assert [(m.step, m.value) for m in hist] == [(2, 30.0)]


# ------------------------------------------------------------------------------------------ real mlflow server

@pytest.mark.slow
def test_real_mlflow_server_roundtrip(monkeypatch, tmp_path):
    import mlflow

    with MlflowServer(tmp_path) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("VIDPRED_ARTIFACT_ROOT", raising=False)  # the server picks the artifact store
        with tracking.pipeline_run("smoke", {"a": 2, "provenance": {"a": "assumed: test"}}, data_md5="m5") as run:
            tracking.log_metrics({"lpips": 0.25}, step=1)
            tracking.log_image(np.zeros((8, 8, 3)), "samples/black.png")
        client = mlflow.MlflowClient(uri)
        got = client.get_run(run.info.run_id)
        assert got.data.params["a"] == "2" and got.data.metrics["lpips"] == 0.25
        assert got.data.tags["vidpred.data_md5"] == "m5"
        files = sorted(p.name for p in (tmp_path / "server-artifacts").rglob("*") if p.is_file())
        assert files == ["black.png", "provenance.json", "resolved.yaml"]
