"""Data components: prepare a clip store (+ its DVC md5) and gate it with Great Expectations.

Logic: ``vidpred.data.prepare.prepare``, ``vidpred.data.versioning.dir_md5``,
``vidpred.data.validate.validate_store``; MLflow: ``vidpred.orchestrate.stage``.
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Output

from components.common import vidpred_component


@vidpred_component
def prepare_data(
    store: Output[Dataset],
    dataset: str,
    size: str,
    clip_len: int,
    options_json: str = "{}",
    source: str = "",
    crop: str = "center",
    tracking_uri: str = "",
    parent_run_id: str = "",
    dataset_name: str = "",
) -> NamedTuple("Outputs", [("data_md5", str)]):
    """Write the clip store of ``dataset`` at the ``store`` artifact's path; output its DVC md5.

    ``options_json``: the source options as JSON text (a KFP dict parameter would turn ints into floats,
    which changes store.json and so the md5)."""
    import json
    from collections import namedtuple

    from vidpred.data.prepare import prepare
    from vidpred.data.versioning import dir_md5
    from vidpred.orchestrate import stage

    options = json.loads(options_json)
    params = {"dataset": dataset, "size": size, "crop": crop, "clip_len": clip_len, "options": options,
              "source": source}
    with stage("prepare_data", params, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
               dataset=dataset_name) as run:
        summary = prepare(dataset=dataset, out=store.path, source=source or None, size=size,
                          clip_len=clip_len, options=options, crop=crop)
        print(summary.describe())
        md5 = dir_md5(store.path)
        run.set_data_md5(md5)
        run.log_artifact(f"{store.path}/preview.png", "data")  # first frames of the first videos
        run.log_artifact(f"{store.path}/report.json", "data")  # rejected / too-short inputs
        run.log_metrics({"videos": sum(summary.videos.values()), "frames": summary.frames,
                         "rejected": len(summary.rejected)})
    store.metadata.update({"data_md5": md5, "dataset": dataset, "size": size, "crop": crop, "clip_len": clip_len})
    return namedtuple("Outputs", ["data_md5"])(md5)


@vidpred_component
def validate_data(
    store: Input[Dataset],
    report: Output[Artifact],
    clip_len: int = 0,
    data_md5: str = "",
    tracking_uri: str = "",
    parent_run_id: str = "",
    dataset_name: str = "",
    test_fraction: list = [],
    val_fraction: list = [],
):
    """Run the GX gates on the store; the report goes to ``report``; a failed gate fails the task.
    ``test_fraction`` / ``val_fraction``: [low, high] share bounds for a published split (empty: the defaults)."""
    from vidpred.data.validate import validate_store
    from vidpred.errors import VidpredError
    from vidpred.orchestrate import stage

    params = {"clip_len": clip_len or "store", "test_fraction": list(test_fraction) or "default",
              "val_fraction": list(val_fraction) or "default"}
    with stage("validate_data", params, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
               data_md5=data_md5, dataset=dataset_name) as run:
        result = validate_store(store.path, clip_len=clip_len or None, report_dir=report.path,
                                test_fraction=list(test_fraction) or None, val_fraction=list(val_fraction) or None)
        print(result.describe())
        run.log_artifacts(report.path, "validation")
        run.log_metrics({"gates_failed": len(result.failed)})
        report.metadata.update({"success": result.success, "failed_gates": result.failed})
        if not result.success:
            raise VidpredError(f"data validation failed: gate(s) {', '.join(result.failed)} "
                               f"(report: {report.path}/validation.txt)")
