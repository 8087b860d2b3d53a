"""KFP components of the MOSO stages (thin wrappers; logic in vidpred.train.moso_*).

``train_moso_vqvae``: MOSO-VQVAE on a MOSO store → a Model artifact holding ``moso_vqvae.pt``, checkpoints
and reconstruction samples. ``moso_tokens``: the token set (real and pseudo-clip tokens, codebook version).
``train_moso_transformer``: MOSO-Transformer on the token set → ``moso_transformer.pt`` (with a copy of the
VQVAE, so the artifact is the whole predictor) and prediction samples; held-out PSNR/SSIM of the prediction and of the copy-last-frame baseline go into the metadata.
MLflow nesting, torchrun on several GPUs and multi-node Kubeflow Trainer jobs via ``vidpred.orchestrate``; GPU
scheduling is set by the pipeline.
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def train_moso_vqvae(config: str, moso: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                     overrides: list = [], data_md5: str = "", tracking_uri: str = "",
                     parent_run_id: str = "", track: str = "", nproc: int = 1, checkpoints: str = "",
                     run_id: str = "", trainjob: str = "") -> str:
    """Train MOSO-VQVAE on the MOSO store ``moso``; everything lands in ``model.path``.
    ``nproc`` / ``checkpoints`` / ``run_id`` / ``trainjob``: how and where it trains (torchrun, the checkpoint
    location of the run, a Kubeflow Trainer job), see ``vidpred.orchestrate.run_training_stage``."""
    from vidpred.orchestrate import run_training_stage

    result = run_training_stage(
        "moso_vqvae", config, list(overrides), inputs={"data.moso_store": moso.path}, out_dir=model.path,
        nproc=nproc, checkpoints=checkpoints, run_id=run_id, trainjob=trainjob,
        tracking_uri=tracking_uri, parent_run_id=parent_run_id, data_md5=data_md5, track=track)
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    print(result.describe())
    return result.describe()


@vidpred_component
def moso_tokens(moso: dsl.Input[dsl.Dataset], vqvae: dsl.Input[dsl.Model], tokens: dsl.Output[dsl.Dataset],
                context: int, data_md5: str = "", tracking_uri: str = "", parent_run_id: str = "",
                track: str = "") -> str:
    """Encode the MOSO store with the trained VQVAE (``context`` frames per pseudo clip)."""
    from pathlib import Path

    from vidpred.orchestrate import stage
    from vidpred.train.moso_tokens import extract_tokens

    with stage("moso_tokens", {"context": context}, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
               data_md5=data_md5, track=track) as run:
        summary = extract_tokens(Path(vqvae.path) / "moso_vqvae.pt", moso.path, tokens.path, context)
        run.log_metrics({"clips": summary.num_clips, "codebook_usage": float(summary.usage)})
    tokens.metadata.update({"clips": summary.num_clips, "codebook_version": summary.codebook_version,
                            "codebook_usage": float(summary.usage)})
    print(summary.describe())
    return summary.describe()


@vidpred_component
def train_moso_transformer(config: str, moso: dsl.Input[dsl.Dataset], vqvae: dsl.Input[dsl.Model],
                           tokens: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                           overrides: list = [], data_md5: str = "", tracking_uri: str = "",
                           parent_run_id: str = "", track: str = "", nproc: int = 1, checkpoints: str = "",
                           run_id: str = "", trainjob: str = "") -> str:
    """Train MOSO-Transformer on ``tokens``; validation decodes with ``vqvae`` against ``moso``'s frames.
    ``nproc`` / ``checkpoints`` / ``run_id`` / ``trainjob``: how and where it trains (torchrun, the checkpoint
    location of the run, a Kubeflow Trainer job), see ``vidpred.orchestrate.run_training_stage``."""
    from vidpred.orchestrate import run_training_stage

    result = run_training_stage(
        "moso_transformer", config, list(overrides),
        inputs={"data.tokens": tokens.path, "data.moso_store": moso.path, "vqvae": f"{vqvae.path}/moso_vqvae.pt"},
        out_dir=model.path, nproc=nproc, checkpoints=checkpoints, run_id=run_id, trainjob=trainjob,
        tracking_uri=tracking_uri, parent_run_id=parent_run_id, data_md5=data_md5, track=track)
    import shutil

    # the model artifact is the whole predictor: the tokenizer next to the transformer (vidpred.evaluate)
    shutil.copy2(f"{vqvae.path}/moso_vqvae.pt", f"{model.path}/moso_vqvae.pt")
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    print(result.describe())
    return result.describe()
