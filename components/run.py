"""KFP components of a cluster pipeline's MLflow parent run: opened by the first task, closed by the exit task.

Thin wrappers over :mod:`vidpred.parent_run` (which explains the flow); compiled only for a profile with a
``cluster`` section (``pipelines/reproduce.py``).
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def open_parent_run(profile: str, experiment: str, config_json: str, kfp_run_id: str, tracking_uri: str = "",
                    parent_run_id: str = "") -> str:
    """The parent run every stage of this pipeline run nests under (``parent_run_id`` when given, else a new one)."""
    from vidpred.parent_run import open_parent_run as open_run

    run_id = open_run(profile, experiment, config_json, kfp_run_id, tracking_uri=tracking_uri,
                      parent_run_id=parent_run_id)
    print(f"MLflow parent run {run_id} (experiment {experiment})")
    return run_id


@vidpred_component
def close_parent_run(status: dsl.PipelineTaskFinalStatus, experiment: str, kfp_run_id: str,
                     tracking_uri: str = "") -> str:
    """End the parent run this KFP run opened with the run's final state."""
    from vidpred.parent_run import close_parent_run as close_run

    text = close_run(kfp_run_id, experiment, status.state, status.error_message, tracking_uri=tracking_uri)
    print(text)
    return text
