"""`vidpred moso …` commands: tokens, predict, interpolate, generate, manipulate.

Each inference command writes frames (PNG), a GIF per video and a PNG grid into ``--out`` (atomically).
Inputs are clips of a MOSO store (``vidpred preprocess moso``) picked by ``--clip`` (row in the store).
Heavy imports (torch) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="MOSO: tokens, prediction, interpolation, generation, manipulation.")

VqvaeOpt = typer.Option(..., "--vqvae", help="moso_vqvae.pt from `vidpred train moso-vqvae`.")
TransOpt = typer.Option(..., "--transformer", help="moso_transformer.pt from `vidpred train moso-transformer`.")
StoreOpt = typer.Option(..., "--store", help="A MOSO store (`vidpred preprocess moso`).")
OutOpt = typer.Option(..., "--out", help="Output directory (frames, GIFs, grid.png).")
StepsOpt = typer.Option(16, help="MaskGIT steps (paper: 16).")
TempOpt = typer.Option(4.5, help="Gumbel temperature of the MaskGIT confidence (authors' code: 3–4.5).")
TokTempOpt = typer.Option(1.0, help="Softmax temperature of the sampled tokens (1: the model's distribution, "
                                     "as in the paper; 0: the most likely token).")
SeedOpt = typer.Option(0, help="Sampling seed.")


def _clips(store_dir: Path, clips: list[int]):
    import torch

    from vidpred.errors import VidpredError
    from vidpred.preprocess.moso import load_moso_store

    store = load_moso_store(store_dir)
    for c in clips:
        if not 0 <= c < len(store):
            raise VidpredError(f"--clip {c} is out of range: {store_dir} has {len(store)} clips")
    return store, torch.stack([store.clip(c)["frames"] for c in clips])


@app.command("tokens")
def tokens(vqvae: Path = VqvaeOpt, store: Path = StoreOpt,
           out: Path = typer.Option(..., "--out", help="Output directory of the token set (written atomically)."),
           context: int = typer.Option(..., help="Context frames K of the pseudo clips (e.g. 2 RoboNet, 10 KTH)."),
           batch_size: int = typer.Option(16, help="Clips per batch.")):
    """Encode a MOSO store into scene / object / motion tokens (real and pseudo clips)."""
    from vidpred.train.moso_tokens import extract_tokens

    typer.echo(extract_tokens(vqvae, store, out, context, batch_size).describe())


@app.command("predict")
def predict(vqvae: Path = VqvaeOpt, transformer: Path = TransOpt, store: Path = StoreOpt, out: Path = OutOpt,
            clip: int = typer.Option(0, help="Clip (row of the MOSO store) whose first frames are the context."),
            context: int = typer.Option(2, help="Context frames K."),
            frames: Optional[int] = typer.Option(None, help="Frames to produce (default one clip); more → iterative."),
            steps: int = StepsOpt, temperature: float = TempOpt, token_temperature: float = TokTempOpt,
            seed: int = SeedOpt):
    """Video prediction: K context frames → the rest (iteratively for long rollouts)."""
    import torch

    from vidpred.models.moso.inference import load_transformer, load_vqvae, predict_video, write_video_outputs

    vq, meta = load_vqvae(vqvae)
    tr, _ = load_transformer(transformer)
    st, truth = _clips(store, [clip])
    total = frames or vq.cfg.frames
    video = predict_video(vq, tr, truth[:, :context], total, bool(meta.get("raw_content")), st.meta["lower"],
                          st.meta["upper"], steps, temperature, torch.Generator().manual_seed(seed), token_temperature)
    typer.echo(f"wrote {write_video_outputs(out, {'truth': truth[0], 'prediction': video[0]})}")


@app.command("interpolate")
def interpolate(vqvae: Path = VqvaeOpt, transformer: Path = TransOpt, store: Path = StoreOpt, out: Path = OutOpt,
                clip: int = typer.Option(0, help="Clip (row of the MOSO store)."),
                known: str = typer.Option("0,-1", help="Comma-separated indices of the known frames."),
                steps: int = StepsOpt, temperature: float = TempOpt, token_temperature: float = TokTempOpt,
                seed: int = SeedOpt):
    """Frame interpolation: keep the known frames' motion tokens, generate the others'."""
    import torch

    from vidpred.errors import VidpredError
    from vidpred.models.moso.inference import encode_frames, load_transformer, load_vqvae, write_video_outputs
    from vidpred.models.moso.sampling import interpolate_tokens

    vq, meta = load_vqvae(vqvae)
    tr, _ = load_transformer(transformer)
    st, truth = _clips(store, [clip])
    t = vq.cfg.frames
    try:
        idx = [int(i) % t for i in known.split(",") if i.strip()]
    except ValueError:
        raise VidpredError(f"--known must be comma-separated frame indices, got {known!r}") from None
    mask = torch.zeros(t, dtype=torch.bool)
    mask[idx] = True
    tok = encode_frames(vq, truth, bool(meta.get("raw_content")), st.meta["lower"], st.meta["upper"])
    tok = interpolate_tokens(tr, tok, mask, steps, temperature, torch.Generator().manual_seed(seed), token_temperature)
    video = vq.decode_tokens(tok).clamp(0, 1)
    typer.echo(f"wrote {write_video_outputs(out, {'truth': truth[0], 'interpolation': video[0]})}")


@app.command("generate")
def generate(vqvae: Path = VqvaeOpt, transformer: Path = TransOpt, out: Path = OutOpt,
             num: int = typer.Option(4, help="Videos to generate."), steps: int = StepsOpt,
             temperature: float = TempOpt, token_temperature: float = TokTempOpt, seed: int = SeedOpt):
    """Unconditional generation (all tokens sampled)."""
    import torch

    from vidpred.models.moso.inference import load_transformer, load_vqvae, write_video_outputs
    from vidpred.models.moso.sampling import generate_tokens

    vq, _ = load_vqvae(vqvae)
    tr, _ = load_transformer(transformer)
    tok = generate_tokens(tr, num, vq.cfg.token_shape("scene"), vq.cfg.token_shape("object"), steps,
                          temperature, torch.Generator().manual_seed(seed), token_temperature=token_temperature)
    video = vq.decode_tokens(tok).clamp(0, 1)
    typer.echo(f"wrote {write_video_outputs(out, {f'sample-{i}': v for i, v in enumerate(video)})}")


@app.command("manipulate")
def manipulate(vqvae: Path = VqvaeOpt, store: Path = StoreOpt, out: Path = OutOpt,
               clip_a: int = typer.Option(..., "--clip-a", help="Clip giving objects and motion."),
               clip_b: int = typer.Option(..., "--clip-b", help="Clip giving the scene.")):
    """Video manipulation: objects and motion from clip A, scene from clip B (paper §4.2)."""
    from vidpred.models.moso.inference import encode_frames, load_vqvae, write_video_outputs

    vq, meta = load_vqvae(vqvae)
    st, truth = _clips(store, [clip_a, clip_b])
    tok = encode_frames(vq, truth, bool(meta.get("raw_content")), st.meta["lower"], st.meta["upper"])
    mixed = {"scene": tok["scene"][1:], "object": tok["object"][:1], "motion": tok["motion"][:1]}
    video = vq.decode_tokens(mixed).clamp(0, 1)
    typer.echo(f"wrote {write_video_outputs(out, {'a': truth[0], 'b': truth[1], 'a_on_b': video[0]})}")
