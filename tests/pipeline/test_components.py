"""The components as plain functions (``component.python_func``): real tiny data (synthetic shapes made
here), real GX gates, real MOSO decomposition, nested runs in the session's sqlite MLflow store."""

import json
from pathlib import Path

import mlflow
import pytest
from kfp import dsl

from components import preprocess_moso, prepare_data, validate_data
from vidpred import tracking
from vidpred.data.versioning import dir_md5
from vidpred.errors import VidpredError

TINY = {"num_videos": 3, "num_test": 1, "num_frames": 8, "num_objects": 1, "seed": 3}


def artifact(cls, path: Path):
    return cls(name=path.name, uri=str(path))


def stage_runs(parent_id):
    client = mlflow.MlflowClient(tracking.tracking_uri())
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags["vidpred.stage"]: r for r in runs}


@pytest.fixture
def parent_run():
    """A fresh, finished parent run for the stages of one test (as kfp.local's task processes do)."""
    with tracking.pipeline_run("unit", {"tracking": {"experiment": "pipeline-unit"}}) as run:
        pass
    return run.info.run_id


@pytest.mark.slow
def test_prepare_validate_preprocess_as_functions(tmp_path, parent_run):
    uri = tracking.tracking_uri()
    store = artifact(dsl.Dataset, tmp_path / "store")
    out = prepare_data.python_func(store=store, dataset="shapes", size=32, clip_len=4,
                                   options_json=json.dumps(TINY), tracking_uri=uri, parent_run_id=parent_run)
    md5 = out.data_md5
    assert md5 == dir_md5(tmp_path / "store") and md5.endswith(".dir")
    assert store.metadata["data_md5"] == md5
    assert (tmp_path / "store" / "manifest.parquet").is_file()

    report = artifact(dsl.Artifact, tmp_path / "report")
    validate_data.python_func(store=store, report=report, data_md5=md5, tracking_uri=uri, parent_run_id=parent_run)
    assert json.loads((tmp_path / "report" / "validation.json").read_text())["success"] is True
    assert report.metadata["success"] is True and report.metadata["failed_gates"] == []

    moso = artifact(dsl.Dataset, tmp_path / "moso")
    preprocess_moso.python_func(store=store, moso=moso, clip_len=4, lower=0.1, upper=0.9, data_md5=md5,
                                tracking_uri=uri, parent_run_id=parent_run)
    meta = json.loads((tmp_path / "moso" / "moso.json").read_text())
    assert meta["clip_len"] == 4 and meta["num_clips"] == 4 * (8 // 4) == moso.metadata["clips"]
    assert (tmp_path / "moso" / "preview.png").stat().st_size > 0

    runs = stage_runs(parent_run)
    assert set(runs) == {"prepare_data", "validate_data", "preprocess_moso"}
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        assert run.data.tags["vidpred.data_md5"] == md5, name
    assert runs["prepare_data"].data.params["size"] == "32"
    assert runs["prepare_data"].data.metrics["videos"] == 4
    assert runs["validate_data"].data.metrics["gates_failed"] == 0
    assert runs["preprocess_moso"].data.metrics["clips"] == 8
    client = mlflow.MlflowClient(uri)
    listed = [a.path for a in client.list_artifacts(runs["preprocess_moso"].info.run_id, "moso")]
    assert listed == ["moso/preview.png"]
    listed = sorted(a.path for a in client.list_artifacts(runs["prepare_data"].info.run_id, "data"))
    assert listed == ["data/preview.png", "data/report.json"]


@pytest.mark.slow
def test_failed_gate_raises_writes_report_and_marks_the_stage_run(tmp_path, parent_run):
    uri = tracking.tracking_uri()
    store = artifact(dsl.Dataset, tmp_path / "store")
    prepare_data.python_func(store=store, dataset="shapes", size=32, clip_len=4, options_json=json.dumps(TINY),
                             tracking_uri=uri)
    report = artifact(dsl.Artifact, tmp_path / "report")
    with pytest.raises(VidpredError, match=r"data validation failed: gate\(s\) long_enough") as err:
        # every video has 8 frames; asking for clips of 12 fails the long_enough gate
        validate_data.python_func(store=store, report=report, clip_len=12, data_md5="abc.dir", tracking_uri=uri,
                                  parent_run_id=parent_run)
    assert str(tmp_path / "report" / "validation.txt") in str(err.value)
    assert "FAIL long_enough" in (tmp_path / "report" / "validation.txt").read_text()
    failed = [r for r in stage_runs(parent_run).values() if r.info.status == "FAILED"]
    assert len(failed) == 1
    assert failed[0].data.tags["vidpred.error"].startswith("data validation failed: gate(s) long_enough")
    assert failed[0].data.tags["vidpred.data_md5"] == "abc.dir"


def test_bad_source_options_fail_before_writing(tmp_path):
    store = artifact(dsl.Dataset, tmp_path / "store")
    with pytest.raises(VidpredError, match="unknown option"):
        prepare_data.python_func(store=store, dataset="shapes", size=32, clip_len=4,
                                 options_json=json.dumps({"num_vidoes": 2}))
    assert not (tmp_path / "store").exists()
