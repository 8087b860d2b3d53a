"""Two REAL smoke pipeline runs in a row (kfp.local, the corrwise track on tiny data) into a fresh MLflow store:
the first registers version 1 of vidpred-corrwise-corrwise as champion; the second registers version 2 as
challenger and — required to beat the champion by a margin no model can reach — leaves the champion where it is,
with the decision, both scores and the reason on the evaluation run and the version. Along the way: the experiment
is a model-training experiment, every stage run has its store as a dataset input, the trained model is a LoggedModel
that `vidpred evaluate --model models:/…@champion` loads, and `vidpred models list / promote` work on the result.

The opposite outcome (a better challenger takes over) is forced with real models in tests/code/test_registry.py,
through the same evaluation function the pipeline's evaluate task calls."""

from __future__ import annotations

import json

import mlflow
import pytest
from typer.testing import CliRunner

from tests.pipeline.test_local_run import TINY
from vidpred import tracking
from vidpred.data.versioning import dir_md5
from vidpred.orchestrate import run_local

NAME = "vidpred-corrwise-corrwise"
ONLY_CORRWISE = [*TINY, 'tracks.corrwise.evaluate.overrides=["clips.count=4", "metrics=[psnr,ssim]"]']


@pytest.mark.slow
def test_two_smoke_runs_register_champion_then_a_challenger_that_does_not_win(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # task processes inherit it
    monkeypatch.setenv("VIDPRED_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    first = run_local("smoke", ONLY_CORRWISE, workdir=tmp_path / "runs", only=["corrwise"])
    second = run_local("smoke", [*ONLY_CORRWISE, "tracks.corrwise.min_margin=1000"], workdir=tmp_path / "runs",
                       only=["corrwise"])
    client = mlflow.MlflowClient(tracking.tracking_uri(), registry_uri=tracking.tracking_uri())

    # experiment and run names: the training-runs view, <track>/<stage> children under a parent named by profile
    exp = client.get_experiment(first.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = client.get_run(second.parent_run_id)
    assert parent.info.run_name == "pipeline-smoke"
    children = {r.info.run_name: r for r in client.search_runs(
        [first.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{second.parent_run_id}'")}
    assert set(children) == {"shapes-wide/prepare_data", "shapes-wide/validate_data", "corrwise/corrwise",
                             "evaluate/corrwise/corrwise", "evaluate/corrwise/copy-last", "evaluate/corrwise/linear"}

    # the clip store as a dataset input: digest = the DVC md5 the pipeline tagged, context = the split read
    store = second.run_dir / "shapes-wide-prepare-data" / "store"
    md5 = second.datasets["shapes-wide"]
    assert md5 == dir_md5(store)
    for run_name, context in (("corrwise/corrwise", "train"), ("evaluate/corrwise/corrwise", "test"),
                              ("evaluate/corrwise/linear", "test")):
        [inp] = children[run_name].inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest) == ("shapes-32x48", md5), run_name
        assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == context, run_name

    # the trained model is a LoggedModel of its training run, with the evaluation's metrics on that dataset
    model_dir = second.run_dir / "corrwise-train-corrwise" / "model"
    pointer = json.loads((model_dir / "mlflow_model.json").read_text())
    model = mlflow.get_logged_model(pointer["model_id"])
    assert model.source_run_id == children["corrwise/corrwise"].info.run_id
    evaluation = children["evaluate/corrwise/corrwise"]
    psnr = [m for m in model.metrics if m.key == "psnr"]
    assert psnr and psnr[-1].value == pytest.approx(evaluation.data.metrics["psnr"]) and psnr[-1].dataset_digest == md5

    # registry: v1 champion (first run), v2 challenger that did not beat it by the margin
    rm = client.get_registered_model(NAME)
    assert {a: str(v) for a, v in rm.aliases.items()} == {"champion": "1", "challenger": "2"}
    v2 = client.get_model_version(NAME, "2")
    assert v2.source == pointer["model_uri"] and v2.run_id == pointer["run_id"]
    tags = v2.tags
    assert tags["vidpred.promotion.decision"] == "kept" and tags["vidpred.promotion.champion_version"] == "1"
    assert tags["vidpred.promotion.margin"] == "1000.0" and tags["vidpred.promotion.metric"] == "psnr"
    assert float(tags["vidpred.promotion.challenger_score"]) == pytest.approx(evaluation.data.metrics["psnr"])
    assert tags["vidpred.promotion.champion_score"]  # the champion was scored again on the same clips
    assert "min_margin 1000" in tags["vidpred.promotion.reason"] or "not better" in tags["vidpred.promotion.reason"]
    assert evaluation.data.tags["vidpred.promotion.decision"] == "kept"
    assert {"promotion/challenger_psnr", "promotion/champion_psnr"} <= set(evaluation.data.metrics)
    assert client.get_model_version(NAME, "1").tags["vidpred.promotion.decision"] == "promoted"

    # the champion loads back by its alias through the CLI (the inference path every command shares)
    from vidpred.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--store", str(store), "--method", "corrwise", "--model",
                              f"models:/{NAME}@champion", "--protocol", "shapes-corrwise", "--clips", "2",
                              "--metrics", "psnr", "--out", str(tmp_path / "champion-eval"), "--no-mlflow"])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "champion-eval" / "metrics.json").read_text())["model"] == f"models:/{NAME}@champion"

    # vidpred models list / promote
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0 and listing.output.startswith(f"{NAME}  (challenger v2, champion v1; 2 version(s))")
    promoted = runner.invoke(app, ["models", "promote", NAME, "2", "--reason", "reviewed the samples"])
    assert promoted.exit_code == 0, promoted.output
    assert {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()} == {"champion": "2"}
    assert client.get_model_version(NAME, "2").tags["vidpred.promotion.decision"] == "manual"
