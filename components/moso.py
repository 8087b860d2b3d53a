"""KFP components of the MOSO stages (thin wrappers; logic in vidpred.train.moso_*).

``train_moso_vqvae``: MOSO-VQVAE on a MOSO store → a Model artifact holding ``moso_vqvae.pt``, checkpoints
and reconstruction samples. ``moso_tokens``: the token set (real and pseudo-clip tokens, codebook version).
``train_moso_transformer``: MOSO-Transformer on the token set → ``moso_transformer.pt`` and prediction
samples; held-out PSNR/SSIM of the prediction and of the copy-last-frame baseline go into the metadata.
GPU requests, tolerations and node selectors are set where the pipeline uses these components.
"""

from kfp import dsl

from components.common import vidpred_component


@vidpred_component
def train_moso_vqvae(config: str, moso: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                     overrides: list = []) -> str:
    """Train MOSO-VQVAE on the MOSO store ``moso``; everything lands in ``model.path``."""
    from vidpred.train.moso_vqvae import main

    result = main(config, list(overrides) + [f"data.moso_store={moso.path}", f"train.out_dir={model.path}"])
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    return result.describe()


@vidpred_component
def moso_tokens(moso: dsl.Input[dsl.Dataset], vqvae: dsl.Input[dsl.Model], tokens: dsl.Output[dsl.Dataset],
                context: int) -> str:
    """Encode the MOSO store with the trained VQVAE (``context`` frames per pseudo clip)."""
    from pathlib import Path

    from vidpred.train.moso_tokens import extract_tokens

    summary = extract_tokens(Path(vqvae.path) / "moso_vqvae.pt", moso.path, tokens.path, context)
    tokens.metadata.update({"clips": summary.num_clips, "codebook_version": summary.codebook_version,
                            "codebook_usage": float(summary.usage)})
    return summary.describe()


@vidpred_component
def train_moso_transformer(config: str, moso: dsl.Input[dsl.Dataset], vqvae: dsl.Input[dsl.Model],
                           tokens: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
                           overrides: list = []) -> str:
    """Train MOSO-Transformer on ``tokens``; validation decodes with ``vqvae`` against ``moso``'s frames."""
    from pathlib import Path

    from vidpred.train.moso_transformer import main

    result = main(config, list(overrides) + [f"data.tokens={tokens.path}", f"data.moso_store={moso.path}",
                                             f"vqvae={Path(vqvae.path) / 'moso_vqvae.pt'}",
                                             f"train.out_dir={model.path}"])
    model.metadata["step"] = result.train.step
    model.metadata.update({k: float(v) for k, v in result.metrics.items()})
    return result.describe()
