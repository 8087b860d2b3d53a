"""Datasets as MLflow inputs, LoggedModels and the champion/challenger registry (vidpred.tracking, vidpred.registry)
with REAL parts: the session's sqlite MLflow store, a real tiny CorrWise training run, real evaluations.

Both outcomes are forced without touching the decision code: the "worse" model is the trained one with its last
layer set to predict white frames (far below any trained or untrained model on PSNR), the "better" one is the
trained model itself."""

from __future__ import annotations

import json
import shutil
import uuid
from urllib.parse import urlparse

import mlflow
from mlflow.entities import LoggedModelStatus
import pytest
import torch
from typer.testing import CliRunner

from vidpred import registry, tracking
from vidpred.errors import VidpredError
from vidpred.registry import PromotionSpec, decide


# ------------------------------------------------------------------------------------------ fast: the decision rule

def test_decision_direction_and_margin():
    assert decide("psnr", 20.0, 19.0, 0.5)[0] is True
    ok, why = decide("psnr", 19.2, 19.0, 0.5)
    assert ok is False and "only 0.2 < min_margin 0.5" in why
    assert decide("psnr", 19.0, 19.0, 0.0)[0] is False  # a tie is not better
    assert decide("lpips", 0.10, 0.20, 0.05)[0] is True  # lower is better
    assert decide("fvd", 300.0, 250.0, 0.0)[0] is False
    assert decide("mse", 0.01, 0.02, 0.0)[0] is True
    assert decide("ssim_first5", 0.9, 0.8, 0.0)[0] is True
    ok, why = decide("psnr", None, 19.0, 0.0)
    assert ok is False and "no psnr score" in why
    with pytest.raises(VidpredError, match="no known direction"):
        decide("accuracy", 1.0, 0.0, 0.0)


def test_promotion_spec_round_trip_and_errors():
    spec = PromotionSpec("corrwise", "corrwise", "psnr", 0.25)
    assert spec.name == "vidpred-corrwise-corrwise"
    assert PromotionSpec.from_json(spec.to_json()) == spec
    assert PromotionSpec.from_json("") is None
    with pytest.raises(VidpredError, match="not valid JSON"):
        PromotionSpec.from_json('{"track": "t"}')
    with pytest.raises(VidpredError, match="min_margin must be"):
        PromotionSpec.from_json(json.dumps({"track": "t", "method": "corrwise", "primary_metric": "psnr",
                                            "min_margin": -1}))


def test_profile_primary_metric_and_margin():
    from vidpred.profile import load_profile

    spec = load_profile("smoke")
    by_name = {e.name: e for t in spec.tracks.values() for e in t.evaluations}
    assert by_name["corrwise"].promote and by_name["moso"].promote and by_name["landmarks"].promote
    assert not by_name["landmarks-keypoints"].promote  # the autoencoder, not the track's model
    assert (by_name["corrwise"].primary_metric, by_name["corrwise"].min_margin) == ("psnr", 0.0)  # the defaults
    spec = load_profile("smoke", ["tracks.landmarks.primary_metric=ssim", "tracks.landmarks.min_margin=0.01"])
    lm = {e.name: e for e in spec.tracks["landmarks"].evaluations}
    assert (lm["landmarks"].primary_metric, lm["landmarks"].min_margin) == ("ssim", 0.01)
    assert lm["landmarks-keypoints"].primary_metric != "ssim"  # the track's setting is for its model's evaluation
    spec = load_profile("smoke", ["tracks.corrwise.evaluate.primary_metric=lpips"])
    assert spec.tracks["corrwise"].evaluations[0].primary_metric == "lpips"
    with pytest.raises(VidpredError, match=r"tracks.corrwise.evaluate.primary_metric' must be one of protocol"):
        load_profile("smoke", ["tracks.corrwise.evaluate.primary_metric=fvd"])
    with pytest.raises(VidpredError, match=r"tracks.corrwise.min_margin' must be int or float ≥ 0"):
        load_profile("smoke", ["tracks.corrwise.min_margin=-1"])
    with pytest.raises(VidpredError, match="did you mean 'tracks.corrwise.primary_metric'"):
        load_profile("smoke", ["tracks.corrwise.primary_metrc=psnr"])


@pytest.mark.slow  # imports the CLI and MLflow (~8 s)
def test_models_commands_errors_are_one_line():
    from vidpred.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["models", "promote", "vidpred-no-such-model", "1"])
    assert out.exit_code != 0 and isinstance(out.exception, VidpredError)
    assert "no registered model 'vidpred-no-such-model'" in str(out.exception)
    with pytest.raises(VidpredError, match="must be a number"):
        registry.promote("vidpred-no-such-model", "one")


# ------------------------------------------------------------------------------------------ real models

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 32×48 shapes store (train / val / test)."""
    from vidpred.data.prepare import prepare

    root = tmp_path_factory.mktemp("registry")
    prepare("shapes", root / "store", size="32x48", clip_len=6, crop="aspect", cache_dir=root / "cache",
            options={"num_videos": 3, "num_val": 1, "num_test": 2, "num_frames": 12, "num_objects": 1})
    return root / "store"


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A real tiny CorrWise training run (its LoggedModel, pointer file and dataset input)."""
    from vidpred.train import corrwise

    mlflow.set_tracking_uri(tracking.tracking_uri())
    out = tmp_path_factory.mktemp("trained") / "corrwise"
    result = corrwise.main("smoke/corrwise", [f"data.store={store}", f"train.out_dir={out}", "train.max_steps=2",
                                              "train.batch_size=2", "train.ckpt_every=2", "train.sample_every=2",
                                              "model.ngf=4"], progress=False)
    return out, result


def _aliases(name: str) -> dict[str, str]:
    rm = mlflow.MlflowClient(tracking.tracking_uri(), registry_uri=tracking.tracking_uri()).get_registered_model(name)
    return {alias: str(version) for alias, version in rm.aliases.items()}


def _white(trained_dir, out_dir):
    """The trained model with its last conv predicting +1 (white) everywhere, logged as its own LoggedModel."""
    from vidpred.train.corrwise import load_predictor_file, save_predictor_file

    net = load_predictor_file(trained_dir / "predictor.pt")
    conv = net.decoder[-2]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(20.0)
    path = save_predictor_file(net, out_dir / "predictor.pt")
    with tracking.stage_run("corrwise") as run:
        model_id = tracking.log_model_files([path])
        tracking.write_model_pointer(out_dir, model_id, run.info.run_id)
    return out_dir


@pytest.mark.slow
def test_training_logs_dataset_input_and_a_loadable_logged_model(store, trained):
    from vidpred.data.versioning import dir_md5
    from vidpred.evaluate.predictors import load_predictor

    out, result = trained
    client = mlflow.MlflowClient(tracking.tracking_uri(), registry_uri=tracking.tracking_uri())
    run = client.get_run(result.run_id)
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"  # the UI's training-runs view
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert (ds.name, ds.digest) == ("shapes-32x48", dir_md5(store))
    assert ds.source_type == "local" and json.loads(ds.source)["uri"] == store.resolve().as_uri()
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "train"
    profile = json.loads(ds.profile)
    assert profile["splits"] == {"test": 2, "train": 3, "val": 1} and profile["frame_shape"] == [32, 48, 3]
    assert "split" in {c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]}

    pointer = json.loads((out / "mlflow_model.json").read_text())
    model = mlflow.get_logged_model(pointer["model_id"])
    assert model.source_run_id == result.run_id and model.status == LoggedModelStatus.READY
    assert model.tags["vidpred.stage"] == "corrwise"
    assert {m.key for m in model.metrics} >= {"train/loss"}  # the final step's metrics, linked to the model
    ctx = torch.rand(1, 3, 3, 32, 48)
    want = load_predictor("corrwise", out).predict(ctx, 2)
    for uri in (pointer["model_uri"], f"runs:/{result.run_id}/model"):
        assert torch.allclose(load_predictor("corrwise", uri).predict(ctx, 2), want)
    # the inference commands' --model (e.g. vidpred landmarks predict) take the same URIs: one resolver
    from vidpred.evaluate.predictors import resolve_model_file

    assert resolve_model_file(pointer["model_uri"], "predictor.pt", "corrwise model").read_bytes() == (
        out / "predictor.pt").read_bytes()


@pytest.mark.slow
def test_champion_moves_only_for_a_better_challenger(store, trained, tmp_path):
    from vidpred.evaluate.benchmark import evaluate_track
    from vidpred.evaluate.predictors import load_predictor
    from vidpred.evaluate.protocols import get_protocol

    good = trained[0]
    bad = _white(good, tmp_path / "white")
    track = f"t{uuid.uuid4().hex[:8]}"  # the session store is shared: a registered model of this test's own
    spec = PromotionSpec(track, "corrwise", "psnr", 0.5)
    name = spec.name
    protocol = get_protocol("shapes-corrwise", ["clips.count=4", "metrics=[psnr,ssim]"])
    client = mlflow.MlflowClient(tracking.tracking_uri(), registry_uri=tracking.tracking_uri())

    def run(model, out):
        results = evaluate_track(store, track, protocol, [("corrwise", model), ("copy-last", None)], tmp_path / out,
                                 log_mlflow=True, progress=False, promotion=spec)
        return results[0]

    # v1 (white): no champion yet → champion
    r1 = run(bad, "e1")
    d1 = r1.promotion
    assert (d1.version, d1.decision) == ("1", "promoted") and "no champion yet" in d1.reason
    assert _aliases(name) == {"champion": "1"}
    # v2 (trained): beats v1 by more than the margin → champion; v1 is kept as a version
    r2 = run(good, "e2")
    d2 = r2.promotion
    assert (d2.version, d2.decision, d2.champion_version) == ("2", "promoted", "1")
    assert d2.challenger_score > d2.champion_score + 0.5
    assert d2.champion_score == pytest.approx(r1.summary["metrics"]["psnr"]["mean"])  # champion re-scored, same clips
    assert _aliases(name) == {"champion": "2"}
    # v3 (another white model, as a new training run would log): worse → stays challenger, champion stays v2
    bad3 = _white(good, tmp_path / "white3")
    r3 = run(bad3, "e3")
    d3 = r3.promotion
    assert (d3.version, d3.decision, d3.champion_version) == ("3", "kept", "2")
    assert "not better" in d3.reason
    assert _aliases(name) == {"champion": "2", "challenger": "3"}

    # the decision, both scores and the reason: model-version tags and tags/metrics of the evaluation run
    tags = client.get_model_version(name, "3").tags
    assert tags["vidpred.promotion.decision"] == "kept" and tags["vidpred.promotion.metric"] == "psnr"
    assert float(tags["vidpred.promotion.challenger_score"]) == pytest.approx(d3.challenger_score)
    assert float(tags["vidpred.promotion.champion_score"]) == pytest.approx(d2.challenger_score)
    assert tags["vidpred.promotion.reason"] == d3.reason and tags["vidpred.promotion.margin"] == "0.5"
    ev = client.get_run(r3.run_id)
    assert ev.data.tags["vidpred.promotion.decision"] == "kept"
    assert ev.data.metrics["promotion/challenger_psnr"] == pytest.approx(d3.challenger_score)
    assert ev.data.metrics["promotion/champion_psnr"] == pytest.approx(d2.challenger_score)
    assert client.get_model_version(name, "2").tags["vidpred.promotion.decision"] == "promoted"
    # the evaluation run: its store as a dataset input (context = the protocol's split), the model as a model
    # input, the headline metrics on the LoggedModel with that dataset
    [dinput] = ev.inputs.dataset_inputs
    assert {t.key: t.value for t in dinput.tags}["mlflow.data.context"] == "test"
    model_id = json.loads((bad3 / "mlflow_model.json").read_text())["model_id"]
    assert [m.model_id for m in ev.inputs.model_inputs] == [model_id]
    psnr = [m for m in mlflow.get_logged_model(model_id).metrics if m.key == "psnr"]
    assert psnr and psnr[-1].dataset_digest == dinput.dataset.digest

    # the aliases load back as models (the same predictions as the files)
    ctx = torch.rand(1, 3, 3, 32, 48)
    for alias, folder in (("champion", good), ("challenger", bad3)):
        got = load_predictor("corrwise", f"models:/{name}@{alias}").predict(ctx, 1)
        assert torch.allclose(got, load_predictor("corrwise", folder).predict(ctx, 1))

    # `vidpred models list` and a manual promotion, recorded as such
    from vidpred.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["models", "list", "--prefix", name])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].startswith(f"{name}  (challenger v3, champion v2; 3 version(s))")
    assert lines[1].split()[:3] == ["v3", "challenger", "kept"] and lines[2].split()[:3] == ["v2", "champion", "promoted"]
    assert lines[3].split()[:3] == ["v1", "-", "promoted"]
    out = runner.invoke(app, ["models", "promote", name, "3", "--reason", "A/B test in production"])
    assert out.exit_code == 0, out.output
    assert _aliases(name) == {"champion": "3"}
    tags = client.get_model_version(name, "3").tags
    assert tags["vidpred.promotion.decision"] == "manual" and tags["vidpred.promotion.champion_version"] == "2"
    assert float(tags["vidpred.promotion.challenger_score"]) == pytest.approx(d3.challenger_score)  # kept as logged
    assert "manual override" in tags["vidpred.promotion.reason"] and "A/B test in production" in tags[
        "vidpred.promotion.reason"]
    assert "already the champion" in str(runner.invoke(app, ["models", "promote", name, "3"]).exception)
    assert "has no version 9" in str(runner.invoke(app, ["models", "promote", name, "9"]).exception)


@pytest.mark.slow
def test_a_champion_that_cannot_be_scored_is_kept(store, trained, tmp_path):
    """If the champion cannot be evaluated (here: its model was deleted from the artifact store), the challenger
    cannot be shown to be better: the champion stays and the reason says why."""
    from vidpred.evaluate.benchmark import evaluate_track
    from vidpred.evaluate.protocols import get_protocol

    good = trained[0]
    copy = tmp_path / "copy"
    shutil.copytree(good, copy)
    with tracking.stage_run("corrwise") as run:  # its own LoggedModel, so deleting its files leaves `trained` alone
        tracking.write_model_pointer(copy, tracking.log_model_files([copy / "predictor.pt"]), run.info.run_id)
    spec = PromotionSpec(f"t{uuid.uuid4().hex[:8]}", "corrwise", "psnr", 0.0)
    protocol = get_protocol("shapes-corrwise", ["clips.count=2", "metrics=[psnr]"])
    first = evaluate_track(store, spec.track, protocol, [("corrwise", copy)], tmp_path / "a", log_mlflow=True,
                           progress=False, promotion=spec)[0].promotion
    assert first.decision == "promoted"
    model_id = json.loads((copy / "mlflow_model.json").read_text())["model_id"]
    location = mlflow.get_logged_model(model_id).artifact_location
    assert location.startswith("file://")  # the session's artifact root is a local folder
    shutil.rmtree(urlparse(location).path)
    second = evaluate_track(store, spec.track, protocol, [("corrwise", good)], tmp_path / "b", log_mlflow=True,
                            progress=False, promotion=spec)[0].promotion
    assert second.decision == "kept" and "could not be scored" in second.reason
    assert _aliases(spec.name) == {
        "champion": "1", "challenger": "2"}


@pytest.mark.slow
def test_a_retried_evaluation_does_not_register_the_model_twice(store, trained, tmp_path):
    """KFP retries a failed task: evaluating the same LoggedModel again returns the decision already recorded."""
    from vidpred.evaluate.benchmark import evaluate_track
    from vidpred.evaluate.protocols import get_protocol

    spec = PromotionSpec(f"t{uuid.uuid4().hex[:8]}", "corrwise", "psnr", 0.0)
    protocol = get_protocol("shapes-corrwise", ["clips.count=2", "metrics=[psnr]"])
    first, again = (evaluate_track(store, spec.track, protocol, [("corrwise", trained[0])], tmp_path / out,
                                   log_mlflow=True, progress=False, promotion=spec)[0].promotion for out in "ab")
    assert (again.version, again.decision, again.reason) == (first.version, "promoted", first.reason)
    client = mlflow.MlflowClient(tracking.tracking_uri(), registry_uri=tracking.tracking_uri())
    assert [str(v.version) for v in client.search_model_versions(f"name = '{spec.name}'")] == ["1"]
