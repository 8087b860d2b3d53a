"""Data components: prepare a clip store (+ its DVC md5) and gate it with Great Expectations.

Logic: ``vidpred.data.prepare.prepare``, ``vidpred.data.remote.obtain`` (pull from / push to a DVC remote,
scheduled refresh), ``vidpred.data.validate.validate_store``; MLflow: ``vidpred.orchestrate.stage``.
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
    dvc_remote: str = "",
    dvc_endpoint_url: str = "",
    refresh: bool = False,
    on_unchanged: str = "train",
) -> NamedTuple("Outputs", [("data_md5", str), ("data_changed", bool), ("train", bool)]):
    """Write the clip store of ``dataset`` at the ``store`` artifact's path; output its DVC md5.

    ``options_json``: the source options as JSON text (a KFP dict parameter would turn ints into floats,
    which changes store.json and so the md5).

    With a DVC remote (``dvc_remote`` / ``dvc_endpoint_url``, else ``$VIDPRED_DVC_REMOTE`` /
    ``$VIDPRED_DVC_ENDPOINT_URL``; S3 keys from the environment) data prepared before with the same settings
    is pulled instead of prepared, and new data is pushed. ``refresh`` (scheduled runs) re-prepares from the
    source and compares md5s: ``data_changed`` says whether the data differs from the remote's, ``train``
    whether the tracks should train (unchanged data trains only with ``on_unchanged='train'``)."""
    import json
    from collections import namedtuple

    import mlflow

    from vidpred.data.prepare import prepare
    from vidpred.data.remote import Remote, obtain, spec_key
    from vidpred.data.store import open_store
    from vidpred.orchestrate import stage

    options = json.loads(options_json)
    spec = {"dataset": dataset, "size": size, "crop": crop, "clip_len": clip_len, "options": options,
            "source": source}
    remote = Remote.resolve(dvc_remote, dvc_endpoint_url)
    params = {**spec, "dvc_remote": remote.describe() if remote else "", "refresh": refresh,
              "on_unchanged": on_unchanged}
    with stage("prepare_data", params, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
               dataset=dataset_name) as run:
        def prepare_store(out):
            print(prepare(dataset=dataset, out=out, source=source or None, size=size, clip_len=clip_len,
                          options=options, crop=crop).describe())

        state = obtain(prepare_store, store.path, spec_key(**spec), remote, refresh=refresh,
                       on_unchanged=on_unchanged, spec=spec)
        print(state.describe())
        run.set_data_md5(state.md5)
        mlflow.set_tags({"vidpred.data_action": state.action, "vidpred.data_changed": str(state.changed).lower(),
                         "vidpred.data_previous_md5": state.previous_md5 or "-",
                         "vidpred.train": str(state.train).lower()})
        run.log_artifact(f"{store.path}/preview.png", "data")  # first frames of the first videos
        run.log_artifact(f"{store.path}/report.json", "data")  # rejected / too-short inputs
        prepared = open_store(store.path)
        run.log_metrics({"videos": len(prepared.manifest), "frames": int(prepared.manifest["num_frames"].sum()),
                         "rejected": len(prepared.report.get("rejected", []))})
    store.metadata.update({"data_md5": state.md5, "dataset": dataset, "size": size, "crop": crop,
                           "clip_len": clip_len, "data_action": state.action, "data_changed": state.changed})
    return namedtuple("Outputs", ["data_md5", "data_changed", "train"])(state.md5, state.changed, state.train)


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


@vidpred_component
def decide_training(flags: list) -> bool:
    """Whether the tracks train: any of the data tasks' ``train`` outputs (``flags``, one per dataset) is true.
    Used only by profiles with ``data_refresh.on_unchanged: skip``: a scheduled run whose every dataset is unchanged
    since its last preparation then skips training, evaluation and the report. kfp passes the list items as
    text ('true'/'false') or as booleans, depending on the runner."""
    from vidpred.data.remote import any_true

    train = any_true(flags)
    print("data changed: training" if train else "every dataset unchanged since its last preparation: training skipped")
    return train
