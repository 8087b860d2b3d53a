"""The MLflow parent run of a pipeline run that no local process holds open: a run on a Kubeflow cluster.

``vidpred run`` opens the parent run in its own process and passes its id to the pipeline. A pipeline submitted to
a cluster (or started by a KFP schedule) has no such process, so a profile with a ``cluster`` section compiles two
extra tasks (``pipelines/reproduce.py``, components in ``components/run.py``):

* ``open-parent-run``, the first task, calls :func:`open_parent_run`: with the run parameter ``parent_run_id`` set
  it checks that run exists and hands it on (the caller owns it); otherwise it creates a RUNNING run in the
  profile's experiment (params = the profile's resolved config, tags as ``vidpred run`` sets them, plus
  ``vidpred.kfp_run_id`` and ``vidpred.opened_by=pipeline``). Every other task receives its id and nests its
  stage run under it. A retried task finds the run its first attempt created (by the KFP run id tag).
* ``close-parent-run``, the pipeline's exit task (``dsl.ExitHandler``: it runs when everything else has ended,
  whether it succeeded or not), calls :func:`close_parent_run` with the KFP run id and the run's final state
  (``dsl.PipelineTaskFinalStatus``): the parent run the pipeline opened gets the md5 of every dataset its
  prepare stages made, the failed stages' errors (``vidpred.error``, ``vidpred.failed_tracks``), and ends
  FINISHED, FAILED or KILLED. A stage run still RUNNING then belonged to a pod that was killed (timeout, OOM,
  eviction): it ends FAILED saying so. A parent run given by the caller is left to the caller.

KFP's exit task may take only pipeline parameters and constants, not another task's output; so it finds the run
by the KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``), which the driver fills in for every task of the run.

Where: ``MLFLOW_TRACKING_URI`` of the task's environment — on a cluster, the ``vidpred-tracking`` ConfigMap's
value (``cluster.config_map_env``) — unless the run parameter ``tracking_uri`` is set; credentials for an MLflow
behind authentication come from a Secret (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, read by
MLflow itself).
"""

from __future__ import annotations

import json

from vidpred.errors import VidpredError

KFP_RUN_TAG = "vidpred.kfp_run_id"
OPENED_TAG = "vidpred.opened_by"  # "pipeline": the pipeline opened the run, so its exit task closes it
STATUS = {"SUCCEEDED": "FINISHED", "CANCELLED": "KILLED", "CANCELED": "KILLED"}  # KFP final state → MLflow status


def _filled(kfp_run_id: str) -> bool:
    return bool(kfp_run_id) and "{{" not in kfp_run_id


def _owned_runs(client, experiment_id: str, kfp_run_id: str) -> list:
    return client.search_runs([experiment_id], max_results=10, filter_string=(
        f"tags.`{KFP_RUN_TAG}` = '{kfp_run_id}' and tags.`{OPENED_TAG}` = 'pipeline'"))


def open_parent_run(profile: str, experiment: str, config_json: str, kfp_run_id: str, tracking_uri: str = "",
                    parent_run_id: str = "") -> str:
    """The id of the pipeline run's MLflow parent run: ``parent_run_id`` when given (it must exist), else the
    run this KFP run already opened, else a new RUNNING run (see the module doc). ``config_json``: the profile's
    resolved config as JSON (``{..., "provenance": {...}}``), logged as the run's params and config artifacts."""
    import mlflow

    from vidpred import tracking
    from vidpred.orchestrate import stage_env

    with stage_env(tracking_uri):
        uri = tracking.preflight()
        client = mlflow.MlflowClient(uri)
        if parent_run_id:
            try:
                client.get_run(parent_run_id)
            except Exception:
                raise VidpredError(f"parent MLflow run '{parent_run_id}' was not found at {uri}") from None
            return parent_run_id
        if not _filled(kfp_run_id):
            raise VidpredError(f"the KFP run id was not filled in ({kfp_run_id!r}): the pipeline's parent run is "
                               "found again by it")
        experiment_id = tracking.ensure_experiment(experiment)
        found = _owned_runs(client, experiment_id, kfp_run_id)
        if found:  # a retried task: its first attempt created the run
            return found[0].info.run_id
        tags = {**tracking._tags(profile, None, None), KFP_RUN_TAG: kfp_run_id, OPENED_TAG: "pipeline"}
        run = client.create_run(experiment_id, run_name=f"pipeline-{profile}", tags=tags)
        tracking._log_config(client, run.info.run_id, json.loads(config_json))
        return run.info.run_id


def close_parent_run(kfp_run_id: str, experiment: str, state: str, error: str = "", tracking_uri: str = "") -> str:
    """End the parent run this KFP run opened (see the module doc); return what was done, one line."""
    import mlflow

    from vidpred import tracking
    from vidpred.orchestrate import stage_env, tag_dataset_md5s

    with stage_env(tracking_uri):
        uri = tracking.preflight()
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        owned = _owned_runs(client, exp.experiment_id, kfp_run_id) if exp is not None and _filled(kfp_run_id) else []
        if not owned:
            return f"no parent run of KFP run {kfp_run_id} to close (none opened, or the caller's own)"
        status = STATUS.get(str(state).upper(), "FAILED")
        lines = []
        for parent in owned:
            run_id = parent.info.run_id
            children = client.search_runs([exp.experiment_id], max_results=1000,
                                          filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
            failed, tracks = [], set()
            for child in children:
                if child.info.status == "RUNNING":  # its pod ended without ending it
                    client.set_tag(child.info.run_id, tracking.ERROR_TAG,
                                   "the task ended without closing its run (pod killed, timed out or evicted)")
                    client.set_terminated(child.info.run_id, "FAILED")
                    child = client.get_run(child.info.run_id)
                if tracking.ERROR_TAG in child.data.tags:
                    failed.append(f"{child.info.run_name}: {child.data.tags[tracking.ERROR_TAG]}")
                    tracks.add(child.data.tags.get("vidpred.track") or child.data.tags.get("vidpred.dataset", ""))
            md5s = tag_dataset_md5s(run_id)
            if status != "FINISHED":
                text = "; ".join(failed) or " ".join(str(error).split()) or f"KFP run ended {state}"
                client.set_tag(run_id, tracking.ERROR_TAG, text[:5000])
                client.set_tag(run_id, "vidpred.failed_tracks", ",".join(sorted(t for t in tracks if t)))
            client.set_terminated(run_id, status)
            lines.append(f"parent run {run_id} {status} ({len(children)} stage run(s), {len(failed)} failed, "
                         f"data md5 {', '.join(f'{k}={v}' for k, v in md5s.items()) or 'none'})")
        return "; ".join(lines)


__all__ = ["open_parent_run", "close_parent_run", "KFP_RUN_TAG", "OPENED_TAG"]
