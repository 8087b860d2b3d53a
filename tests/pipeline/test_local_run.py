"""A REAL kfp.local run of the smoke pipeline (SubprocessRunner, one process per task) on tiny synthetic
data made by the run itself: task outputs on disk, an MLflow parent run with a nested run per stage, all
tagged with the data md5 that DVC would record."""

import json

import mlflow
import pytest

from vidpred import tracking
from vidpred.data.versioning import dir_md5
from vidpred.orchestrate import run_local

TINY = ["data.size=32", "data.clip_len=4", "preprocess.clip_len=4", "data.options.num_videos=3",
        "data.options.num_test=1", "data.options.num_frames=8", "data.options.num_objects=1",
        'stages.corrwise.overrides=["train.max_steps=2", "train.batch_size=2", "train.ckpt_every=2", "train.sample_every=2"]',
        'stages.toycar.overrides=["epochs=1", "samples_per_epoch=8"]',
        'stages.landmarks.overrides=["train.max_steps=2", "optim.batch_size=2", "model.image_size=32"]',
        'stages.landmark_dynamics.overrides=["train.max_steps=2", "optim.batch_size=2", "dynamics.n_inputs=2", '
        '"dynamics.n_future=2", "eval.rollout_steps=4"]',
        'stages.moso_vqvae.overrides=["model.image_size=32", "model.frames=4", "train.max_steps=2", '
        '"optim.batch_size=2"]',
        'stages.moso_transformer.overrides=["train.max_steps=2", "optim.batch_size=2"]']
STAGES = {"prepare-data", "validate-data", "preprocess-moso", "train-corrwise", "toycar-experiment",
          "train-landmarks", "train-landmark-dynamics", "train-moso-vqvae", "moso-tokens", "train-moso-transformer"}


@pytest.mark.slow
def test_smoke_pipeline_runs_locally_and_is_tracked(tmp_path, capsys):
    result = run_local("smoke", TINY, workdir=tmp_path / "runs")

    # task outputs
    assert result.run_dir is not None and result.run_dir.parent == tmp_path / "runs"
    assert set(result.outputs) == STAGES
    store = result.run_dir / "prepare-data" / "store"
    assert (store / "manifest.parquet").is_file()
    assert json.loads((result.run_dir / "validate-data" / "report" / "validation.json").read_text())["success"]
    moso = json.loads((result.run_dir / "preprocess-moso" / "moso" / "moso.json").read_text())
    assert (moso["clip_len"], moso["num_clips"], moso["height"]) == (4, 4 * 2, 32)
    assert result.data_md5 == dir_md5(store)

    # MLflow: parent run + nested stage runs, every one tagged with the data md5
    client = mlflow.MlflowClient(tracking.tracking_uri())
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["vidpred.data_md5"] == result.data_md5
    assert parent.data.tags["vidpred.profile"] == "smoke"
    assert parent.data.params["data.options.num_videos"] == "3"  # the resolved config, overrides included
    assert result.experiment == "vidpred-smoke"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    by_stage = {r.data.tags["vidpred.stage"]: r for r in children}
    assert set(by_stage) == {"prepare_data", "preprocess_moso", "validate_data", "corrwise", "toycar-corrwise-l1",
                             "landmarks", "landmark_dynamics", "moso_vqvae", "moso_tokens", "moso_transformer"}
    for name, run in by_stage.items():
        assert run.info.status == "FINISHED"
        if name != "toycar-corrwise-l1":  # the toy experiment reads no dataset
            assert run.data.tags["vidpred.data_md5"] == result.data_md5
    assert (result.run_dir / "train-corrwise" / "model" / "checkpoints").is_dir()
    assert (result.run_dir / "train-landmark-dynamics" / "model" / "dynamics.pt").is_file()
    assert json.loads((result.run_dir / "toycar-experiment" / "report" / "result.json").read_text())["mode"] == "corrwise"

    text = result.describe()
    for needle in (result.tracking_uri, result.parent_run_id, "vidpred-smoke", str(result.run_dir),
                   f"mlflow ui --backend-store-uri {result.tracking_uri}", str(store), result.data_md5):
        assert needle in text
