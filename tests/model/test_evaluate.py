"""Benchmark evaluation (vidpred.evaluate): protocols, clip choice, predictors, best-of-N, outputs, MLflow runs,
stand-in labels, and `vidpred evaluate` on a store of real (encoded and decoded) videos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidpred.errors import VidpredError


def _write_store(out: Path, videos: dict[str, tuple[str, np.ndarray]]) -> Path:
    from vidpred.data.store import StoreWriter

    with StoreWriter(out, {"dataset": "test", "size": 32, "clip_len": 4, "options": {}}) as w:
        for vid, (split, frames) in videos.items():
            w.add(vid, split, frames, 10.0, "test")
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A 32-px shapes store with train / val / test videos of 16 frames (centre ground truth)."""
    from vidpred.data.prepare import prepare

    root = tmp_path_factory.mktemp("eval")
    prepare("shapes", root / "store", size=32, clip_len=8, cache_dir=root / "cache",
            options={"num_videos": 3, "num_val": 1, "num_test": 2, "num_frames": 16, "num_objects": 1})
    return root / "store"


def _protocol(**kw):
    from vidpred.evaluate.protocols import adhoc_protocol

    return adhoc_protocol(**{"context": 2, "horizon": 3, "metrics": ("psnr", "ssim", "mse", "l1"), **kw})


# ------------------------------------------------------------------------------------------ protocols

def test_every_shipped_protocol_parses_and_every_number_has_provenance():
    from vidpred.config import load_config, missing_provenance
    from vidpred.evaluate.protocols import PROTOCOLS_FILE, get_protocol, known_protocols

    names = known_protocols()
    for needed in ("corrwise-kitti", "corrwise-kitti-multi", "moso-bair", "moso-kth", "moso-kitti", "moso-robonet",
                   "landmarks-bbcpose-keypoints", "landmark-dynamics-bbcpose", "landmark-dynamics-kth",
                   "shapes-corrwise", "shapes-moso", "shapes-landmark-dynamics", "shapes-landmarks-keypoints"):
        assert needed in names
    assert missing_provenance(load_config(PROTOCOLS_FILE)) == []
    kitti = get_protocol("corrwise-kitti")
    assert (kitti.context, kitti.horizon, kitti.clip_count, kitti.clip_seed, kitti.size) == (3, 3, 100, 0, (256, 512))
    assert kitti.provenance["context"].startswith("paper")
    kth = get_protocol("moso-kth")
    assert (kth.context, kth.horizon, kth.samples, kth.best_of) == (10, 40, 100, "per_metric")
    assert get_protocol("corrwise-kitti-multi").first_n == (1, 3, 5)


def test_protocol_errors_are_one_line():
    from vidpred.evaluate.protocols import adhoc_protocol, get_protocol

    with pytest.raises(VidpredError, match="unknown protocol 'nope'"):
        get_protocol("nope")
    with pytest.raises(VidpredError, match="FVD needs 16-frame videos"):
        get_protocol("moso-bair", ["horizon=5"])
    with pytest.raises(VidpredError, match="FVD needs 16-frame videos"):
        adhoc_protocol(2, 6, metrics=("psnr", "fvd"))
    with pytest.raises(VidpredError, match="unknown metric"):
        adhoc_protocol(2, 6, metrics=("psnr", "fid"))
    with pytest.raises(VidpredError, match="unknown setting"):
        get_protocol("moso-kth", ["contxt=3"])


def test_clip_choice_is_reproducible_and_seeded(shapes):
    from vidpred.data.store import open_store
    from vidpred.evaluate.protocols import select_clips

    manifest = open_store(shapes).manifest
    a = select_clips(manifest, _protocol(clips=7, seed=0))
    b = select_clips(manifest, _protocol(clips=7, seed=0))
    c = select_clips(manifest, _protocol(clips=7, seed=1))
    assert a == b and a != c and len(a) == 7
    test_ids = set(manifest[manifest["split"] == "test"]["video_id"])
    assert {v for v, _ in a} <= test_ids  # only the protocol's split
    every = select_clips(manifest, _protocol())
    assert len(every) == 2 * (16 - 5 + 1)  # all windows of 5 frames in two 16-frame test videos
    assert set(a) <= set(every)
    with pytest.raises(VidpredError, match="no 'nope' split"):
        select_clips(manifest, _protocol(split="nope"))
    with pytest.raises(VidpredError, match="has the 20 frames"):
        select_clips(manifest, _protocol(context=10, horizon=10))


# ------------------------------------------------------------------------------------------ predictors

def test_baselines_predict_what_they_claim():
    from vidpred.evaluate.predictors import load_predictor

    ramp = torch.linspace(0.1, 0.3, 3).view(1, 3, 1, 1, 1).expand(2, 3, 3, 8, 8).contiguous()
    copy = load_predictor("copy-last").predict(ramp, 4, samples=5)
    assert copy.shape == (2, 1, 4, 3, 8, 8) and torch.equal(copy[:, 0, 2], ramp[:, -1])
    lin = load_predictor("linear").predict(ramp, 4)
    assert torch.allclose(lin[0, 0, :, 0, 0, 0], torch.tensor([0.4, 0.5, 0.6, 0.7]), atol=1e-6)
    assert float(load_predictor("linear").predict(ramp, 10).max()) == 1.0  # clipped to [0, 1]
    with pytest.raises(VidpredError, match="takes no --model"):
        load_predictor("copy-last", "x.pt")
    with pytest.raises(VidpredError, match="needs --model"):
        load_predictor("corrwise")
    with pytest.raises(VidpredError, match="unknown method"):
        load_predictor("svg")


def test_corrwise_predictor_from_file_and_from_an_mlflow_run(tmp_path):
    import mlflow

    from vidpred.evaluate.predictors import load_predictor
    from vidpred.models.predictor import Predictor, PredictorConfig
    from vidpred.train.corrwise import save_predictor_file

    from vidpred.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())  # the session's store, whatever an earlier test pointed mlflow at
    torch.manual_seed(0)
    net = Predictor(PredictorConfig(ngf=4, context_frames=3)).eval()
    save_predictor_file(net, tmp_path / "m" / "predictor.pt")
    ctx = torch.rand(2, 4, 3, 32, 48)  # non-square frames; the predictor reads the last 3
    with torch.no_grad():
        expect = (net.rollout(ctx[:, -3:] * 2 - 1, 2) + 1) / 2
    got = load_predictor("corrwise", tmp_path / "m").predict(ctx, 2)
    assert got.shape == (2, 1, 2, 3, 32, 48) and torch.allclose(got[:, 0], expect, atol=1e-6)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "m"), artifact_path="model")
    via_uri = load_predictor("corrwise", f"runs:/{run.info.run_id}/model").predict(ctx, 2)
    assert torch.allclose(via_uri, got)
    with pytest.raises(VidpredError, match="needs at least 3 context frames"):
        load_predictor("corrwise", tmp_path / "m").predict(ctx[:, :2], 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidpredError, match="no predictor.pt"):
        load_predictor("corrwise", tmp_path / "empty")
    with pytest.raises(VidpredError, match="cannot download"):
        load_predictor("corrwise", "runs:/0123456789abcdef/model")


# ------------------------------------------------------------------------------------------ scoring

class _TwoTrials:
    """Stochastic stand-in predictor: trial 0 = truth + noise (high PSNR, lower SSIM), trial 1 = truth with its
    contrast reduced (lower PSNR, structure kept). It reads the truth from the store the test gives it."""

    name, stochastic, min_context = "two-trials", True, 1

    def __init__(self, truth):
        self.truth = truth

    def describe(self):
        return self.name

    def predict(self, context, horizon, samples=1, generator=None):
        truth = torch.stack([self.truth[(round(float(c[-1].sum()), 3))] for c in context])
        noise = torch.randn(truth.shape[1:], generator=torch.Generator().manual_seed(1))  # same for every clip
        noisy = (truth + 0.04 * noise).clamp(0, 1)
        faded = 0.75 * truth + 0.125
        return torch.stack([noisy, faded], dim=1)


def test_best_of_n_takes_each_metrics_own_best_trial(shapes):
    from vidpred.data.store import open_store
    from vidpred.evaluate.benchmark import MetricSet, score_method
    from vidpred.evaluate.protocols import select_clips
    from vidpred.metrics.image import psnr, ssim

    store = open_store(shapes)
    protocol = _protocol(samples=2, clips=6)
    clips = select_clips(store.manifest, protocol)
    truth = {}
    for v, s in clips:
        f = torch.from_numpy(np.asarray(store.frames(v)[s:s + 5]).astype(np.float32) / 255).permute(0, 3, 1, 2)
        truth[round(float(f[1].sum()), 3)] = f[2:]
    predictor = _TwoTrials(truth)
    scores = score_method(store, predictor, protocol, MetricSet(protocol.metrics), clips, batch_size=4, progress=False)
    ctx = torch.stack([torch.from_numpy(np.asarray(store.frames(v)[s:s + 2]).astype(np.float32) / 255)
                       .permute(0, 3, 1, 2) for v, s in clips])
    trials = predictor.predict(ctx, 3)
    t = torch.stack([truth[round(float(c[-1].sum()), 3)] for c in ctx]).double()
    for name, fn in (("psnr", psnr), ("ssim", ssim)):
        per_trial = torch.stack([fn(trials[:, n].double(), t) for n in range(2)], 1)  # clips × trials × H
        best = per_trial.mean(-1).argmax(1)
        assert np.array_equal(scores.trial[name], best.numpy())
        assert np.allclose(scores.per_frame[name], per_trial[torch.arange(len(clips)), best].numpy(), atol=1e-9)
    assert (scores.trial["psnr"] == 0).all() and (scores.trial["ssim"] == 1).all()  # different trials per metric


def test_copy_last_on_a_static_clip_scores_capped_psnr_and_ssim_one(tmp_path):
    from vidpred.evaluate.benchmark import evaluate_one
    from vidpred.metrics.image import PSNR_CAP_DB

    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8), 8, axis=0)
    moving = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    store = _write_store(tmp_path / "s", {"still": ("test", still), "moving": ("train", moving)})
    res = evaluate_one(store, "copy-last", _protocol(), tmp_path / "out", progress=False)
    m = res.summary["metrics"]
    assert m["psnr"]["mean"] == PSNR_CAP_DB and m["psnr"]["per_frame"] == [PSNR_CAP_DB] * 3
    assert m["ssim"]["mean"] == pytest.approx(1.0, abs=1e-12) and m["mse"]["mean"] == 0.0
    assert res.summary["num_clips"] == 4 and res.summary["stand_in"] is False


def test_outputs_intervals_plots_and_mlflow_run(shapes, tmp_path):
    import mlflow

    from vidpred.evaluate.benchmark import evaluate_track
    from vidpred.evaluate.protocols import get_protocol

    from vidpred.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())  # the session's store, whatever an earlier test pointed mlflow at
    with mlflow.start_run(run_name="parent") as parent:
        pass
    protocol = get_protocol("shapes-corrwise", ["clips.count=6", "metrics=[psnr,ssim,mse,l1]"])
    results = evaluate_track(shapes, "demo", protocol, [("copy-last", None), ("linear", None)], tmp_path / "ev",
                             log_mlflow=True, parent_run_id=parent.info.run_id, progress=False)
    assert [r.out_dir.name for r in results] == ["copy-last", "linear"]
    doc = json.loads((tmp_path / "ev" / "copy-last" / "metrics.json").read_text())
    assert doc["format"] == "vidpred-eval/1" and doc["frames"] == [3, 4, 5] and doc["num_clips"] == 6
    ps = doc["metrics"]["psnr"]
    assert ps["ci95"][0] <= ps["mean"] <= ps["ci95"][1] and len(ps["per_frame"]) == 3
    assert all(lo <= v <= hi for v, (lo, hi) in zip(ps["per_frame"], ps["per_frame_ci95"]))
    assert ps["per_frame"][0] > ps["per_frame"][-1]  # copy-last degrades with the horizon on moving sprites
    other = json.loads((tmp_path / "ev" / "linear" / "metrics.json").read_text())
    assert other["clips"] == doc["clips"]  # every method of a track on the same clips
    for name in ("metrics.json", "per_clip.csv", "per_frame.png", "samples.png"):
        assert (tmp_path / "ev" / "copy-last" / name).stat().st_size > 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"evaluate/demo/copy-last", "evaluate/demo/linear"}
    run = by_name["evaluate/demo/copy-last"]
    assert run.data.tags["vidpred.stage"] == "evaluate" and run.data.tags["vidpred.eval.stand_in"] == "false"
    assert run.data.metrics["psnr"] == pytest.approx(ps["mean"])
    history = client.get_metric_history(run.info.run_id, "psnr_per_frame")
    assert [(h.step, round(h.value, 6)) for h in sorted(history, key=lambda h: h.step)] == \
        [(f, round(v, 6)) for f, v in zip(doc["frames"], ps["per_frame"])]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/per_clip.csv" in arts and "evaluation/per_frame.png" in arts


def test_stand_in_lpips_and_fvd_are_labelled_everywhere(shapes, tmp_path, monkeypatch):
    from tests.standins import write_standin_alexnet, write_standin_i3d
    from vidpred.cli import app

    write_standin_alexnet()
    write_standin_i3d()
    monkeypatch.setenv("VIDPRED_ALLOW_STANDIN_WEIGHTS", "1")
    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["evaluate", "--store", str(shapes), "--method", "linear", "--out", str(out),
                                   "--context", "2", "--horizon", "14", "--metrics", "psnr,lpips,fvd"])
    assert res.exit_code == 0, res.output
    assert res.output.count("STAND-IN WEIGHTS: not a real score") == 2  # lpips and fvd
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["stand_in"] is True and doc["metrics"]["lpips"]["stand_in"] and doc["metrics"]["fvd"]["stand_in"]
    assert doc["metrics"]["psnr"]["stand_in"] is False
    assert doc["weights"] == {"alexnet": "stand-in", "i3d": "unverified"}
    assert doc["metrics"]["fvd"]["mean"] > 0 and doc["metrics"]["fvd"]["videos"] == 2
    assert any("NOT a real lpips score" in c for c in doc["caveats"])
    assert any("fvd2048_16f" in c for c in doc["caveats"])


def test_explicitly_requested_metric_without_weights_fails_without_output(shapes, tmp_path, monkeypatch):
    from vidpred.cli import app
    from vidpred.evaluate.benchmark import evaluate_one
    from vidpred.evaluate.protocols import get_protocol

    monkeypatch.setenv("VIDPRED_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    res = CliRunner().invoke(app, ["evaluate", "--store", str(shapes), "--method", "copy-last", "--out",
                                   str(tmp_path / "x"), "--context", "2", "--horizon", "3", "--metrics", "psnr,lpips",
                                   "--no-mlflow"])
    assert res.exit_code != 0 and "alexnet" in str(res.exception) and not (tmp_path / "x").exists()
    # from a protocol's default list the metric is recorded as unavailable instead
    with pytest.warns(UserWarning, match="lpips not computed"):
        r = evaluate_one(shapes, "copy-last", get_protocol("shapes-corrwise", ["clips.count=2"]), tmp_path / "y",
                         progress=False)
    assert "lpips" in r.summary["unavailable"] and "lpips" not in r.summary["metrics"]


def test_short_clips_are_an_fvd_error_not_a_number(shapes, tmp_path):
    from vidpred.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--store", str(shapes), "--method", "copy-last", "--out",
                                   str(tmp_path / "f"), "--context", "2", "--horizon", "6", "--metrics", "fvd"])
    assert res.exit_code != 0 and "FVD needs 16-frame videos" in str(res.exception)
    assert not (tmp_path / "f").exists()


def test_protocol_size_must_match_the_store(shapes, tmp_path):
    from vidpred.evaluate.benchmark import evaluate_one
    from vidpred.evaluate.protocols import get_protocol

    with pytest.raises(VidpredError, match="defined at 256×512 but the store"):
        evaluate_one(shapes, "copy-last", get_protocol("corrwise-kitti"), tmp_path / "k", progress=False)
    assert not (tmp_path / "k").exists()


# ------------------------------------------------------------------------------------------ real videos

def _write_video(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_copy_last_csv_rows_recompute_from_the_store_of_real_videos(tmp_path):
    """Real mp4 files (encoded with PyAV, decoded by the prepare stage): every per_clip.csv row equals numbers
    recomputed by hand from the stored frames (numpy PSNR, scikit-image SSIM)."""
    from skimage.metrics import structural_similarity

    from vidpred.cli import app
    from vidpred.data.prepare import prepare
    from vidpred.data.store import open_store

    src = tmp_path / "videos"
    for split in ("train", "test"):
        (src / split).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, split in enumerate(["train", "test", "test"]):
        base = rng.integers(0, 200, (48, 64, 3)).astype(np.uint8)
        base = np.kron(base[::8, ::8], np.ones((8, 8, 1), np.uint8))  # blocky texture survives the codec
        frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(12)])
        _write_video(src / split / f"v{i}.mp4", frames)
    prepare("folder", tmp_path / "store", source=str(src), size=32, clip_len=4, cache_dir=tmp_path / "cache")
    res = CliRunner().invoke(app, ["evaluate", "--store", str(tmp_path / "store"), "--method", "copy-last", "--out",
                                   str(tmp_path / "ev"), "--context", "2", "--horizon", "3", "--clips", "5",
                                   "--metrics", "psnr,ssim,mse,l1", "--no-mlflow"])
    assert res.exit_code == 0, res.output
    store = open_store(tmp_path / "store")
    with open(tmp_path / "ev" / "per_clip.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 * 3 and {"video_id", "clip_start", "frame", "psnr", "ssim", "mse", "l1"} <= set(rows[0])
    for row in rows:
        frames = np.asarray(store.frames(row["video_id"])).astype(np.float64) / 255
        start, frame = int(row["clip_start"]), int(row["frame"])
        pred, truth = frames[start + 1], frames[start + frame]  # copy-last: the clip's last context frame (index 1)
        mse = ((pred - truth) ** 2).mean()
        assert float(row["mse"]) == pytest.approx(mse, rel=1e-6)  # frames enter as float32
        assert float(row["l1"]) == pytest.approx(np.abs(pred - truth).mean(), rel=1e-6)
        assert float(row["psnr"]) == pytest.approx(min(10 * np.log10(1 / mse), 80.0), abs=1e-6)
        ref = structural_similarity(pred, truth, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert float(row["ssim"]) == pytest.approx(ref, abs=1e-3)
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["metrics"]["psnr"]["mean"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]))


# ------------------------------------------------------------------------------------------ trained models

@pytest.mark.slow
def test_landmark_and_keypoint_evaluation_of_trained_models(shapes, tmp_path, monkeypatch):
    from vidpred.evaluate.benchmark import evaluate_one, evaluate_track
    from vidpred.evaluate.protocols import get_protocol
    from vidpred.train import landmark_dynamics, landmarks

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from tests.model.test_landmarks_stages import TINY

    tiny = [*TINY, "train.max_steps=2", "train.ckpt_every=2", "train.sample_every=2", "eval.max_frames=16"]
    landmarks.main("smoke/landmarks", [f"data.store={shapes}", f"train.out_dir={tmp_path / 'lm'}", *tiny])
    landmark_dynamics.main("smoke/landmark_dynamics", [
        f"data.store={shapes}", f"train.out_dir={tmp_path / 'dyn'}", f"model.autoencoder={tmp_path / 'lm' / 'landmarks.pt'}",
        "dynamics.n_inputs=4", "dynamics.n_future=4", "train.max_steps=2", "train.ckpt_every=2",
        "train.sample_every=2", "eval.rollout_steps=4"])
    (tmp_path / "dyn" / "landmarks.pt").write_bytes((tmp_path / "lm" / "landmarks.pt").read_bytes())
    proto = get_protocol("shapes-landmark-dynamics", ["metrics=[psnr,ssim]"])
    res = evaluate_track(shapes, "landmarks", proto, [("landmarks", str(tmp_path / "dyn")), ("copy-last", None)],
                         tmp_path / "ev", progress=False)
    doc = res[0].summary
    assert doc["horizon"] == 14 and len(doc["metrics"]["psnr"]["per_frame"]) == 14 and doc["num_clips"] == 2
    assert 0 < doc["metrics"]["ssim"]["mean"] < 1
    kp = evaluate_one(shapes, "landmarks", get_protocol("shapes-landmarks-keypoints"), tmp_path / "kp",
                      model=str(tmp_path / "lm"), progress=False)
    acc = kp.summary["metrics"]["keypoint_acc"]
    assert 0 <= acc["ci95"][0] <= acc["mean"] <= acc["ci95"][1] <= 1
    assert "threshold 1.5 px at 32 px" in kp.summary["caveats"][0]


@pytest.mark.slow
def test_moso_predictor_samples_best_of_n_from_a_trained_model(tmp_path, monkeypatch):
    from tests.model.test_moso_stages import TINY_TR, TINY_VQ
    from vidpred.data.prepare import prepare
    from vidpred.evaluate.benchmark import evaluate_one
    from vidpred.evaluate.predictors import load_predictor
    from vidpred.evaluate.protocols import get_protocol
    from vidpred.preprocess.moso import preprocess_store
    from vidpred.train import moso_tokens, moso_transformer, moso_vqvae

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    prepare("shapes", tmp_path / "store", size=32, clip_len=4, cache_dir=tmp_path / "cache",
            options={"num_videos": 2, "num_val": 1, "num_test": 1, "num_frames": 8, "num_objects": 1})
    preprocess_store(tmp_path / "store", tmp_path / "moso", clip_len=4)
    moso_vqvae.main("configs/smoke/moso-vqvae.yaml",
                    TINY_VQ + [f"data.moso_store={tmp_path / 'moso'}", f"train.out_dir={tmp_path / 'vq'}"])
    moso_tokens.extract_tokens(tmp_path / "vq" / "moso_vqvae.pt", tmp_path / "moso", tmp_path / "tok", context=2)
    moso_transformer.main("configs/smoke/moso-transformer.yaml",
                          TINY_TR + [f"data.tokens={tmp_path / 'tok'}", f"train.out_dir={tmp_path / 'tr'}"])
    # the transformer folder alone: the VQVAE is found through its token set
    pred = load_predictor("moso", tmp_path / "tr", options={"steps": 2})
    ctx = torch.rand(2, 2, 3, 32, 32)
    out = pred.predict(ctx, 4, samples=3, generator=torch.Generator().manual_seed(0))  # two rounds of 2 frames
    assert out.shape == (2, 3, 4, 3, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(VidpredError, match="trained with 2 context frames"):
        pred.predict(ctx[:, :1], 3)
    proto = get_protocol("shapes-moso", ["horizon=2", "samples=3", "clips.count=3", "metrics=[psnr,ssim]",
                                         "methods.moso.steps=2"])
    res = evaluate_one(tmp_path / "store", "moso", proto, tmp_path / "ev", model=str(tmp_path / "tr"), progress=False)
    assert res.summary["best_of"] == "per_metric" and res.summary["samples"] == 3 and res.summary["num_clips"] == 3
    trials = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    assert set(trials) == {"psnr", "ssim"}
    with open(tmp_path / "ev" / "per_clip.csv") as fh:
        used = {int(r["psnr_trial"]) for r in csv.DictReader(fh)}
    assert used <= {0, 1, 2}


def test_cli_protocol_with_overrides(shapes, tmp_path):
    from vidpred.cli import app

    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["evaluate", "--store", str(shapes), "--method", "linear", "--out", str(out),
                                   "--protocol", "shapes-corrwise", "--set", "clips.count=3", "--metrics", "psnr,l1",
                                   "--split", "val", "--no-mlflow"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["protocol"], doc["num_clips"], doc["split"], set(doc["metrics"])) == ("shapes-corrwise", 3, "val",
                                                                                      {"psnr", "l1"})
    assert all(c["video_id"].startswith("val-") for c in doc["clips"])
    res = CliRunner().invoke(app, ["evaluate", "--store", str(shapes), "--method", "linear", "--out", str(out),
                                   "--context", "2", "--horizon", "2", "--set", "clips.count=3"])
    assert res.exit_code != 0 and "use it with --protocol" in str(res.exception)
