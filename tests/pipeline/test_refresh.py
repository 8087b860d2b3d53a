"""Scheduled retraining on unchanged data, in REAL kfp.local runs with a REAL DVC remote (a directory):
the first run prepares the dataset and pushes it; a second run with ``--refresh-data`` (what ``vidpred schedule``
sets) prepares it again from its source, finds the same md5 in the remote and — with the profile's
``data_refresh.on_unchanged: skip`` — trains, evaluates and reports nothing, and says so. With the default
``train`` the same refresh retrains. Tiny synthetic data is made by the runs themselves."""

import subprocess
import sys

import mlflow
import pytest

from tests.pipeline.test_local_run import TINY
from vidpred import tracking


def _run(tmp_path, remote, *extra: str) -> tuple[str, object, dict[str, object]]:
    args = [sys.executable, "-m", "vidpred.cli", "run", "--profile", "smoke", "--only", "corrwise",
            "--workdir", str(tmp_path / "runs"), *extra]
    for item in TINY:
        args += ["--set", item]
    env = {**__import__("os").environ, "VIDPRED_DVC_REMOTE": str(remote)}
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    parent_id = res.stdout.split("parent run:")[1].split()[0]
    client = mlflow.MlflowClient(tracking.tracking_uri())
    parent = client.get_run(parent_id)
    runs = {r.info.run_name: r for r in client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")}
    return res.stdout, parent, runs


@pytest.mark.slow
def test_refresh_on_unchanged_data_skips_training_or_retrains(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    skip = ("--set", "data_refresh.on_unchanged=skip")

    # 1. nothing in the remote: prepared, pushed, trained
    out, parent, runs = _run(tmp_path, remote, *skip)
    prep = runs["shapes-wide/prepare_data"]
    assert prep.data.tags["vidpred.data_action"] == "prepared" and prep.data.tags["vidpred.train"] == "true"
    assert runs["corrwise/corrwise"].info.status == "FINISHED" and "evaluate/corrwise/corrwise" in runs
    assert "training skipped" not in out and "vidpred.training_skipped" not in parent.data.tags
    md5 = prep.data.tags["vidpred.data_md5"]

    # 2. a scheduled-style run: re-prepared from the source, the same md5 → nothing trains
    out, parent, runs = _run(tmp_path, remote, *skip, "--refresh-data")
    prep = runs["shapes-wide/prepare_data"]
    assert prep.data.tags["vidpred.data_md5"] == md5 and prep.data.tags["vidpred.data_changed"] == "false"
    assert prep.data.tags["vidpred.train"] == "false"
    assert set(runs) == {"shapes-wide/prepare_data", "shapes-wide/validate_data"}  # no training, evaluation
    assert parent.data.tags["vidpred.training_skipped"] == "true" and parent.info.status == "FINISHED"
    assert "training skipped: every dataset is unchanged since its last preparation" in out
    [run_dir] = [d for d in (tmp_path / "runs").iterdir() if not (d / "corrwise-train-corrwise").exists()]
    assert not (run_dir / "make-report").exists()

    # 3. the same refresh with the default on_unchanged=train retrains
    out, parent, runs = _run(tmp_path, remote, "--refresh-data")
    prep = runs["shapes-wide/prepare_data"]
    assert prep.data.tags["vidpred.data_changed"] == "false" and prep.data.tags["vidpred.train"] == "true"
    assert runs["corrwise/corrwise"].info.status == "FINISHED"
    assert "training skipped" not in out
