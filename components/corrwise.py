"""KFP components of the CorrWise stage: training and the toy experiment (thin wrappers; logic in vidpred)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def train_corrwise(config: str, store: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                   overrides: list = []) -> str:
    """Train the CorrWise predictor on ``store``; checkpoints and samples land in ``model.path``."""
    from vidpred.train.corrwise import main

    result = main(config, list(overrides) + [f"data.store={store.path}", f"train.out_dir={model.path}"],
                  progress=False)
    model.metadata["step"] = result.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    return result.describe()


@dsl.component(base_image="python:3.11")
def toycar_experiment(report: dsl.Output[dsl.Artifact], loss: str = "l1", mode: str = "corrwise",
                      curve: bool = False, overrides: list = []) -> str:
    """CorrWise Fig. 2 toy experiment; the report folder (PNG, Markdown, JSON) is the output artifact."""
    from vidpred.experiments.toycar import main

    result = main(loss=loss, mode=mode, out=report.path, curve=curve, overrides=list(overrides), progress=False)
    report.metadata.update({k: v for k, v in result.summary.items() if isinstance(v, (int, float, str))})
    return result.describe()
