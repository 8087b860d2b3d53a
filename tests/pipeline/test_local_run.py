"""A REAL kfp.local run of the smoke pipeline (SubprocessRunner, one process per task) on tiny synthetic
data made by the run itself — two datasets (square and non-square), four tracks: task outputs on disk named after
their track or dataset, an MLflow parent run with a nested run per stage, each tagged with the md5 (that DVC
would record) of the data it read; evaluation of every method and baseline, the headline metrics
on the parent run and the report (LPIPS with a STAND-IN AlexNet the test writes, so it is labelled stand-in)."""

import json

import mlflow
import pytest

from vidpred import tracking
from vidpred.data.versioning import dir_md5
from vidpred.orchestrate import run_local

TINY = ["datasets.shapes.size=32", "datasets.shapes.clip_len=4", "datasets.shapes.moso.clip_len=4",
        "datasets.shapes.options.num_videos=3", "datasets.shapes.options.num_val=1", "datasets.shapes.options.num_test=1",
        "datasets.shapes.options.num_frames=8", "datasets.shapes.options.num_objects=1",
        "datasets.shapes-wide.size=32x48", "datasets.shapes-wide.clip_len=4", "datasets.shapes-wide.options.num_videos=3",
        "datasets.shapes-wide.options.num_val=1", "datasets.shapes-wide.options.num_test=1",
        "datasets.shapes-wide.options.num_frames=8",
        'tracks.corrwise.stages.corrwise.overrides=["train.max_steps=2", "train.batch_size=2", "train.ckpt_every=2", '
        '"train.sample_every=2"]',
        'tracks.toycar.stages.toycar.overrides=["epochs=1", "samples_per_epoch=8"]',
        'tracks.landmarks.stages.landmarks.overrides=["train.max_steps=2", "optim.batch_size=2", "model.image_size=32"]',
        'tracks.landmarks.stages.landmark_dynamics.overrides=["train.max_steps=2", "optim.batch_size=2", '
        '"dynamics.n_inputs=2", "dynamics.n_future=2", "eval.rollout_steps=4"]',
        'tracks.moso.stages.moso_vqvae.overrides=["model.image_size=32", "model.frames=4", "train.max_steps=2", '
        '"optim.batch_size=2"]',
        'tracks.moso.stages.moso_transformer.overrides=["train.max_steps=2", "optim.batch_size=2"]',
        # 8-frame videos: a shorter rollout than the protocol's 14 frames, so no FVD (it needs 16)
        'tracks.landmarks.evaluate=[{name: landmarks-keypoints, stage: landmarks, protocol: shapes-landmarks-keypoints}, '
        '{name: landmarks, stage: landmark_dynamics, protocol: shapes-landmark-dynamics, baselines: [copy-last, linear], '
        'overrides: ["horizon=4", "metrics=[psnr,ssim,lpips]"]}]',
        'tracks.moso.evaluate.overrides=["horizon=2", "clips.count=2", "samples=2", "methods.moso.steps=4"]']
TASKS = {"shapes-prepare-data", "shapes-validate-data", "shapes-preprocess-moso", "shapes-wide-prepare-data",
         "shapes-wide-validate-data", "corrwise-train-corrwise", "toycar-toycar-experiment",
         "landmarks-train-landmarks", "landmarks-train-landmark-dynamics", "moso-train-moso-vqvae", "moso-moso-tokens",
         "moso-train-moso-transformer", "evaluate-corrwise", "evaluate-moso", "evaluate-landmarks",
         "evaluate-landmarks-keypoints", "make-report"}
TRACKS = {"corrwise": "corrwise", "moso": "moso", "landmarks": "landmarks"}  # evaluation → its method
DATASET_OF = {"corrwise": "shapes-wide", "moso": "shapes", "landmarks": "shapes", "toycar": None}


@pytest.mark.slow
def test_smoke_pipeline_runs_locally_and_is_tracked(tmp_path, capsys, monkeypatch):
    from tests.standins import write_standin_alexnet

    write_standin_alexnet()  # task processes inherit TORCH_HOME and the stand-in permission
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    result = run_local("smoke", TINY, workdir=tmp_path / "runs")

    # task outputs: each dataset prepared and gated once, every track's tasks named after it
    assert result.run_dir is not None and result.run_dir.parent == tmp_path / "runs"
    assert set(result.outputs) == TASKS
    assert result.tracks == ["moso", "corrwise", "toycar", "landmarks"]
    stores = {name: result.run_dir / f"{name}-prepare-data" / "store" for name in ("shapes", "shapes-wide")}
    for name, store in stores.items():
        assert (store / "manifest.parquet").is_file()
        assert json.loads((result.run_dir / f"{name}-validate-data" / "report" / "validation.json").read_text())["success"]
        assert result.datasets[name] == dir_md5(store)
    assert json.loads((stores["shapes-wide"] / "store.json").read_text())["frame_shape"] == [32, 48, 3]
    moso = json.loads((result.run_dir / "shapes-preprocess-moso" / "moso" / "moso.json").read_text())
    assert (moso["clip_len"], moso["num_clips"], moso["height"]) == (4, 5 * 2, 32)  # 3 train + 1 val + 1 test videos

    # MLflow: parent run + nested stage runs named <track>/<stage> (or <dataset>/<stage>), each tagged with the
    # md5 of the data it read
    client = mlflow.MlflowClient(tracking.tracking_uri())
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    for name, md5 in result.datasets.items():
        assert parent.data.tags[f"vidpred.data_md5.{name}"] == md5
    assert parent.data.tags["vidpred.profile"] == "smoke"
    assert parent.data.tags["vidpred.tracks"] == "moso,corrwise,toycar,landmarks"
    assert parent.data.params["datasets.shapes.options.num_videos"] == "3"  # the resolved config, overrides included
    assert result.experiment == "vidpred-smoke"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    evaluations = {r.info.run_name: r for r in children if r.data.tags["vidpred.stage"] == "evaluate"}
    stages = {r.info.run_name: r for r in children if r.data.tags["vidpred.stage"] != "evaluate"}
    assert set(stages) == {"shapes/prepare_data", "shapes/validate_data", "shapes/preprocess_moso",
                           "shapes-wide/prepare_data", "shapes-wide/validate_data", "corrwise/corrwise",
                           "toycar/toycar-corrwise-l1", "landmarks/landmarks", "landmarks/landmark_dynamics",
                           "moso/moso_vqvae", "moso/moso_tokens", "moso/moso_transformer"}
    expected = {f"evaluate/{t}/{m}" for t, method in TRACKS.items() for m in (method, "copy-last", "linear")}
    assert set(evaluations) == expected | {"evaluate/landmarks-keypoints/landmarks"}
    for name, run in {**stages, **evaluations}.items():
        assert run.info.status == "FINISHED", name
        owner = name.split("/")[1] if name.startswith("evaluate/") else name.split("/")[0]
        track = run.data.tags.get("vidpred.track") or owner
        dataset = run.data.tags.get("vidpred.dataset") or DATASET_OF.get(track)
        if dataset:  # the toy experiment reads no dataset
            assert run.data.tags["vidpred.data_md5"] == result.datasets[dataset], name
    assert stages["corrwise/corrwise"].data.tags["vidpred.track"] == "corrwise"
    # the parent run lists every dataset its stages read (each once), so pipeline runs compare by their data
    parent_inputs = [(d.dataset.name, d.dataset.digest) for d in client.get_run(parent.info.run_id).inputs.dataset_inputs]
    child_inputs = {(d.dataset.name, d.dataset.digest) for r in children for d in r.inputs.dataset_inputs}
    assert len(parent_inputs) == len(set(parent_inputs)) and set(parent_inputs) == child_inputs
    assert set(result.datasets.values()) <= {digest for _, digest in parent_inputs}  # digest = the DVC md5
    assert evaluations["evaluate/landmarks-keypoints/landmarks"].data.tags["vidpred.track"] == "landmarks"
    assert stages["shapes-wide/validate_data"].data.tags["vidpred.dataset"] == "shapes-wide"
    for name, run in evaluations.items():
        if not name.endswith("keypoints/landmarks"):
            assert run.data.tags["vidpred.eval.stand_in"] == "true"  # LPIPS from the stand-in AlexNet
    # headline metrics on the parent run, for every method and both baselines of every track
    for track, method in TRACKS.items():
        for m in (method, "copy-last", "linear"):
            for metric in ("psnr", "ssim", "lpips"):
                assert f"{track}/{m}/{metric}" in parent.data.metrics, f"{track}/{m}/{metric}"
    assert parent.data.metrics["corrwise/copy-last/psnr"] == pytest.approx(
        evaluations["evaluate/corrwise/copy-last"].data.metrics["psnr"])
    doc = json.loads((result.run_dir / "evaluate-corrwise" / "evaluation" / "corrwise" / "metrics.json").read_text())
    assert doc["protocol"] == "shapes-corrwise" and doc["metrics"]["lpips"]["stand_in"] is True
    # the evaluation artifact's metadata (what the KFP UI shows): its evaluation name and headline means
    out = json.loads((result.run_dir / "evaluate-corrwise" / "executor_output.json").read_text())
    [meta] = [a.get("metadata", {}) for a in out["artifacts"]["evaluation"]["artifacts"]]
    assert meta["track"] == "corrwise" and meta["protocol"] == "shapes-corrwise"
    assert meta["corrwise/psnr"] == pytest.approx(evaluations["evaluate/corrwise/corrwise"].data.metrics["psnr"])
    # each trained predictor loads back from its stage run: vidpred evaluate --model runs:/<run id>/model
    import torch

    from vidpred.evaluate.predictors import load_predictor

    for run_name, method, (h, w) in (("corrwise/corrwise", "corrwise", (32, 48)), ("moso/moso_transformer", "moso", (32, 32)),
                                     ("landmarks/landmark_dynamics", "landmarks", (32, 32))):
        pred = load_predictor(method, f"runs:/{stages[run_name].info.run_id}/model",
                              options={"steps": 2} if method == "moso" else None)
        context = torch.rand(1, 3 if method == "corrwise" else 2, 3, h, w)
        assert pred.predict(context, 2).shape[2:] == (2, 3, h, w)
    report = result.run_dir / "make-report" / "report"
    html = (report / "report.html").read_text()
    assert "<table" in html and html.count("data:image/png;base64,") >= 6 and "stand-in" in html
    assert all(md5 in html for md5 in result.datasets.values())
    assert "report/report.html" in {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert (result.run_dir / "corrwise-train-corrwise" / "model" / "checkpoints").is_dir()
    assert (result.run_dir / "landmarks-train-landmark-dynamics" / "model" / "dynamics.pt").is_file()
    assert json.loads((result.run_dir / "toycar-toycar-experiment" / "report" / "result.json").read_text())["mode"] == "corrwise"

    text = result.describe()
    for needle in (result.tracking_uri, result.parent_run_id, "vidpred-smoke", str(result.run_dir),
                   f"mlflow ui --backend-store-uri {result.tracking_uri}", str(stores["shapes"]),
                   *result.datasets.values()):
        assert needle in text
