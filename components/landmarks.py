"""KFP components of the unsupervised-landmarks stages (thin wrappers; logic in vidpred.train.landmarks*).

``train_landmarks``: autoencoder pretraining on a clip store → a Model artifact holding ``landmarks.pt``,
checkpoints and samples; the keypoint accuracy (if the store has centre ground truth) goes into the
artifact metadata. ``train_landmark_dynamics``: the LSTM on top of it → ``dynamics.pt`` (with a copy of
``landmarks.pt``, so the artifact is the whole predictor) and a rollout GIF.
MLflow nesting, torchrun on several GPUs and multi-node Kubeflow Trainer jobs via
``vidpred.orchestrate.run_training_stage``; GPU scheduling is set by the pipeline.
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def train_landmarks(config: str, store: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                    overrides: list = [], data_md5: str = "", tracking_uri: str = "",
                    parent_run_id: str = "", track: str = "", nproc: int = 1, checkpoints: str = "",
                    run_id: str = "", trainjob: str = "") -> str:
    """Pretrain the landmark autoencoder on ``store``; everything lands in ``model.path``.
    ``nproc`` / ``checkpoints`` / ``run_id`` / ``trainjob``: how and where it trains (torchrun, the checkpoint
    location of the run, a Kubeflow Trainer job), see ``vidpred.orchestrate.run_training_stage``."""
    from vidpred.orchestrate import run_training_stage

    result = run_training_stage(
        "landmarks", config, list(overrides), inputs={"data.store": store.path}, out_dir=model.path, nproc=nproc,
        checkpoints=checkpoints, run_id=run_id, trainjob=trainjob,
        tracking_uri=tracking_uri, parent_run_id=parent_run_id, data_md5=data_md5, track=track)
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.train.metrics.items()})
    if result.keypoints is not None:
        model.metadata["keypoint_accuracy"] = float(result.keypoints.accuracy)
    print(result.describe())
    return result.describe()


@vidpred_component
def train_landmark_dynamics(config: str, store: dsl.Input[dsl.Dataset], landmarks: dsl.Input[dsl.Model],
                            model: dsl.Output[dsl.Model], overrides: list = [], data_md5: str = "",
                            tracking_uri: str = "", parent_run_id: str = "", track: str = "", nproc: int = 1,
                            checkpoints: str = "", run_id: str = "", trainjob: str = "") -> str:
    """Train the (μ, Cholesky) LSTM with the autoencoder from ``landmarks``; outputs in ``model.path``.
    ``nproc`` / ``checkpoints`` / ``run_id`` / ``trainjob``: how and where it trains (torchrun, the checkpoint
    location of the run, a Kubeflow Trainer job), see ``vidpred.orchestrate.run_training_stage``."""
    from vidpred.orchestrate import run_training_stage

    result = run_training_stage(
        "landmark_dynamics", config, list(overrides),
        inputs={"data.store": store.path, "model.autoencoder": f"{landmarks.path}/landmarks.pt"},
        out_dir=model.path, nproc=nproc, checkpoints=checkpoints, run_id=run_id, trainjob=trainjob,
        tracking_uri=tracking_uri, parent_run_id=parent_run_id, data_md5=data_md5, track=track)
    import shutil

    # the model artifact is the whole predictor: the autoencoder next to the LSTM (vidpred.evaluate)
    shutil.copy2(f"{landmarks.path}/landmarks.pt", f"{model.path}/landmarks.pt")
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.train.metrics.items()})
    print(result.describe())
    return result.describe()
