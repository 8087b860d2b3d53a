"""A failing validation gate stops a REAL kfp.local run: `vidpred run` exits 2 with one error line naming
the stage and the gate, MOSO preprocessing never runs, the MLflow parent run is FAILED. Tiny synthetic
data is made by the run itself."""

import subprocess
import sys

import mlflow
import pytest

from vidpred import tracking

TINY = ["data.size=32", "data.clip_len=4", "preprocess.clip_len=4", "data.options.num_videos=3",
        "data.options.num_test=1", "data.options.num_frames=8", "data.options.num_objects=1",
        "validate.clip_len=12"]  # videos have 8 frames: the long_enough gate must fail


@pytest.mark.slow
def test_failed_gate_stops_the_pipeline(tmp_path):
    args = [sys.executable, "-m", "vidpred.cli", "run", "--profile", "smoke", "--workdir", str(tmp_path / "runs")]
    for item in TINY:
        args += ["--set", item]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-2000:]
    assert errors[0].startswith("error: stage validate-data failed: data validation failed: gate(s) long_enough")

    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "validate-data" / "report" / "validation.txt").is_file()  # the report is kept
    assert (run_dirs[0] / "prepare-data" / "store" / "manifest.parquet").is_file()
    assert not (run_dirs[0] / "preprocess-moso").exists()  # MOSO preprocessing never ran

    parent_id = errors[0].split("MLflow parent run ")[1].split(";")[0]
    client = mlflow.MlflowClient(tracking.tracking_uri())
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"
    stages = {r.data.tags["vidpred.stage"]: r.info.status for r in client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")}
    # the toy experiment reads no dataset and does not wait for the gate: kfp.local may run it before or not at all
    toy = stages.pop("toycar-corrwise-l1", "FINISHED")
    assert toy == "FINISHED" and stages == {"prepare_data": "FINISHED", "validate_data": "FAILED"}
