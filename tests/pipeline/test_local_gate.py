"""Failures in REAL kfp.local runs stay where they happen: a dataset whose validation gate fails runs none of
its tracks, a track that fails leaves the other tracks running to the end; `vidpred run` then exits 2 with
one error line naming the failed stage, its track or dataset, and the tracks that finished; the MLflow parent run
is FAILED and tagged with the failed tracks. Tiny synthetic data is made by the run itself."""

import subprocess
import sys

import mlflow
import pytest

from tests.pipeline.test_local_run import TINY
from vidpred import tracking


def _run(tmp_path, only: str, extra: list[str]) -> tuple[subprocess.CompletedProcess, str]:
    args = [sys.executable, "-m", "vidpred.cli", "run", "--profile", "smoke", "--only", only,
            "--workdir", str(tmp_path / "runs")]
    for item in TINY + extra:
        args += ["--set", item]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-2000:]
    return res, errors[0]


def _stage_runs(error: str) -> tuple[object, dict[str, str]]:
    parent_id = error.split("MLflow parent run ")[1].split(";")[0]
    client = mlflow.MlflowClient(tracking.tracking_uri())
    parent = client.get_run(parent_id)
    runs = {r.info.run_name: r.info.status for r in client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")}
    return parent, runs


@pytest.mark.slow
def test_failed_gate_stops_only_the_tracks_on_that_dataset(tmp_path):
    # shapes-wide has 8-frame videos: a 12-frame long_enough gate must fail; the toy-car track needs no dataset
    res, error = _run(tmp_path, "corrwise,toycar", ["datasets.shapes-wide.validate.clip_len=12"])
    assert error.startswith("error: stage shapes-wide-validate-data (dataset shapes-wide) failed: data validation "
                            "failed: gate(s) long_enough"), error
    assert "not run (their dataset failed): corrwise; finished tracks: toycar" in error

    [run_dir] = list((tmp_path / "runs").iterdir())
    assert (run_dir / "shapes-wide-validate-data" / "report" / "validation.txt").is_file()  # the report is kept
    assert (run_dir / "shapes-wide-prepare-data" / "store" / "manifest.parquet").is_file()
    assert not (run_dir / "corrwise-train-corrwise").exists()  # nothing of the track ran after the failed gate
    assert not (run_dir / "shapes-prepare-data").exists()  # --only: the other dataset is not prepared
    assert (run_dir / "toycar-toycar-experiment" / "report" / "result.json").is_file()

    parent, runs = _stage_runs(error)
    assert parent.info.status == "FAILED" and parent.data.tags["vidpred.failed_tracks"] == "corrwise"
    assert runs == {"shapes-wide/prepare_data": "FINISHED", "shapes-wide/validate_data": "FAILED",
                    "toycar/toycar-corrwise-l1": "FINISHED"}


@pytest.mark.slow
def test_a_failing_track_does_not_stop_the_others(tmp_path):
    # a config error that only shows when the stage reads its data: the corrwise track fails on purpose
    res, error = _run(tmp_path, "corrwise,landmarks,toycar",
                      ['tracks.corrwise.stages.corrwise.overrides=["train.max_steps=2", "data.split=nosuchsplit"]'])
    assert error.startswith("error: stage corrwise-train-corrwise (track corrwise) failed: "), error
    assert "nosuchsplit" in error and "finished tracks: toycar, landmarks" in error

    [run_dir] = list((tmp_path / "runs").iterdir())
    assert not (run_dir / "evaluate-corrwise").exists()  # the failed track's evaluation is skipped …
    for task in ("landmarks-train-landmark-dynamics", "evaluate-landmarks", "evaluate-landmarks-keypoints",
                 "toycar-toycar-experiment", "make-report"):  # … the other tracks and the report run to the end
        assert (run_dir / task).is_dir(), task
    report = (run_dir / "make-report" / "report" / "report.md").read_text()
    assert "corrwise/corrwise" in report and "nosuchsplit" in report  # the report names the failed stage

    parent, runs = _stage_runs(error)
    assert parent.info.status == "FAILED" and parent.data.tags["vidpred.failed_tracks"] == "corrwise"
    assert runs.pop("corrwise/corrwise") == "FAILED"
    assert set(runs.values()) == {"FINISHED"}
    assert {"landmarks/landmark_dynamics", "evaluate/landmarks/landmarks", "evaluate/landmarks-keypoints/landmarks",
            "toycar/toycar-corrwise-l1"} <= set(runs)
