"""`vidpred landmarks …`: predict, interpolate and evaluate with trained landmark models.

Mounted by ``vidpred.cli`` as the ``landmarks`` group. Inputs are videos of a clip store (``--store``,
``--video``); outputs are numbered PNG frames, a GIF and a grid with the landmarks drawn. Module-level
imports stay light; torch is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Unsupervised landmarks: prediction, interpolation, keypoint evaluation.")

ModelOpt = typer.Option(..., "--model", help="Trained autoencoder: landmarks.pt from `vidpred train landmarks`, a "
                        "folder holding it, or an MLflow URI (models:/vidpred-<track>-landmarks@champion, runs:/…).")
StoreOpt = typer.Option(..., "--store", help="A clip store (`vidpred data prepare`).")
VideoOpt = typer.Option(None, "--video", help="Video id in the store (default: the first of --split).")
SplitOpt = typer.Option("test", "--split", help="Split to take the default video from.")
OutOpt = typer.Option(..., "--out", help="Output directory (frames/, sequence.gif, grid.png; written atomically).")


def _model_file(model: str, name: str) -> Path:
    """``--model`` / ``--dynamics`` as a local file (MLflow URIs downloaded: vidpred.evaluate.predictors)."""
    from vidpred.evaluate.predictors import resolve_model_file

    return resolve_model_file(model, name, "landmark model")


def _video(store_dir: Path, video: Optional[str], split: str):
    import numpy as np

    from vidpred.data.store import open_store
    from vidpred.errors import VidpredError

    store = open_store(store_dir)
    if video is None:
        ids = store.video_ids(split)
        if not ids:
            raise VidpredError(f"clip store {store_dir} has no videos in split '{split}'")
        video = ids[0]
    return video, np.asarray(store.frames(video))


@app.command("predict")
def predict_cmd(
    model: str = ModelOpt,
    dynamics: str = typer.Option(..., "--dynamics", help="Trained LSTM: dynamics.pt from `vidpred train "
                                 "landmark-dynamics`, a folder holding it, or an MLflow URI (like --model)."),
    store: Path = StoreOpt, video: Optional[str] = VideoOpt, split: str = SplitOpt, out: Path = OutOpt,
    context: int = typer.Option(2, help="Context frames read by the LSTM (paper: 2)."),
    steps: int = typer.Option(98, help="Frames to predict (paper: 98 on BBC Pose, 28 on BAIR)."),
    start: int = typer.Option(0, help="First context frame in the video."),
):
    """Roll the landmark LSTM out from CONTEXT frames and decode STEPS future frames."""
    from vidpred.errors import VidpredError
    from vidpred.models.landmarks import inference
    from vidpred.train.landmark_dynamics import load_dynamics
    from vidpred.train.landmarks import load_autoencoder

    if context < 1 or steps < 1:
        raise VidpredError(f"--context and --steps must be ≥ 1, got {context} and {steps}")
    net, lstm = load_autoencoder(_model_file(model, "landmarks.pt")), load_dynamics(_model_file(dynamics, "dynamics.pt"))
    if lstm.cfg.num_landmarks != net.cfg.num_landmarks:
        raise VidpredError(f"{dynamics} has {lstm.cfg.num_landmarks} landmarks but {model} has {net.cfg.num_landmarks}")
    vid, frames = _video(store, video, split)
    if start < 0 or start + context > len(frames):
        raise VidpredError(f"video '{vid}' has {len(frames)} frames; cannot take {context} context frames at {start}")
    seq = inference.predict(net, lstm, frames[start:start + context], steps)
    paths = inference.write_sequence(out, seq, truth=frames[start:], grid_every=max(1, (context + steps) // 10))
    typer.echo(f"predicted {steps} frames of '{vid}' from {context}: {paths['gif']}, {paths['grid']}")


@app.command("interpolate")
def interpolate_cmd(
    model: str = ModelOpt, store: Path = StoreOpt, video: Optional[str] = VideoOpt, split: str = SplitOpt,
    out: Path = OutOpt,
    first: int = typer.Option(0, help="Index of the first frame."),
    last: int = typer.Option(-1, help="Index of the last frame (-1: the video's last)."),
    num: int = typer.Option(0, help="Frames to produce, ends included (0: last − first + 1)."),
):
    """Interpolate linearly in (mean, Cholesky) landmark space between two frames and decode."""
    from vidpred.errors import VidpredError
    from vidpred.models.landmarks import inference
    from vidpred.train.landmarks import load_autoencoder

    net = load_autoencoder(_model_file(model, "landmarks.pt"))
    vid, frames = _video(store, video, split)
    last = last % len(frames) if -len(frames) <= last < len(frames) else last
    if not (0 <= first < len(frames) and 0 <= last < len(frames)) or first == last:
        raise VidpredError(f"video '{vid}' has {len(frames)} frames; --first {first} / --last {last} are invalid")
    n = num or abs(last - first) + 1
    if n < 2:
        raise VidpredError(f"--num must be ≥ 2, got {num}")
    seq = inference.interpolate(net, frames[first], frames[last], n)
    truth = frames[first:last + 1] if last > first and n == last - first + 1 else None
    paths = inference.write_sequence(out, seq, truth=truth, grid_every=max(1, n // 10))
    typer.echo(f"interpolated {n} frames of '{vid}' ({first} → {last}): {paths['gif']}, {paths['grid']}")


@app.command("evaluate")
def evaluate_cmd(
    model: str = ModelOpt, store: Path = StoreOpt,
    train_split: str = typer.Option("train", help="Split the regression is fitted on."),
    test_split: str = typer.Option("test", help="Held-out split it is scored on."),
    threshold: float = typer.Option(6.0, help="Pixel threshold (paper: 6 px at 128 px)."),
    max_frames: int = typer.Option(1024, help="At most this many frames per split (random, seeded)."),
):
    """Keypoint accuracy: linear regression (no intercept) from landmark means to ground-truth centres."""
    from vidpred.errors import VidpredError
    from vidpred.train.landmarks import keypoint_eval, load_autoencoder, load_eval_data

    net = load_autoencoder(_model_file(model, "landmarks.pt"))
    data = load_eval_data(store, train_split, test_split, max_frames)
    if data is None:
        raise VidpredError(f"clip store {store} has no 'centers' ground truth in splits {train_split}/{test_split}")
    typer.echo(keypoint_eval(net, data, threshold).describe())
