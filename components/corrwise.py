"""KFP components of the CorrWise stage: predictor training and the toy experiment.

Thin wrappers: logic in ``vidpred.train.corrwise`` and ``vidpred.experiments.toycar``; MLflow nesting via
``vidpred.orchestrate.run_training_stage`` (also torchrun on several GPUs and multi-node Kubeflow Trainer jobs). GPU
scheduling is set where the pipeline uses them.
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def train_corrwise(config: str, store: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                   overrides: list = [], data_md5: str = "", tracking_uri: str = "",
                   parent_run_id: str = "", track: str = "", nproc: int = 1, checkpoints: str = "",
                   run_id: str = "", trainjob: str = "") -> str:
    """Train the CorrWise predictor on ``store``; checkpoints, samples and the model land in ``model.path``.
    ``nproc`` / ``checkpoints`` / ``run_id`` / ``trainjob``: how and where it trains (torchrun, the checkpoint
    location of the run, a Kubeflow Trainer job), see ``vidpred.orchestrate.run_training_stage``."""
    from vidpred.orchestrate import run_training_stage

    result = run_training_stage(
        "corrwise", config, list(overrides), inputs={"data.store": store.path}, out_dir=model.path, nproc=nproc,
        checkpoints=checkpoints, run_id=run_id, trainjob=trainjob,
        tracking_uri=tracking_uri, parent_run_id=parent_run_id, data_md5=data_md5, track=track)
    model.metadata["step"] = result.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    print(result.describe())
    return result.describe()


@vidpred_component
def toycar_experiment(report: dsl.Output[dsl.Artifact], loss: str = "l1", mode: str = "corrwise",
                      curve: bool = False, overrides: list = [], tracking_uri: str = "",
                      parent_run_id: str = "", track: str = "") -> str:
    """CorrWise Fig. 2 toy experiment; the report folder (PNG, Markdown, JSON) is the output artifact."""
    from vidpred.experiments.toycar import main
    from vidpred.orchestrate import stage_env

    with stage_env(tracking_uri, parent_run_id, track=track):
        result = main(loss=loss, mode=mode, out=report.path, curve=curve, overrides=list(overrides),
                      progress=False)
    report.metadata.update({k: v for k, v in result.summary.items() if isinstance(v, (int, float, str))})
    print(result.describe())
    return result.describe()
