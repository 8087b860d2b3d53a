"""A REAL kfp.local run of the smoke pipeline (SubprocessRunner, one process per task) on tiny synthetic
data made by the run itself: task outputs on disk, an MLflow parent run with a nested run per stage, all
tagged with the data md5 that DVC would record; evaluation of every method and baseline, the headline metrics
on the parent run and the report (LPIPS with a STAND-IN AlexNet the test writes, so it is labelled stand-in)."""

import json

import mlflow
import pytest

from vidpred import tracking
from vidpred.data.versioning import dir_md5
from vidpred.orchestrate import run_local

TINY = ["data.size=32", "data.clip_len=4", "preprocess.clip_len=4", "data.options.num_videos=3",
        "data.options.num_val=1", "data.options.num_test=1", "data.options.num_frames=8", "data.options.num_objects=1",
        'stages.corrwise.overrides=["train.max_steps=2", "train.batch_size=2", "train.ckpt_every=2", "train.sample_every=2"]',
        'stages.toycar.overrides=["epochs=1", "samples_per_epoch=8"]',
        'stages.landmarks.overrides=["train.max_steps=2", "optim.batch_size=2", "model.image_size=32"]',
        'stages.landmark_dynamics.overrides=["train.max_steps=2", "optim.batch_size=2", "dynamics.n_inputs=2", '
        '"dynamics.n_future=2", "eval.rollout_steps=4"]',
        'stages.moso_vqvae.overrides=["model.image_size=32", "model.frames=4", "train.max_steps=2", '
        '"optim.batch_size=2"]',
        'stages.moso_transformer.overrides=["train.max_steps=2", "optim.batch_size=2"]',
        # 8-frame videos: a shorter rollout than the protocol's 14 frames, so no FVD (it needs 16)
        'stages.landmark_dynamics.evaluate.overrides=["horizon=4", "metrics=[psnr,ssim,lpips]"]',
        'stages.moso_transformer.evaluate.overrides=["horizon=2", "clips.count=2", "samples=2", "methods.moso.steps=4"]']
STAGES = {"prepare-data", "validate-data", "preprocess-moso", "train-corrwise", "toycar-experiment",
          "train-landmarks", "train-landmark-dynamics", "train-moso-vqvae", "moso-tokens", "train-moso-transformer",
          "evaluate-track", "evaluate-track-2", "evaluate-track-3", "evaluate-track-4", "make-report"}
TRACKS = {"corrwise": "corrwise", "moso": "moso", "landmarks": "landmarks"}  # track → its method


@pytest.mark.slow
def test_smoke_pipeline_runs_locally_and_is_tracked(tmp_path, capsys, monkeypatch):
    from tests.standins import write_standin_alexnet

    write_standin_alexnet()  # task processes inherit TORCH_HOME and the stand-in permission
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    result = run_local("smoke", TINY, workdir=tmp_path / "runs")

    # task outputs
    assert result.run_dir is not None and result.run_dir.parent == tmp_path / "runs"
    assert set(result.outputs) == STAGES
    store = result.run_dir / "prepare-data" / "store"
    assert (store / "manifest.parquet").is_file()
    assert json.loads((result.run_dir / "validate-data" / "report" / "validation.json").read_text())["success"]
    moso = json.loads((result.run_dir / "preprocess-moso" / "moso" / "moso.json").read_text())
    assert (moso["clip_len"], moso["num_clips"], moso["height"]) == (4, 5 * 2, 32)  # 3 train + 1 val + 1 test videos
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
    evaluations = {r.info.run_name: r for r in children if r.data.tags["vidpred.stage"] == "evaluate"}
    by_stage = {r.data.tags["vidpred.stage"]: r for r in children if r.data.tags["vidpred.stage"] != "evaluate"}
    assert set(by_stage) == {"prepare_data", "preprocess_moso", "validate_data", "corrwise", "toycar-corrwise-l1",
                             "landmarks", "landmark_dynamics", "moso_vqvae", "moso_tokens", "moso_transformer"}
    expected = {f"evaluate/{t}/{m}" for t, method in TRACKS.items() for m in (method, "copy-last", "linear")}
    assert set(evaluations) == expected | {"evaluate/landmarks-keypoints/landmarks"}
    for name, run in evaluations.items():
        assert run.info.status == "FINISHED" and run.data.tags["vidpred.data_md5"] == result.data_md5
        if not name.endswith("keypoints/landmarks"):
            assert run.data.tags["vidpred.eval.stand_in"] == "true"  # LPIPS from the stand-in AlexNet
    # headline metrics on the parent run, for every method and both baselines of every track
    for track, method in TRACKS.items():
        for m in (method, "copy-last", "linear"):
            for metric in ("psnr", "ssim", "lpips"):
                assert f"{track}/{m}/{metric}" in parent.data.metrics, f"{track}/{m}/{metric}"
    assert parent.data.metrics["corrwise/copy-last/psnr"] == pytest.approx(
        evaluations["evaluate/corrwise/copy-last"].data.metrics["psnr"])
    [corr] = result.run_dir.glob("evaluate-track*/evaluation/corrwise/metrics.json")
    doc = json.loads(corr.read_text())
    assert doc["protocol"] == "shapes-corrwise" and doc["metrics"]["lpips"]["stand_in"] is True
    # each trained predictor loads back from its stage run: vidpred evaluate --model runs:/<run id>/model
    import torch

    from vidpred.evaluate.predictors import load_predictor

    for stage, method in (("corrwise", "corrwise"), ("moso_transformer", "moso"), ("landmark_dynamics", "landmarks")):
        pred = load_predictor(method, f"runs:/{by_stage[stage].info.run_id}/model", options={"steps": 2}
                              if method == "moso" else None)
        assert pred.predict(torch.rand(1, 3 if method == "corrwise" else 2, 3, 32, 32), 2).shape[2:] == (2, 3, 32, 32)
    report = result.run_dir / "make-report" / "report"
    html = (report / "report.html").read_text()
    assert "<table" in html and html.count("data:image/png;base64,") >= 6 and "stand-in" in html
    assert result.data_md5 in html
    assert "report/report.html" in {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
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
