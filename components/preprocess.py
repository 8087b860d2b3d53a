"""Preprocessing components: MOSO motion / scene / object decomposition of a clip store.

Logic: ``vidpred.preprocess.moso.preprocess_store``; MLflow: ``vidpred.orchestrate.stage``.
"""

from kfp.dsl import Dataset, Input, Output

from components.common import vidpred_component


@vidpred_component
def preprocess_moso(
    store: Input[Dataset],
    moso: Output[Dataset],
    clip_len: int,
    lower: float,
    upper: float,
    data_md5: str = "",
    tracking_uri: str = "",
    parent_run_id: str = "",
    dataset_name: str = "",
):
    """Decompose every clip of the store into a MOSO store at the ``moso`` artifact's path."""
    from pathlib import Path

    from vidpred.orchestrate import stage
    from vidpred.preprocess.moso import preprocess_store

    params = {"clip_len": clip_len or "store", "lower": lower, "upper": upper}
    with stage("preprocess_moso", params, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
               data_md5=data_md5, dataset=dataset_name) as run:
        summary = preprocess_store(store.path, moso.path, clip_len=clip_len or None, lower=lower, upper=upper)
        print(summary.describe())
        run.log_artifact(Path(moso.path) / "preview.png", "moso")
        run.log_metrics({"clips": summary.num_clips, "mask_fraction": summary.mask_fraction})
    moso.metadata.update({"clips": summary.num_clips, "clip_len": summary.clip_len, "data_md5": data_md5})
