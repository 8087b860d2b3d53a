"""KFP components of the evaluation stage and the report (thin wrappers; logic in ``vidpred.evaluate``).

``evaluate_track``: one track's trained model and its baselines on the track's protocol → an Artifact folder
with one sub-folder per method (metrics.json, per_clip.csv, per_frame.png, samples.png) and one MLflow run
``evaluate/<track>/<method>`` per method under the pipeline's parent run.
``make_report``: after every evaluation, ``report.md`` / ``report.html`` of the parent run, logged to it with the
headline metrics (``<track>/<method>/<metric>``).
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def evaluate_track(store: dsl.Input[dsl.Dataset], model: dsl.Input[dsl.Model], evaluation: dsl.Output[dsl.Artifact],
                   name: str, protocol: str, method: str, baselines: list = [], overrides: list = [],
                   device: str = "auto", data_md5: str = "", tracking_uri: str = "", parent_run_id: str = "",
                   track: str = "", promotion: str = "") -> str:
    """Score ``method`` (the model in ``model``) and ``baselines`` on ``protocol`` as evaluation ``name`` (of the
    profile's ``track``); outputs in ``evaluation.path``. ``promotion`` (``vidpred.registry.PromotionSpec`` as
    JSON; empty: none): register the model as ``vidpred-<track>-<method>`` and decide champion / challenger."""
    from vidpred.evaluate.benchmark import evaluate_track as run
    from vidpred.evaluate.protocols import get_protocol
    from vidpred.orchestrate import stage_env
    from vidpred.registry import PromotionSpec

    spec = get_protocol(protocol, list(overrides))
    methods = [(method, model.path)] + [(b, None) for b in baselines]
    with stage_env(tracking_uri, parent_run_id, data_md5, track=track):
        results = run(store.path, name, spec, methods, evaluation.path, device=device, log_mlflow=True,
                      parent_run_id=parent_run_id or None, progress=False,
                      promotion=PromotionSpec.from_json(promotion))
    text = "\n".join(r.describe() for r in results)
    for r in results:
        for metric, m in r.summary["metrics"].items():
            evaluation.metadata[f"{r.summary['method']}/{metric}"] = float(m["mean"])
    evaluation.metadata.update({"track": name, "protocol": protocol,
                                "stand_in": any(r.summary["stand_in"] for r in results)})
    for r in results:
        if r.promotion is not None:
            evaluation.metadata.update({"registered_model": r.promotion.name, "version": r.promotion.version,
                                        "decision": r.promotion.decision})
    print(text)
    return text


@vidpred_component
def make_report(report: dsl.Output[dsl.Artifact], tracking_uri: str = "", parent_run_id: str = "") -> str:
    """The reproduction report of the pipeline's MLflow parent run (needs ``parent_run_id``); the parent run is
    tagged with the md5 of every dataset its prepare stages made first, so the report's header names the data."""
    from pathlib import Path

    from vidpred.evaluate.report import write_report
    from vidpred.orchestrate import stage_env, tag_dataset_md5s

    if not parent_run_id:
        # without a parent run there is nothing to collect the evaluations from (cluster runs get one in issue 14)
        Path(report.path).mkdir(parents=True, exist_ok=True)
        note = "no report: the pipeline ran without an MLflow parent run (parent_run_id is empty)"
        (Path(report.path) / "README.txt").write_text(note + "\n")
        print(note)
        return note
    with stage_env(tracking_uri, parent_run_id):
        tag_dataset_md5s(parent_run_id)
        result = write_report(parent_run_id, report.path)
    text = result.describe()
    print(text)
    return text
