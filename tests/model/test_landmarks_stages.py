"""Landmark training stages end to end on a tiny synthetic store (created here): pretraining with
keypoint validation on the val split, dynamics with a rollout GIF, the `vidpred landmarks` commands, and bad
inputs (a store without val).
No pretrained weights are needed (perceptual loss off, as in the smoke config)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidpred.errors import VidpredError

TINY = ["model.num_landmarks=4", "model.image_size=32", "model.pose_channels=4", "model.pose_depth=2",
        "model.app_channels=4", "model.decoder_channels=[8,8,8,4]", "model.spade_hidden=8",
        "optim.batch_size=4", "train.max_steps=3", "train.log_every=1", "train.ckpt_every=3",
        "train.sample_every=3", "eval.max_frames=32"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A 32-px shapes store: 3 train + 1 val + 2 test videos of 12 frames, with centre ground truth."""
    from vidpred.data.sources.shapes import SOURCE
    from vidpred.data.store import StoreWriter

    out = tmp_path_factory.mktemp("lm") / "shapes"
    opts = dict(num_videos=3, num_val=1, num_test=2, num_frames=12, num_objects=2, size=32)
    with StoreWriter(out, {"dataset": "shapes", "size": 32, "clip_len": 8, "options": opts}) as w:
        for v in SOURCE.iter_videos(Path("."), opts):
            w.add(v.video_id, v.split, v.frames, v.fps, v.source, v.ground_truth)
    return out


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    from vidpred.train import landmarks

    out = tmp_path_factory.mktemp("lm-run")
    res = landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={out}", *TINY])
    return res, out


@pytest.mark.slow
def test_pretraining_writes_model_samples_and_keypoint_accuracy(trained):
    res, out = trained
    assert res.train.step == 3 and res.model_path == out / "landmarks.pt" and res.model_path.is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/keypoint_accuracy" in r]
    assert val and 0.0 <= val[-1]["val/keypoint_accuracy"] <= 1.0
    # fitted on the 36 train frames, scored on the 12 frames of the one val video (test has 24)
    assert 0.0 <= res.keypoints.accuracy <= 1.0 and res.keypoints.test_frames == 12
    assert res.keypoints.train_frames == 32  # eval.max_frames
    assert np.isfinite([r["train/mse"] for r in rows if "train/mse" in r]).all()
    assert list((out / "samples" / "reconstructions").glob("step-000003.png"))
    assert "keypoint accuracy" in res.describe()


@pytest.mark.slow
def test_pretraining_resumes_from_its_checkpoint(trained, store):
    from vidpred.train import landmarks

    _, out = trained
    res = landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={out}", *TINY,
                                             "train.max_steps=4"])
    assert res.train.resumed_from == 3 and res.train.step == 4


@pytest.mark.slow
def test_dynamics_stage_and_cli_commands(trained, store, tmp_path):
    from vidpred.cli import app
    from vidpred.train import landmark_dynamics

    _, out = trained
    dyn = landmark_dynamics.main("smoke/landmark_dynamics", [
        f"data.store={store}", f"train.out_dir={tmp_path / 'dyn'}", f"model.autoencoder={out / 'landmarks.pt'}",
        "dynamics.hidden=8", "dynamics.n_inputs=4", "dynamics.n_future=4", "train.max_steps=3",
        "eval.rollout_steps=100"])
    assert dyn.model_path.is_file()
    assert len(list((dyn.rollout_dir / "frames").glob("*.png"))) == 102  # 2 context + 100 predicted
    from PIL import Image

    with Image.open(dyn.rollout_dir / "sequence.gif") as gif:
        assert gif.n_frames == 102

    runner = CliRunner()
    pred = runner.invoke(app, ["landmarks", "predict", "--model", str(out / "landmarks.pt"), "--dynamics",
                               str(dyn.model_path), "--store", str(store), "--out", str(tmp_path / "p"),
                               "--steps", "5"])
    assert pred.exit_code == 0, pred.output
    assert len(list((tmp_path / "p" / "frames").glob("*.png"))) == 7
    inter = runner.invoke(app, ["landmarks", "interpolate", "--model", str(out / "landmarks.pt"), "--store",
                                str(store), "--out", str(tmp_path / "i"), "--first", "0", "--last", "5"])
    assert inter.exit_code == 0, inter.output
    frames = sorted((tmp_path / "i" / "frames").glob("*.png"))
    assert len(frames) == 6 and (tmp_path / "i" / "grid.png").is_file()
    ev = runner.invoke(app, ["landmarks", "evaluate", "--model", str(out / "landmarks.pt"), "--store", str(store)])
    assert ev.exit_code == 0 and "keypoint accuracy" in ev.output


def test_corrupt_model_file_is_a_one_line_error(tmp_path):
    from vidpred.train.landmarks import load_autoencoder

    bad = tmp_path / "landmarks.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VidpredError, match="cannot be loaded"):
        load_autoencoder(bad)
    torch.save({"kind": "something-else"}, bad)
    with pytest.raises(VidpredError, match="landmarks.pt"):
        load_autoencoder(bad)


def _shapes_store(out: Path, ground_truth: bool = True, **opts) -> Path:
    from vidpred.data.sources.shapes import SOURCE
    from vidpred.data.store import StoreWriter

    with StoreWriter(out, {"dataset": "shapes", "size": 32, "clip_len": 8, "options": opts}) as w:
        for v in SOURCE.iter_videos(Path("."), {**opts, "size": 32}):
            w.add(v.video_id, v.split, v.frames, v.fps, v.source, v.ground_truth if ground_truth else None)
    return out


def test_stages_on_a_store_without_val_are_one_clear_error(tmp_path):
    from vidpred.train import landmark_dynamics, landmarks

    store = _shapes_store(tmp_path / "noval", num_videos=2, num_test=1, num_frames=12, num_objects=1)
    expected = f"store {store} has no 'val' split (splits: test, train): prepare it with -o num_val=N"
    with pytest.raises(VidpredError) as err:
        landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={tmp_path / 'lm'}", *TINY])
    assert str(err.value) == expected and not (tmp_path / "lm").exists()
    with pytest.raises(VidpredError) as err:  # checked before the autoencoder is even loaded
        landmark_dynamics.main("smoke/landmark_dynamics", [f"data.store={store}", f"train.out_dir={tmp_path / 'd'}",
                                                           f"model.autoencoder={tmp_path / 'missing.pt'}"])
    assert str(err.value) == expected and not (tmp_path / "d").exists()


def test_landmarks_without_ground_truth_need_no_val_split(tmp_path):
    # no centres → no keypoint validation at all, so nothing needs a val split (and test is not used)
    from vidpred.train import landmarks

    store = _shapes_store(tmp_path / "nogt", ground_truth=False, num_videos=2, num_test=1, num_frames=12,
                          num_objects=1)
    res = landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={tmp_path / 'lm'}", *TINY,
                                             "train.max_steps=1", "train.sample_every=0"])
    assert res.train.step == 1 and res.keypoints is None
    rows = [json.loads(line) for line in (tmp_path / "lm" / "metrics.jsonl").read_text().splitlines()]
    assert rows and not any(k.startswith("val/") for r in rows for k in r)


def test_keypoint_regression_fits_on_train_and_scores_on_the_held_out_split(store):
    from vidpred.train.landmarks import load_eval_data

    val = load_eval_data(store, "train", "val", max_frames=1000)
    test = load_eval_data(store, "train", "test", max_frames=1000)
    assert len(val["train"][0]) == 36 and len(val["test"][0]) == 12 and len(test["test"][0]) == 24
    np.testing.assert_array_equal(val["train"][0], test["train"][0])
    with pytest.raises(VidpredError, match="has no 'holdout' split"):
        load_eval_data(store, "train", "holdout")


def test_windows_longer_than_every_video_are_rejected():
    from vidpred.train.landmark_dynamics import StateWindows

    with pytest.raises(VidpredError, match="longer than every video"):
        StateWindows([("v", torch.zeros(5, 3, 5))], length=8)
    assert len(StateWindows([("v", torch.zeros(10, 3, 5))], length=8)) == 3


def test_image_size_mismatch_leaves_no_output(store, tmp_path):
    from vidpred.train import landmarks

    with pytest.raises(VidpredError, match="image_size"):
        landmarks.main("smoke/landmarks", [f"data.store={store}", f"train.out_dir={tmp_path / 'x'}", *TINY,
                                           "model.image_size=64"])
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_perceptual_loss_enters_the_training_step(store):
    # random VGG19 trunk (trunk_weights: null) — a stand-in; real runs load the registry weights
    from vidpred.config import load_config
    from vidpred.train.landmarks import FramePairs, LandmarkTask

    cfg = load_config("smoke/landmarks", [f"data.store={store}", *TINY, "loss.perceptual=1.0",
                                          "loss.perceptual_options={trunk_weights: null}"])
    task = LandmarkTask(cfg, None)
    assert task.perceptual.layers == ("relu1_2", "relu2_2", "relu3_2", "relu4_2")
    assert task.perceptual.distance == "mse"
    data = FramePairs(store)
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    out = task.training_step(batch, 0)
    assert torch.isfinite(out["perceptual"]) and float(out["perceptual"]) > 0
    assert float(out["loss"].detach()) > float(out["mse"])


def test_missing_vgg_weights_offline_is_a_clear_error(store, monkeypatch):
    from vidpred.config import load_config

    monkeypatch.setenv("VIDPRED_OFFLINE", "1")  # no download attempt; TORCH_HOME is an empty temp dir
    from vidpred.train.landmarks import LandmarkTask

    cfg = load_config("smoke/landmarks", [f"data.store={store}", *TINY, "loss.perceptual=1.0"])
    with pytest.raises(VidpredError, match="(?i)vgg19|weights"):
        LandmarkTask(cfg, None)


def test_frame_pairs_respect_the_temporal_gap(store):
    from vidpred.train.landmarks import FramePairs

    torch.manual_seed(0)
    data = FramePairs(store, temporal_prob=1.0, min_gap=3, max_gap=5)
    frames = data.store.frames(data.videos[0])
    gaps = []
    for i in range(12):  # the 12 frames of the first video
        item = data[i]
        assert item["temporal"]
        match = [u for u in range(len(frames))
                 if np.allclose(item["other"].permute(1, 2, 0).numpy() * 255, frames[u], atol=0.5)]
        gaps.append(abs(match[0] - i))
    assert min(gaps) >= 3 and max(gaps) <= 5
    with pytest.raises(VidpredError, match="min_gap"):
        FramePairs(store, min_gap=0)


@pytest.mark.slow
def test_components_as_functions_nest_under_the_parent_run(store, tmp_path):
    import sys

    import mlflow
    from kfp import dsl

    from vidpred.config import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:  # components/ lives at the repository root
        sys.path.insert(0, str(REPO_ROOT))
    from components.landmarks import train_landmark_dynamics, train_landmarks
    from vidpred import tracking

    with tracking.pipeline_run("unit", {"tracking": {"experiment": "landmarks-unit"}}) as run:
        pass
    parent = run.info.run_id
    uri = tracking.tracking_uri()
    model = dsl.Model(name="lm", uri=str(tmp_path / "lm"))
    text = train_landmarks.python_func(config="smoke/landmarks", store=dsl.Dataset(name="s", uri=str(store)),
                                       model=model, overrides=[*TINY, "train.max_steps=1"],
                                       data_md5="abc.dir", tracking_uri=uri, parent_run_id=parent)
    assert (tmp_path / "lm" / "landmarks.pt").is_file() and "keypoint accuracy" in text
    assert 0 <= model.metadata["keypoint_accuracy"] <= 1
    dyn = dsl.Model(name="dyn", uri=str(tmp_path / "dyn"))
    train_landmark_dynamics.python_func(
        config="smoke/landmark_dynamics", store=dsl.Dataset(name="s", uri=str(store)), landmarks=model, model=dyn,
        overrides=["dynamics.hidden=8", "dynamics.n_inputs=4", "dynamics.n_future=2", "train.max_steps=1",
                   "eval.rollout_steps=4"], tracking_uri=uri, parent_run_id=parent)
    assert (tmp_path / "dyn" / "dynamics.pt").is_file() and (tmp_path / "dyn" / "rollout" / "sequence.gif").is_file()
    client = mlflow.MlflowClient(uri)
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    by_name = {r.info.run_name: r for r in runs}
    assert {"landmarks", "landmark_dynamics"} <= set(by_name)
    assert "val/keypoint_accuracy" in by_name["landmarks"].data.metrics
